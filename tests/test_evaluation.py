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
Referring evaluation: IoU bookkeeping, per-kind scores, no-target answers, bad input.

Also the eval command on a saved benchmark (the two-ball task of test_training).
"""

from __future__ import annotations

from dataclasses import replace
import json

import pytest
from st4r_ros.engine import QueryEngine, QueryRequest, QueryStatus
from st4r_ros.evaluation.referring import (evaluate_referring, iou, predicted_mask, print_report,
                                           training_benchmark)
from st4r_ros.evaluation.runner import eval_main
from st4r_ros.field.train import train_field
from st4r_ros.supervision.format import Benchmark, Expression, load_benchmark, save_benchmark
from test_training import FAST, HashEncoder, load_bundle, load_supervision, write_task
import torch


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    scene_dir, supervision_dir = write_task(root)
    scene, supervision = load_bundle(scene_dir), load_supervision(supervision_dir)
    result = train_field(scene, supervision, replace(FAST, steps=150), scene_dir,
                         progress=False, text_encoder=HashEncoder())
    expressions = [
        Expression('e1', 'the red ball', 1, 'appearance'),
        Expression('e2', 'the ball on the right', 2, 'relation-only', frames=[1]),
        Expression('e3', 'the blue ball', 2, 'appearance', times=[0.0]),
    ]
    bench = Benchmark(supervision.views, expressions, {1: 'red ball', 2: 'blue ball'},
                      supervision.root)
    bench_path = save_benchmark(root / 'bench.json', bench)
    return scene, scene_dir, result, load_benchmark(bench_path), bench_path


def test_iou():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = a.clone()
    assert iou(a, b) == 1.0
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)


def engine_of(scene, result, threshold: float = 0.0) -> QueryEngine:
    return QueryEngine(scene, result.field, HashEncoder(), threshold)


def test_report_counts_pairs_per_kind_and_is_json(trained, capsys):
    scene, _, result, bench, _ = trained
    report = evaluate_referring(engine_of(scene, result), bench)
    visible = {(e.id, v.name) for e in bench.expressions for v in bench.views
               if e.holds_at(v) and bool((v.load_mask() == e.instance_id).any())}
    assert report.pairs == len(visible)
    assert report.per_kind_pairs == {'appearance': 9, 'relation-only': 3}
    assert set(report.per_kind) == {'appearance', 'relation-only'}
    assert 0.0 <= report.miou <= 1.0
    json.dumps(report.to_json())
    print_report(report)
    assert 'relation-only' in capsys.readouterr().out


def test_a_high_threshold_answers_no_target_everywhere(trained):
    scene, _, result, bench, _ = trained
    report = evaluate_referring(engine_of(scene, result, threshold=1.01), bench)
    assert report.no_target_pairs == report.pairs + report.empty_pairs
    assert report.miou == 0.0


def test_the_scores_are_the_engine_answers(trained):
    scene, _, result, bench, _ = trained
    engine = engine_of(scene, result, result.threshold)
    report = evaluate_referring(engine, bench)
    view = next(v for v in bench.views if any(e.holds_at(v) for e in bench.expressions))
    expression = next(e for e in bench.expressions if e.holds_at(view))
    answer = engine.query(QueryRequest(expression.text, time=view.time, camera=view.camera))
    truth = view.load_mask() == expression.instance_id
    row = next(r for r in report.per_expression if r['id'] == expression.id)
    if bool(truth.any()) and row['views'] == 1:
        assert row['miou'] == pytest.approx(iou(predicted_mask(answer, truth.shape), truth))
    assert report.threshold == pytest.approx(result.threshold)


def test_bad_expressions_are_answered_not_crashed(trained):
    scene, _, result, _, _ = trained
    engine = engine_of(scene, result, result.threshold)
    for empty in ('', '   \n\t'):
        assert engine.query(QueryRequest(empty)).status == QueryStatus.INVALID
    long, nonsense = 'the red ball ' * 20, 'qq zzv wibble'
    got = engine.query_batch([QueryRequest(text, time=0.5)
                              for text in (long, nonsense, 'the red ball')])
    assert all(0.0 <= g.score <= 1.0 for g in got)
    assert got[2].score > got[1].score
    assert (got[1].status == QueryStatus.NO_TARGET) == (got[1].score < result.threshold)


def test_eval_main_reads_the_layer_of_the_bundle(trained, capsys):
    _, scene_dir, result, _, bench_path = trained
    evaluation = eval_main(str(scene_dir), str(bench_path), json=True,
                           text_encoder=HashEncoder())
    printed = json.loads(capsys.readouterr().out)
    assert printed['referring']['miou'] == pytest.approx(evaluation.referring.miou)
    assert evaluation.referring.threshold == pytest.approx(result.threshold)
    assert printed['temporal'] is None and evaluation.temporal is None  # no state captions


def test_training_benchmark_lists_each_caption_once(trained):
    scene, _, result, _, _ = trained
    supervision = load_supervision(result.layer_path.parent.parent / 'supervision')
    bench = training_benchmark(supervision)
    assert sorted(e.text for e in bench.expressions) == sorted(
        ['the red ball', 'the ball on the left', 'the blue ball', 'the ball on the right'])
    assert all(e.frames == [0, 1] for e in bench.expressions)
