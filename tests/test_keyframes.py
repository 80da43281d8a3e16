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

"""KeyframedScene: nearest / linear rules and per-frame PLY folders (good and bad)."""

from __future__ import annotations

import json
from pathlib import Path

from gaussians_fixture import make_gaussians
import pytest
from st4r_ros.errors import SceneFormatError, TimeRangeError
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.keyframes import interpolate, KeyframedScene, natural_key
from st4r_ros.scene.ply import write_ply
import torch


def write_sequence(folder: Path, counts, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f'time_{i:05d}.ply' for i in range(len(counts))]
    for i, (name, n) in enumerate(zip(names, counts)):
        write_ply(folder / name, make_gaussians(n, seed=i))
    return folder


def test_nearest_rule_picks_closest_keyframe_ties_to_earlier():
    frames = [(0.0, make_gaussians(3, 0)), (0.5, make_gaussians(4, 1)),
              (1.0, make_gaussians(5, 2))]
    scene = KeyframedScene(frames)
    assert len(scene.at(0.0)) == 3
    assert len(scene.at(0.24)) == 3
    assert len(scene.at(0.25)) == 3  # tie: the earlier frame holds
    assert len(scene.at(0.26)) == 4
    assert len(scene.at(0.76)) == 5
    assert scene.at(0.5).means is frames[1][1].means  # a keyframe is returned unchanged


def test_keyframes_outside_span_hold_first_and_last():
    scene = KeyframedScene([(0.2, make_gaussians(3, 0)), (0.6, make_gaussians(4, 1))])
    assert len(scene.at(0.0)) == 3
    assert len(scene.at(1.0)) == 4
    with pytest.raises(TimeRangeError):
        scene.at(1.5)


def test_linear_interpolation_between_corresponding_frames():
    a, b = make_gaussians(6, 0, ids=True), make_gaussians(6, 1, ids=True)
    scene = KeyframedScene([(0.0, a), (1.0, b)], interpolation='linear')
    mid = scene.at(0.5)
    torch.testing.assert_close(mid.means, (a.means + b.means) / 2)
    torch.testing.assert_close(mid.scales, (a.scales * b.scales).sqrt())
    torch.testing.assert_close(mid.quats.norm(dim=1), torch.ones(6))
    assert torch.equal(mid.instance_ids, a.instance_ids)
    assert torch.equal(scene.at(1.0).means, b.means)


def test_interpolate_takes_shorter_arc():
    a = make_gaussians(1, 0)
    b = Gaussians(a.means, -a.quats, a.scales, a.opacities, a.sh)  # the same rotation
    torch.testing.assert_close(interpolate(a, b, 0.5).quats, a.quats)


def test_linear_needs_corresponding_frames():
    with pytest.raises(SceneFormatError, match='equal Gaussian counts'):
        KeyframedScene([(0.0, make_gaussians(3, 0)), (1.0, make_gaussians(4, 1))],
                       interpolation='linear')
    a, b = make_gaussians(3, 0, ids=True), make_gaussians(3, 1, ids=True)
    b = Gaussians(b.means, b.quats, b.scales, b.opacities, b.sh, torch.tensor([2, 1, 0]))
    with pytest.raises(SceneFormatError, match='instance_ids'):
        KeyframedScene([(0.0, a), (1.0, b)], interpolation='linear')


@pytest.mark.parametrize(
    'frames, match',
    [
        ([], 'at least one keyframe'),
        ([(0.5, make_gaussians(2, 0)), (0.5, make_gaussians(2, 1))], 'increase strictly'),
        ([(0.6, make_gaussians(2, 0)), (0.5, make_gaussians(2, 1))], 'increase strictly'),
        ([(1.5, make_gaussians(2, 0))], r'\[0, 1\]'),
        ([(0.0, make_gaussians(2, 0)), (1.0, make_gaussians(2, 1, sh_degree=1))], 'SH degree'),
        ([(0.0, make_gaussians(2, 0, ids=True)), (1.0, make_gaussians(2, 1))], 'instance_ids'),
    ],
)
def test_bad_keyframes(frames, match):
    with pytest.raises(SceneFormatError, match=match):
        KeyframedScene(frames)


def test_natural_key_orders_numbers_numerically():
    names = ['time_10.ply', 'time_2.ply', 'time_1.ply']
    assert sorted(names, key=natural_key) == ['time_1.ply', 'time_2.ply', 'time_10.ply']


