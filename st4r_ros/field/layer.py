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
                             "training": TrainConfig, "seed": s, "steps": n,
                             "vocabulary": {"words": [...], "threshold": cosine, ...}, ...}
                                           (the captions' words, vocabulary.py; layers
                                           written before it have none)

Where the layer folder is and how the files are written is scene/layers.py's: the scene's
bundle when the scene is one (its manifest's ``layers`` then lists ``"referring": {"file":
"referring.safetensors", ...metadata}`` so that `st4r scene info` shows it), else a folder of
its own (``st4r train SCENE SUPERVISION --out LAYER_DIR``). Only safetensors and JSON are read:
loading executes nothing from the data, and checks every value it reads (JSON types, tensor
kinds and shapes against the field config, before the field is built) and that the layer has
as many Gaussians as its scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, NamedTuple, Optional, Tuple, TYPE_CHECKING

from st4r_ros.errors import SceneFormatError
from st4r_ros.field.model import FieldConfig, ReferringField
from st4r_ros.field.vocabulary import Vocabulary
from st4r_ros.files import read_json_object
from st4r_ros.limits import MAX_FEATURE_DIM, MAX_GAUSSIANS, MAX_PE_FREQUENCIES
from st4r_ros.scene.layers import (default_layer_dir, is_bundle, json_fields, json_int,
                                   json_value, layer_tensor, load_layer_tensors,
                                   save_layer, scene_gaussian_counts)
import torch
from torch import Tensor

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
    """
    Read the layer's metadata (referring.json), validated.

    Format and version, and the type of every field a reader uses: ``num_gaussians`` (an
    integer), ``threshold`` (a finite number; set to 0.0 when absent), ``text_encoder`` (an
    object: ``name`` a string, ``dim`` an integer) and ``field`` (FieldConfig's fields). The
    tensor file's name is checked when it is read (`load_referring_layer`).

    :raises SceneFormatError: naming the file and the field.
    """
    path = Path(layer_dir) / META_FILE
    if not path.is_file():
        raise SceneFormatError(f'{path}: not found; expected a referring layer (st4r train)')
    meta = read_json_object(path, SceneFormatError)
    source = str(path)
    if meta.get('format') != LAYER_FORMAT:
        raise SceneFormatError(f"{path}: field 'format' must be {LAYER_FORMAT!r}")
    if json_value(meta, 'version', int, source) != LAYER_VERSION:
        raise SceneFormatError(f"{path}: field 'version' must be {LAYER_VERSION}, "
                               f"got {meta['version']!r}")
    if 'num_gaussians' in meta:
        json_int(meta, 'num_gaussians', source, 0, MAX_GAUSSIANS)
    meta['threshold'] = json_value(meta, 'threshold', float, source, 0.0)
    encoder = json_value(meta, 'text_encoder', dict, source, {})
    json_value(encoder, 'name', str, f'{path}: text_encoder', '')
    json_value(encoder, 'dim', int, f'{path}: text_encoder', 0)
    _field_config(meta, path)
    if 'vocabulary' in meta:
        Vocabulary.from_json(meta['vocabulary'], f'{path}: vocabulary')
    return meta


def _field_config(meta: Mapping, path: Path) -> FieldConfig:
    """Read the FieldConfig of referring.json's ``field``: typed, each size in its range."""
    source = f'{path}: field'
    checked = json_fields(FieldConfig, meta.get('field', {}), source)
    for name in ('text_dim', 'embed_dim', 'hidden_dim'):
        json_int(checked, name, source, 1, MAX_FEATURE_DIM, getattr(FieldConfig, name))
    json_int(checked, 'pos_frequencies', source, 0, MAX_PE_FREQUENCIES,
             FieldConfig.pos_frequencies)
    return FieldConfig.from_json(checked, source=source)


def load_referring_layer(layer_dir: str | Path,
                         device: torch.device | str = 'cpu') -> Tuple[ReferringField, Dict]:
    """
    Load the trained field (eval mode, on ``device``) and its metadata.

    :raises SceneFormatError: missing or malformed files, a tensor file outside the layer
        folder, or tensors that do not fit the stored configuration (the message names the
        file and the tensors).
    """
    folder = Path(layer_dir)
    meta = read_layer_meta(folder)
    meta_path = folder / META_FILE
    path, tensors = load_layer_tensors(folder, meta.get('file', LAYER_FILE),
                                       f"{meta_path}: field 'file'")
    config = _field_config(meta, meta_path)
    state = _field_state(path, tensors, config)
    n = len(state['embeddings'])
    if meta.get('num_gaussians', n) != n:
        raise SceneFormatError(f"{meta_path}: field 'num_gaussians' = {meta['num_gaussians']}, "
                               f'but {path} holds the embeddings of {n} Gaussians')
    field = ReferringField(n, state['canonical'], config, state['assignment'])
    field.load_state_dict(state, strict=True)
    return field.to(device).eval(), meta


