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
`st4r eval`: every metric the scene's layers can be scored on, from one benchmark file.

The referring layer's time-agnostic mIoU always; routing accuracy, Acc and vIoU when the layer
folder also holds a temporal layer and the benchmark has time-sensitive expressions (vIoU on
training views too when a supervision folder is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from st4r_ros.engine import QueryEngine, resolve_device
from st4r_ros.evaluation.referring import evaluate_referring, print_report, ReferringReport
from st4r_ros.evaluation.temporal import (evaluate_temporal, print_temporal_report,
                                          TemporalReport)
from st4r_ros.supervision.format import TIME_SENSITIVE
from st4r_ros.text import QueryEncoder


@dataclass
class Evaluation:
    """What `st4r eval` measured; ``temporal`` is None without a temporal layer or queries."""

    referring: ReferringReport
    temporal: Optional[TemporalReport]

    def to_json(self) -> Dict:
        return {'referring': self.referring.to_json(),
                'temporal': self.temporal.to_json() if self.temporal else None}


def eval_main(scene: str, bench: str, json: bool = False, layer: Optional[str] = None,
              device: str = 'auto', text_encoder: Optional[QueryEncoder] = None,
              supervision: Optional[str] = None, vocabulary_guard: bool = True,
              whole_commands: bool = False) -> Evaluation:
    """
    Score the scene's layers on a benchmark and print the reports.

    `st4r eval SCENE BENCH.json [--layer LAYER_DIR] [--supervision SUP] [--json]`; LAYER_DIR
    defaults to SCENE when it is a bundle. The answers scored are ``QueryEngine``'s, as the
    node gives them.

    ``text_encoder`` replaces the encoders named in the layers (programmatic use);
    ``vocabulary_guard`` False lets the field answer queries in words foreign to the captions
    (`--no-vocabulary-guard`, for ablations); ``whole_commands`` lets the field read request
    frames too (`--whole-commands`, the engine before command_text.py).
    """
    import json as json_module

    from st4r_ros.supervision.format import load_benchmark, load_supervision

    engine = _engine(scene, layer, device, text_encoder, vocabulary_guard)
    engine.whole_commands = whole_commands
    benchmark = load_benchmark(bench)
    referring = evaluate_referring(engine, benchmark)
    temporal = None
    if engine.temporal is not None and any(e.kind == TIME_SENSITIVE
                                           for e in benchmark.expressions):
        views = load_supervision(supervision).views if supervision else ()
        temporal = evaluate_temporal(engine, benchmark, views)
    evaluation = Evaluation(referring, temporal)
    if json:
        print(json_module.dumps(evaluation.to_json(), indent=2))
    else:
        print_report(referring, title=f'referring mIoU: {scene} on {bench}')
        if temporal is not None:
            print_temporal_report(temporal, title=f'time-sensitive queries: {scene} on {bench}')
    return evaluation


def _engine(scene: str, layer: Optional[str], device: str,
            text_encoder: Optional[QueryEncoder], vocabulary_guard: bool) -> QueryEngine:
    """Open the engine of the scene's layers; a given text encoder stands for both layers'."""
    if text_encoder is None:
        return QueryEngine.open(scene, layer, device, vocabulary_guard=vocabulary_guard)
    from st4r_ros.field.layer import layer_vocabulary, load_referring_layer
    from st4r_ros.scene.layers import default_layer_dir
    from st4r_ros.scene.loading import load_scene
    from st4r_ros.temporal.layer import load_temporal_layer

    chosen = resolve_device(device)
    folder = default_layer_dir(scene, layer)
    field, meta = load_referring_layer(folder, chosen)
    loaded = load_scene(scene)
    return QueryEngine(loaded, field, text_encoder, float(meta.get('threshold', 0.0)), chosen,
                       loaded.info().duration_s, load_temporal_layer(folder, chosen),
                       vocabulary=layer_vocabulary(meta), vocabulary_guard=vocabulary_guard)
