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
The 'referring' semantic layer: a trained ReferringField on disk, beside its scene.

Files, in the layer folder::

    referring.safetensors   field/<name>   every parameter and buffer of the field
                                           (embeddings [N, d], canonical [N, 3], bounds [2, 3],
                                           assignment [N] int64, MLP and attention weights)
                            instances/ids [K] int64, instances/embeddings [K, d]
                                           (the instance embeddings e_k, for the temporal
                                           branch; recomputable, stored so readers need no
                                           field code)
                            header metadata "st4r_layer": the JSON below
    referring.json          {"format": "st4r-referring-layer", "version": 1,
                             "file": "referring.safetensors", "num_gaussians": N,
                             "text_encoder": {"name": ..., "dim": D}, "field": FieldConfig,
                             "threshold": no-target threshold, "calibration": {...},
                             "training": TrainConfig, "seed": s, "steps": n, ...}

The layer folder is the scene's bundle when the scene is one: the manifest's ``layers`` then
lists ``"referring": {"file": "referring.safetensors", ...metadata}`` so that `st4r scene info`
shows it; any other scene (a 4DGaussians output, a PLY sequence) keeps the layer in a folder of
its own (``st4r train SCENE SUPERVISION --out LAYER_DIR``). Only safetensors and JSON are read:
loading executes nothing from the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.field.model import FieldConfig, ReferringField
from st4r_ros.files import atomic_write, read_json_object
from st4r_ros.scene.bundle import MANIFEST, read_manifest
import torch

LAYER_NAME = 'referring'
LAYER_FILE = 'referring.safetensors'
META_FILE = 'referring.json'
LAYER_FORMAT = 'st4r-referring-layer'
LAYER_VERSION = 1
FIELD_PREFIX = 'field/'


def is_bundle(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def default_layer_dir(scene_path: str | Path, out: Optional[str | Path] = None) -> Path:
    """
    Choose where the layer of the scene at ``scene_path`` goes.

    That is ``out`` if given, else the scene itself when it is a bundle.

    :raises SceneFormatError: neither ``out`` nor a bundle scene.
    """
    if out is not None:
        return Path(out)
    if is_bundle(scene_path):
        return Path(scene_path)
    raise SceneFormatError(f'{scene_path}: not an st4r bundle, so the referring layer needs a '
                           'folder of its own; pass --out LAYER_DIR')


def save_referring_layer(layer_dir: str | Path, field: ReferringField, metadata: Dict) -> Path:
    """
    Write the field and ``metadata`` into ``layer_dir``.

    ``metadata`` is JSON-serialisable: text encoder, threshold, training config, seed...
    The layer is registered in the manifest if ``layer_dir`` is a bundle.

    :return: The path of referring.safetensors.
    """
    folder = Path(layer_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {'format': LAYER_FORMAT, 'version': LAYER_VERSION, 'file': LAYER_FILE,
            'num_gaussians': field.num_gaussians, 'field': field.config.to_json(), **metadata}
    text = json.dumps(meta, indent=1, allow_nan=False)
    tensors = {FIELD_PREFIX + k: v.detach().cpu().contiguous()
               for k, v in field.state_dict().items()}
    tensors['instances/ids'] = field.instance_ids.cpu()
    tensors['instances/embeddings'] = field.instance_embeddings().detach().cpu().contiguous()
    # Tensor file first, manifest last: a crash in between leaves the old manifest valid.
    atomic_write(folder / LAYER_FILE,
                 lambda tmp: save_file(tensors, str(tmp), {'st4r_layer': text}))
    atomic_write(folder / META_FILE, lambda tmp: tmp.write_text(text))
    if is_bundle(folder):
        register_layer(folder, LAYER_NAME, {k: v for k, v in meta.items()
                                            if k in ('file', 'num_gaussians', 'text_encoder',
                                                     'threshold', 'seed', 'steps')}
                       | {'dim': field.config.embed_dim, 'meta': META_FILE})
    return folder / LAYER_FILE


def register_layer(bundle_dir: Path, name: str, entry: Dict) -> None:
    """
    Add or replace ``layers[name] = entry`` in the bundle's manifest (atomically).

    bundle.py reads layers but has no writer yet; this is the one place that edits a
    manifest, and re-validates it with bundle.read_manifest afterwards.
    """
    manifest = read_manifest(bundle_dir)
    manifest['layers'][name] = entry
    atomic_write(bundle_dir / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    read_manifest(bundle_dir)


def read_layer_meta(layer_dir: str | Path) -> Dict:
    """Read the layer's metadata (referring.json), validated for format and version."""
    path = Path(layer_dir) / META_FILE
    if not path.is_file():
        raise SceneFormatError(f'{path}: not found; expected a referring layer (st4r train)')
    meta = read_json_object(path, SceneFormatError)
    if meta.get('format') != LAYER_FORMAT:
        raise SceneFormatError(f"{path}: field 'format' must be {LAYER_FORMAT!r}")
    if meta.get('version') != LAYER_VERSION:
        raise SceneFormatError(f"{path}: field 'version' must be {LAYER_VERSION}, "
                               f"got {meta.get('version')!r}")
    return meta


def load_referring_layer(layer_dir: str | Path,
                         device: torch.device | str = 'cpu') -> Tuple[ReferringField, Dict]:
    """
    Load the trained field (eval mode, on ``device``) and its metadata.

    :raises SceneFormatError: missing or malformed files, or tensors that do not fit the
        stored configuration (the message names the file).
    """
    folder = Path(layer_dir)
    meta = read_layer_meta(folder)
    path = folder / str(meta.get('file', LAYER_FILE))
    try:
        tensors = load_file(str(path), device='cpu')
    except (SafetensorError, OSError) as err:
        raise SceneFormatError(f'{path}: not a readable safetensors file ({err})') from None
    state = {k[len(FIELD_PREFIX):]: v for k, v in tensors.items() if k.startswith(FIELD_PREFIX)}
    missing = [k for k in ('embeddings', 'canonical', 'assignment') if k not in state]
    if missing:
        raise SceneFormatError(f'{path}: missing tensor(s) {[FIELD_PREFIX + k for k in missing]}')
    config = FieldConfig.from_json(meta.get('field', {}), source=f'{folder / META_FILE}: field')
    field = ReferringField(state['embeddings'].shape[0], state['canonical'], config,
                           state['assignment'])
    try:
        field.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SceneFormatError(f"{path}: tensors do not match the layer's field config "
                               f'({err})') from None
    return field.to(device).eval(), meta


def load_referring(scene_path: str | Path, layer_dir: str | Path | None = None,
                   device: torch.device | str = 'cpu'):
    """
    Load the scene's referring layer ready to query: (field, text encoder, threshold).

    Return None when the scene has no layer (not a bundle with one and no ``layer_dir``
    given).

    The encoder is the one named in the layer's metadata (the one the field was trained with).
    """
    from st4r_ros.text import TextEncoder

    if layer_dir is None and not (is_bundle(scene_path)
                                  and (Path(scene_path) / META_FILE).is_file()):
        return None
    field, meta = load_referring_layer(default_layer_dir(scene_path, layer_dir), device)
    encoder = TextEncoder.named(meta.get('text_encoder', {}).get('name'), device)
    return field, encoder, float(meta.get('threshold', 0.0))
