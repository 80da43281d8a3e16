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
The vocabulary guard alone, over many seeds: what it lets through and what it refuses.

No field is trained: each seed's vocabulary is built as training builds it (the captions, state
captions and their planner-style variants; field/vocabulary.py, field/augment.py) and judges
the seed's requests about nothing in the scene (``synthetic.planner.unrelated_requests``) and
the expressions of its planner sets and benchmark. The share of unrelated requests the guard
lets through bounds the false answers from above (the field's threshold may still refuse some);
the share of the other sets it refuses is what it costs in answers for things that are there.

Usage:
    python benchmarks/guard_rates.py [--seeds 0 1 ...] [--out out/ablation_referring]
        [--json OUT.json]
    python benchmarks/guard_rates.py --smoke [--json OUT.json]

The scenes are the ablation's (benchmarks/ablation_referring.py's ``prepare``, under
OUT/seed_S, made when missing); ``--smoke`` uses its tiny scene in a temporary folder.
"""

from __future__ import annotations

import argparse
import atexit
import json
from pathlib import Path
import shutil
import tempfile
from typing import Dict

SETS = {'planner, training words': 'planner.json', 'planner, held-out words':
        'planner_held_out.json', 'benchmark (family B)': 'bench.json'}


def seed_rates(root: Path, seed: int, encoder) -> Dict[str, float]:
    """Judge one seed's sets with its vocabulary; shares let through / refused."""
    from st4r_ros.field.augment import supervision_variants
    from st4r_ros.field.vocabulary import build_vocabulary, VocabularyGuard
    from st4r_ros.supervision.format import load_benchmark, load_supervision
    from st4r_ros.synthetic.planner import unrelated_requests

    supervision = load_supervision(root / 'supervision')
    texts = supervision.caption_texts() + supervision_variants(supervision)
    guard = VocabularyGuard(build_vocabulary(texts, encoder), encoder)
    unrelated = [f.about_scene for f in guard.judge(unrelated_requests(seed))]
    rates = {'unrelated let through': sum(unrelated) / len(unrelated),
             'threshold': guard.vocabulary.threshold, 'words': len(guard.vocabulary.words)}
    for name, file in SETS.items():
        said = [e.text for e in load_benchmark(root / file).expressions]
        judged = guard.judge(said)
        rates[f'{name} refused'] = sum(not f.about_scene for f in judged) / len(judged)
    return rates


def table(rows: Dict[int, Dict[str, float]]) -> str:
    """Markdown: a line per seed and the mean."""
    keys = [k for k in next(iter(rows.values())) if k not in ('threshold', 'words')]
    lines = ['| seed | ' + ' | '.join(keys) + ' | threshold |', '|---' * (len(keys) + 2) + '|']
    for seed, rates in rows.items():
        lines.append(f'| {seed} | ' + ' | '.join(f'{rates[k]:.3f}' for k in keys)
                     + f" | {rates['threshold']:.3f} |")
    means = [sum(r[k] for r in rows.values()) / len(rows) for k in keys]
    lines.append('| mean | ' + ' | '.join(f'{m:.3f}' for m in means) + ' | |')
    return '\n'.join(lines)


def main() -> None:
    from ablation_referring import DEFAULT_OUT, prepare, smoke_scene
    from st4r_ros.text import TextEncoder

    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=list(range(10)))
    parser.add_argument('--out', default=DEFAULT_OUT, help='where the seeds\' scenes are')
    parser.add_argument('--json', help='write the rates here too')
    parser.add_argument('--smoke', action='store_true')
    args = parser.parse_args()
    config = None
    if args.smoke:
        args.out, args.seeds, config = tempfile.mkdtemp(prefix='guard_rates_'), [0], smoke_scene()
        atexit.register(shutil.rmtree, args.out, True)
    encoder = TextEncoder.default()
    rows: Dict[int, Dict[str, float]] = {}
    for seed in args.seeds:
        root = Path(args.out) / f'seed_{seed}'
        prepare(root, seed, config)
        rows[seed] = seed_rates(root, seed, encoder)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({'smoke': args.smoke, 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
