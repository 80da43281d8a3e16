# Copyright 2026 The st4r_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""The Gaussians container and the Scene4D contract shared by every loader."""

import pytest
from st4r_ros.errors import SceneFormatError, TimeRangeError
from st4r_ros.scene.gaussians import Gaussians, SH_C0, sh_degree_for
from st4r_ros.scene.scene4d import check_time, Scene4D, SceneInfo
import torch


def make(n=5, k=4, **overrides):
    fields = {
        'means': torch.randn(n, 3),
        'quats': torch.nn.functional.normalize(torch.randn(n, 4), dim=1),
        'scales': torch.rand(n, 3) + 0.01,
        'opacities': torch.rand(n),
        'sh': torch.randn(n, k, 3),
    }
    fields.update(overrides)
    return Gaussians(**fields)


def test_shapes_and_sh_degree():
    g = make(k=16)
    assert len(g) == 5 and g.sh_degree == 3
    assert [sh_degree_for(k) for k in (1, 4, 9, 16)] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    'overrides, message',
    [
        ({'quats': torch.randn(5, 3)}, 'quats: expected shape \\(5, 4\\)'),
        ({'opacities': torch.rand(5, 1)}, 'opacities'),
        ({'sh': torch.randn(5, 5, 3)}, 'not \\(degree \\+ 1\\)\\^2'),
        ({'sh': torch.randn(4, 1, 3)}, 'sh: expected shape'),
        ({'instance_ids': torch.zeros(3, dtype=torch.long)}, 'instance_ids'),
    ],
)
def test_bad_shapes_name_the_field(overrides, message):
    with pytest.raises(SceneFormatError, match=message):
        make(**overrides)


def test_rgb_select_and_tensors():
    g = make(sh=torch.zeros(5, 1, 3), instance_ids=torch.arange(5))
    assert torch.allclose(g.rgb, torch.full((5, 3), 0.5))
    sub = g.select(g.instance_ids >= 3)
    assert len(sub) == 2 and sub.instance_ids.tolist() == [3, 4]
    assert set(g.tensors()) == {'means', 'quats', 'scales', 'opacities', 'sh', 'instance_ids'}
    assert SH_C0 == pytest.approx(0.5 / (3.14159265 ** 0.5), rel=1e-6)


class CountingScene(Scene4D):

    def __init__(self):
        super().__init__()
        self.calls = 0

    def info(self):
        return SceneInfo(path='mem', format='test', num_gaussians=5, sh_degree=1)

    def _at(self, t, device):
        self.calls += 1
        return make(means=torch.full((5, 3), t))


def test_scene_reuses_the_last_instant():
    scene = CountingScene()
    first = scene.at(0.25)
    assert scene.at(0.25) is first and scene.calls == 1
    scene.at(0.5)
    assert scene.calls == 2 and float(scene.at(0.5).means[0, 0]) == 0.5


@pytest.mark.parametrize('t', [-0.01, 1.01, float('nan'), float('inf'), 'soon', None])
def test_times_outside_unit_interval_are_refused(t):
    with pytest.raises(TimeRangeError, match='time'):
        CountingScene().at(t)
    with pytest.raises(TimeRangeError):
        check_time(t)
