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
The 'when' branch against a 4DLangSplat-style rendered baseline, on training and novel views.

ST4R-Splat claims view robustness for its state cache: on novel views, Acc 90.38% against
51.92% for 4DLangSplat, whose time-varying feature is learnt through 2D renders. This checks
the claim on synthetic scenes. The 'when' branch is taken in isolation: every time-sensitive
expression of the benchmark is asked about its ground-truth instance (no referring field, no
router), and the ground-truth masks say where that instance is in each view.

For each seed: write the synthetic scene and its task under OUT/seed_S (kept for later runs),
build the temporal layer (state cache, calibrated interval parameters) and train the baseline
(st4r_ros.baselines.rendered_state) on the supervision's training views, both from the same
state captions and sentence encoder. Then, per query and per *track* (one view per frame):

- training tracks: 'train cJ' is the J-th training view of every frame (the synthetic scenes
  have two cameras per frame, on opposite sides of the table); their Acc is averaged.
  ``--views-per-frame 1`` trains the baseline on track c0 alone (one view per frame, as a
  monocular capture such as HyperNeRF's) and scores that track only;
- novel track: the benchmark's held-out view of every frame.

The baseline's per-frame state feature is its decoded render averaged inside the instance's
ground-truth mask in that view (a frame where the mask is empty is missing); the layer's is
its state feature s_{k,t} (``TemporalLayer.states``, which the baseline is trained to render),
the same whatever the view. Both answer through the same code: the baseline's features
replace the layer's in a copy of the temporal layer, and TemporalLayer.intervals does the
rest (smoothing, thresholds) for the query's state feature, with the layer's parameters in two
settings: 'calibrated' (the layer's level, as the engine answers) and 'midpoint' (level -1,
i.e. none: the adaptive midpoint threshold alone, like the 4DLangSplat protocol's mean
threshold). Queries come in two wordings: 'held-out' (the benchmark's sentence, family B
words) and 'caption' ("the <name> <first training phrase of the asked state>", family A
words), which separates view robustness from the encoder's paraphrase gap.

Acc = frame accuracy over all frames (evaluation.temporal). vIoU uses the ground-truth masks
(IoU 1 where the instance shows in the track's view, 0 where not), so it is a temporal IoU
over the frames the instance can be seen at. "never" answers no frame at all: the Acc of
saying nothing. Feature cosine: mean cos(baseline feature, s_{k,t}) over every instance and
frame seen in a track, training against novel tracks; 'raw' as they are, 'centred' after
removing each instance's mean over the track's frames (the part that changes with time,
which is what 'when' reads; the raw cosine is dominated by the words naming the object).

Runtime (this 2-core CPU, OMP_NUM_THREADS=1, default sizes): about 100 s per seed, of which
~12 s write the scene (skipped when OUT/seed_S exists), ~60 s train the baseline (1500 steps)
and ~15 s render the tracks.

Usage:
    PYTHONPATH=. python benchmarks/temporal_baseline.py [--seeds 0 1] [--steps 1500]
        [--device cpu] [--views-per-frame N] [--out out/temporal_baseline]
        [--json benchmarks/results/X.json]
    PYTHONPATH=. python benchmarks/temporal_baseline.py --smoke [--json X.json]

``--smoke`` checks the script: seed 0 only, a tiny scene (four frames, small 40x30 views) written
into a new temporary folder, removed at exit, in place of ``--out``, and five training steps
on the CPU; the rest (tracks, evaluation, tables, JSON) runs as usual.
"""

from __future__ import annotations

import argparse
import atexit
from dataclasses import dataclass, replace
import json
from pathlib import Path
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from rich.console import Console
from rich.table import Table
import torch
from torch import Tensor
import torch.nn.functional as F

METHODS = ('cache', 'baseline')
SPLITS = ('train', 'novel')
WORDINGS = ('held-out', 'caption')
THRESHOLDS = ('calibrated', 'midpoint')


@dataclass(frozen=True)
class Track:
    """
    One camera over the timeline.

    :ivar name: 'train c0', 'novel c0', ...
    :ivar split: 'train' or 'novel'.
    :ivar views: the view of each cache frame, [T] entries, None where the track has none.
    """

    name: str
    split: str
    views: List


@dataclass(frozen=True)
class TrackFeatures:
    """
    The baseline's state features along one track.

    :ivar features: [K, T, D], unit where valid.
    :ivar valid: [K, T] bool: the instance's ground-truth mask is not empty in that view.
    """

    features: Tensor
    valid: Tensor


def prepare(root: Path, seed: int, config=None) -> None:
    """Write the synthetic scene (SyntheticConfig config) and its task under root, unless there."""
    from st4r_ros.synthetic.task import build_synthetic_task
    from st4r_ros.synthetic.scene import write_synthetic

    if not (root / 'bench.json').is_file():
        write_synthetic(root, seed, config)
        build_synthetic_task(root, seed)


def smoke_scene():
    """Return the smallest scene the synthetic language still describes (every role)."""
    from st4r_ros.synthetic.scene import SyntheticConfig

    return SyntheticConfig(num_frames=4, gaussians_per_object=60, table_gaussians=50,
                           train_cameras_per_frame=1, novel_cameras_per_frame=1, width=40,
                           height=30)


def tracks(views: List, split: str, frame_times: Tensor) -> List[Track]:
    """Group views [V] into tracks: the J-th view of each frame goes to track J."""
    from st4r_ros.baselines.rendered_state import frame_column

    slots: List[List] = []
    for view in views:
        column = frame_column(frame_times, view.time)
        if column is None:
            continue
        free = next((slot for slot in slots if slot[column] is None), None)
        if free is None:
            free = [None] * len(frame_times)
            slots.append(free)
        free[column] = view
    return [Track(f'{split} c{j}', split, slot) for j, slot in enumerate(slots)]


def track_features(model, scene, track: Track, instance_ids: List[int], dim: int,
                   device: str) -> TrackFeatures:
    """Render the baseline once per view of the track; one masked feature per instance seen."""
    features = torch.zeros(len(instance_ids), len(track.views), dim)
    valid = torch.zeros(len(instance_ids), len(track.views), dtype=torch.bool)
    for column, view in enumerate(track.views):
        if view is None:
            continue
        ids = view.load_mask()
        seen = [row for row, k in enumerate(instance_ids) if bool((ids == k).any())]
        if not seen:
            continue
        rendered = model.render_features(scene.at(view.time, device), view.camera, view.time)
        for row in seen:
            features[row, column] = model.masked_feature(rendered, ids == instance_ids[row]).cpu()
            valid[row, column] = True
    return TrackFeatures(features, valid)


def query_vectors(bench, supervision, encoder, layer) -> Tuple[List, Dict[str, Tensor]]:
    """Return the time-sensitive expressions and their state features [E, D] per wording."""
    from st4r_ros.supervision.format import TIME_SENSITIVE
    from st4r_ros.synthetic.language import TRAINING_STATES

    queries = [e for e in bench.expressions if e.kind == TIME_SENSITIVE]
    names = {inst.id: inst.name for inst in supervision.instances}
    captions = [f"the {names[e.instance_id]} {TRAINING_STATES[e.metadata['event']][0]}"
                for e in queries]
    return queries, {wording: layer.state_of(layer.encode_queries(encoder, texts)).cpu()
                     for wording, texts in (('held-out', [e.text for e in queries]),
                                            ('caption', captions))}


def score(active: Tensor, truth: Tensor, seen: Tensor) -> Dict[str, float]:
    """Acc and vIoU of active frames [T] against truth [T], IoU 1 where the instance is seen."""
    from st4r_ros.evaluation.temporal import frame_accuracy, video_iou

    return {'acc': frame_accuracy(active, truth),
            'viou': video_iou(active, truth, seen.float()),
            'never': float(not bool(active.any()))}


def settings(layer, by_track: Dict[str, Tuple[Track, TrackFeatures]]) -> Dict[str, Dict]:
    """
    Per threshold setting: the cache's layer and, per track, the same layer on the baseline.

    The baseline's features replace the cache's in a copy of the layer, so that both answer
    through TemporalLayer.intervals with the same parameters and the same processing.
    """
    found = {}
    for threshold, params in (('calibrated', layer.params),
                              ('midpoint', replace(layer.params, level=-1.0))):
        cache = replace(layer, params=params)
        found[threshold] = {'cache': cache, **{
            name: replace(cache, states=replace(cache.states, features=feats.features,
                                                valid=feats.valid))
            for name, (_, feats) in by_track.items()}}
    return found


def evaluate_query(query, vector: Tensor, layers: Dict[str, Dict],
                   by_track: Dict[str, Tuple[Track, TrackFeatures]], frames: int) -> List[Dict]:
    """One row per (method, track, threshold) for one query's state feature [D]."""
    row = layers['calibrated']['cache'].states.row(query.instance_id)
    truth = torch.zeros(frames, dtype=torch.bool)
    truth[list(query.frames)] = True
    rows = []
    for threshold, layer in layers.items():
        cached = layer['cache'].intervals(query.instance_id, vector).active
        for name, (track, feats) in by_track.items():
            rendered = layer[name].intervals(query.instance_id, vector).active
            for method, active in (('cache', cached), ('baseline', rendered)):
                rows.append({'method': method, 'track': name, 'split': track.split,
                             'threshold': threshold,
                             **score(active, truth, feats.valid[row])})
    return rows


def feature_cosine(layer, by_track: Dict[str, Tuple[Track, TrackFeatures]]) -> Dict[str, float]:
    """
    Mean cos(baseline feature, the layer's s_{k,t}) over the instances and frames seen, per split.

    'raw': the features as they are; 'centred': each minus its instance's mean over the frames
    seen in the track, the part that changes with time (object words dominate the raw one).
    """
    values: Dict[str, List[Tensor]] = {}
    for track, feats in by_track.values():
        seen = feats.valid & layer.states.valid  # [K, T]
        target = layer.states.features
        values.setdefault(f'{track.split}/raw', []).append(
            (feats.features * target).sum(dim=-1)[seen])
        values.setdefault(f'{track.split}/centred', []).append(F.cosine_similarity(
            centred(feats.features, seen), centred(target, seen), dim=-1)[seen])
    return {key: float(torch.cat(parts).mean()) for key, parts in values.items()}


def centred(features: Tensor, seen: Tensor) -> Tensor:
    """Return features [K, T, D] minus each instance's mean over its seen frames [K, T]."""
    weights = seen.float()[..., None]
    counts = weights.sum(dim=1, keepdim=True).clamp_min(1)
    return features - (features * weights).sum(dim=1, keepdim=True) / counts


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Mean over queries (each over its split's tracks) per method/split/wording/threshold."""
    groups: Dict[str, List[Dict]] = {}
    for row in rows:
        key = f"{row['method']}/{row['split']}/{row['wording']}/{row['threshold']}"
        groups.setdefault(key, []).append(row)
    return {key: {metric: sum(r[metric] for r in group) / len(group)
                  for metric in ('acc', 'viou', 'never')} for key, group in groups.items()}


def run_seed(root: Path, seed: int, steps: int, device: str, encoder,
             views_per_frame: int = 0, scene_config=None,
             baseline: Optional[Dict] = None) -> Dict:
    """
    Build, train and evaluate one seed (views_per_frame 0: all); a JSON-able report.

    ``scene_config``: the SyntheticConfig of a scene still to write (None: the default size);
    ``baseline``: BaselineConfig fields besides steps and device.
    """
    from st4r_ros.baselines import BaselineConfig, train_rendered_state
    from st4r_ros.scene.bundle import load_bundle
    from st4r_ros.supervision.format import load_benchmark, load_supervision
    from st4r_ros.temporal import build_temporal_layer

    started = time.perf_counter()
    prepare(root, seed, scene_config)
    prepared = time.perf_counter()
    scene = load_bundle(root / 'scene')
    supervision = load_supervision(root / 'supervision')
    bench = load_benchmark(root / 'bench.json')
    layer = build_temporal_layer(supervision, encoder)
    times = layer.cache.frame_times
    training = tracks(supervision.views, 'train', times)[:views_per_frame or None]
    supervision = replace(supervision, views=[v for t in training for v in t.views if v])
    trained = train_rendered_state(scene, supervision, layer.states,
                                   BaselineConfig(steps=steps, device=device, **(baseline or {})),
                                   seed=seed)
    ids = layer.cache.instance_ids.tolist()
    by_track = {track.name: (track, track_features(trained.model, scene, track, ids,
                                                   layer.cache.dim, device))
                for track in training + tracks(bench.views, 'novel', times)}
    queries, vectors = query_vectors(bench, supervision, encoder, layer)
    layers = settings(layer, by_track)
    rows = []
    for wording, embedded in vectors.items():
        for query, vector in zip(queries, embedded):
            for row in evaluate_query(query, vector, layers, by_track, len(times)):
                rows.append({'expression': query.id, 'wording': wording, **row})
    frames = len(times)
    silent = sum(1 - len(q.frames) / frames for q in queries) / len(queries)
    return {'seed': seed, 'steps': steps, 'views_per_frame': len(training),
            'queries': len(queries), 'frames': frames,
            'tracks': {name: track.split for name, (track, _) in by_track.items()},
            'summary': summarise(rows), 'feature_cosine': feature_cosine(layer, by_track),
            'acc_answering_never': silent, 'interval_params': vars(layer.params),
            'final_loss': sum(trained.history[-50:]) / len(trained.history[-50:]),
            'seconds': {'prepare': prepared - started, 'train': trained.seconds,
                        'total': time.perf_counter() - started}, 'rows': rows}


def print_report(console: Console, reports: List[Dict]) -> None:
    """Print Acc / vIoU per seed, method and split, then the feature cosines."""
    table = Table(title='time-sensitive queries, ground-truth instance: Acc / vIoU')
    for column in ('seed', 'method', 'views'):
        table.add_column(column)
    for wording in WORDINGS:
        for threshold in THRESHOLDS:
            table.add_column(f'{wording}\n{threshold}', justify='right')
    for report in reports:
        for method in METHODS:
            for split in SPLITS:
                cells = [report['summary'][f'{method}/{split}/{w}/{t}']
                         for w in WORDINGS for t in THRESHOLDS]
                table.add_row(str(report['seed']), method, split,
                              *(f"{c['acc']:.3f} / {c['viou']:.3f}" for c in cells))
        table.add_row(str(report['seed']), 'never', 'any',
                      *([f"{report['acc_answering_never']:.3f} / 0.000"] * 4))
    console.print(table)
    cosine = Table(title='baseline feature: mean cos(rendered in-mask feature, s_{k,t})')
    for column in ('seed', 'train raw', 'novel raw', 'train centred', 'novel centred',
                   'final loss', 'seconds'):
        cosine.add_column(column, justify='right')
    for report in reports:
        values = report['feature_cosine']
        cosine.add_row(str(report['seed']), *(f'{values[k]:.3f}' for k in (
            'train/raw', 'novel/raw', 'train/centred', 'novel/centred')),
            f"{report['final_loss']:.3f}", f"{report['seconds']['total']:.0f}")
    console.print(cosine)


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` replaces the sizes with tiny ones."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--steps', type=int, default=1500, help='baseline training steps')
    parser.add_argument('--device', default='cpu', help='baseline training and rendering')
    parser.add_argument('--out', default='out/temporal_baseline', help='scenes, per seed')
    parser.add_argument('--views-per-frame', type=int, default=0,
                        help='train the baseline on the first N training views of each frame '
                             '(default 0: all)')
    parser.add_argument('--json', help='write the full report here')
    parser.add_argument('--smoke', action='store_true',
                        help='one tiny scene in a temporary folder, five steps, CPU: checks the '
                             'script only')
    args = parser.parse_args()
    args.scene, args.baseline = None, {}
    if args.smoke:
        # A folder of its own: a full-size run must never pick up the tiny scenes.
        args.out = tempfile.mkdtemp(prefix='temporal_baseline_smoke_')
        atexit.register(shutil.rmtree, args.out, True)
        args.seeds, args.steps, args.device, args.scene = [0], 5, 'cpu', smoke_scene()
        args.baseline = {'min_pixels': 4}  # objects cover few pixels in the tiny views
    return args


def main() -> None:
    args = parse_args()
    from st4r_ros.text import TextEncoder

    encoder = TextEncoder.default('cpu')
    reports = [run_seed(Path(args.out) / f'seed_{seed}', seed, args.steps, args.device, encoder,
                        args.views_per_frame, args.scene, args.baseline)
               for seed in args.seeds]
    print_report(Console(width=120), reports)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({'encoder': str(encoder.name), 'device': args.device,
                                    'command': ' '.join(sys.argv), 'reports': reports},
                                   indent=1))


if __name__ == '__main__':
    main()
