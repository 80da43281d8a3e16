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
The st4r bundle: the project's own keyframed scene format (safetensors + a JSON manifest).

Layout::

    bundle/
      manifest.json           what is in the bundle (below)
      gaussians.safetensors   frame_0000/means [N0, 3] float32, frame_0000/quats [N0, 4],
                              frame_0000/scales [N0, 3], frame_0000/opacities [N0],
                              frame_0000/sh [N0, K, 3], frame_0000/instance_ids [N0] int64
                              (when the manifest says instance_ids), then frame_0001/..., ...
      <layer files>           semantic layers, each listed in the manifest

Values are activated (unit quaternions wxyz, positive scales, opacities in [0, 1]), as in
`Gaussians`; frame i's tensors are named ``frame_{i:04d}/<field>``. ``manifest.json``::

    {
      "format": "st4r-bundle",
      "version": 1,
      "kind": "keyframed",
      "sh_degree": 0,
      "instance_ids": true,
      "interpolation": "nearest",              # or "linear" when frames correspond
      "duration_s": 4.0,                       # or null when unknown
      "frames": [{"time": 0.0, "count": 18000}, {"time": 0.5, "count": 18000}, ...],
      "layers": {                              # name -> file (relative) + free metadata
        "referring": {"file": "referring.safetensors", "dim": 16}
      },
      "metadata": {}                           # free JSON from the writer
    }

Layers are added through layers.py (save_layer, register_layer) by the code that produces them
(referring embeddings, temporal state caches): each entry needs a ``file`` inside the bundle;
every other key is that layer's own metadata.
Only safetensors and JSON are ever read: loading executes nothing from the data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.files import atomic_write, finite_number, read_json_object
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.keyframes import INTERPOLATIONS, Keyframe, KeyframedScene
from st4r_ros.scene.ply import value_problem
import torch
from torch import Tensor

FORMAT = 'st4r-bundle'
VERSION = 1
KIND = 'keyframed'
MANIFEST = 'manifest.json'
GAUSSIANS_FILE = 'gaussians.safetensors'
FLOAT_FIELDS = ('means', 'quats', 'scales', 'opacities', 'sh')


def frame_key(index: int, field: str) -> str:
    """Tensor name of ``field`` of frame ``index`` in gaussians.safetensors."""
    return f'frame_{index:04d}/{field}'


