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
Why planner requests miss: the kind of miss, and each word's pull on the relevance.

For every (expression, view) pair of a benchmark file (a scene's planner.json by default) the
engine's answer, asked as a robot asks it, is one of: right (IoU >= 0.5), wrong instance (OK
on another object), no target (NO_TARGET: the vocabulary guard, the field's threshold or stray
Gaussians; the message says which) or poor mask (the right object, IoU < 0.5).

For the misses, the field's relevance is split over the words it reads (the expression's
referring part: command_text.py sets a request frame aside) exactly: m_i = sum_l c_il with
c_il = pi_l <f_i, w_l> + a_il <O V w_l, w_mean> (field/model.py: each word's share pi_l of the
dot products, 1/L unless the field learns word weights, plus the attention term, both linear
in each word's share), averaged over the Gaussians of the true target and of the rival (the
object answered, or else the best-scoring other one). A word with c(rival) - c(target) > 0
pulls the answer away; the table tallies, per kind, the words that pull most and how often.

Usage:
    python benchmarks/planner_words.py SCENE [BENCH] [--layer L] [--json OUT.json] [--top 8]
    python benchmarks/planner_words.py --smoke [--json OUT.json]

``--smoke``: the tiny synthetic scene of ablation_referring.py's smoke run, trained three steps
on the CPU in a temporary folder; checks the script and that the split adds up to m.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
import json
from pathlib import Path
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

RIGHT, WRONG_INSTANCE, NO_TARGET, POOR_MASK = 'right', 'wrong instance', 'no target', 'poor mask'
OUTCOMES = (RIGHT, WRONG_INSTANCE, NO_TARGET, POOR_MASK)
IOU_RIGHT = 0.5


def word_contributions(field, means, encoded, row: int):
    """
    Split expression ``row``'s relevance over its words: c [N, L'] with m = c.sum(1).

    L' counts the field's tokens (a leading sentence token when the field reads one).
    """
    import torch

    words = encoded.words[row:row + 1].to(means.device)
    mask = encoded.word_mask[row:row + 1].to(means.device)
    with torch.no_grad():
        out = field(means, words, mask, encoded.sentence[row:row + 1].to(means.device))
        w, share = out.words[0], out.word_weights[0]  # [L', h], [L']
        mean_word = (w * share[:, None]).sum(0)
        parts = (out.features @ w.T) * share[None, :]  # [N, L']
        if out.attention is not None:
            parts = parts + out.attention[0] * (out.values[0] @ mean_word)[None, :]
        return parts, out.relevance[0]


def token_names(encoder, text: str, field_tokens: int, sentence_token: bool) -> List[str]:
    """Name each field token by its word ('<sentence>' for a sentence token, '<pad>' after)."""
    words = [w or '?' for w in encoder.token_words(text)] if hasattr(encoder, 'token_words') \
        else []
    names = ['<sentence>'] * sentence_token + words
    return (names + ['<pad>'] * field_tokens)[:field_tokens]


def classify(answer, truth_iou: float, instance: int) -> str:
    """Return the pair's outcome (OUTCOMES) from the answer and its mask's IoU."""
    if answer.status.name == 'NO_TARGET':
        return NO_TARGET
    if answer.ok and answer.target_instance_id != instance:
        return WRONG_INSTANCE
    return RIGHT if truth_iou >= IOU_RIGHT else POOR_MASK


