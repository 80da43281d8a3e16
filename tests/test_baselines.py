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
The rendered-state baseline (4DLangSplat-style) and the helpers of its benchmark.

A tiny synthetic scene (4 frames, 40 x 30 pixels, one training and one novel view per frame);
a hashed bag-of-words encoder stands in for the transformer, so no weights are needed.
"""

from __future__ import annotations

from dataclasses import replace
import importlib.util
from pathlib import Path
import sys
import zlib

import pytest
from st4r_ros.baselines import BaselineConfig, RenderedStateField, train_rendered_state
from st4r_ros.baselines.rendered_state import frame_column, FRAME_TOLERANCE, view_targets
from st4r_ros.errors import QueryError
from st4r_ros.scene.bundle import load_bundle
from st4r_ros.supervision.format import Expression, load_benchmark, load_supervision
from st4r_ros.synthetic.task import build_synthetic_task
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.temporal import build_state_cache, build_temporal_layer
from st4r_ros.text import TextFeatures
import torch

TINY = SyntheticConfig(num_frames=4, gaussians_per_object=60, table_gaussians=50,
                       train_cameras_per_frame=1, novel_cameras_per_frame=1, width=40, height=30)
# Small objects in 40 x 30 views cover 5-80 pixels each.
FAST = BaselineConfig(steps=30, min_pixels=4, lr_networks=3e-3)
BENCHMARK = Path(__file__).resolve().parents[1] / 'benchmarks' / 'temporal_baseline.py'
DIM = 32


class HashEncoder:
    """Sentence = normalised mean of per-word random unit vectors drawn from their CRC32."""

    name = 'test-hash-encoder'
    dim = DIM
    dtype = 'float32'
    prompts: dict = {}  # a TextEncoder's named prompts: none

    def encode(self, texts, prompt=''):
        per_text = []
        for text in texts:
            words = (prompt + text).lower().replace('?', ' ').split()
            per_text.append(torch.stack([torch.randn(DIM, generator=torch.Generator().manual_seed(
                zlib.crc32(word.encode()))) for word in words]))
        words = torch.nn.utils.rnn.pad_sequence(per_text, batch_first=True)  # [B, L, D]
        mask = torch.nn.utils.rnn.pad_sequence(
            [torch.ones(len(v), dtype=torch.bool) for v in per_text], batch_first=True)
        sentence = torch.nn.functional.normalize(torch.stack([v.mean(0) for v in per_text]), dim=1)
        return TextFeatures(words, mask, sentence, (False,) * len(texts), tuple(texts))


def sentence_cache(supervision):
    """Return the state captions' HashEncoder sentences: targets for the baseline."""
    return build_state_cache(supervision, HashEncoder())


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp('baseline')
    write_synthetic(root, 0, TINY)
    supervision_dir, bench_path = build_synthetic_task(root, seed=0)
    return (load_bundle(root / 'scene'), load_supervision(supervision_dir),
            load_benchmark(bench_path))


@pytest.fixture(scope='module')
def trained(task):
    scene, supervision, _ = task
    return train_rendered_state(scene, supervision, sentence_cache(supervision), FAST, seed=3,
                                progress=False)


@pytest.fixture(scope='module')
def bench_module():
    spec = importlib.util.spec_from_file_location('temporal_baseline', BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_training_lowers_the_loss_and_is_deterministic(task, trained):
    scene, supervision, _ = task
    history = trained.history
    assert len(history) == FAST.steps
    assert sum(history[-5:]) / 5 < 0.8 * sum(history[:5]) / 5
    again = train_rendered_state(scene, supervision, sentence_cache(supervision), FAST, seed=3,
                                 progress=False)
    assert again.history == history
    for name, value in trained.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name]), name
    other = train_rendered_state(scene, supervision, sentence_cache(supervision),
                                 replace(FAST, steps=3), seed=4, progress=False)
    assert other.history != history[:3]


def test_the_render_path_trains_as_the_cached_weights(task):
    """The path other devices take (render() every step) agrees with the CPU's cached weights."""
    scene, supervision, _ = task
    runs = [train_rendered_state(scene, supervision, sentence_cache(supervision),
                                 replace(FAST, steps=4, cache_weights=cached), seed=3,
                                 progress=False).history for cached in (True, False)]
    assert runs[0] == pytest.approx(runs[1], rel=1e-4)


def test_targets_are_the_cache_rows_and_weigh_instances_equally(task):
    _, supervision, _ = task
    cache = build_state_cache(supervision, HashEncoder())
    targets = view_targets(supervision, cache, 4, torch.device('cpu'))
    assert len(targets) == len(supervision.views)
    first = targets[0]
    mask = supervision.views[first.view].load_mask().reshape(-1)
    ids = mask[first.pixels]
    assert bool((ids > 0).all())
    instances = ids.unique()
    assert float(first.weights.sum()) == pytest.approx(1.0)
    for instance in instances.tolist():
        rows = ids == instance
        assert int(rows.sum()) == int((mask == instance).sum())
        assert float(first.weights[rows].sum()) == pytest.approx(1 / len(instances))
        expected = cache.features[cache.row(instance), frame_column(cache.frame_times, 0.0)]
        assert torch.equal(first.targets[rows][0], expected)