def save_bundle(
    path: str | Path,
    keyframes: Sequence[Keyframe],
    duration_s: Optional[float] = None,
    metadata: Optional[Mapping] = None,
    *,
    interpolation: str = 'nearest',
) -> Path:
    """
    Write ``keyframes`` as a bundle folder at ``path``.

    The folder is created; its manifest and Gaussians are replaced. The bundle lists no
    semantic layers: layers describe particular Gaussians, so a re-saved scene starts without
    them.

    :param keyframes: (time in [0, 1], Gaussians), strictly increasing in time.
    :param duration_s: real length of the scene in seconds, if known.
    :param metadata: JSON-serialisable information stored as the manifest's ``metadata``.
    :param interpolation: 'nearest' or 'linear' (frames correspond, see keyframes.py).
    :return: The bundle folder.
    """
    path = Path(path)
    scene = KeyframedScene(keyframes, interpolation=interpolation, duration_s=duration_s,
                           source=str(path))
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise SceneFormatError(f'metadata: expected JSON-serialisable values ({err})') from None
    tensors = _frame_tensors(scene.keyframes)
    manifest = {
        'format': FORMAT,
        'version': VERSION,
        'kind': KIND,
        'sh_degree': scene.info().sh_degree,
        'instance_ids': scene.info().details['instance_ids'],
        'interpolation': scene.interpolation,
        'duration_s': scene.duration_s,
        'frames': [{'time': t, 'count': len(g)} for t, g in scene.keyframes],
        'layers': {},
        'metadata': metadata,
    }
    # Validate exactly what will be written, so a bundle that saves always loads.
    _check_tensors(path / GAUSSIANS_FILE, tensors, manifest)
    path.mkdir(parents=True, exist_ok=True)
    # The manifest goes last and each file is replaced atomically: an interrupted save leaves
    # either the old bundle or a tensor file the old manifest does not describe, never a
    # manifest that points at missing data.
    atomic_write(path / GAUSSIANS_FILE,
                 lambda tmp: save_file(tensors, str(tmp), {'format': FORMAT}))
    atomic_write(path / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    return path


def load_bundle(path: str | Path) -> KeyframedScene:
    """
    Open the bundle folder at ``path``.

    :raises SceneFormatError: naming the file and field, for a missing or malformed manifest, a
        wrong format/version/kind, frame times not strictly increasing in [0, 1], missing,
        unexpected or mis-shaped tensors, wrong dtypes, NaN/inf, out-of-range values, or a
        layer whose file is missing.
    """
    path = Path(path)
    manifest = read_manifest(path)
    tensor_path = path / GAUSSIANS_FILE
    if not tensor_path.is_file():
        raise SceneFormatError(f"{tensor_path}: not found; expected the bundle's Gaussians")
    try:
        tensors = load_file(str(tensor_path), device='cpu')
    except (SafetensorError, OSError) as err:
        raise SceneFormatError(f'{tensor_path}: not a readable safetensors file ({err})') from None
    _check_tensors(tensor_path, tensors, manifest)
    keyframes = [
        (frame['time'], _frame_gaussians(tensors, i, manifest['instance_ids']))
        for i, frame in enumerate(manifest['frames'])
    ]
    return KeyframedScene(
        keyframes,
        interpolation=manifest['interpolation'],
        duration_s=manifest['duration_s'],
        source=str(path),
        scene_format='bundle',
        semantic_layers=list(manifest['layers']),
    )


def read_manifest(path: str | Path) -> Dict:
    """Read the validated manifest of the bundle folder at ``path`` (layout in the module doc)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise SceneFormatError(f'{manifest_path}: not found; expected a {FORMAT} folder')
    manifest = read_json_object(manifest_path, SceneFormatError)
    _check_header(manifest_path, manifest)
    _check_frames(manifest_path, manifest.get('frames'))
    _check_layers(manifest_path, manifest.get('layers'))
    if not isinstance(manifest.get('metadata', {}), dict):
        raise SceneFormatError(f"{manifest_path}: field 'metadata' must be a JSON object")
    manifest.setdefault('metadata', {})
    return manifest


def _check_header(where: Path, manifest: Dict) -> None:
    expected = {'format': FORMAT, 'version': VERSION, 'kind': KIND}
    for field, value in expected.items():
        if manifest.get(field) != value:
            raise SceneFormatError(
                f"{where}: field '{field}' must be {value!r}, got {manifest.get(field)!r}"
            )
    degree = manifest.get('sh_degree')
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise SceneFormatError(
            f"{where}: field 'sh_degree' must be an integer >= 0, got {degree!r}"
        )
    if not isinstance(manifest.get('instance_ids'), bool):
        raise SceneFormatError(
            f"{where}: field 'instance_ids' must be true or false, "
            f"got {manifest.get('instance_ids')!r}"
        )
    if manifest.get('interpolation') not in INTERPOLATIONS:
        raise SceneFormatError(
            f"{where}: field 'interpolation' must be one of {INTERPOLATIONS}, "
            f"got {manifest.get('interpolation')!r}"
        )
    duration = manifest.get('duration_s')
    if duration is not None and (finite_number(duration) or 0.0) <= 0:
        raise SceneFormatError(f"{where}: field 'duration_s' must be null or a positive number, "
                               f'got {str(duration)[:40]}')


def _check_frames(where: Path, frames: object) -> None:
    if not isinstance(frames, list) or not frames:
        raise SceneFormatError(f"{where}: field 'frames' must be a non-empty list of "
                               '{"time": t, "count": n}')
    previous = -math.inf
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise SceneFormatError(f'{where}: frames[{i}] must be an object {{time, count}}')
        t, count = frame.get('time'), frame.get('count')
        number = finite_number(t)
        if number is None or not 0.0 <= number <= 1.0:
            raise SceneFormatError(
                f'{where}: frames[{i}].time must be a number in [0, 1], got {str(t)[:40]}'
            )
        if number <= previous:
            raise SceneFormatError(
                f'{where}: frames[{i}].time = {t} must be greater than frames[{i - 1}].time = '
                f'{previous} (times sorted, strictly increasing)'
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SceneFormatError(
                f'{where}: frames[{i}].count must be an integer >= 0, got {count!r}'
            )
        previous = number


def _check_layers(where: Path, layers: object) -> None:
    if not isinstance(layers, dict):
        raise SceneFormatError(f"{where}: field 'layers' must be an object name -> {{file, ...}}")
    for name, layer in layers.items():
        file = layer.get('file') if isinstance(layer, dict) else None
        if not name or not isinstance(file, str) or not file:
            raise SceneFormatError(
                f"{where}: layers['{name}'] must be an object with a non-empty 'file'"
            )
        path = file_inside(where.parent, file, f"{where}: layers['{name}'].file")
        if not path.is_file():
            raise SceneFormatError(
                f"{where}: layers['{name}'].file = {file!r} not found in {where.parent}"
            )


def file_inside(folder: Path, file: object, where: str) -> Path:
    """
    Return the file a bundle or layer folder names by ``file``, refusing one outside it.

    The path is resolved (``..``, absolute paths and symbolic links followed) before it is
    compared, so no spelling of a path reads outside ``folder``.

    :param where: the file and field that name it, for the message.
    :raises SceneFormatError: ``file`` is not a non-empty string, or resolves outside ``folder``.
    """
    if not isinstance(file, str) or not file or '\0' in file:
        raise SceneFormatError(f'{where} = {str(file)[:80]!r}; expected a file name inside '
                               f'{folder}')
    try:
        root = Path(folder).resolve()
        path = (root / file).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a loop of symbolic links
        raise SceneFormatError(f'{where} = {file[:80]!r}: cannot be resolved ({err})') from None
    if not path.is_relative_to(root) or path == root:
        raise SceneFormatError(f'{where} = {file[:80]!r} resolves to {path}; expected a path '
                               f'inside the folder {root}')
    return path


def _frame_tensors(keyframes: List[Keyframe]) -> Dict[str, Tensor]:
    """Name -> contiguous CPU tensor for every frame field, in storage dtypes."""
    tensors: Dict[str, Tensor] = {}
    storages = set()
    for i, (_, gaussians) in enumerate(keyframes):
        for field, tensor in gaussians.tensors().items():
            dtype = torch.int64 if field == 'instance_ids' else torch.float32
            tensor = tensor.detach().to('cpu', dtype).contiguous()
            # safetensors refuses tensors sharing memory (frames reusing one static tensor).
            storage = tensor.untyped_storage().data_ptr()
            if storage in storages and tensor.numel():
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            tensors[frame_key(i, field)] = tensor
    return tensors


def _check_tensors(where: Path, tensors: Mapping[str, Tensor], manifest: Dict) -> None:
    """Every tensor the manifest promises, with its shape, dtype and value range; no others."""
    expected = {}
    k = (manifest['sh_degree'] + 1) ** 2
    for i, frame in enumerate(manifest['frames']):
        n = frame['count']
        shapes = {'means': (n, 3), 'quats': (n, 4), 'scales': (n, 3), 'opacities': (n,),
                  'sh': (n, k, 3)}
        if manifest['instance_ids']:
            shapes['instance_ids'] = (n,)
        expected.update({frame_key(i, field): shape for field, shape in shapes.items()})
    missing = [key for key in expected if key not in tensors]
    if missing:
        raise SceneFormatError(
            f"{where}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
            f"expected by {MANIFEST} ({len(manifest['frames'])} frames)"
        )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise SceneFormatError(
            f'{where}: unexpected tensor(s) {unexpected[:5]}; {MANIFEST} describes '
            f"{len(manifest['frames'])} frames, instance_ids={manifest['instance_ids']}"
        )
    for key, shape in expected.items():
        _check_tensor(where, key, tensors[key], shape)


def _check_tensor(where: Path, key: str, tensor: Tensor, shape: tuple) -> None:
    field = key.split('/', 1)[1]
    dtype = torch.int64 if field == 'instance_ids' else torch.float32
    if tensor.dtype != dtype:
        raise SceneFormatError(
            f"{where}: tensor '{key}' has dtype {tensor.dtype}, expected {dtype}"
        )
    if tuple(tensor.shape) != shape:
        raise SceneFormatError(
            f"{where}: tensor '{key}' has shape {tuple(tensor.shape)}, expected {shape} "
            f'(from {MANIFEST} count and sh_degree)'
        )
    # The check a PLY gets (ply.value_problem): a bundle's frame exports as a PLY st4r reads.
    problem = value_problem(field, tensor)
    if problem:
        raise SceneFormatError(f"{where}: tensor '{key}' {problem}")


def _frame_gaussians(tensors: Mapping[str, Tensor], index: int, with_ids: bool) -> Gaussians:
    fields = FLOAT_FIELDS + (('instance_ids',) if with_ids else ())
    return Gaussians(**{field: tensors[frame_key(index, field)] for field in fields})
