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
and metadata, and read their files back themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from safetensors.torch import save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.files import atomic_write
from st4r_ros.scene.bundle import MANIFEST, read_manifest
from torch import Tensor

# The safetensors header key holding a layer's JSON metadata.
HEADER_KEY = 'st4r_layer'


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
