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
Where a scene's semantic layers live, how their files are written, and the manifest's list.

A semantic layer (the referring field, the temporal state cache...) is two files in a layer
folder: ``<name>.safetensors``, whose header holds the layer's JSON metadata under
``st4r_layer``, and that JSON again as ``<name>.json`` for readers that need no tensors. The
layer folder is the scene's bundle when the scene is one (bundle.py): the manifest's
``layers[name]`` then lists the layer (``file``, ``meta`` and a few facts for
`st4r scene info`). Any other scene (a 4DGaussians output, a PLY sequence) keeps its layers in
a folder of their own (``st4r train SCENE SUPERVISION --out LAYER_DIR``).

This module knows nothing of what a layer holds: field/ and temporal/ hand it their tensors
and metadata, and read their files back themselves, through the checked readers below (a file
inside the layer folder, tensors of the expected kind and rank, JSON values of the expected
type), so that a damaged or hostile layer is refused with one SceneFormatError naming the file
and the field.
"""

from __future__ import annotations

from dataclasses import fields
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.files import atomic_write, finite_number
from st4r_ros.scene.bundle import file_inside, MANIFEST, read_manifest
import torch
from torch import Tensor

# The safetensors header key holding a layer's JSON metadata.
HEADER_KEY = 'st4r_layer'
# Tensor kinds a layer file may hold, by what they store.
TENSOR_KINDS = {
    'float': (torch.float16, torch.bfloat16, torch.float32, torch.float64),
    'integer': (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64),
    'flag': (torch.bool, torch.uint8),
}
# Characters of a JSON value quoted in a message.
_SHOWN_CHARS = 60


def is_bundle(folder: str | Path) -> bool:
    """Tell whether ``folder`` is an st4r bundle (it has a manifest)."""
    return (Path(folder) / MANIFEST).is_file()


def default_layer_dir(scene_path: str | Path, out: Optional[str | Path] = None) -> Path:
    """
    Choose where the semantic layers of the scene at ``scene_path`` go.

    That is ``out`` if given, else the scene itself when it is a bundle.

    :raises SceneFormatError: neither ``out`` nor a bundle scene.
    """
    if out is not None:
        return Path(out)
    if is_bundle(scene_path):
        return Path(scene_path)
    raise SceneFormatError(f'{scene_path}: not an st4r bundle, so its semantic layers need a '
                           'folder of their own; pass --out LAYER_DIR')


def save_layer(layer_dir: str | Path, name: str, tensors: Dict[str, Tensor], meta: Dict,
               entry: Dict) -> Path:
    """
    Write a semantic layer into ``layer_dir`` and list it in the manifest if that is a bundle.

    :param tensors: CPU tensors, written to ``entry['file']``.
    :param meta: JSON-serialisable metadata, written to ``entry['meta']`` and into the tensor
        file's header (``HEADER_KEY``).
    :param entry: the manifest's ``layers[name]``: ``file``, ``meta`` and free metadata.
    :return: The path of the tensor file.
    """
    folder = Path(layer_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, indent=1, allow_nan=False)
    # Tensor file first, manifest last: a crash in between leaves the old manifest valid.
    atomic_write(folder / entry['file'],
                 lambda tmp: save_file(tensors, str(tmp), {HEADER_KEY: text}))
    atomic_write(folder / entry['meta'], lambda tmp: tmp.write_text(text))
    if is_bundle(folder):
        register_layer(folder, name, entry)
    return folder / entry['file']


def register_layer(bundle_dir: str | Path, name: str, entry: Dict) -> None:
    """
    Add or replace ``layers[name] = entry`` in the bundle's manifest (atomically).

    The one place that edits a manifest after save_bundle; it re-validates it with
    bundle.read_manifest afterwards (the entry's file must exist by then).
    """
    folder = Path(bundle_dir)
    manifest = read_manifest(folder)
    manifest['layers'][name] = entry
    atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    read_manifest(folder)


def load_layer_tensors(folder: Path, file: object,
                       where: str) -> Tuple[Path, Dict[str, Tensor]]:
    """
    Read the tensors of a layer file on the CPU: (its resolved path, name -> tensor).

    :param file: the file's name as the layer's JSON gives it: it must lie inside ``folder``.
    :param where: the JSON file and field naming it, for messages.
    :raises SceneFormatError: naming the file, when it lies outside ``folder``, is missing or is
        not a safetensors file.
    """
    path = file_inside(folder, file, where)
    try:
        return path, load_file(str(path), device='cpu')
    except (SafetensorError, OSError) as err:
        raise SceneFormatError(f'{path}: not a readable safetensors file ({err})') from None


def layer_tensor(path: Path, tensors: Mapping[str, Tensor], key: str, kind: str,
                 dims: int) -> Tensor:
    """
    Return ``tensors[key]`` after checking it is there, of ``kind`` and of ``dims`` dimensions.

    :param kind: a key of ``TENSOR_KINDS``; float tensors must also be finite.
    :raises SceneFormatError: naming ``path``, ``key``, and what was expected.
    """
    if key not in tensors:
        raise SceneFormatError(f"{path}: lacks tensor '{key}'")
    tensor = tensors[key]
    if tensor.dtype not in TENSOR_KINDS[kind]:
        raise SceneFormatError(f"{path}: tensor '{key}' has dtype {tensor.dtype}; expected {kind} "
                               f'({", ".join(str(t) for t in TENSOR_KINDS[kind])})')
    if tensor.dim() != dims:
        raise SceneFormatError(f"{path}: tensor '{key}' has shape {tuple(tensor.shape)}; expected "
                               f'{dims} dimension(s)')
    if kind == 'float' and not bool(torch.isfinite(tensor).all()):
        raise SceneFormatError(f"{path}: tensor '{key}' has NaN or inf values; expected finite")
    return tensor


def json_value(data: Mapping, key: str, kind: type, source: str, default: Any = None) -> Any:
    """
    Return ``data[key]`` (``default`` when absent and not None) checked to be of JSON ``kind``.

    :param kind: bool (true / false), int (an integer, not a bool), float (a finite number:
        NaN, inf and integers beyond a float refused; returned as a float), str, dict or list.
    :param source: the file (and object) ``data`` comes from; messages name it and ``key``.
    :raises SceneFormatError: ``key`` missing without a default, or a value of another kind.
    """
    if key not in data:
        if default is None:
            raise SceneFormatError(f"{source}: lacks field '{key}' ({_KIND_NAMES[kind]})")
        return default
    value = data[key]
    if kind is float:
        number = finite_number(value)
        if number is not None:
            return number
    elif isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise SceneFormatError(f"{source}: mistypes field '{key}': got {_shown(value)}, expected "
                           f'{_KIND_NAMES[kind]}')


def json_int(data: Mapping, key: str, source: str, low: int, high: int,
             default: Optional[int] = None) -> int:
    """Return ``json_value(data, key, int, ...)``, refused outside ``low`` .. ``high``."""
    value = json_value(data, key, int, source, default)
    if not low <= value <= high:
        raise SceneFormatError(f"{source}: field '{key}' = {_shown(value)}; expected an integer "
                               f'in {low} .. {high}')
    return value


def json_fields(cls: type, data: object, source: str) -> Dict[str, Any]:
    """
    Check a JSON object holding fields of dataclass ``cls``: each of its default's JSON kind.

    :return: The fields ``data`` gives, checked (numbers as floats where the default is one);
        ``cls(**result)`` then holds values of the declared types only.
    :raises SceneFormatError: ``data`` is not an object, has unknown keys, or a mistyped value.
    """
    defaults = {f.name: f.default for f in fields(cls)}
    if not isinstance(data, dict):
        raise SceneFormatError(f'{source}: got {_shown(data)}, expected an object with fields '
                               f'{sorted(defaults)}')
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise SceneFormatError(f'{source}: unknown field(s) {unknown}; expected '
                               f'{sorted(defaults)}')
    return {key: json_value(data, key, type(defaults[key]), source) for key in data}


def scene_gaussian_counts(scene_path: str | Path) -> List[int]:
    """
    Count the Gaussians of every frame of the scene at ``scene_path``, without loading it.

    Read from what each format declares: a bundle's manifest, PLY headers (the frames of a
    sequence, the canonical cloud of a 4DGaussians output's last iteration, which it loads by
    default). A layer whose Gaussians are the scene's must have this count in every frame.
    """
    from st4r_ros.scene.fourdgs import find_iterations
    from st4r_ros.scene.keyframes import ply_files
    from st4r_ros.scene.loading import detect_format
    from st4r_ros.scene.ply import ply_element_counts

    path = Path(scene_path)
    scene_format = detect_format(path)
    if scene_format == 'bundle':
        return [frame['count'] for frame in read_manifest(path)['frames']]
    if scene_format == '4dgaussians':
        last = find_iterations(str(path))[-1]
        plys = [path / 'point_cloud' / f'iteration_{last}' / 'point_cloud.ply']
    else:
        plys = ply_files(path) if scene_format == 'ply-sequence' else [path]
    return [ply_element_counts(ply).get('vertex', 0) for ply in plys]


_KIND_NAMES = {bool: 'true or false', int: 'an integer', float: 'a finite number',
               str: 'a string', dict: 'an object', list: 'a list'}


def _shown(value: object) -> str:
    """Show a JSON value in a message: containers by kind and size (no deep repr), clipped."""
    if isinstance(value, (dict, list)):
        return f'{_KIND_NAMES[type(value)]} of {len(value)} item(s)'
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + '...'