def test_ply_folder_loads_with_even_times_in_natural_order(tmp_path):
    names = ['time_1.ply', 'time_2.ply', 'time_10.ply']
    folder = write_sequence(tmp_path / 'seq', [3, 4, 5], names)
    scene = KeyframedScene.from_ply_folder(folder)
    info = scene.info()
    assert info.format == 'ply-sequence'
    assert info.num_frames == 3
    assert info.num_gaussians == 5
    assert info.details['counts'] == [3, 4, 5]
    assert info.details['frame_times'] == [0.0, 0.5, 1.0]
    assert info.duration_s is None
    assert len(scene.at(0.3)) == 4  # nearest to 0.5
    expected = make_gaussians(5, seed=2)
    torch.testing.assert_close(scene.at(1.0).means, expected.means)
    torch.testing.assert_close(scene.at(1.0).opacities, expected.opacities, rtol=1e-5, atol=1e-6)


def test_single_ply_is_a_static_scene(tmp_path):
    scene = KeyframedScene.from_ply_folder(write_sequence(tmp_path / 'one', [4]))
    assert scene.times == [0.0]
    assert len(scene.at(0.9)) == 4


def test_frames_json_sets_times_duration_and_interpolation(tmp_path):
    folder = write_sequence(tmp_path / 'seq', [3, 3, 3])
    spec = {'times': {'time_00000.ply': 0.0, 'time_00001.ply': 0.9, 'time_00002.ply': 0.3},
            'duration_s': 2.5, 'interpolation': 'linear'}
    (folder / 'frames.json').write_text(json.dumps(spec))
    scene = KeyframedScene.from_ply_folder(folder)
    assert scene.times == [0.0, 0.3, 0.9]
    assert scene.duration_s == 2.5
    assert scene.interpolation == 'linear'
    # Frames are ordered by their time, not by file name.
    torch.testing.assert_close(scene.at(0.3).means, make_gaussians(3, seed=2).means)


@pytest.mark.parametrize(
    'content, match',
    [
        ('{not json', 'not valid JSON'),
        ('[1, 2]', 'JSON object'),
        ('{"times": {"time_00000.ply": 0.0}}', 'missing'),
        ('{"times": {"time_00000.ply": 0.0, "time_00001.ply": 1.0, "x.ply": 0.5}}', 'unknown'),
        ('{"times": {"time_00000.ply": 0.0, "time_00001.ply": 2.0}}',
         r"times\['time_00001.ply'\]"),
        ('{"times": {"time_00000.ply": 0.5, "time_00001.ply": 0.5}}', 'increase strictly'),
        ('{"duration_s": -1}', 'duration_s'),
        ('{"duration_s": 1' + '0' * 400 + '}', 'duration_s: expected a positive number'),
        ('{"duration_s": true}', 'duration_s'),
        ('{"times": {"time_00000.ply": 1' + '0' * 400 + ', "time_00001.ply": 1.0}}',
         r"times\['time_00000.ply'\]: expected a time in \[0, 1\]"),
        ('{"interpolation": "cubic"}', 'interpolation'),
        ('{"fps": 30}', 'unknown field'),
    ],
)
def test_bad_frames_json(tmp_path, content, match):
    folder = write_sequence(tmp_path / 'seq', [2, 2])
    (folder / 'frames.json').write_text(content)
    with pytest.raises(SceneFormatError, match=match):
        KeyframedScene.from_ply_folder(folder)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(SceneFormatError, match='expected a folder'):
        KeyframedScene.from_ply_folder(tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no frames here')
    with pytest.raises(SceneFormatError, match='found none'):
        KeyframedScene.from_ply_folder(tmp_path / 'empty')


def test_unreadable_frame_is_named(tmp_path):
    folder = write_sequence(tmp_path / 'seq', [2, 2])
    (folder / 'time_00001.ply').write_bytes(b'ply\nformat garbage\n')
    with pytest.raises(SceneFormatError, match='time_00001.ply'):
        KeyframedScene.from_ply_folder(folder)


def test_ambiguous_frame_numbers(tmp_path):
    folder = write_sequence(tmp_path / 'seq', [2, 2], ['t1.ply', 't01.ply'])
    with pytest.raises(SceneFormatError, match='same frame number'):
        KeyframedScene.from_ply_folder(folder)
