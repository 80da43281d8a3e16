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

"""
st4r bundle and its semantic layers: exact round trips and every kind of bad input.

Each bad input is refused with one SceneFormatError naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict

from gaussians_fixture import make_gaussians
import pytest
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.field.layer import load_referring, load_referring_layer, save_referring_layer
from st4r_ros.field.model import FieldConfig, ReferringField
from st4r_ros.scene.bundle import GAUSSIANS_FILE, load_bundle, MANIFEST, read_manifest, save_bundle
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.ply import write_ply
from st4r_ros.temporal.layer import load_temporal_layer, save_temporal_layer, TemporalLayer
from st4r_ros.temporal.routing import Router
from st4r_ros.temporal.state_cache import StateCache
import torch
import torch.nn.functional as F


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
    for outside in ('../outside.bin', '../../etc/hostname', '/etc/hostname'):
        edit_manifest(bundle, lambda m: m['layers'].update(temporal={'file': outside}))
        with pytest.raises(SceneFormatError, match=r"layers\['temporal'\].file = .* resolves to "
                                                   '.*; expected a path inside'):
            load_bundle(bundle)
    # A link inside the bundle to a file outside it is outside too.
    (bundle.parent / 'outside.bin').write_bytes(b'')
    (bundle / 'linked.safetensors').symlink_to(bundle.parent / 'outside.bin')
    edit_manifest(bundle, lambda m: m['layers'].update(temporal={'file': 'linked.safetensors'}))
    with pytest.raises(SceneFormatError, match='outside.bin; expected a path inside'):
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
        (_set('frame_0000/means', _poke(float('nan'))),
         r"frame_0000/means' has 1 Gaussian\(s\) with NaN or inf"),
        (_set('frame_0002/sh', _poke(float('inf'), (0, 0, 0))),
         r"frame_0002/sh' has 1 Gaussian\(s\) with NaN or inf"),
        (_set('frame_0000/scales', _poke(0.0)), 'scales <= 0'),
        (_set('frame_0000/scales', _poke(1e30)), r'beyond exp\(\+-40\)'),
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


# --- semantic layers ------------------------------------------------------------------------

FIELD_CONFIG = FieldConfig(text_dim=8, embed_dim=4, hidden_dim=8, pos_frequencies=1)


def referring_field(n: int) -> ReferringField:
    torch.manual_seed(n)
    return ReferringField(n, torch.rand(n, 3), FIELD_CONFIG, torch.arange(n) % 2)


def temporal_layer() -> TemporalLayer:
    ids, times = torch.tensor([0, 1]), torch.tensor([0.0, 1.0])
    features = F.normalize(torch.randn(2, 2, 8, generator=torch.Generator().manual_seed(0)),
                           dim=-1)
    valid = torch.ones(2, 2, dtype=torch.bool)
    return TemporalLayer(StateCache(ids, times, features, valid), Router(torch.ones(8), 0.1),
                         StateCache(ids, times, features.flip(0), valid))


@pytest.fixture
def layered(tmp_path) -> Path:
    """Write a bundle of 6 Gaussians per frame with a referring and a temporal layer."""
    frames = [(t, make_gaussians(6, seed, ids=True)) for seed, t in enumerate((0.0, 1.0))]
    path = save_bundle(tmp_path / 'layered', frames)
    save_referring_layer(path, referring_field(6), {'text_encoder': {'name': 'stub', 'dim': 8},
                                                    'threshold': 0.3})
    save_temporal_layer(path, temporal_layer())
    return path


def edit_json(path: Path, change: Callable[[Dict], Any]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))  # NaN and inf as JSON's NaN and Infinity


def test_layers_load(layered):
    field, meta = load_referring_layer(layered)
    assert field.num_gaussians == 6 and meta['threshold'] == 0.3
    assert load_temporal_layer(layered).router.bias == 0.1
    assert read_manifest(layered)['layers'].keys() == {'referring', 'temporal'}


@pytest.mark.parametrize('change, message', [
    (lambda m: m.update(threshold='0.3'),
     "mistypes field 'threshold': got '0.3', expected a finite number"),
    (lambda m: m.update(threshold=math.nan), "field 'threshold': got nan"),
    (lambda m: m.update(threshold=-math.inf), "field 'threshold': got -inf"),
    (lambda m: m.update(threshold=10 ** 400), r"field 'threshold': got 1000.*\.\.\., expected"),
    (lambda m: m.update(threshold=[[[[0.3]]]]), "field 'threshold': got a list of 1 item"),
    (lambda m: m.update(version=True), "mistypes field 'version': got True"),
    (lambda m: m.update(text_encoder='minilm'), "mistypes field 'text_encoder'"),
    (lambda m: m['text_encoder'].update(name=['x']), r"text_encoder: mistypes field 'name'"),
    (lambda m: m.update(num_gaussians=-1), r"'num_gaussians' = -1; expected an integer in 0"),
    (lambda m: m.update(num_gaussians=100), r"'num_gaussians' = 100, but .*referring.safetensors "
                                            'holds the embeddings of 6 Gaussians'),
    (lambda m: m['field'].update(hidden_dim='8'), r"field: mistypes field 'hidden_dim'"),
    (lambda m: m['field'].update(hidden_dim=10 ** 9),
     r"'hidden_dim' = 1000000000; expected an integer in 1 \.\. 65536"),
    (lambda m: m['field'].update(pos_frequencies=2000), r"'pos_frequencies' = 2000"),
    (lambda m: m['field'].update(attention=1), "mistypes field 'attention': got 1, expected true"),
    (lambda m: m['field'].update(init_std=math.inf), "mistypes field 'init_std'"),
    (lambda m: m['field'].update(depth=3), r"field: unknown field\(s\) \['depth'\]"),
    # Sizes the tensors do not have: compared on the meta device, nothing allocated.
    (lambda m: m['field'].update(hidden_dim=60000), r"tensors do not match the layer's field "
                                                    r'config.*feature_mlp.0.weight: \(8, 4\), '
                                                    r'expected \(60000, 4\)'),
    (lambda m: m.update(file='../../etc/hostname'), "'file' = '../../etc/hostname' resolves to "
                                                    '.*/etc/hostname; expected a path inside'),
    (lambda m: m.update(file='/etc/hostname'), 'expected a path inside'),
    (lambda m: m.update(file=3), "'file' = '3'; expected a file name inside"),
    (lambda m: m.update(vocabulary=['cube']), "vocabulary: field 'vocabulary' must be an object"),
    (lambda m: m.update(vocabulary={'words': ['cube', None], 'threshold': 0.5}),
     "vocabulary: field 'words' must list 1 to 65536 non-empty strings"),
    (lambda m: m.update(vocabulary={'words': ['cube'], 'threshold': math.nan}),
     "vocabulary: mistypes field 'threshold'"),
    (lambda m: m.update(vocabulary={'words': ['cube'], 'threshold': 1.5}), r'in \[-1, 1\]'),
])
def test_bad_referring_metadata(layered, change, message):
    edit_json(layered / 'referring.json', change)
    with pytest.raises(SceneFormatError, match=message) as info:
        load_referring_layer(layered)
    assert 'referring.json' in str(info.value)


def _tensor(key: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Dict], None]:
    return lambda tensors: tensors.update({key: make(tensors[key])})


@pytest.mark.parametrize('change, message', [
    (_tensor('field/embeddings', lambda t: t[0, 0]),
     r"'field/embeddings' has shape \(\); expected 2 dimension"),
    (_tensor('field/embeddings', lambda t: t.int()), r"'field/embeddings' has dtype torch.int32; "
                                                     'expected float'),
    (_tensor('field/assignment', lambda t: t.float()), r"'field/assignment' has dtype "
                                                       'torch.float32; expected integer'),
    (_tensor('field/canonical', lambda t: t[:, :2].contiguous()),
     r'canonical_means: expected shape \(6, 3\), got \(6, 2\)'),
    (_tensor('field/feature_mlp.0.weight', lambda t: t.to(torch.complex64)),
     r"'field/feature_mlp.0.weight' has dtype torch.complex64"),
    (_tensor('field/feature_mlp.0.weight', lambda t: t / 0), "feature_mlp.0.weight' has NaN"),
    (lambda tensors: tensors.pop('field/word_mlp.2.bias'), "lacks tensor 'field/word_mlp.2.bias'"),
    (lambda tensors: tensors.update({'field/extra': torch.zeros(1)}),
     r"unexpected \['field/extra'\]"),
])
def test_bad_referring_tensors(layered, change, message):
    edit_tensor_file(layered / 'referring.safetensors', change)
    with pytest.raises(SceneFormatError, match=f'referring.safetensors: .*{message}'):
        load_referring_layer(layered)


def edit_tensor_file(path: Path, change: Callable[[Dict], Any]) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def test_a_layer_of_another_scene_is_refused_at_open_naming_both_counts(layered, tmp_path):
    save_referring_layer(tmp_path / 'other', referring_field(100), {'threshold': 0.0})
    with pytest.raises(SceneFormatError, match=r'layered: the referring layer in .*other holds '
                                               '100 Gaussians, the scene 6 per frame'):
        load_referring(layered, tmp_path / 'other')
    write_ply(tmp_path / 'scene.ply', make_gaussians(7, 0))
    with pytest.raises(SceneFormatError, match='holds 100 Gaussians, the scene 7 per frame'):
        load_referring(tmp_path / 'scene.ply', tmp_path / 'other')
    uneven = save_bundle(tmp_path / 'uneven', [(0.0, make_gaussians(100, 0)),
                                               (1.0, make_gaussians(99, 1))])
    with pytest.raises(SceneFormatError, match='the scene 99 or 100 per frame'):
        load_referring(uneven, tmp_path / 'other')


def test_a_layer_file_linked_outside_its_folder_is_not_read(layered, tmp_path):
    (layered / 'referring.safetensors').rename(tmp_path / 'elsewhere.safetensors')
    (layered / 'referring.safetensors').symlink_to(tmp_path / 'elsewhere.safetensors')
    with pytest.raises(SceneFormatError, match='elsewhere.safetensors; expected a path inside'):
        load_referring_layer(layered)


@pytest.mark.parametrize('change, message', [
    (lambda m: m.update(router_bias='0.1'), "mistypes field 'router_bias': got '0.1'"),
    (lambda m: m.update(locate_floor=math.nan), "mistypes field 'locate_floor': got nan"),
    (lambda m: m.pop('locate_floor'), "lacks field 'locate_floor'"),
    (lambda m: m.update(version=True), "mistypes field 'version'"),
    (lambda m: m.update(intervals=[3]), "mistypes field 'intervals': got a list"),
    (lambda m: m['intervals'].update(window=10 ** 9), r"intervals: field 'window' = 1000000000; "
                                                      r'expected an integer in 1 \.\. 1023'),
    (lambda m: m['intervals'].update(window=4), "'window' = 4; expected an odd number"),
    (lambda m: m['intervals'].update(window=True), "mistypes field 'window'"),
    (lambda m: m['intervals'].update(level=math.inf), "mistypes field 'level': got inf"),
    (lambda m: m.update(calibration=[1]), "mistypes field 'calibration'"),
    (lambda m: m['text_encoder'].update(dim='8'), "text_encoder: mistypes field 'dim'"),
])
def test_bad_temporal_metadata(layered, change, message):
    edit_json(layered / 'temporal.json', change)
    with pytest.raises(SceneFormatError, match=f'temporal.json: .*{message}'):
        load_temporal_layer(layered)


@pytest.mark.parametrize('change, message', [
    (_tensor('cache/instance_ids', lambda t: t.float()), "'cache/instance_ids' has dtype "
                                                         'torch.float32; expected integer'),
    (_tensor('cache/features', lambda t: t.int()), "'cache/features' has dtype torch.int32"),
    (_tensor('states/features', lambda t: t.to(torch.complex64)), 'torch.complex64'),
    (_tensor('states/features', lambda t: t / 0), "'states/features' has NaN"),
    (_tensor('cache/valid', lambda t: t.float()), "'cache/valid' has dtype torch.float32; "
                                                  'expected flag'),
    (_tensor('router/weight', lambda t: t[0]), r"'router/weight' has shape \(\); expected 1"),
    (_tensor('cache/frame_times', lambda t: t.flip(0)), 'frame times must be strictly ascending'),
])
def test_bad_temporal_tensors(layered, change, message):
    edit_tensor_file(layered / 'temporal.safetensors', change)
    with pytest.raises(SceneFormatError, match=f'temporal.safetensors: .*{message}'):
        load_temporal_layer(layered)
