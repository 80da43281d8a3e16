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
Routing accuracy, Acc and vIoU of time-sensitive queries, on hand-checked answers.

Three frames; instance 3 is in the asked state at frames 0 and 2 (the engine tests' temporal
layer), instance 2 never. The field knows every instance exactly, so the masks are the
ground truth and each figure follows from the frames alone.
"""

from __future__ import annotations

from pathlib import Path

from doubles import InstanceField, KeywordEncoder, SMALL, temporal_layer
import numpy as np
from PIL import Image
import pytest
from st4r_ros.engine import QueryEngine
from st4r_ros.errors import QueryError
from st4r_ros.evaluation.temporal import evaluate_temporal, frame_accuracy, video_iou
from st4r_ros.render.api import render
from st4r_ros.scene.keyframes import KeyframedScene
from st4r_ros.supervision.format import Benchmark, Expression, SupervisionView, TIME_SENSITIVE
from st4r_ros.synthetic.scene import generate_synthetic
import torch


@pytest.fixture(scope='module')
def synthetic():
    return generate_synthetic(seed=1, config=SMALL)


def test_frame_accuracy_and_video_iou_by_hand():
    predicted = torch.tensor([True, True, False, False])
    truth = torch.tensor([True, False, False, True])
    assert frame_accuracy(predicted, truth) == 0.5
    # pred & truth = frame 0 (IoU 0.8); pred | truth = 3 frames.
    assert video_iou(predicted, truth, torch.tensor([0.8, 1.0, 1.0, 1.0])) == pytest.approx(
        0.8 / 3)
    nothing = torch.zeros(4, dtype=torch.bool)
    assert video_iou(nothing, nothing, torch.zeros(4)) == 1.0


def benchmark_of(synthetic, folder: Path) -> Benchmark:
    """One view per frame, ground truth instance 3 only; four expressions."""
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    views = []
    for view in synthetic.views:
        gaussians = scene.at(view.time)
        one_hot = (gaussians.instance_ids == 3).float()[:, None]
        seen = render(gaussians, view.camera, one_hot).image[..., 0] >= 0.5
        path = folder / f'{view.name}.png'
        Image.fromarray((seen.numpy() * 3).astype(np.uint8)).save(path)
        views.append(SupervisionView(view.name, view.time, view.frame, view.camera, path))
    expressions = [Expression('a', 'object 3', 3, TIME_SENSITIVE, [0, 2]),
                   Expression('b', 'object 3', 3, TIME_SENSITIVE, [0]),
                   Expression('c', 'object 2', 2, TIME_SENSITIVE, [1]),
                   Expression('d', 'object 4', 4, 'appearance')]
    return Benchmark(views, expressions, {2: 'two', 3: 'three', 4: 'four'}, folder)


def engine_of(synthetic, layer) -> QueryEngine:
    """Make the engine a robot would ask: keyword field, keyword encoder, the given layer."""
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    field = InstanceField(synthetic.keyframes[0][1].instance_ids)
    return QueryEngine(scene, field, KeywordEncoder(), threshold=0.4, duration_s=2.0,
                       temporal=layer)


def test_acc_viou_and_routing_on_known_answers(synthetic, tmp_path):
    bench = benchmark_of(synthetic, tmp_path)
    report = evaluate_temporal(engine_of(synthetic, temporal_layer(5.0)), bench,
                               training_views=bench.views[:1])
    rows = {r['id']: r for r in report.per_query}
    assert report.queries == 3 and report.frames == 3
    assert rows['a']['acc'] == 1.0 and rows['a']['viou_novel'] == pytest.approx(1.0, abs=0.02)
    assert rows['b']['acc'] == pytest.approx(2 / 3)
    assert rows['b']['viou_novel'] == pytest.approx(0.5, abs=0.01)
    assert rows['c']['answered_instances'] == [2] and rows['c']['predicted_frames'] == []
    assert rows['c']['acc'] == pytest.approx(2 / 3) and rows['c']['viou_novel'] == 0.0
    assert report.acc == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert report.never_acc == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)
    # Training views hold frame 0 only: the IoU of frame 2 is missing there.
    assert rows['a']['viou_training'] == pytest.approx(0.5, abs=0.01)
    # The router says time-sensitive to every 'object k' (weight +5): 'd' is routed wrong.
    assert report.routing_accuracy == 0.75 and report.located == 1.0


def test_the_state_cache_locates_first(synthetic, tmp_path):
    bench = benchmark_of(synthetic, tmp_path)
    report = evaluate_temporal(engine_of(synthetic, temporal_layer(5.0, locate_floor=0.5)),
                               bench)
    rows = {r['id']: r for r in report.per_query}
    # Every 'object k' matches instance 3's cache best: 'c' (about instance 2) is misplaced.
    assert [rows[k]['answered_instances'] for k in 'abc'] == [[3], [3], [3]]
    assert [rows[k]['located'] for k in 'abc'] == [1.0, 1.0, 0.0]
    assert rows['c']['predicted_frames'] == [0, 2] and rows['c']['acc'] == 0.0
    assert rows['a']['viou_novel'] == pytest.approx(1.0, abs=0.02)
    assert report.located == pytest.approx(2 / 3)


def test_an_engine_without_a_temporal_layer_is_refused_by_name(synthetic, tmp_path):
    with pytest.raises(QueryError, match='no temporal layer'):
        evaluate_temporal(engine_of(synthetic, None), benchmark_of(synthetic, tmp_path))
