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
Fuzz targets: a valid input of each kind, mutated by hypothesis, read through the public loader.

Every target takes a folder and hypothesis' ``data`` and asserts the only outcomes a user may
see: a scene (or camera) that works, or an ``St4rError``. Anything else propagates and fails the
run. tests/test_fuzz.py runs them: in its own process for the JSON-shaped inputs, and in a child
process under a 2 GB address-space limit for the ones that size networks and tensors
(``python tests/fuzz_targets.py TARGET... --examples N``), so that an allocation the checks let
through shows as a MemoryError there rather than as a slow machine.

Profiles: ``--examples`` (default the quick CI count); a nightly run raises it, e.g.
``python tests/fuzz_targets.py ply cfg_args deformation --examples 2000``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
from pathlib import Path
import re
import resource
import sys
import tempfile
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fourdgs_fixture import small_grid, write_fourdgs_scene  # noqa: E402
from gaussians_fixture import make_gaussians  # noqa: E402
from hypothesis import given, HealthCheck, Phase, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from st4r_ros.cli import main as st4r  # noqa: E402
from st4r_ros.engine import QueryEngine, QueryRequest, QueryStatus  # noqa: E402
from st4r_ros.errors import St4rError  # noqa: E402
from st4r_ros.field.layer import save_referring_layer  # noqa: E402
from st4r_ros.field.model import FieldConfig, ReferringField  # noqa: E402
from st4r_ros.render.camera import Camera  # noqa: E402
from st4r_ros.ros.replay import replay  # noqa: E402
from st4r_ros.scene.bundle import save_bundle  # noqa: E402
from st4r_ros.scene.loading import load_scene  # noqa: E402
from st4r_ros.scene.ply import write_ply  # noqa: E402
from st4r_ros.text import DEFAULT_MODEL_ID  # noqa: E402
import torch  # noqa: E402

# The address space the risky targets run in: the bound on peak memory.
MEMORY_LIMIT_BYTES = 2 << 30