def test_state_features_is_a_unit_mean_over_the_mask(task, trained):
    scene, supervision, _ = task
    view = supervision.views[0]
    ids = view.load_mask()
    gaussians = scene.at(view.time)
    model = trained.model
    picked = [k for k in ids.unique().tolist() if k > 0 and int((ids == k).sum()) >= 4][:2]
    features = [model.state_features(gaussians, view.camera, ids == k, view.time)
                for k in picked]
    for feature in features:
        assert feature.shape == (DIM,)
        assert float(feature.norm()) == pytest.approx(1.0, abs=1e-5)
    rendered = model.render_features(gaussians, view.camera, view.time)
    assert rendered.shape == (TINY.height, TINY.width, FAST.render_dim)
    by_hand = model.decode(rendered[ids == picked[0]]).mean(0)
    assert torch.allclose(features[0], by_hand / by_hand.norm(), atol=1e-5)
    assert not torch.allclose(features[0], features[1], atol=1e-3)
    assert not torch.allclose(
        features[0], model.state_features(gaussians, view.camera, ids == picked[0], 1.0),
        atol=1e-4), 'the feature must depend on time'


def test_an_empty_or_misshapen_mask_is_a_query_error(task, trained):
    scene, supervision, _ = task
    view = supervision.views[0]
    gaussians = scene.at(view.time)
    empty = torch.zeros(TINY.height, TINY.width, dtype=torch.bool)
    with pytest.raises(QueryError, match='empty mask'):
        trained.model.state_features(gaussians, view.camera, empty, view.time)
    with pytest.raises(QueryError, match='expected shape'):
        trained.model.state_features(gaussians, view.camera, torch.ones(3, 3, dtype=torch.bool),
                                     view.time)


def test_other_gaussians_are_refused(task):
    scene, supervision, _ = task
    view = supervision.views[0]
    model = RenderedStateField(5, replace(FAST, text_dim=DIM))
    with pytest.raises(Exception, match='Gaussians the baseline was trained on'):
        model.render_features(scene.at(view.time), view.camera, view.time)


def test_frame_column_matches_float32_times_only():
    times = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=torch.float32)
    assert frame_column(times, 1 / 3) == 1
    assert frame_column(times, 1.0 - FRAME_TOLERANCE / 2) == 3
    assert frame_column(times, 0.5) is None
    assert frame_column(torch.zeros(0), 0.0) is None


def test_score_on_a_hand_made_timeline(bench_module):
    truth = torch.tensor([False, True, True, False, True])
    active = torch.tensor([False, True, False, True, True])
    seen = torch.tensor([True, True, True, True, False])
    result = bench_module.score(active, truth, seen)
    assert result['acc'] == pytest.approx(3 / 5)
    # pred ∩ GT = {1, 4}: IoU 1 at frame 1, 0 at frame 4 (unseen); pred ∪ GT = {1, 2, 3, 4}.
    assert result['viou'] == pytest.approx(1 / 4)
    assert result['never'] == 0.0
    silent = bench_module.score(torch.zeros(5, dtype=torch.bool), truth, seen)
    assert silent['acc'] == pytest.approx(2 / 5) and silent['never'] == 1.0


def test_tracks_put_one_view_per_frame(task, bench_module):
    _, supervision, bench = task
    times = torch.tensor([v.time for v in bench.views], dtype=torch.float32)
    doubled = supervision.views + supervision.views[:2]
    found = bench_module.tracks(doubled, 'train', times)
    assert [t.name for t in found] == ['train c0', 'train c1']
    assert found[0].views == supervision.views
    assert found[1].views[:2] == supervision.views[:2] and found[1].views[2:] == [None, None]


def test_the_baseline_given_the_layers_features_answers_as_the_layer(task, bench_module):
    _, supervision, bench = task
    layer = build_temporal_layer(supervision, HashEncoder())
    track = bench_module.Track('novel c0', 'novel', list(bench.views))
    same = bench_module.TrackFeatures(layer.states.features.clone(), layer.states.valid.clone())
    by_track = {track.name: (track, same)}
    layers = bench_module.settings(layer, by_track)
    frames = len(layer.cache.frame_times)
    instance = int(layer.cache.instance_ids[0])
    vector = layer.state_of(HashEncoder().encode(['the object is spinning']))[0]
    query = Expression('q', 'the object is spinning', instance, 'time-sensitive', [1, 2])
    rows = bench_module.evaluate_query(query, vector, layers, by_track, frames)
    assert {(r['method'], r['threshold']) for r in rows} == {
        (m, t) for m in ('cache', 'baseline') for t in ('calibrated', 'midpoint')}
    for threshold in ('calibrated', 'midpoint'):
        cache, baseline = ([r for r in rows if r['threshold'] == threshold
                            and r['method'] == m][0] for m in ('cache', 'baseline'))
        assert cache['acc'] == baseline['acc'] and cache['viou'] == baseline['viou']
    cosine = bench_module.feature_cosine(layer, by_track)
    assert cosine['novel/raw'] == pytest.approx(1.0, abs=1e-5)


def test_centred_removes_the_mean_over_seen_frames_only(bench_module):
    features = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])  # [K=1, T=3, D=2]
    seen = torch.tensor([[True, True, False]])
    out = bench_module.centred(features, seen)
    assert torch.allclose(out[0, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
