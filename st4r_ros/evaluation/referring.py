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
Time-agnostic referring segmentation: mIoU of a referring field on a benchmark.

Definition (ST4R-Splat's time-agnostic mIoU, made precise):

- A *pair* is (expression e, benchmark view v) such that e holds at v (``Expression.holds_at``:
  its frames/times list v's) and e's target is visible in v (ground truth mask
  ``mask_v == e.instance_id`` has at least one pixel). Pairs whose target is not visible are
  scored apart (``empty_pairs``, ``empty_false_positive``: the fraction of them where the
  prediction is not empty), as a referring mask there has no IoU to speak of.
- Prediction: the field runs on the Gaussians at v's time; sigmoid(m) is rendered from v's
  camera with background 0 and thresholded at 0.5. *No target*: when the expression's best
  score at that time, max_i sigmoid(m_i(t)), is below the layer's calibrated threshold, the
  prediction is empty (the robot would answer "no target").
- IoU(e, v) = |pred & gt| / |pred | gt|. **mIoU = mean over all pairs**; per-kind mIoU is the
  same mean over the pairs of expressions of that kind; ``expression_miou`` is the mean over
  expressions of their own mean over views (every expression weighs the same).

Expressions of kind 'time-sensitive' are left out (the temporal branch's question). Views are
rendered at the benchmark's resolution; every view's expressions are run together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
import time
from typing import Dict, List

from st4r_ros.field.model import best_scores, ReferringField, render_relevance
from st4r_ros.scene.scene4d import Scene4D
from st4r_ros.supervision.format import Benchmark, Expression, Supervision, TIME_SENSITIVE
import torch
from torch import Tensor

MASK_THRESHOLD = 0.5
# Expressions run through the field together; bounds the [E, N, h] activations.
EXPRESSIONS_PER_PASS = 8


@dataclass
class ReferringReport:
    """Scores of one field on one benchmark (definitions in the module docstring)."""

    miou: float
    expression_miou: float
    per_kind: Dict[str, float]
    pairs: int
    per_kind_pairs: Dict[str, int]
    empty_pairs: int
    empty_false_positive: float
    no_target_pairs: int
    threshold: float
    truncated_expressions: List[str]
    per_expression: List[Dict] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> Dict:
        return asdict(self)


def training_benchmark(supervision: Supervision) -> Benchmark:
    """
    Turn the training captions into a benchmark on the training views (kind 'training').

    One expression per instance and distinct caption, holding at the frames it was given for.
    Scores how well a field fits its supervision (no generalisation involved).
    """
    frames: Dict[tuple, set] = {}
    for instance in supervision.instances:
        for caption in instance.captions:
            frames.setdefault((instance.id, caption.text), set()).add(caption.frame)
    expressions = [Expression(f't{i:05d}', text, instance, 'training', sorted(seen))
                   for i, ((instance, text), seen) in enumerate(sorted(frames.items()))]
    names = {inst.id: inst.name for inst in supervision.instances}
    return Benchmark(list(supervision.views), expressions, names, supervision.root)


def iou(prediction: Tensor, target: Tensor) -> float:
    """Return the IoU of two [H, W] bool masks (1.0 when both are empty)."""
    union = int((prediction | target).sum())
    return 1.0 if union == 0 else int((prediction & target).sum()) / union


@torch.no_grad()
def evaluate_referring(scene: Scene4D, field: ReferringField, text_encoder, benchmark: Benchmark,
                       threshold: float = 0.0, backend: str = 'auto') -> ReferringReport:
    """
    Score ``field`` on ``benchmark`` (module docstring); the field's device is used.

    :param text_encoder: ``encode(texts) -> TextFeatures``; the one the field was trained with.
    :param threshold: no-target threshold on the best score (the layer's calibrated value; 0
        disables no-target answers).
    """
    started = time.perf_counter()
    device = field.embeddings.device
    # Time-sensitive queries hold in their active frames only; they are the 'when' branch's
    # question (Acc, vIoU), not part of the time-agnostic mIoU.
    expressions = [e for e in benchmark.expressions if e.kind != TIME_SENSITIVE]
    encoded = text_encoder.encode([e.text for e in expressions])
    words, word_mask = encoded.words.to(device), encoded.word_mask.to(device)
    sentences = encoded.sentence.to(device)
    ious: Dict[str, List[float]] = {e.id: [] for e in expressions}
    empty, empty_fp, no_target = 0, 0, 0
    for view in benchmark.views:
        chosen = [i for i, e in enumerate(expressions) if e.holds_at(view)]
        if not chosen:
            continue
        gaussians = scene.at(view.time, device)
        mask = view.load_mask().to(device)
        for start in range(0, len(chosen), EXPRESSIONS_PER_PASS):
            part = chosen[start:start + EXPRESSIONS_PER_PASS]
            predictions, silent = _predict(field, gaussians, view.camera, words[part],
                                           word_mask[part], sentences[part], threshold,
                                           backend)
            no_target += int(silent.sum())
            for k, i in enumerate(part):
                target = mask == expressions[i].instance_id
                if not bool(target.any()):
                    empty += 1
                    empty_fp += int(bool(predictions[..., k].any()))
                    continue
                ious[expressions[i].id].append(iou(predictions[..., k], target))
    return _report(expressions, ious, empty, empty_fp, no_target, threshold,
                   [t for t, cut in zip(encoded.texts, encoded.truncated) if cut],
                   time.perf_counter() - started)


def _predict(field: ReferringField, gaussians, camera, words: Tensor, word_mask: Tensor,
             sentences: Tensor, threshold: float, backend: str):
    """
    Predict the masks [H, W, E] bool of E expressions from one camera.

    Also returns which were silenced as no-target ([E] bool).
    """
    length = int(word_mask.sum(dim=1).max())
    relevance = field(gaussians.means, words[:, :length], word_mask[:, :length],
                      sentences).relevance
    silent = best_scores(relevance) < threshold  # [E]
    masks = render_relevance(gaussians, camera, relevance, backend) >= MASK_THRESHOLD
    return masks & ~silent, silent


def _report(expressions: List[Expression], ious: Dict[str, List[float]], empty: int,
            empty_fp: int, no_target: int, threshold: float, truncated: List[str],
            seconds: float) -> ReferringReport:
    per_kind: Dict[str, List[float]] = {}
    rows = []
    for e in expressions:
        per_kind.setdefault(e.kind, []).extend(ious[e.id])
        rows.append({'id': e.id, 'kind': e.kind, 'text': e.text, 'instance_id': e.instance_id,
                     'views': len(ious[e.id]), 'miou': mean_or_nan(ious[e.id])})
    every = [v for values in ious.values() for v in values]
    scored = [r['miou'] for r in rows if r['views']]
    return ReferringReport(
        miou=mean_or_nan(every), expression_miou=mean_or_nan(scored),
        per_kind={k: mean_or_nan(v) for k, v in sorted(per_kind.items())},
        pairs=len(every), per_kind_pairs={k: len(v) for k, v in sorted(per_kind.items())},
        empty_pairs=empty, empty_false_positive=empty_fp / empty if empty else 0.0,
        no_target_pairs=no_target, threshold=threshold, truncated_expressions=truncated,
        per_expression=rows, seconds=seconds)


def mean_or_nan(values: List[float]) -> float:
    """Return the mean of values, NaN for none (a score over nothing is not 0)."""
    return float(sum(values) / len(values)) if values else float('nan')


def print_report(report: ReferringReport, title: str = 'referring mIoU') -> None:
    """Print a rich table: overall, per-expression and per-kind mIoU with pair counts."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column('subset')
    table.add_column('mIoU', justify='right')
    table.add_column('pairs', justify='right')
    table.add_row('all (expression, view) pairs', f'{report.miou:.3f}', str(report.pairs))
    table.add_row('mean over expressions', f'{report.expression_miou:.3f}', '')
    for kind, value in report.per_kind.items():
        table.add_row(kind, f'{value:.3f}', str(report.per_kind_pairs[kind]))
    console = Console()
    console.print(table)
    console.print(f'target not visible: {report.empty_pairs} pairs, predicted non-empty in '
                  f'{report.empty_false_positive:.1%}; no-target answers: '
                  f'{report.no_target_pairs} (threshold {report.threshold:.3f}); '
                  f'{report.seconds:.1f} s')
