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
Time-agnostic referring segmentation: mIoU of the engine's answers on a benchmark.

Every prediction is an answer of ``QueryEngine`` (``query_batch``) to the request a robot would
send: the expression as an AUTO query at the view's time with the view's camera. So the score
is what a robot gets, routing included: an expression the router takes for time-sensitive is
answered through the temporal layer as the node would answer it.

Definition (ST4R-Splat's time-agnostic mIoU, made precise):

- A *pair* is (expression e, benchmark view v) such that e holds at v (``Expression.holds_at``:
  its frames/times list v's) and e's target is visible in v (ground truth mask
  ``mask_v == e.instance_id`` has at least one pixel). Pairs whose target is not visible are
  scored apart (``empty_pairs``, ``empty_false_positive``: the fraction of them where the
  prediction is not empty), as a referring mask there has no IoU to speak of.
- Prediction: the answer's mask (the rendered sigmoid(m) at 0.5 over a background of 0); an
  answer without one (NO_TARGET: the best score below the layer's calibrated threshold, or any
  refusal) is the empty mask.
- IoU(e, v) = |pred & gt| / |pred | gt|. **mIoU = mean over all pairs**; per-kind mIoU is the
  same mean over the pairs of expressions of that kind; ``expression_miou`` is the mean over
  expressions of their own mean over views (every expression weighs the same).

Expressions of kind 'time-sensitive' are left out (the temporal branch's question). Views are
rendered at the benchmark's resolution; every view's expressions are asked together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
import time
from typing import Any, Dict, List, Sequence

from st4r_ros.engine import QueryEngine, QueryRequest, QueryResult, QueryStatus
from st4r_ros.errors import St4rError
from st4r_ros.supervision.format import Benchmark, Expression, Supervision, TIME_SENSITIVE
import torch
from torch import Tensor


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
    time_sensitive_answers: int  # pairs the router sent to the temporal branch
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
def evaluate_referring(engine: QueryEngine, benchmark: Benchmark) -> ReferringReport:
    """Score ``engine``'s answers on ``benchmark`` (module docstring)."""
    started = time.perf_counter()
    # Time-sensitive queries hold in their active frames only; they are the 'when' branch's
    # question (Acc, vIoU), not part of the time-agnostic mIoU.
    expressions = [e for e in benchmark.expressions if e.kind != TIME_SENSITIVE]
    if expressions and engine.encoder is None:
        raise St4rError('evaluate_referring: the engine has no referring layer to evaluate')
    ious: Dict[str, List[float]] = {e.id: [] for e in expressions}
    cut: Dict[str, bool] = {}
    empty, empty_fp, no_target, sensitive = 0, 0, 0, 0
    for view in benchmark.views:
        chosen = [e for e in expressions if e.holds_at(view)]
        if not chosen:
            continue
        answers = engine.query_batch([QueryRequest(e.text, time=view.time, camera=view.camera)
                                      for e in chosen])
        mask = view.load_mask()
        for expression, answer in zip(chosen, answers):
            cut[expression.id] = answer.truncated
            no_target += int(answer.status == QueryStatus.NO_TARGET)
            sensitive += int(answer.time_sensitive)
            predicted = predicted_mask(answer, mask.shape)
            target = mask == expression.instance_id
            if not bool(target.any()):
                empty += 1
                empty_fp += int(bool(predicted.any()))
                continue
            ious[expression.id].append(iou(predicted, target))
    return _report(expressions, ious, (empty, empty_fp, no_target, sensitive), engine.threshold,
                   [e.text for e in expressions if cut.get(e.id)], time.perf_counter() - started)


@torch.no_grad()
def false_answer_rate(engine: QueryEngine, texts: Sequence[str],
                      times: Sequence[float]) -> Dict[str, object]:
    """
    Ask requests about nothing in the scene at each of ``times``; the share answered OK.

    Every OK answer is a false one: the robot would act on an object it was not asked for.
    Returns {'queries', 'false_answers' (share), 'answered' (the texts answered OK, sorted)}.
    """
    answers = engine.query_batch([QueryRequest(text, time=t) for t in times for text in texts])
    answered = sorted({a.query for a in answers if a.ok})
    return {'queries': len(answers),
            'false_answers': sum(a.ok for a in answers) / max(len(answers), 1),
            'answered': answered}


def predicted_mask(answer: QueryResult, shape) -> Tensor:
    """Return the answer's mask [H, W] bool, or the empty mask when it has none."""
    if answer.mask is None:
        return torch.zeros(shape, dtype=torch.bool)
    return answer.mask.cpu()


def _report(expressions: List[Expression], ious: Dict[str, List[float]], counts: tuple,
            threshold: float, truncated: List[str], seconds: float) -> ReferringReport:
    empty, empty_fp, no_target, sensitive = counts
    per_kind: Dict[str, List[float]] = {}
    rows: List[Dict[str, Any]] = []  # per expression, its JSON record
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
        no_target_pairs=no_target, time_sensitive_answers=sensitive, threshold=threshold,
        truncated_expressions=truncated,
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
                  f'{report.no_target_pairs} (threshold {report.threshold:.3f}); routed '
                  f'time-sensitive: {report.time_sensitive_answers}; {report.seconds:.1f} s')
