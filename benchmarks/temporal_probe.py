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
Probe the temporal layer on a synthetic scene with the ground-truth instance (no field).

Builds the scene and its captions (seed S) under OUT, the temporal layer from the state
captions with the default encoder, then prints routing accuracy over every benchmark expression
(and each misrouted one with its probability), how often the state cache names the right
instance of a time-sensitive query (``TemporalLayer.locate``) and how many of a fixed list of
unrelated sentences it names an instance for (they should get none), and, for each
time-sensitive query, frame accuracy (Acc over all frames) of its active frames on the true
instance, for a few interval levels and smoothing windows.

With ``--vocabulary training`` the benchmark's expressions are said in the training captions'
look words (``write_synthetic_benchmark(vocabulary='training')``): what is left without the
encoder's missing vocabulary.

Usage:
    PYTHONPATH=. python benchmarks/temporal_probe.py [--seed 0] [--out /tmp/temporal_probe]
        [--vocabulary held-out|training]
    PYTHONPATH=. python benchmarks/temporal_probe.py --smoke

``--smoke`` checks the script: a tiny scene (four frames, small 40x30 views) written into a new
temporary folder, removed at exit, in place of ``--out``; the rest runs as usual.
"""

import argparse
import atexit
import dataclasses
from pathlib import Path
import shutil
import tempfile

from st4r_ros.supervision.format import load_benchmark, load_supervision, TIME_SENSITIVE
from st4r_ros.synthetic.language import BENCHMARK_VOCABULARIES, write_synthetic_benchmark
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.synthetic.task import build_synthetic_task
from st4r_ros.temporal import build_temporal_layer
from st4r_ros.text import TextEncoder


# Queries about nothing in a synthetic scene: the state cache should name no instance.
UNRELATED = ('asdf qwer zxcv', 'what is the weather in Paris tomorrow',
             'the giraffe while it eats leaves', 'when does the airplane land?',
             'il gatto nero sul tavolo', 'when is the fridge door open?',
             'when does the dog bark?', 'the car while it is parked',
             'when is the kettle boiling?')
# The smallest scene the synthetic language still describes: every role, a few frames.
SMOKE_SCENE = SyntheticConfig(num_frames=4, gaussians_per_object=60, table_gaussians=50,
                              train_cameras_per_frame=1, novel_cameras_per_frame=1, width=40,
                              height=30)


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` writes a tiny scene into a temporary folder."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='/tmp/temporal_probe')
    parser.add_argument('--vocabulary', choices=list(BENCHMARK_VOCABULARIES), default='held-out')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny scene in a temporary folder: checks the script only')
    args = parser.parse_args()
    args.scene = None
    if args.smoke:
        # A folder of its own: a full-size run must never pick up the tiny scene.
        args.out = tempfile.mkdtemp(prefix='temporal_probe_smoke_')
        atexit.register(shutil.rmtree, args.out, True)
        args.scene = SMOKE_SCENE
    return args


def main() -> None:
    args = parse_args()
    root = Path(args.out)
    if not (root / 'bench.json').is_file():
        write_synthetic(root, args.seed, args.scene)
        build_synthetic_task(root, args.seed)
    supervision = load_supervision(root / 'supervision')
    bench_path = root / 'bench.json'
    if args.vocabulary != 'held-out':
        bench_path = root / f'bench_{args.vocabulary}_words.json'
        write_synthetic_benchmark(root, bench_path, args.seed, args.vocabulary)
    bench = load_benchmark(bench_path)
    encoder = TextEncoder.default('cpu')
    layer = build_temporal_layer(supervision, encoder)
    print('calibration', layer.calibration, 'level', round(layer.params.level, 3))
    sensitive = [e.kind == TIME_SENSITIVE for e in bench.expressions]
    texts = [e.text for e in bench.expressions]
    said = layer.encode_queries(encoder, texts)  # every expression, encoded once
    p = layer.router.probability(said)
    right = sum((float(pi) >= 0.5) == s for pi, s in zip(p, sensitive))
    print(f'routing accuracy {right}/{len(sensitive)} = {right / len(sensitive):.3f}')
    for text, p_text, is_sensitive in zip(texts, p.tolist(), sensitive):
        if (p_text >= 0.5) != is_sensitive:
            kind = 'time-sensitive' if is_sensitive else 'time-agnostic'
            print(f'  misrouted ({kind}, p {p_text:.2f}): {text}')
    chosen = [i for i, s in enumerate(sensitive) if s]
    queries = [bench.expressions[i] for i in chosen]
    embedded, states = said.sentence[chosen], layer.state_of(said)[chosen]
    named = [layer.locate(vector) for vector in embedded]
    right = sum(n is not None and n[0] == q.instance_id for n, q in zip(named, queries))
    print(f'state cache names the right instance: {right}/{len(queries)} '
          f'(floor {layer.locate_floor:.3f})')
    unrelated = [layer.locate(v)
                 for v in layer.encode_queries(encoder, list(UNRELATED)).sentence]
    print(f'unrelated sentences given an instance: {sum(n is not None for n in unrelated)}/'
          f'{len(UNRELATED)}')
    frames = len(layer.cache.frame_times)
    for window in (1, 3):
        for level in (layer.params.level, 0.6, 0.5, 0.4, 0.0):
            params = dataclasses.replace(layer.params, window=window, level=level)
            probe = dataclasses.replace(layer, params=params)
            accuracy, never = [], 0
            for query, state in zip(queries, states):
                found = probe.intervals(query.instance_id, state)
                truth = set(query.frames)
                active = found.active.tolist()
                accuracy.append(sum(active[f] == (f in truth) for f in range(frames)) / frames)
                never += found.verdict.value == 'never'
            print(f'window {window} level {level:.3f}: Acc {sum(accuracy) / len(accuracy):.3f}, '
                  f'never {never}/{len(queries)}')
    empty = [sum(f not in set(q.frames) for f in range(frames)) / frames for q in queries]
    print(f'answering "never" to every query: Acc {sum(empty) / len(empty):.3f}')


if __name__ == '__main__':
    main()
