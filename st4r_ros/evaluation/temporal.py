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
Time-sensitive queries: routing accuracy, Acc and vIoU of the when branch with its where.

Definitions (ST4R-Splat's metrics, made precise):

- The *timeline* is the temporal layer's frame times; a frame counts where the benchmark has a
  view at that time. Ground truth: the query holds at the frame (``Expression.holds_at``).
- *Locating*, as the engine does: the instance the state cache names (``TemporalLayer.locate``);
  when it names none, the referring field at every timeline frame (the majority instance of
  the Gaussians with sigmoid(m) >= 0.5, none when the best score is below the layer's
  no-target threshold) and the instance most frames name. A query whose target is never
  found has no active frame.
- *Prediction*: the temporal layer's active frames of that instance for the query (none when the
  instance has no state cache).
- **Acc** = frames where prediction equals ground truth / frames (per query, then the mean).
- **vIoU** = sum over frames in pred ∩ GT of the mask IoU at that frame / |pred ∪ GT| (1 when
  both are empty). The mask is the located instance's Gaussians rendered (cache-located) or the
  field's rendered mask for the query (field-located), at the frame's time, from the split's
  views of that frame (IoU averaged over them): the benchmark's (novel) views, and, given a
  supervision, its training views; a frame the split has no view of counts IoU 0. Acc needs
  no view: the when branch renders nothing.
- **Routing accuracy**: the router's decision (p >= 0.5) against kind == 'time-sensitive', over
  every benchmark expression.
- ``never_acc``: Acc of answering "never" to every query, for scale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
import time
from typing import Dict, List, Optional, Sequence, Tuple

from st4r_ros.evaluation.referring import iou, MASK_THRESHOLD, mean_or_nan
from st4r_ros.field.model import (best_scores, majority_instance, member_logits,
                                  ReferringField, render_relevance)
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import Scene4D
from st4r_ros.supervision.format import (Benchmark, Expression, SupervisionView,
                                         TIME_SENSITIVE, TIME_TOLERANCE)
from st4r_ros.temporal.layer import TemporalLayer
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
def evaluate_temporal(scene: Scene4D, field_: ReferringField, text_encoder,
                      layer: TemporalLayer, benchmark: Benchmark, threshold: float = 0.0,
                      training_views: Sequence[SupervisionView] = (),
                      backend: str = 'auto', temporal_encoder=None) -> TemporalReport:
    """
    Score routing, Acc and vIoU on ``benchmark`` (module docstring); the field's device is used.

    :param text_encoder: the encoder of the field and the layer.
    :param threshold: the referring layer's calibrated no-target threshold.
    :param training_views: views for the 'training' vIoU (none: novel views only).
    :param temporal_encoder: the temporal layer's sentence encoder when it is not
        ``text_encoder`` (None: the same).
    """
    started = time.perf_counter()
    device = field_.embeddings.device
    layer = layer.to(device)
    expressions = benchmark.expressions
    encoded = text_encoder.encode([e.text for e in expressions])
    said = layer.encode_queries(temporal_encoder or text_encoder, [e.text for e in expressions],
                                None if temporal_encoder else encoded)
    routed = (layer.router.probability(said) >= 0.5).to(device)
    stated = said.sentence.to(device)  # which instance (the state cache may name it)
    states = layer.state_of(said).to(device)  # when
    sensitive = torch.tensor([e.kind == TIME_SENSITIVE for e in expressions], device=device)
    chosen = [i for i, e in enumerate(expressions) if e.kind == TIME_SENSITIVE]
    times = [t for t in layer.cache.frame_times.tolist() if _views_at(benchmark.views, t)]
    truth = torch.tensor([[any(expressions[i].holds_at(v) for v in _views_at(benchmark.views, t))
                           for t in times] for i in chosen], dtype=torch.bool)
    frames = [scene.at(t, device) for t in times]
    relevance = [_relevance_at(gaussians, field_, encoded, chosen)
                 for gaussians in frames]  # T x [Q, N]
    masks: Dict[Path, Tensor] = {}  # ground truth by mask file, read once
    splits = {'novel': list(benchmark.views), 'training': list(training_views)}
    rows = []
    for q, i in enumerate(chosen):
        expression = expressions[i]
        instance, relevance_q = _locate(layer, stated[i],
                                        [r[q] for r in relevance], field_.assignment, threshold)
        found = layer.intervals(instance, states[i]) if instance is not None else None
        active = (found.active[[_index(layer, t) for t in times]].cpu() if found is not None
                  else torch.zeros(len(times), dtype=torch.bool))
        row = {'id': expression.id, 'text': expression.text, 'instance_id': expression.instance_id,
               'located': instance, 'acc': frame_accuracy(active, truth[q]),
               'never_acc': frame_accuracy(torch.zeros_like(truth[q]), truth[q]),
               'predicted_frames': [j for j, a in enumerate(active.tolist()) if a]}
        for split, views in splits.items():
            if views:
                ious = _frame_ious(frames, times, active & truth[q], views, expression,
                                   relevance_q, threshold, backend, masks)
                row[f'viou_{split}'] = video_iou(active, truth[q], ious)
        rows.append(row)

    def mean_of(key: str) -> float:
        return mean_or_nan([r[key] for r in rows])

    return TemporalReport(
        routing_accuracy=mean_or_nan((routed == sensitive).float().tolist()),
        routed_expressions=len(expressions), queries=len(rows),
        acc=mean_of('acc'), never_acc=mean_of('never_acc'),
        viou={split: mean_of(f'viou_{split}') for split, views in splits.items() if views},
        located=mean_or_nan([float(r['located'] == r['instance_id']) for r in rows]),
        frames=len(times), per_query=rows, seconds=time.perf_counter() - started)


