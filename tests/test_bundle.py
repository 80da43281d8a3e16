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

"""st4r bundle: exact round trips and every kind of bad input, each named in its error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

from gaussians_fixture import make_gaussians
import pytest
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.scene.bundle import GAUSSIANS_FILE, load_bundle, MANIFEST, read_manifest, save_bundle
from st4r_ros.scene.gaussians import Gaussians
import torch


# SH degree 1 and instance ids: every kind of tensor a bundle holds makes the round trip.
KEYFRAMES = [(t, make_gaussians(n, seed, sh_degree=1, ids=True))
             for seed, (t, n) in enumerate([(0.0, 7), (0.4, 0), (1.0, 5)])]


@pytest.fixture
def bundle(tmp_path) -> Path:
    return save_bundle(tmp_path / 'bundle', KEYFRAMES, duration_s=3.0, metadata={'note': 'test'})


def edit_manifest(bundle: Path, change: Callable[[Dict], None]) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    change(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def edit_tensors(bundle: Path, change: Callable[[Dict], None]) -> None:
    tensors = load_file(str(bundle / GAUSSIANS_FILE))
    change(tensors)
    save_file(tensors, str(bundle / GAUSSIANS_FILE))


def test_round_trip_is_exact(bundle):
    scene = load_bundle(bundle)
    assert scene.times == [0.0, 0.4, 1.0]
    for (t, expected), (t_loaded, loaded) in zip(KEYFRAMES, scene.keyframes):
        assert t == t_loaded
        for name, tensor in expected.tensors().items():
            assert torch.equal(loaded.tensors()[name], tensor), name
            assert loaded.tensors()[name].dtype == tensor.dtype
    info = scene.info()
    assert (info.format, info.num_frames, info.num_gaussians) == ('bundle', 3, 7)
    assert info.sh_degree == 1
    assert info.duration_s == 3.0
    assert info.details['counts'] == [7, 0, 5]
    assert info.semantic_layers == []


def test_manifest_layout(bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest == {
        'format': 'st4r-bundle', 'version': 1, 'kind': 'keyframed', 'sh_degree': 1,
        'instance_ids': True, 'interpolation': 'nearest', 'duration_s': 3.0,
        'frames': [{'time': 0.0, 'count': 7}, {'time': 0.4, 'count': 0},
                   {'time': 1.0, 'count': 5}],
        'layers': {}, 'metadata': {'note': 'test'},
    }
    assert sorted(load_file(str(bundle / GAUSSIANS_FILE)))[:6] == [
        'frame_0000/instance_ids', 'frame_0000/means', 'frame_0000/opacities',
        'frame_0000/quats', 'frame_0000/scales', 'frame_0000/sh']


def test_without_ids_and_shared_tensors(tmp_path):
    static = make_gaussians(4, 3)
    # The same tensors in two frames (a static scene): safetensors must get separate copies.
    path = save_bundle(tmp_path / 'b', [(0.0, static), (1.0, static)], interpolation='linear')
    scene = load_bundle(path)
    assert scene.interpolation == 'linear'
    assert scene.at(0.5).instance_ids is None
    assert torch.equal(scene.at(0.7).means, static.means)
    assert read_manifest(path)['instance_ids'] is False


def test_layers_are_listed_and_checked(bundle):
    (bundle / 'referring.safetensors').write_bytes(b'')
    edit_manifest(bundle, lambda m: m['layers'].update(
        referring={'file': 'referring.safetensors', 'dim': 16}))
    assert load_bundle(bundle).info().semantic_layers == ['referring']
    assert read_manifest(bundle)['layers']['referring']['dim'] == 16
    edit_manifest(bundle, lambda m: m['layers'].update(temporal={'file': 'temporal.safetensors'}))
    with pytest.raises(SceneFormatError, match=r"layers\['temporal'\].file.*not found"):
        load_bundle(bundle)
    edit_manifest(bundle, lambda m: m['layers'].update(temporal={'file': '../outside.bin'}))
    with pytest.raises(SceneFormatError, match='inside the bundle'):
        load_bundle(bundle)
    edit_manifest(bundle, lambda m: m['layers'].update(temporal={'dim': 3}))
    with pytest.raises(SceneFormatError, match="'file'"):
        load_bundle(bundle)


def test_missing_manifest_and_tensors(tmp_path, bundle):
    with pytest.raises(SceneFormatError, match='manifest.json: not found'):
        load_bundle(tmp_path)
    (bundle / GAUSSIANS_FILE).unlink()
    with pytest.raises(SceneFormatError, match='gaussians.safetensors: not found'):
        load_bundle(bundle)


def test_corrupt_files(bundle):
    (bundle / GAUSSIANS_FILE).write_bytes(b'\x00' * 20)
    with pytest.raises(SceneFormatError, match='not a readable safetensors'):
        load_bundle(bundle)
    (bundle / MANIFEST).write_text('{broken')
    with pytest.raises(SceneFormatError, match='manifest.json: not valid JSON'):
        load_bundle(bundle)


@pytest.mark.parametrize(
    'change, match',
    [
        (lambda m: m.update(format='other'), "'format' must be 'st4r-bundle'"),
        (lambda m: m.update(version=2), "'version' must be 1"),
        (lambda m: m.update(kind='deformable'), "'kind' must be 'keyframed'"),
        (lambda m: m.update(sh_degree=-1), "'sh_degree'"),
        (lambda m: m.update(instance_ids='yes'), "'instance_ids'"),
        (lambda m: m.update(interpolation='cubic'), "'interpolation'"),
        (lambda m: m.update(duration_s=0), "'duration_s'"),
        (lambda m: m.update(frames=[]), "'frames'"),
        (lambda m: m['frames'][1].update(time=1.2),
         r'frames\[1\].time must be a number in \[0, 1\]'),
        (lambda m: m['frames'][1].update(time=-0.1), r'frames\[1\].time'),
        (lambda m: m['frames'][2].update(time=0.3), r'frames\[2\].time = 0.3 must be greater'),
        (lambda m: m['frames'][0].update(count=-1), r'frames\[0\].count'),
        (lambda m: m.update(layers=[]), "'layers'"),
        (lambda m: m.update(metadata=3), "'metadata'"),
    ],
)
def test_bad_manifest_fields(bundle, change, match):
    edit_manifest(bundle, change)
    with pytest.raises(SceneFormatError, match=match) as err:
        load_bundle(bundle)
    assert 'manifest.json' in str(err.value)


def test_count_disagreeing_with_tensors(bundle):
    edit_manifest(bundle, lambda m: m['frames'][0].update(count=8))
    expected = r"'frame_0000/means' has shape \(7, 3\), expected \(8, 3\)"
    with pytest.raises(SceneFormatError, match=expected):
        load_bundle(bundle)


def test_sh_degree_disagreeing_with_tensors(bundle):
    edit_manifest(bundle, lambda m: m.update(sh_degree=2))
    with pytest.raises(SceneFormatError, match=r'frame_0000/sh.*expected \(7, 9, 3\)'):
        load_bundle(bundle)


def test_ids_promised_but_absent(bundle):
    edit_tensors(bundle, lambda t: t.pop('frame_0002/instance_ids'))
    expected = r"missing tensor\(s\) \['frame_0002/instance_ids'\]"
    with pytest.raises(SceneFormatError, match=expected):
        load_bundle(bundle)


def test_unexpected_tensor(bundle):
    edit_tensors(bundle, lambda t: t.update({'frame_0003/means': torch.zeros(1, 3)}))
    with pytest.raises(SceneFormatError, match='unexpected tensor.*frame_0003/means'):
        load_bundle(bundle)


def _set(key: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Dict], None]:
    return lambda tensors: tensors.update({key: make(tensors[key])})


def _poke(value: float, index=(0, 0)) -> Callable[[torch.Tensor], torch.Tensor]:
    def make(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        tensor[index] = value
        return tensor
    return make


@pytest.mark.parametrize(
    'change, match',
    [
        (_set('frame_0000/means', lambda t: t.double()),
         "'frame_0000/means' has dtype torch.float64"),
        (_set('frame_0000/instance_ids', lambda t: t.int()),
         "instance_ids' has dtype torch.int32"),
        (_set('frame_0002/scales', lambda t: t[:, :2].contiguous()),
         r"frame_0002/scales' has shape \(5, 2\)"),
        (_set('frame_0000/means', _poke(float('nan'))), "frame_0000/means' has NaN or inf"),
        (_set('frame_0002/sh', _poke(float('inf'), (0, 0, 0))), "frame_0002/sh' has NaN or inf"),
        (_set('frame_0000/scales', _poke(0.0)), 'scales <= 0'),
        (_set('frame_0000/opacities', _poke(1.5, 0)), r'opacities outside \[0, 1\]'),
        (_set('frame_0000/quats', lambda t: t * 2), 'unit quaternions'),
    ],
)
def test_bad_tensors(bundle, change, match):
    edit_tensors(bundle, change)
    with pytest.raises(SceneFormatError, match=match) as err:
        load_bundle(bundle)
    assert 'gaussians.safetensors' in str(err.value)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(SceneFormatError, match='increase strictly'):
        save_bundle(tmp_path / 'a', [(0.5, make_gaussians(2, 0)), (0.2, make_gaussians(2, 1))])
    with pytest.raises(SceneFormatError, match='metadata'):
        save_bundle(tmp_path / 'b', KEYFRAMES, metadata={'x': object()})
    with pytest.raises(SceneFormatError, match='equal Gaussian counts'):
        save_bundle(tmp_path / 'c', KEYFRAMES, interpolation='linear')
    bad = make_gaussians(2, 0)
    bad = Gaussians(bad.means * float('nan'), bad.quats, bad.scales, bad.opacities, bad.sh)
    with pytest.raises(SceneFormatError, match='NaN'):
        save_bundle(tmp_path / 'd', [(0.0, bad)])
    assert not any((tmp_path / name).exists() for name in 'abcd')
