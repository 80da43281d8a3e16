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
Time-sensitive queries: routing accuracy, Acc and vIoU of the engine's answers.

Every prediction is an answer of ``QueryEngine`` (``query_batch``) to the request a robot would
send: the expression as an AUTO query at a frame's time, with a view's camera. So the router,
the instance the engine names at that time and its active spans are all part of the score.

Definitions (ST4R-Splat's metrics, made precise):

- The *timeline* is the temporal layer's frame times; a frame counts where the benchmark has a
  view at that time. Ground truth: the query holds at the frame (``Expression.holds_at``).
- *Prediction* at a frame: the answer asked at that frame's time is OK and the time lies in one
  of its active spans (an answer routed time-agnostic has the one span [0, 1]; NO_TARGET,
  NOT_IN_STATE and refusals have none).
- **Acc** = frames where prediction equals ground truth / frames (per query, then the mean).
- **vIoU** = sum over frames in pred ∩ GT of the mask IoU at that frame / |pred ∪ GT| (1 when
  both are empty). The mask is the answer's for the view's camera, from the split's views of
  that frame (IoU averaged over them): the benchmark's (novel) views, and, given a supervision,
  its training views; a frame the split has no view of counts IoU 0.
- **Routing accuracy**: the answers' time_sensitive against kind == 'time-sensitive', over
  every benchmark expression. ``located``: the share of (query, frame) answers whose target is
  the expression's instance.
- ``never_acc``: Acc of answering "never" to every query, for scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
import time
from typing import Dict, List, Sequence

from st4r_ros.engine import QueryEngine, QueryRequest, QueryResult, QueryStatus
from st4r_ros.errors import QueryError
from st4r_ros.evaluation.referring import iou, mean_or_nan, predicted_mask
from st4r_ros.supervision.format import (Benchmark, Expression, SupervisionView,
                                         TIME_SENSITIVE, TIME_TOLERANCE)
import torch
from torch import Tensor


@dataclass
class TemporalReport:
    """Scores of the when branch on one benchmark (definitions in the module docstring)."""

    routing_accuracy: float
    routed_expressions: int
    queries: int
    acc: float
    never_acc: float
    viou: Dict[str, float]
    located: float
    frames: int
    per_query: List[Dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> Dict:
        return asdict(self)


def frame_accuracy(predicted: Tensor, truth: Tensor) -> float:
    """Return the share of frames where predicted [T] bool equals truth [T] bool."""
    return float((predicted == truth).float().mean()) if len(truth) else float('nan')


def video_iou(predicted: Tensor, truth: Tensor, ious: Tensor) -> float:
    """
    Return vIoU of predicted [T] bool against truth [T] bool with mask IoUs [T].

    Sum of ious over frames in predicted & truth divided by |predicted | truth|; 1.0 when the
    union is empty (nothing asked, nothing answered).
    """
    union = int((predicted | truth).sum())
    if union == 0:
        return 1.0
    both = predicted & truth
    return float(ious[both].sum()) / union


@torch.no_grad()
def evaluate_temporal(engine: QueryEngine, benchmark: Benchmark,
                      training_views: Sequence[SupervisionView] = ()) -> TemporalReport:
    """
    Score routing, Acc and vIoU of ``engine``'s answers on ``benchmark`` (module docstring).

    :param training_views: views for the 'training' vIoU (none: novel views only).
    :raises QueryError: the engine has no temporal layer.
    """
    if engine.temporal is None:
        raise QueryError('evaluate_temporal: the engine has no temporal layer')
    started = time.perf_counter()
    expressions = benchmark.expressions
    times = [t for t in engine.temporal.cache.frame_times.tolist()
             if _views_at(benchmark.views, t)]
    routed = engine.query_batch([QueryRequest(e.text, time=times[0] if times else 0.0)
                                 for e in expressions])
    chosen = [e for e in expressions if e.kind == TIME_SENSITIVE]
    splits = {'novel': list(benchmark.views), 'training': list(training_views)}
    answers = _answers_by_frame(engine, chosen, times, splits)
    masks: Dict[Path, Tensor] = {}  # ground truth by mask file, read once
    rows = [_score(e, q, times, splits, answers, masks) for q, e in enumerate(chosen)]

    def mean_of(key: str) -> float:
        return mean_or_nan([r[key] for r in rows])

    return TemporalReport(
        routing_accuracy=mean_or_nan([float(a.time_sensitive == (e.kind == TIME_SENSITIVE))
                                      for a, e in zip(routed, expressions)]),
        routed_expressions=len(expressions), queries=len(rows),
        acc=mean_of('acc'), never_acc=mean_of('never_acc'),
        viou={split: mean_of(f'viou_{split}') for split, views in splits.items() if views},
        located=mean_of('located'), frames=len(times), per_query=rows,
        seconds=time.perf_counter() - started)


def _answers_by_frame(engine: QueryEngine, chosen: List[Expression], times: List[float],
                      splits: Dict[str, List[SupervisionView]]) -> Dict[tuple, QueryResult]:
    """
    Ask every chosen query at every timeline frame, from every view of that frame.

    Returns {(query index, frame index, split, view index in the frame): answer}; the answer at
    (q, j, 'novel', 0) is the one that decides prediction and instance at that frame.
    """
    answers: Dict[tuple, QueryResult] = {}
    for j, t in enumerate(times):
        keys, requests = [], []
        for split, views in splits.items():
            for v, view in enumerate(_views_at(views, t)):
                for q, expression in enumerate(chosen):
                    keys.append((q, j, split, v))
                    requests.append(QueryRequest(expression.text, time=t, camera=view.camera))
        answers.update(zip(keys, engine.query_batch(requests)))
    return answers


def _score(expression: Expression, q: int, times: List[float],
           splits: Dict[str, List[SupervisionView]], answers: Dict[tuple, QueryResult],
           masks: Dict[Path, Tensor]) -> Dict:
    """One query's row: Acc, vIoU per split, the instances it was answered with."""
    deciding = [answers[(q, j, 'novel', 0)] for j in range(len(times))]
    active = torch.tensor([_active(a, t) for a, t in zip(deciding, times)], dtype=torch.bool)
    truth = torch.tensor([any(expression.holds_at(v) for v in _views_at(splits['novel'], t))
                          for t in times], dtype=torch.bool)
    row = {'id': expression.id, 'text': expression.text, 'instance_id': expression.instance_id,
           'answered_instances': sorted({a.target_instance_id for a in deciding}),
           'located': mean_or_nan([float(a.target_instance_id == expression.instance_id)
                                   for a in deciding]),
           'acc': frame_accuracy(active, truth),
           'never_acc': frame_accuracy(torch.zeros_like(truth), truth),
           'predicted_frames': [j for j, a in enumerate(active.tolist()) if a]}
    for split, views in splits.items():
        if views:
            ious = torch.zeros(len(times))
            for j in (active & truth).nonzero()[:, 0].tolist():
                ious[j] = _frame_iou(expression, q, j, split, _views_at(views, times[j]),
                                     answers, masks)
            row[f'viou_{split}'] = video_iou(active, truth, ious)
    return row


def _active(answer: QueryResult, t: float) -> bool:
    """Whether ``answer`` says its expression holds at time ``t``."""
    return answer.status == QueryStatus.OK and any(
        span.start - TIME_TOLERANCE <= t <= span.end + TIME_TOLERANCE
        for span in answer.active_spans)


def _frame_iou(expression: Expression, q: int, j: int, split: str,
               views: List[SupervisionView], answers: Dict[tuple, QueryResult],
               masks: Dict[Path, Tensor]) -> float:
    """Mean mask IoU of the answers at frame ``j`` over the split's views of it (0: none)."""
    values = []
    for v, view in enumerate(views):
        if view.mask_path not in masks:
            masks[view.mask_path] = view.load_mask()
        truth = masks[view.mask_path] == expression.instance_id
        values.append(iou(predicted_mask(answers[(q, j, split, v)], truth.shape), truth))
    return sum(values) / len(values) if values else 0.0


def _views_at(views: Sequence[SupervisionView], t: float) -> List[SupervisionView]:
    return [v for v in views if abs(v.time - t) <= TIME_TOLERANCE]


def print_temporal_report(report: TemporalReport, title: str = 'time-sensitive queries') -> None:
    """Print a rich table: routing accuracy, Acc (and answering "never"), vIoU per split."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column('metric')
    table.add_column('value', justify='right')
    table.add_row(f'routing accuracy ({report.routed_expressions} expressions)',
                  f'{report.routing_accuracy:.3f}')
    table.add_row(f'Acc ({report.queries} queries, {report.frames} frames)', f'{report.acc:.3f}')
    table.add_row('Acc of answering "never"', f'{report.never_acc:.3f}')
    for split, value in report.viou.items():
        table.add_row(f'vIoU, {split} views', f'{value:.3f}')
    table.add_row('target instance located', f'{report.located:.3f}')
    Console().print(table)
