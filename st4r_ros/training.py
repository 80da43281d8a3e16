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
`st4r train`: both semantic layers of a scene from one supervision folder.

First the referring field (field/train.py, the 'where' branch), then, when the supervision
has state captions, the temporal layer (temporal/layer.py, the 'when' branch) from those
captions. Both land in one layer folder: the scene's bundle, whose manifest lists them, or
``--out LAYER_DIR`` (scene/layers.py). The two branches never import each other; this module
is the one that knows they are trained together.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Tuple

from st4r_ros.errors import SupervisionFormatError
from st4r_ros.field.train import train_field, TrainConfig, TrainResult
from st4r_ros.progress import StepProgress
from st4r_ros.scene.layers import default_layer_dir
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.scene4d import Scene4D
from st4r_ros.supervision.format import load_supervision, Supervision
from st4r_ros.temporal.layer import build_temporal_layer, save_temporal_layer
from st4r_ros.text import DTYPES, NamedEncoder, TextEncoder
import torch

# `st4r train`'s options for the temporal layer are TemporalConfig's fields with this prefix,
# beside TrainConfig's fields (train_main).
TEMPORAL_PREFIX = 'temporal_'


@dataclass(frozen=True)
class TemporalConfig:
    """
    How the temporal layer is built (`st4r train --temporal-*`).

    Not part of TrainConfig: the field does not depend on it, so changing it keeps the field's
    checkpoints usable.

    :ivar text_model: the layer's sentence encoder (state cache, router); None: the field's.
    :ivar text_dtype: its weights' type, a key of text.DTYPES (a 7B encoder fits a GPU in
        bfloat16).
    :ivar query_prompt: the instruction put in front of queries; None: the encoder folder's
        'query' prompt, if it names one.
    """

    text_model: Optional[str] = None
    text_dtype: str = 'float32'
    query_prompt: Optional[str] = None

    def __post_init__(self) -> None:
        if self.text_dtype not in DTYPES:
            raise SupervisionFormatError('training config: temporal_text_dtype must be one of '
                                         f'{list(DTYPES)}, got {self.text_dtype!r}')

    @property
    def own_encoder(self) -> bool:
        """Tell whether the layer needs an encoder of its own rather than the field's."""
        return bool(self.text_model) or self.text_dtype != 'float32'


def split_options(options: Dict) -> Tuple[TrainConfig, TemporalConfig]:
    """
    Read `st4r train`'s options: TrainConfig's fields and TemporalConfig's prefixed ones.

    :raises SupervisionFormatError: an unknown option or a bad value.
    """
    temporal = {k[len(TEMPORAL_PREFIX):]: v for k, v in options.items()
                if k.startswith(TEMPORAL_PREFIX)}
    known = {f.name for f in fields(TemporalConfig)}
    unknown = sorted(set(temporal) - known)
    if unknown:
        raise SupervisionFormatError(
            f'training config: unknown option(s) {[TEMPORAL_PREFIX + k for k in unknown]}; '
            f'expected some of {sorted(TEMPORAL_PREFIX + k for k in known)}')
    rest = {k: v for k, v in options.items() if not k.startswith(TEMPORAL_PREFIX)}
    return TrainConfig.from_json(rest), TemporalConfig(**temporal)


def train_layers(scene: Scene4D, supervision: Supervision, config: Optional[TrainConfig] = None,
                 out: Optional[str | Path] = None, temporal: Optional[TemporalConfig] = None, *,
                 progress: bool = True, seed: int = 0, resume: bool = True,
                 text_encoder: Optional[NamedEncoder] = None) -> TrainResult:
    """
    Train the referring field, then build the temporal layer if there are state captions.

    Both are saved in ``out``; None keeps the field in memory only and builds no temporal
    layer. The other arguments are train_field's.

    :param temporal: how the temporal layer is built; TemporalConfig() by default.
    :return: the field's training result (train_field's).
    """
    config = config or TrainConfig()
    temporal = temporal or TemporalConfig()
    device = torch.device(config.device)
    # Loaded here rather than in train_field: the temporal layer shares it unless told not to.
    encoder = text_encoder or TextEncoder.named(config.text_model, device)
    result = train_field(scene, supervision, config, out, progress=progress, seed=seed,
                         resume=resume, text_encoder=encoder)
    if out is not None and any(instance.state_captions for instance in supervision.instances):
        # The 'when' branch rides along: its cache is bound to the same instance ids.
        own = (TextEncoder.named(temporal.text_model, device, temporal.text_dtype)
               if temporal.own_encoder else encoder)
        with StepProgress('temporal layer', 1, enabled=progress) as stage:
            layer = build_temporal_layer(supervision, own, query_prompt=temporal.query_prompt)
            stage.advance(note=f"{layer.calibration['state_captions']} state captions")
        save_temporal_layer(out, layer)
    return result


def train_main(scene: str | Path, supervision: str | Path, out: Optional[str | Path] = None,
               *, seed: int = 0, resume: bool = True, progress: bool = True,
               text_encoder: Optional[NamedEncoder] = None, **options: object) -> TrainResult:
    """
    Train and save the scene's referring layer, and its temporal layer from state captions.

    `st4r train SCENE SUPERVISION [--out LAYER_DIR] [--seed S] [--steps N] [--device D]
    [--text-model M] [--temporal-text-model M] [--temporal-text-dtype T]
    [--temporal-query-prompt P] [--no-resume]`.

    LAYER_DIR defaults to SCENE when it is an st4r bundle (the layers are registered in its
    manifest); other scenes need --out. ``options`` are TrainConfig fields (nested dicts for
    'field' and 'loss') and TemporalConfig fields prefixed 'temporal_'; ``text_encoder``
    replaces the one named by ``text_model``.
    """
    layer_dir = default_layer_dir(scene, out)
    config, temporal = split_options(options)
    return train_layers(load_scene(scene), load_supervision(supervision), config, layer_dir,
                        temporal, progress=progress, seed=seed, resume=resume,
                        text_encoder=text_encoder)