# What an opened layer may answer a query with (ERROR would be a bug).
ANSWERED = (QueryStatus.OK, QueryStatus.NO_TARGET, QueryStatus.NO_SCENE)
# A number given as a cfg_args value or list element (not the digits of a quoted path).
NUMBER = re.compile(r'(?<=[=\[, ])-?\d+(?:\.\d+)?(?=[,\])])')
# JSON values a hostile file may hold where a number, text or object was expected.
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
    st.sampled_from([10 ** 400, -1, 0, 2 ** 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(['../../etc/hostname', '/etc/passwd', '', '[/]']))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def mutate_json(document: Any, data: Any) -> Any:
    """Replace, delete or add one value somewhere in ``document`` (a JSON value)."""
    if not isinstance(document, (dict, list)) or not document or data.draw(st.booleans()):
        return data.draw(JSON_VALUES)
    if isinstance(document, dict):
        key = data.draw(st.sampled_from(sorted(document)))
        copy = dict(document)
        action = data.draw(st.sampled_from(['mutate', 'delete', 'add']))
        if action == 'delete':
            del copy[key]
        elif action == 'add':
            copy[data.draw(st.text(max_size=8))] = data.draw(JSON_VALUES)
        else:
            copy[key] = mutate_json(document[key], data)
        return copy
    index = data.draw(st.integers(0, len(document) - 1))
    return document[:index] + [mutate_json(document[index], data)] + document[index + 1:]


def mutate_bytes(raw: bytes, data: Any) -> bytes:
    """Flip some bytes, then perhaps cut the file short."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        out[data.draw(st.integers(0, len(out) - 1))] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        out = out[:data.draw(st.integers(0, len(out)))]
    return bytes(out)


def expect_result_or_st4r_error(read: Callable[[], Any]) -> str:
    """Run ``read``; 'ok' or 'refused' (an St4rError). Anything else propagates."""
    try:
        read()
    except St4rError:
        return 'refused'
    return 'ok'


@functools.lru_cache(maxsize=1)
def _double_engine() -> QueryEngine:
    from test_ros_conversions import double_engine

    return double_engine()


def scene_at_half(path: Path, kind: str) -> Callable[[], Any]:
    return lambda: load_scene(path, kind).at(0.5)


# ---- targets -----------------------------------------------------------------------------


def camera_target(folder: Path, data: Any) -> str:
    valid = Camera.from_fov(60, 32, 24).to_json()
    path = folder / 'camera.json'
    path.write_text(json.dumps(mutate_json(valid, data), allow_nan=True))
    return expect_result_or_st4r_error(lambda: Camera.load(path))


def bundle_target(folder: Path, data: Any) -> str:
    bundle = save_bundle(folder / 'bundle', [(0.0, make_gaussians(20, 0, ids=True)),
                                             (1.0, make_gaussians(20, 1, ids=True))],
                         duration_s=2.0)
    manifest = bundle / 'manifest.json'
    document = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(mutate_json(document, data), allow_nan=True))
    return expect_result_or_st4r_error(scene_at_half(bundle, 'bundle'))


def ply_target(folder: Path, data: Any) -> str:
    path = folder / 'scene.ply'
    write_ply(path, make_gaussians(40, 0, sh_degree=1))
    path.write_bytes(mutate_bytes(path.read_bytes(), data))
    return expect_result_or_st4r_error(scene_at_half(path, 'ply'))


def cfg_args_target(folder: Path, data: Any) -> str:
    root = folder / 'fourdgs'
    write_fourdgs_scene(root, 'dnerf', n=16, iterations=(100,), overrides=small_grid('dnerf'))
    cfg = root / 'cfg_args'
    text = cfg.read_text()
    numbers = list(NUMBER.finditer(text))
    for _ in range(data.draw(st.integers(1, 3))):
        match = numbers[data.draw(st.integers(0, len(numbers) - 1))]
        value = data.draw(st.one_of(
            st.integers(-10, 10 ** 12).map(str), st.sampled_from(['1e400', 'None', "'x'", '[]',
                                                                  '1.5', 'True', '10**9'])))
        text = text[:match.start()] + value + text[match.end():]
        numbers = list(NUMBER.finditer(text))
    cfg.write_text(text)
    return expect_result_or_st4r_error(scene_at_half(root, '4dgaussians'))


def deformation_target(folder: Path, data: Any) -> str:
    root = folder / 'fourdgs'
    write_fourdgs_scene(root, 'dnerf', n=16, iterations=(100,), overrides=small_grid('dnerf'))
    path = root / 'point_cloud' / 'iteration_100' / 'deformation.pth'
    state: Dict[str, Any] = torch.load(path, weights_only=True)
    key = data.draw(st.sampled_from(sorted(state)))
    tensor = state[key]
    change = data.draw(st.sampled_from(['dtype', 'sparse', 'shape', 'value', 'delete', 'extra',
                                        'huge']))
    if change == 'dtype':
        state[key] = tensor.to(data.draw(st.sampled_from(
            [torch.complex64, torch.float8_e4m3fn, torch.int8, torch.bool, torch.float16,
             torch.bfloat16, torch.float64])))
    elif change == 'sparse' and tensor.dim() >= 1:
        state[key] = tensor.to_sparse()
    elif change == 'shape':
        state[key] = tensor.reshape(-1)[:max(tensor.numel() - 1, 0)]
    elif change == 'value':
        state[key] = data.draw(st.sampled_from([[1.0, 2.0], 'weights', None, 3]))
    elif change == 'delete':
        del state[key]
    elif change == 'extra':
        state[key + '.extra'] = torch.zeros(2)
    else:  # a plane of a size no cfg_args declares
        state[key] = torch.zeros(1, 1, 64, 64)
    torch.save(state, path)
    return expect_result_or_st4r_error(scene_at_half(root, '4dgaussians'))


def layer_target(folder: Path, data: Any) -> str:
    """Mutate the JSON or the tensors of an untrained referring layer in a bundle; open, ask."""
    gaussians = make_gaussians(24, 0, ids=True)
    bundle = save_bundle(folder / 'bundle', [(0.0, gaussians), (1.0, gaussians)], duration_s=1.0)
    field = ReferringField(len(gaussians.means), gaussians.means, FieldConfig(text_dim=384),
                           gaussians.instance_ids)
    save_referring_layer(bundle, field, {'text_encoder': {'name': DEFAULT_MODEL_ID, 'dim': 384},
                                         'threshold': 0.3,
                                         'vocabulary': {'words': ['red', 'cube'],
                                                        'threshold': 0.5}})
    if data.draw(st.booleans()):
        meta = bundle / 'referring.json'
        meta.write_text(json.dumps(mutate_json(json.loads(meta.read_text()), data),
                                   allow_nan=True))
    else:
        tensors = bundle / 'referring.safetensors'
        tensors.write_bytes(mutate_bytes(tensors.read_bytes(), data))

    def open_and_ask() -> None:
        answer = QueryEngine.open(bundle, device='cpu').query(QueryRequest('the red cube'))
        assert answer.status in ANSWERED, answer  # a loaded layer answers; it never raises

    return expect_result_or_st4r_error(open_and_ask)


def cli_target(folder: Path, data: Any) -> str:
    """
    Render a mutated PLY through `st4r render`: exit 0 or 2 with one line, nothing else.

    Only the named output may appear: a loader writes nothing, and nowhere but ``--out``.
    """
    scene, camera = folder / 'scene.ply', folder / 'camera.json'
    write_ply(scene, make_gaussians(40, 0, sh_degree=1))
    scene.write_bytes(mutate_bytes(scene.read_bytes(), data))
    Camera.look_at((0.0, -3.0, 1.0), (0.0, 0.0, 0.0), fov_x_deg=60, width=24, height=16).save(
        camera)
    before = set(folder.rglob('*'))
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = st4r(['render', str(scene), '--time', '0', '--camera', str(camera), '--out',
                       str(folder / 'out.png'), '--device', 'cpu'])
    lines = errors.getvalue().splitlines()
    assert status in (0, 2), (status, lines)
    assert (status == 2) == (len(lines) == 1 and lines[0].startswith('st4r: error: ')), lines
    assert set(folder.rglob('*')) - before <= {folder / 'out.png'}
    return 'ok' if status == 0 else 'refused'


def bag_target(folder: Path, data: Any) -> str:
    """Replay a command bag with flipped bytes or cut short: answers, or one error."""
    from test_replay import SCENARIO, write_bag

    bag = write_bag(folder / 'in', SCENARIO)
    (mcap,) = bag.glob('*.mcap')
    mcap.write_bytes(mutate_bytes(mcap.read_bytes(), data))
    return expect_result_or_st4r_error(
        lambda: replay(bag, folder / 'out', _double_engine(), progress=False))


TARGETS: Dict[str, Callable[[Path, Any], str]] = {
    'camera': camera_target, 'bundle': bundle_target, 'ply': ply_target,
    'cfg_args': cfg_args_target, 'deformation': deformation_target, 'layer': layer_target,
    'cli': cli_target, 'bag': bag_target}


def run(target: str, examples: int) -> Dict[str, int]:
    """Run ``examples`` mutations of ``target``; the count of each outcome."""
    outcomes: Dict[str, int] = {}

    # No shrinking: the first failure is reported as it happened (a MemoryError under the
    # limit is not reproducible enough to shrink).
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
    @given(data=st.data())
    def case(data: Any) -> None:
        with tempfile.TemporaryDirectory() as folder:
            outcome = TARGETS[target](Path(folder), data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    case()
    return outcomes


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('targets', nargs='+', choices=sorted(TARGETS))
    parser.add_argument('--examples', type=int, default=25)
    parser.add_argument('--memory-limit', type=int, default=MEMORY_LIMIT_BYTES)
    args = parser.parse_args(argv)
    if args.memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    torch.set_num_threads(1)
    summary = {target: run(target, args.examples) for target in args.targets}
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    sys.exit(main(sys.argv[1:]))