def _views_at(views: Sequence[SupervisionView], t: float) -> List[SupervisionView]:
    return [v for v in views if abs(v.time - t) <= TIME_TOLERANCE]


def _index(layer: TemporalLayer, t: float) -> int:
    return int((layer.cache.frame_times - t).abs().argmin())


def _relevance_at(gaussians, field_: ReferringField, encoded, chosen: List[int]) -> Tensor:
    """Relevance m [Q, N] of the chosen expressions at one time."""
    device = field_.embeddings.device
    words, mask = encoded.words[chosen].to(device), encoded.word_mask[chosen].to(device)
    length = max(int(mask.sum(dim=1).max()), 1) if len(chosen) else 1
    return field_(gaussians.means, words[:, :length], mask[:, :length],
                  encoded.sentence[chosen].to(device)).relevance


def _locate(layer: TemporalLayer, sentence: Tensor, relevance: List[Tensor],
            assignment: Tensor, threshold: float) -> Tuple[Optional[int], List[Tensor]]:
    """
    Name one query's instance (module docstring) and the relevance [N] its masks come from.

    :param relevance: the field's relevance of the query at each timeline frame, [N] each.
    """
    located = layer.locate(sentence.to(assignment.device))
    if located is not None:
        return located[0], [member_logits(assignment, located[0])[0]] * len(relevance)
    return _vote(relevance, assignment, threshold), relevance


def _vote(relevance: List[Tensor], assignment: Tensor, threshold: float) -> Optional[int]:
    """Return the instance most frames name for one query (relevance [N] per frame)."""
    votes: Counter = Counter()
    for m in relevance:
        selected = torch.sigmoid(m) >= MASK_THRESHOLD
        if float(best_scores(m[None])[0]) < threshold:
            continue
        instance = majority_instance(assignment, selected)
        if instance >= 0:
            votes[instance] += 1
    return votes.most_common(1)[0][0] if votes else None


def _frame_ious(frames: List[Gaussians], times: List[float], scored: Tensor,
                views: Sequence[SupervisionView], expression: Expression,
                relevance: List[Tensor], threshold: float, backend: str,
                masks: Dict[Path, Tensor]) -> Tensor:
    """
    Mean mask IoU [T] over the views of each frame in ``scored`` [T] bool (0 elsewhere).

    :param frames: the Gaussians at each timeline time.
    :param masks: ground-truth masks already read, by file; filled as views are read.
    """
    ious = torch.zeros(len(times))
    for j in scored.nonzero()[:, 0].tolist():
        at = _views_at(views, times[j])
        if not at or float(best_scores(relevance[j][None])[0]) < threshold:
            continue
        values = []
        for view in at:
            predicted = render_relevance(frames[j], view.camera, relevance[j][None],
                                         backend)[..., 0] >= MASK_THRESHOLD
            if view.mask_path not in masks:
                masks[view.mask_path] = view.load_mask()
            values.append(iou(predicted.cpu(), masks[view.mask_path] == expression.instance_id))
        ious[j] = sum(values) / len(values)
    return ious


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
