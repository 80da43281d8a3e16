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

Where the layer folder is and how the files are written is scene/layers.py's: the scene's
bundle when the scene is one (its manifest's ``layers`` then lists ``"referring": {"file":
"referring.safetensors", ...metadata}`` so that `st4r scene info` shows it), else a folder of
its own (``st4r train SCENE SUPERVISION --out LAYER_DIR``). Only safetensors and JSON are read:
loading executes nothing from the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, TYPE_CHECKING

from safetensors import SafetensorError
from safetensors.torch import load_file
from st4r_ros.errors import SceneFormatError
from st4r_ros.field.model import FieldConfig, ReferringField
from st4r_ros.files import read_json_object
from st4r_ros.scene.layers import default_layer_dir, is_bundle, save_layer
import torch

if TYPE_CHECKING:  # the text encoder is imported when a layer is loaded
    from st4r_ros.text import TextEncoder

LAYER_NAME = 'referring'
LAYER_FILE = 'referring.safetensors'
META_FILE = 'referring.json'
LAYER_FORMAT = 'st4r-referring-layer'
LAYER_VERSION = 1
FIELD_PREFIX = 'field/'


def save_referring_layer(layer_dir: str | Path, field: ReferringField, metadata: Dict) -> Path:
    """
    Write the field and ``metadata`` into ``layer_dir``.

    ``metadata`` is JSON-serialisable: text encoder, threshold, training config, seed...
    The layer is registered in the manifest if ``layer_dir`` is a bundle (save_layer).

    :return: The path of referring.safetensors.
    """
    meta = {'format': LAYER_FORMAT, 'version': LAYER_VERSION, 'file': LAYER_FILE,
            'num_gaussians': field.num_gaussians, 'field': field.config.to_json(), **metadata}
    tensors = {FIELD_PREFIX + k: v.detach().cpu().contiguous()
               for k, v in field.state_dict().items()}
    tensors['instances/ids'] = field.instance_ids.cpu()
    tensors['instances/embeddings'] = field.instance_embeddings().detach().cpu().contiguous()
    entry = {k: v for k, v in meta.items()
             if k in ('file', 'num_gaussians', 'text_encoder', 'threshold', 'seed', 'steps')}
    return save_layer(layer_dir, LAYER_NAME, tensors, meta,
                      entry | {'dim': field.config.embed_dim, 'meta': META_FILE})


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
                   device: torch.device | str = 'cpu'
                   ) -> Optional[Tuple[ReferringField, TextEncoder, float]]:
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