def _field_state(path: Path, tensors: Mapping[str, Tensor],
                 config: FieldConfig) -> Dict[str, Tensor]:
    """
    Return the field's tensors (``field/`` stripped), checked against ``config``.

    The reference is a field of ``config`` built on the meta device (shapes, no storage), so a
    config whose sizes the tensors do not have allocates nothing. Every key must be there, of
    its kind (float; integer ``assignment``), rank and shape, and no other.
    """
    embeddings = layer_tensor(path, tensors, FIELD_PREFIX + 'embeddings', 'float', 2)
    canonical = layer_tensor(path, tensors, FIELD_PREFIX + 'canonical', 'float', 2)
    assignment = layer_tensor(path, tensors, FIELD_PREFIX + 'assignment', 'integer', 1)
    try:
        with torch.device('meta'):
            expected = ReferringField(len(embeddings), canonical.to('meta'), config,
                                      assignment.to('meta')).state_dict()
    except SceneFormatError as err:  # canonical or assignment not [N, 3] / [N]
        raise SceneFormatError(f'{path}: {err}') from None
    state = {k[len(FIELD_PREFIX):]: v for k, v in tensors.items() if k.startswith(FIELD_PREFIX)}
    for key, value in expected.items():
        layer_tensor(path, tensors, FIELD_PREFIX + key,
                     'float' if value.is_floating_point() else 'integer', value.dim())
    unexpected = sorted(FIELD_PREFIX + k for k in set(state) - set(expected))
    wrong = [f'{FIELD_PREFIX}{k}: {tuple(state[k].shape)}, expected {tuple(v.shape)}'
             for k, v in expected.items() if state[k].shape != v.shape]
    if unexpected or wrong:
        raise SceneFormatError(f"{path}: tensors do not match the layer's field config "
                               f"(referring.json 'field'): unexpected {unexpected}, wrong shapes "
                               f'{wrong}')
    return state


class LoadedReferring(NamedTuple):
    """A referring layer ready to query; ``vocabulary`` is None for layers written without."""

    field: ReferringField
    encoder: 'TextEncoder'
    threshold: float
    vocabulary: Optional[Vocabulary]


def load_referring(scene_path: str | Path, layer_dir: str | Path | None = None,
                   device: torch.device | str = 'cpu') -> Optional[LoadedReferring]:
    """
    Load the scene's referring layer ready to query: field, text encoder, threshold, vocabulary.

    Return None when the scene has no layer (not a bundle with one and no ``layer_dir``
    given).

    The encoder is the one named in the layer's metadata (the one the field was trained with).
    """
    from st4r_ros.text import TextEncoder

    if layer_dir is None and not (is_bundle(scene_path)
                                  and (Path(scene_path) / META_FILE).is_file()):
        return None
    field, meta = load_referring_layer(default_layer_dir(scene_path, layer_dir), device)
    # A layer of another scene would open, then fail every query on a shape.
    counts = sorted(set(scene_gaussian_counts(scene_path)))
    if counts != [field.num_gaussians]:
        raise SceneFormatError(
            f'{scene_path}: the referring layer in {default_layer_dir(scene_path, layer_dir)} '
            f'holds {field.num_gaussians} Gaussians, the scene '
            f"{' or '.join(map(str, counts))} per frame; expected the layer trained on this scene"
        )
    encoder = TextEncoder.named(meta.get('text_encoder', {}).get('name'), device)
    return LoadedReferring(field, encoder, meta['threshold'], layer_vocabulary(meta))


def layer_vocabulary(meta: Mapping) -> Optional[Vocabulary]:
    """Return the vocabulary of ``read_layer_meta``'s metadata (checked there), or None."""
    return Vocabulary.from_json(meta['vocabulary'], 'referring.json') if 'vocabulary' in meta \
        else None