def analyse(scene: str, bench: str, layer: Optional[str], top: int) -> Dict:
    """Ask every pair, class each answer, split the misses' relevance over words."""
    from st4r_ros.engine import QueryEngine, QueryRequest
    from st4r_ros.evaluation.referring import iou, predicted_mask
    from st4r_ros.command_text import referring_part
    from st4r_ros.supervision.format import load_benchmark, TIME_SENSITIVE

    engine = QueryEngine.open(scene, layer, device='cpu')
    field, encoder = engine.field, engine.encoder
    assignment = field.assignment
    benchmark = load_benchmark(bench)
    counts: Dict[str, Counter] = defaultdict(Counter)
    pulls: Dict[str, Counter] = defaultdict(Counter)
    guard_misses = Counter()
    checked = 0.0
    for view in benchmark.views:
        chosen = [e for e in benchmark.expressions
                  if e.kind != TIME_SENSITIVE and e.holds_at(view)]
        if not chosen:
            continue
        answers = engine.query_batch([QueryRequest(e.text, time=view.time, camera=view.camera)
                                      for e in chosen])
        mask = view.load_mask()
        means = engine.scene.at(view.time, engine.device).means
        read = [referring_part(e.text) for e in chosen]  # what the engine's field reads
        encoded = encoder.encode(read)
        for row, (expression, answer) in enumerate(zip(chosen, answers)):
            target = mask == expression.instance_id
            if not bool(target.any()):
                continue
            outcome = classify(answer, iou(predicted_mask(answer, mask.shape), target),
                               expression.instance_id)
            counts[expression.kind][outcome] += 1
            if outcome == RIGHT:
                continue
            if outcome == NO_TARGET and 'content words' in answer.message:
                guard_misses[expression.kind] += 1
            parts, relevance = word_contributions(field, means, encoded, row)
            checked = max(checked, float((parts.sum(1) - relevance).abs().max()))
            rival = _rival(answer, relevance, assignment, expression.instance_id)
            if rival is None:
                continue
            pull = (parts[assignment == rival].mean(0)
                    - parts[assignment == expression.instance_id].mean(0))  # [L']
            names = token_names(encoder, read[row], len(pull),
                                field.config.sentence_token)
            for name, value in zip(names, pull.tolist()):
                if value > 0:
                    pulls[expression.kind][name] += value
    return {'scene': scene, 'bench': bench,
            'outcomes': {kind: dict(c) for kind, c in sorted(counts.items())},
            'guard_no_target': dict(guard_misses),
            'pulling_words': {kind: [(w, round(v, 3)) for w, v in c.most_common(top)]
                              for kind, c in sorted(pulls.items())},
            'split_error': checked}


def _rival(answer, relevance, assignment, instance: int) -> Optional[int]:
    """Return the answered other object, else the best-scoring other one (None: none)."""
    if answer.ok and answer.target_instance_id != instance:
        return int(answer.target_instance_id)
    others = [int(k) for k in assignment.unique().tolist() if k >= 0 and k != instance]
    if not others:
        return None
    return max(others, key=lambda k: float(relevance[assignment == k].max()))


def markdown(report: Dict) -> str:
    """Return the report as a table: outcomes per kind and the words that pull away."""
    lines = ['| kind | ' + ' | '.join(OUTCOMES) + ' | (by the guard) | words pulling away |',
             '|---' * (len(OUTCOMES) + 3) + '|']
    for kind, outcome in report['outcomes'].items():
        pulling = ', '.join(f'{w} {v:.1f}' for w, v in report['pulling_words'].get(kind, []))
        lines.append(f'| {kind} | ' + ' | '.join(str(outcome.get(o, 0)) for o in OUTCOMES)
                     + f" | {report['guard_no_target'].get(kind, 0)} | {pulling} |")
    return '\n'.join(lines)


def smoke_layer(folder: Path) -> Tuple[str, str]:
    """Train the smoke scene three steps on the CPU; return (scene, planner.json)."""
    from dataclasses import replace

    from ablation_referring import prepare, smoke_scene, variant_config
    from st4r_ros.scene.bundle import load_bundle
    from st4r_ros.supervision.format import load_supervision
    from st4r_ros.training import train_layers

    prepare(folder, 0, smoke_scene())
    config = replace(variant_config('full', 3), min_pixels=4)
    train_layers(load_bundle(folder / 'scene'), load_supervision(folder / 'supervision'), config,
                 folder / 'scene', progress=False)
    return str(folder / 'scene'), str(folder / 'planner.json')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('scene', nargs='?')
    parser.add_argument('bench', nargs='?', help="default: planner.json beside the scene's folder")
    parser.add_argument('--layer')
    parser.add_argument('--json', help='write the report here too')
    parser.add_argument('--top', type=int, default=8, help='words listed per kind')
    parser.add_argument('--smoke', action='store_true')
    args = parser.parse_args()
    temporary = None
    if args.smoke:
        temporary = Path(tempfile.mkdtemp(prefix='planner_words_smoke_'))
        args.scene, args.bench = smoke_layer(temporary)
    elif args.scene is None:
        parser.error('SCENE is required without --smoke')
    bench = args.bench or str(Path(args.scene).parent / 'planner.json')
    try:
        report = analyse(args.scene, bench, args.layer, args.top)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    report['smoke'] = args.smoke
    print(markdown(report))
    print(f"\nlargest |sum_l c_il - m_i| over the misses: {report['split_error']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
