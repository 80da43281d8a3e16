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

"""Supervision and benchmark files: round trips, lookups, atomic saves and every bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable, Dict

import numpy as np
from PIL import Image
import pytest
from st4r_ros.errors import QueryError, SupervisionFormatError, TimeRangeError
from st4r_ros.render.camera import Camera
from st4r_ros.supervision import (Benchmark, Caption, Expression, InstanceCaptions, load_benchmark,
                                  load_supervision, save_benchmark, save_supervision, Supervision,
                                  SupervisionView)
import torch

W, H = 16, 12


def camera() -> Camera:
    return Camera.look_at([0.0, -3.0, 1.0], [0.0, 0.0, 0.0], width=W, height=H)


def write_mask(path: Path, ids: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids).save(path)
    return path


def ids_u8(value: int) -> np.ndarray:
    ids = np.zeros((H, W), dtype=np.uint8)
    ids[2:6, 3:9] = value
    return ids


@pytest.fixture
def supervision(tmp_path) -> Supervision:
    """Two views (8-bit and 16-bit masks), two instances captioned at frames 0 and 2."""
    wide = np.zeros((H, W), dtype=np.uint16)
    wide[5:, :4] = 300  # beyond 8 bits: 16-bit masks carry large ids
    views = [
        SupervisionView('a', 0.0, 0, camera(),
                        write_mask(tmp_path / 'src/masks/a.png', ids_u8(1))),
        SupervisionView('b', 1.0, 2, camera(), write_mask(tmp_path / 'src/masks/b.png', wide)),
    ]
    instances = [
        InstanceCaptions(1, 'red cube', [Caption(0, 0.0, 'the red cube'),
                                         Caption(0, 0.0, 'a red cube left of the ball'),
                                         Caption(2, 1.0, 'the red cube on the right')]),
        InstanceCaptions(300, None, [Caption(2, 1.0, 'the blue torus')],
                         [Caption(2, 1.0, 'the blue torus is spinning')]),
    ]
    return Supervision(views, instances, tmp_path / 'src', {'seed': 7})


@pytest.fixture
def folder(tmp_path, supervision) -> Path:
    save_supervision(tmp_path / 'src', supervision)
    return tmp_path / 'src'


@pytest.fixture
def bench_file(tmp_path, supervision) -> Path:
    expressions = [
        Expression('e1', 'find the crimson box', 1, 'appearance'),
        Expression('e2', 'the ring further right', 300, 'spatial', frames=[2],
                   metadata={'relation': 'right_of'}),
        Expression('e3', 'the ring at the end', 300, 'relation-only', times=[1.0]),
    ]
    bench = Benchmark(supervision.views, expressions, {1: 'red cube', 300: None},
                      tmp_path / 'src', {'split': 'novel'})
    return save_benchmark(tmp_path / 'src' / 'bench.json', bench)


def document(path: Path) -> Dict:
    return json.loads(path.read_text())


# ---- round trips and lookups --------------------------------------------------------------


def test_supervision_round_trip_and_masks(folder, tmp_path):
    loaded = load_supervision(folder)
    assert [v.name for v in loaded.views] == ['a', 'b']
    assert [(v.time, v.frame) for v in loaded.views] == [(0.0, 0), (1.0, 2)]
    assert loaded.instances[1].state_captions == [Caption(2, 1.0, 'the blue torus is spinning')]
    assert loaded.instances[1].name is None and loaded.metadata == {'seed': 7}
    mask = loaded.views[0].load_mask()
    assert mask.dtype == torch.int64 and mask.shape == (H, W)
    assert torch.equal(mask, torch.from_numpy(ids_u8(1).astype(np.int64)))
    assert int(loaded.views[1].load_mask().max()) == 300
    # Saved elsewhere, the masks are referenced relative to the new folder and still load.
    save_supervision(tmp_path / 'elsewhere', loaded)
    again = load_supervision(tmp_path / 'elsewhere' / 'supervision.json')
    assert document(tmp_path / 'elsewhere' / 'supervision.json')['views'][0]['mask'] == \
        '../src/masks/a.png'
    assert torch.equal(again.views[1].load_mask(), loaded.views[1].load_mask())
    save_supervision(folder, again)
    assert document(folder / 'supervision.json')['instances'] == \
        document(tmp_path / 'elsewhere' / 'supervision.json')['instances']
    assert sorted(p.name for p in folder.iterdir()) == ['masks', 'supervision.json']  # no temps


def test_captions_at_nearest_frame(folder):
    loaded = load_supervision(folder)
    assert loaded.captions_at(time=0.2) == {1: ['the red cube', 'a red cube left of the ball']}
    assert loaded.captions_at(time=0.9) == {1: ['the red cube on the right'],
                                            300: ['the blue torus']}
    assert loaded.captions_at(frame=2) == loaded.captions_at(time=1.0)
    assert loaded.captions_at(frame=0) == loaded.captions_at(time=0.0)
    with pytest.raises(TimeRangeError):
        loaded.captions_at(time=1.5)
    with pytest.raises(QueryError):
        loaded.captions_at()
    with pytest.raises(QueryError):
        loaded.captions_at(time=0.5, frame=1)


def test_benchmark_round_trip_and_where_expressions_hold(bench_file, tmp_path):
    bench = load_benchmark(bench_file)
    assert [e.id for e in bench.expressions] == ['e1', 'e2', 'e3']
    assert bench.instances == {1: 'red cube', 300: None}
    assert bench.expressions[1].metadata == {'relation': 'right_of'}
    assert bench.metadata == {'split': 'novel'}
    first, last = bench.views
    assert [e.id for e in bench.expressions_at(first)] == ['e1']
    assert [e.id for e in bench.expressions_at(last)] == ['e1', 'e2', 'e3']
    copy_path = save_benchmark(tmp_path / 'copy' / 'b.json', bench)
    assert document(copy_path)['expressions'] == document(bench_file)['expressions']
    assert torch.equal(load_benchmark(copy_path).views[0].load_mask(), first.load_mask())


def test_a_failed_save_leaves_the_previous_file(folder, supervision):
    before = (folder / 'supervision.json').read_bytes()
    supervision.instances.append(InstanceCaptions(1, 'duplicate', []))
    with pytest.raises(SupervisionFormatError, match=r'instances\[2\]\.id'):
        save_supervision(folder, supervision)
    assert (folder / 'supervision.json').read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ['masks', 'supervision.json']


# ---- bad inputs ---------------------------------------------------------------------------


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(SupervisionFormatError, match='not found'):
        load_supervision(tmp_path / 'nothing')
    with pytest.raises(SupervisionFormatError, match='not found'):
        load_benchmark(tmp_path / 'nothing.json')
    (tmp_path / 'supervision.json').write_text('{not json')
    with pytest.raises(SupervisionFormatError, match='supervision.json: not valid JSON'):
        load_supervision(tmp_path)
    (tmp_path / 'bench.json').write_text('[1, 2')
    with pytest.raises(SupervisionFormatError, match='bench.json: not valid JSON'):
        load_benchmark(tmp_path / 'bench.json')


def _set(path: str, value) -> Callable[[Dict], None]:
    """Make a mutation setting (or, for value DELETE, deleting) a dotted path like views.0.time."""
    def mutate(doc: Dict) -> None:
        *parents, last = path.split('.')
        for key in parents:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        key = int(last) if isinstance(doc, list) else last
        if value is DELETE:
            del doc[key]
        else:
            doc[key] = value
    return mutate


DELETE = object()

SUPERVISION_CASES = {
    'not an object': (lambda d: d.clear() or d.update(x=1), 'format'),
    'wrong format': (_set('format', 'st4r-bundle'), "format: expected 'st4r-supervision'"),
    'wrong version': (_set('version', 2), 'version: expected 1'),
    'no views': (_set('views', []), 'views: expected at least one view'),
    'views missing': (_set('views', DELETE), 'views: expected a JSON list'),
    'view name missing': (_set('views.0.name', DELETE), r'views\[0\]\.name.*field missing'),
    'view time missing': (_set('views.0.time', DELETE), r'views\[0\]\.time'),
    'view time above 1': (_set('views.1.time', 1.5), r'views\[1\]\.time: expected a normal'),
    'view time negative': (_set('views.1.time', -0.1), r'views\[1\]\.time'),
    'view time nan': (_set('views.1.time', float('nan')), r'views\[1\]\.time'),
    'view frame negative': (_set('views.0.frame', -1), r'views\[0\]\.frame: expected an int'),
    'view frame bool': (_set('views.0.frame', True), r'views\[0\]\.frame'),
    'bad camera': (_set('views.0.camera', {'width': 4}), r'views\[0\]\.camera: expected a val'),
    'camera missing': (_set('views.0.camera', DELETE), r'views\[0\]\.camera'),
    'mask missing': (_set('views.0.mask', 'masks/none.png'),
                     r'views\[0\]\.mask \(.*none.png\): expected an existing'),
    'mask field missing': (_set('views.0.mask', DELETE), r'views\[0\]\.mask: .*field missing'),
    'mask absolute': (_set('views.0.mask', '/tmp/a.png'), r'views\[0\]\.mask: expected a pat'),
    'mask wrong size': (_set('views.0.mask', 'masks/small.png'), r'views\[0\]\.mask .*: .*16x12'),
    'mask rgb': (_set('views.0.mask', 'masks/rgb.png'), r'views\[0\]\.mask .*: .*single-channel'),
    'mask not png': (_set('views.0.mask', 'masks/text.png'), r'views\[0\]\.mask .*: .*readable'),
    'duplicate view': (_set('views.1.name', 'a'), r'views\[1\]\.name: expected a unique name'),
    'no instances': (_set('instances', []), 'instances: expected at least one'),
    'instance id zero': (_set('instances.0.id', 0), r'instances\[0\]\.id: expected an int'),
    'instance id text': (_set('instances.0.id', '1'), r'instances\[0\]\.id'),
    'duplicate id': (_set('instances.1.id', 1), r'instances\[1\]\.id: expected a unique id'),
    'captions missing': (_set('instances.0.captions', DELETE), r'instances\[0\]\.captions'),
    'caption text empty': (_set('instances.0.captions.0.text', ' '),
                           r'instances\[0\]\.captions\[0\]\.text: expected a non-empty'),
    'caption time': (_set('instances.0.captions.1.time', 2.0),
                     r'instances\[0\]\.captions\[1\]\.time'),
    'caption frame': (_set('instances.0.captions.1.frame', DELETE),
                      r'instances\[0\]\.captions\[1\]\.frame'),
    'state caption time': (_set('instances.1.state_captions.0.time', -1),
                           r'instances\[1\]\.state_captions\[0\]\.time'),
    'metadata not object': (_set('metadata', [1]), 'metadata: expected a JSON object'),
}


@pytest.fixture
def bad_masks(folder):
    write_mask(folder / 'masks' / 'small.png', np.zeros((H - 1, W), dtype=np.uint8))
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(folder / 'masks' / 'rgb.png')
    (folder / 'masks' / 'text.png').write_text('not a png')
    return folder


@pytest.mark.parametrize('case', sorted(SUPERVISION_CASES))
def test_bad_supervision(bad_masks, case):
    mutate, message = SUPERVISION_CASES[case]
    doc = document(bad_masks / 'supervision.json')
    mutate(doc)
    (bad_masks / 'supervision.json').write_text(json.dumps(doc))
    with pytest.raises(SupervisionFormatError, match=message) as caught:
        load_supervision(bad_masks)
    assert 'supervision.json' in str(caught.value)  # the file is named


BENCHMARK_CASES = {
    'wrong format': (_set('format', 'st4r-supervision'), "format: expected 'st4r-benchmark'"),
    'wrong version': (_set('version', '1'), 'version: expected 1'),
    'unknown instance': (_set('expressions.0.instance_id', 9),
                         r'expressions\[0\]\.instance_id: expected one of .*\[1, 300\]'),
    'instance id missing': (_set('expressions.0.instance_id', DELETE),
                            r'expressions\[0\]\.instance_id'),
    'no expressions': (_set('expressions', []), 'expressions: expected at least one'),
    'text missing': (_set('expressions.1.text', DELETE), r'expressions\[1\]\.text'),
    'kind missing': (_set('expressions.1.kind', DELETE), r'expressions\[1\]\.kind'),
    'duplicate id': (_set('expressions.2.id', 'e1'), r'expressions\[2\]\.id: expected a uniq'),
    'id not text': (_set('expressions.2.id', 3), r'expressions\[2\]\.id: expected a non-em'),
    'time outside': (_set('expressions.2.times', [0.5, 1.01]), r'expressions\[2\]\.times\[1\]'),
    'frame negative': (_set('expressions.1.frames', [-2]), r'expressions\[1\]\.frames\[0\]'),
    'frames and times': (_set('expressions.1.times', [1.0]), "at most one of 'frames'"),
    'frames without view frames': (_set('views.0.frame', DELETE),
                                   r"expressions\[1\]\.frames: expected views with a 'frame'"),
    'duplicate view': (_set('views.0.name', 'b'), r'views\[1\]\.name: expected a unique'),
    'view time': (_set('views.0.time', 3), r'views\[0\]\.time'),
    'mask missing': (_set('views.1.mask', 'masks/gone.png'), r'views\[1\]\.mask'),
    'mask wrong size': (_set('views.1.mask', 'masks/small.png'), r'views\[1\]\.mask .*: .*16x12'),
    'duplicate instance': (_set('instances.1.id', 1), r'instances\[1\]\.id: expected a uniq'),
    'instances missing': (_set('instances', DELETE), 'instances: expected a JSON list'),
}


@pytest.mark.parametrize('case', sorted(BENCHMARK_CASES))
def test_bad_benchmark(bench_file, bad_masks, case):
    mutate, message = BENCHMARK_CASES[case]
    doc = copy.deepcopy(document(bench_file))
    mutate(doc)
    bench_file.write_text(json.dumps(doc))
    with pytest.raises(SupervisionFormatError, match=message) as caught:
        load_benchmark(bench_file)
    assert 'bench.json' in str(caught.value)


def test_load_mask_checks_the_file_again(folder):
    view = load_supervision(folder).views[0]
    write_mask(view.mask_path, np.zeros((H, W + 1), dtype=np.uint8))
    expected = r"a.png: mask \(.*a.png\): expected a mask of the camera's size 16x12, got '17x12'"
    with pytest.raises(SupervisionFormatError, match=expected):
        view.load_mask()
