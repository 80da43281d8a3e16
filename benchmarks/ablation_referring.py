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
Ablation of the referring field on synthetic scenes (time-agnostic mIoU, novel views).

For each seed: generate the synthetic scene (st4r_ros.synthetic.scene, default size), build its
training captions and held-out benchmark (st4r_ros.synthetic.language: another
template family, novel views), then train and evaluate every variant:

    full            the ST4R-Splat field: mu_i(t) in the cross-modal attention, L_ref + L_inst
                    + L_con, captions and their planner-style variants (field/augment.py)
    captions only   the same trained on the captions alone, as the paper does
    w/o attention   e_i' = F(e_i): no positions, no attention
    w/o L_con       contrastive term off
    w/o L_inst      compactness and distinctiveness off
    static (ReferSplat-style)   same field, positions frozen at the time-averaged means

Columns: mIoU over (expression, view) pairs (evaluation/referring.py), per kind, "twins" (the
relation-only expressions about the two identical objects: only position tells them apart),
"time-dependent" (expressions that hold in only part of the frames: relations that change as
an object moves), "seen words" and "held-out words" (expressions without and with a synonym that
no training caption uses: synthetic.language.unseen_words), the mIoU on the training views
and captions (fit, not generalisation), and "training words": the mIoU of the same field on
the same expressions with the training captions' look words in place of the held-out synonyms
(``write_synthetic_benchmark(vocabulary='training')``, bench_training_words.json): the gap to
mIoU is what the text encoder's vocabulary costs; the printed tables add a third benchmark
with training's relation phrases and generic nouns too (``vocabulary='training-all'``), where
only family B's sentence shapes are left. A last table scores the planner requests (family C,
synthetic/planner.py: planner.json per kind, planner_held_out.json) and the false answers on
the seed's requests about nothing in the scene (``unrelated_requests``), with the vocabulary
guard (field/vocabulary.py) and without, beside bench.json's mIoU without it.

Usage:
    python benchmarks/ablation_referring.py [--seeds 0 1] [--steps 1500] [--jobs 2]
        [--out out/ablation_referring] [--variants full no_attention ...] [--temporal]
        [--scene-format bundle|4dgaussians [--fit-steps COARSE FINE]] [--no-planner]
    python benchmarks/ablation_referring.py --smoke [--out DIR] [--scene-format 4dgaussians]

With ``--scene-format 4dgaussians`` every seed's scene is first fitted as the 4DGaussians
trainer fits one (synthetic/fourdgs_fit.py; as many fits at once as ``--jobs``) and the layers
are trained and scored on that scene: a learned canonical space, no instance ids, the same
ground truth and benchmarks. ``--no-planner`` leaves the planner sets and the unrelated
requests out (they measure language, not the scene: a scene-format run can spare their time).

Writes OUT/ablation.md and OUT/ablation.json; the scenes and layers stay in OUT/seed_S/.

``--smoke`` checks the script: seed 0, a tiny scene (four frames, small 40x30 views) in a new
temporary folder removed at exit, three training steps of the full model only (unless
``--variants``; every variant's training config is still built), ``--temporal`` on, one
process and thread, CPU; the results go to ``--out`` when given, else into that temporary
folder (they are printed either way).
"""

from __future__ import annotations

import argparse
import atexit
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
import json
import math
import multiprocessing
import os
from pathlib import Path
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional

# The benchmark in the training captions' look words, and in their look and relation words
# (prepare), beside bench.json: row key -> file.
TRAINING_WORDS_BENCH = 'bench_training_words.json'
VOCABULARY_BENCHES = {'training_words': ('training', TRAINING_WORDS_BENCH),
                      'all_training_words': ('training-all', 'bench_training_all_words.json')}
VARIANTS = {
    'full': 'full model',
    'captions_only': 'full model, captions only (no planner variants: the paper)',
    'no_attention': 'w/o cross-modal attention',
    'no_con': 'w/o L_con',
    'no_inst': 'w/o L_inst',
    'static': 'static positions (ReferSplat-style)',
    'word_dropout': 'full model + word dropout 0.15',
    'word_weights': 'full model + learned word weights',
}
DEFAULT_OUT = 'out/ablation_referring'
# Each variant trained adds as much to a smoke run as its scene: one runs the code paths.
SMOKE_VARIANTS = ['full']


def variant_config(name: str, steps: int, device: str = 'cpu'):
    from st4r_ros.field.train import TrainConfig

    config = TrainConfig(steps=steps, device=device)
    if name == 'no_attention':
        return replace(config, field=replace(config.field, attention=False))
    if name == 'static':
        return replace(config, field=replace(config.field, static=True))
    if name == 'no_con':
        return replace(config, loss=replace(config.loss, con=0.0))
    if name == 'no_inst':
        return replace(config, loss=replace(config.loss, comp=0.0, dist=0.0))
    if name == 'word_dropout':
        return replace(config, word_dropout=0.15)
    if name == 'word_weights':
        return replace(config, field=replace(config.field, word_weights=True))
    if name == 'captions_only':
        return replace(config, augment_rate=0.0)
    return config


def fit_scene(root: str, seed: int, config, coarse: int, fine: int, device: str,
              threads: int) -> str:
    """Fit root's synthetic scene as the 4DGaussians trainer would (once); its folder name."""
    import torch
    from st4r_ros.synthetic.fourdgs_fit import FitConfig, FOURDGS_DIR, write_fitted_scene
    from st4r_ros.synthetic.scene import generate_synthetic

    torch.set_num_threads(threads)
    if not (Path(root) / FOURDGS_DIR / 'cfg_args').is_file():
        fit = replace(FitConfig(), coarse_steps=coarse, fine_steps=fine, device=device)
        write_fitted_scene(root, generate_synthetic(seed, config), fit, seed, progress=False)
    return FOURDGS_DIR


def prepare(root: Path, seed: int, config=None) -> None:
    """Write the synthetic scene (SyntheticConfig config), task and benchmarks under root."""
    from st4r_ros.synthetic.language import write_synthetic_benchmark
    from st4r_ros.synthetic.task import build_synthetic_task
    from st4r_ros.synthetic.scene import write_synthetic

    if not (root / 'bench.json').is_file():
        write_synthetic(root, seed, config)
        build_synthetic_task(root, seed)
    for vocabulary, file in VOCABULARY_BENCHES.values():
        if not (root / file).is_file():
            write_synthetic_benchmark(root, root / file, seed, vocabulary=vocabulary)


def subsets(root: Path, expressions: List) -> Dict[str, set]:
    """
    Ids of subsets of the time-agnostic expressions (the mIoU's) of root's benchmark.

    'twins', 'time-dependent' (holding at some frames only), 'seen words', 'held-out words', and
    the time-dependent ones by the moving object's part: 'moving target' (it is the object
    meant) and 'moving anchor' (it is what the object meant is placed against).
    """
    from st4r_ros.supervision.format import TIME_SENSITIVE
    from st4r_ros.synthetic.language import unseen_words

    objects = json.loads((root / 'objects.json').read_text())
    twins = {o['id'] for o in objects['objects'] if o['look_alikes']}
    movers = {o['id'] for o in objects['objects'] if o['role'] == 'mover'}
    frames = objects['num_frames']
    agnostic = [e for e in expressions if e.kind != TIME_SENSITIVE]
    dependent = [e for e in agnostic if e.frames is not None and len(e.frames) < frames]
    return {
        'twins': {e.id for e in agnostic if e.instance_id in twins and e.kind == 'relation-only'},
        'time-dependent': {e.id for e in dependent},
        'moving target': {e.id for e in dependent if e.instance_id in movers},
        'moving anchor': {e.id for e in dependent if e.instance_id not in movers
                          and movers & set(e.metadata.get('anchors', []))},
        'seen words': {e.id for e in agnostic if not unseen_words(e.text)},
        'held-out words': {e.id for e in agnostic if unseen_words(e.text)},
    }


def relations(expressions: List) -> Dict[str, set]:
    """Ids of the time-agnostic expressions by the relation they use ('none': no relation)."""
    from st4r_ros.supervision.format import TIME_SENSITIVE

    grouped: Dict[str, set] = {}
    for e in expressions:
        if e.kind != TIME_SENSITIVE:
            grouped.setdefault(e.metadata.get('relation') or 'none', set()).add(e.id)
    return grouped


def smoke_scene():
    """Return the smallest scene the synthetic language still describes (every role)."""
    from st4r_ros.synthetic.scene import SyntheticConfig

    return SyntheticConfig(num_frames=4, gaussians_per_object=60, table_gaussians=50,
                           train_cameras_per_frame=1, novel_cameras_per_frame=1, width=40,
                           height=30)


def run_variant(root: str, seed: int, name: str, steps: int, threads: int,
                device: str = 'cpu', text_model: Optional[str] = None,
                temporal: bool = False, train: Optional[Dict] = None,
                scene_dir: str = 'scene', planner: bool = True) -> Dict:
    """
    Train one variant on one scene and evaluate it; a JSON-able row.

    With ``temporal``, the time-sensitive queries of both benchmarks too (routing, Acc, vIoU
    on novel and training views, located share: evaluation/temporal.py), under 'temporal'.
    ``train``: TrainConfig fields that replace the variant's. ``scene_dir``: the scene under
    ``root`` the layers are trained on ('scene', the keyframed bundle, or the fitted
    4DGaussians folder, whose fit report the row then carries under 'fit'). ``planner``: also
    the planner sets and the unrelated requests (``_planner_scores``).
    """
    import torch

    torch.set_num_threads(threads)
    from st4r_ros.engine import QueryEngine
    from st4r_ros.evaluation.referring import evaluate_referring, training_benchmark
    from st4r_ros.scene.loading import load_scene
    from st4r_ros.supervision.format import load_benchmark, load_supervision
    from st4r_ros.temporal.layer import load_temporal_layer
    from st4r_ros.text import TextEncoder
    from st4r_ros.training import train_layers

    folder = Path(root)
    scene = load_scene(folder / scene_dir)
    supervision = load_supervision(folder / 'supervision')
    encoder = TextEncoder(text_model, device) if text_model else TextEncoder.default(device)
    started = time.perf_counter()
    # Both layers, as `st4r train` makes them: --temporal scores the temporal one.
    config = replace(variant_config(name, steps, device), **(train or {}))
    result = train_layers(scene, supervision, config, folder / 'layers' / name, progress=False,
                          seed=seed, text_encoder=encoder)
    train_seconds = time.perf_counter() - started
    bench = load_benchmark(folder / 'bench.json')
    # The answers scored are the engine's, with both layers, as the node gives them.
    layer = load_temporal_layer(folder / 'layers' / name, result.field.embeddings.device)

    def engine(threshold: float) -> QueryEngine:
        return QueryEngine(scene, result.field, encoder, threshold,
                           result.field.embeddings.device, scene.info().duration_s, layer,
                           vocabulary=result.vocabulary)

    gated = engine(result.threshold)
    report = evaluate_referring(gated, bench)
    ungated = evaluate_referring(engine(0.0), bench)
    fit = evaluate_referring(engine(0.0), training_benchmark(supervision))
    row = {'seed': seed, 'variant': name, 'miou_without_no_target': ungated.miou,
           'pairs': report.pairs, 'train_view_miou': fit.miou, 'threshold': result.threshold,
           'train_seconds': train_seconds, 'steps': steps,
           # A fitted scene keeps the bundle's Gaussians in order (no densification): the
           # bundle's ids are each fitted Gaussian's object of origin.
           'instance_agreement': result.assignment.agreement(
               load_scene(folder / 'scene').at(0.0).instance_ids),
           'per_expression': report.per_expression,
           **_scores(report, folder, bench.expressions)}
    for key, (_, file) in VOCABULARY_BENCHES.items():  # the same ids in every benchmark
        in_words = evaluate_referring(gated, load_benchmark(folder / file))
        row[key] = _scores(in_words, folder, bench.expressions)
        row[f'{key}_miou'] = in_words.miou
    if planner:
        row.update(_planner_scores(folder, seed, gated, result.vocabulary, bench))
    if scene_dir != 'scene':
        from st4r_ros.synthetic.fourdgs_fit import FIT_REPORT

        row['fit'] = json.loads((folder / FIT_REPORT).read_text())
    if temporal:
        row['temporal'] = _temporal_scores(folder, gated, supervision)
    return row


def _planner_scores(folder: Path, seed: int, engine, vocabulary, bench) -> Dict:
    """
    Score the planner sets (both vocabularies) per kind, and the no-target guard's errors.

    False answers: the seed's unrelated requests at every benchmark time, answered OK, with the
    vocabulary guard and without; the benchmark's mIoU without the guard beside.
    """
    from st4r_ros.evaluation.referring import evaluate_referring, false_answer_rate
    from st4r_ros.supervision.format import load_benchmark
    from st4r_ros.synthetic.planner import PLANNER_FILES, unrelated_requests

    scores: Dict = {}
    for words, file in PLANNER_FILES.items():
        report = evaluate_referring(engine, load_benchmark(folder / file))
        scores[f'planner_{words}'] = {'miou': report.miou, 'per_kind': report.per_kind,
                                      'no_target_pairs': report.no_target_pairs,
                                      'pairs': report.pairs,
                                      'per_expression': report.per_expression}
    times = sorted({view.time for view in bench.views})
    requests = unrelated_requests(seed)
    scores['unrelated'] = false_answer_rate(engine, requests, times)
    guard, engine.guard = engine.guard, None
    try:
        scores['unrelated_without_guard'] = false_answer_rate(engine, requests, times)
        scores['miou_without_guard'] = evaluate_referring(engine, bench).miou
    finally:
        engine.guard = guard
    scores['vocabulary'] = {'words': len(vocabulary.words), 'threshold': vocabulary.threshold}
    return scores


def _temporal_scores(folder: Path, engine, supervision) -> Dict:
    """Score the when branch on both benchmarks; per-query rows left out."""
    from st4r_ros.evaluation.temporal import evaluate_temporal
    from st4r_ros.supervision.format import load_benchmark

    scores = {}
    for words, bench in (('held-out', 'bench.json'), ('training', TRAINING_WORDS_BENCH)):
        report = evaluate_temporal(engine, load_benchmark(folder / bench), supervision.views)
        scores[words] = {k: v for k, v in report.to_json().items() if k != 'per_query'}
    return scores


def _scores(report, folder: Path, expressions: List) -> Dict:
    """mIoU, per kind, per subset and per relation of a referring report on root's ids."""
    by_id = {r['id']: r for r in report.per_expression}
    found = {'miou': report.miou, 'per_kind': report.per_kind,
             'no_target_pairs': report.no_target_pairs}
    for subset, ids in subsets(folder, expressions).items():
        found[subset] = _pair_weighted([by_id[i] for i in ids])
    found['per_relation'] = {r: _pair_weighted([by_id[i] for i in ids])
                             for r, ids in relations(expressions).items()}
    return found


def _pair_weighted(rows: List[Dict]) -> float:
    pairs = sum(r['views'] for r in rows)
    if not pairs:
        return float('nan')
    return sum(r['miou'] * r['views'] for r in rows if r['views']) / pairs


def table(rows: List[Dict]) -> str:
    """Markdown: one line per variant, means over seeds."""
    kinds = sorted({k for r in rows for k in r['per_kind']})
    subsets = ['twins', 'time-dependent', 'moving target', 'moving anchor', 'seen words',
               'held-out words']
    columns = ['mIoU', *kinds, *subsets, 'training words', 'train views', 'no-target pairs',
               'train s']
    lines = ['| variant | ' + ' | '.join(columns) + ' |',
             '|---' * (len(columns) + 1) + '|']
    for name in VARIANTS:
        mine = [r for r in rows if r['variant'] == name]
        if not mine:
            continue
        values = [_mean([r['miou'] for r in mine])]
        values += [_mean([r['per_kind'].get(k, float('nan')) for r in mine]) for k in kinds]
        values += [_mean([r[k] for r in mine])
                   for k in (*subsets, 'training_words_miou', 'train_view_miou')]
        cells = [f'{v:.3f}' for v in values]
        cells += [f"{_mean([r['no_target_pairs'] for r in mine]):.0f}",
                  f"{_mean([r['train_seconds'] for r in mine]):.0f}"]
        lines.append(f'| {VARIANTS[name]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def relation_table(rows: List[Dict]) -> str:
    """
    Markdown: a line per variant, mIoU per relation in the three vocabularies.

    Each cell: held-out words / training look words / also training's relation words.
    """
    names = sorted({r for row in rows for r in row['per_relation']})
    lines = ['| variant | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for name in VARIANTS:
        mine = [r for r in rows if r['variant'] == name]
        if mine:
            said = [[r['per_relation'] for r in mine],
                    *[[r[key]['per_relation'] for r in mine] for key in VOCABULARY_BENCHES]]
            cells = [' / '.join(f'{_mean([g.get(k, math.nan) for g in groups]):.2f}'
                                for groups in said) for k in names]
            lines.append(f'| {VARIANTS[name]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def planner_table(rows: List[Dict]) -> str:
    """
    Markdown: a line per variant, means over seeds: the planner sets and the no-target guard.

    Planner mIoU in training words per kind, in held-out words; false answers on unrelated
    requests with the vocabulary guard and without; bench.json's mIoU with and without it.
    """
    kinds = sorted({k for r in rows for k in r['planner_training']['per_kind']})
    columns = ['planner', *kinds, 'planner held-out', 'false answers', 'without guard',
               'bench mIoU', 'without guard']
    lines = ['| variant | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    for name in VARIANTS:
        mine = [r for r in rows if r['variant'] == name]
        if not mine:
            continue
        values = [_mean([r['planner_training']['miou'] for r in mine])]
        values += [_mean([r['planner_training']['per_kind'].get(k, math.nan) for r in mine])
                   for k in kinds]
        values += [_mean([r['planner_held-out']['miou'] for r in mine]),
                   _mean([r['unrelated']['false_answers'] for r in mine]),
                   _mean([r['unrelated_without_guard']['false_answers'] for r in mine]),
                   _mean([r['miou'] for r in mine]),
                   _mean([r['miou_without_guard'] for r in mine])]
        lines.append(f'| {VARIANTS[name]} | ' + ' | '.join(f'{v:.3f}' for v in values) + ' |')
    return '\n'.join(lines)


def fit_summary(fits: Dict[int, Dict]) -> str:
    """One line on the fitted 4DGaussians scenes: PSNR and the movers' canonical offsets."""
    offsets = [v for fit in fits.values() for v in fit['canonical_offsets_m'].values()]
    return (f"Fitted 4DGaussians scenes ({len(fits)} seeds): PSNR "
            f"{_mean([f['psnr_novel'] for f in fits.values()]):.2f} dB on novel views, "
            f"{_mean([f['psnr_train'] for f in fits.values()]):.2f} dB on training views; the "
            f"moving objects' canonical Gaussians lie {_mean(offsets):.3f} m (mean) from the "
            'nearest of their true positions.')


def _mean(values: List[float]) -> float:
    return sum(values) / len(values) if values else float('nan')


def _run_all(tasks: List[tuple], jobs: int, work: Callable = run_variant) -> Iterator:
    """
    Run ``work`` over tasks, in this process for one job, else in spawned workers.

    A forked worker can hang in CUDA or in gsplat's extension build that the parent started.
    """
    if jobs == 1:
        yield from map(work, *zip(*tasks))
        return
    context = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield from pool.map(work, *zip(*tasks))


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` replaces the sizes with tiny ones."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--steps', type=int, default=1500)
    parser.add_argument('--jobs', type=int, default=1, help='variants trained at once')
    parser.add_argument('--out', help=f'results, and the scenes unless --smoke (default '
                                      f'{DEFAULT_OUT})')
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS),
                        help='default: all (with --smoke: ' + ' '.join(SMOKE_VARIANTS) + ')')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (training and evaluation)')
    parser.add_argument('--text-model', help='encoder folder (default: the packaged MiniLM)')
    parser.add_argument('--temporal', action='store_true',
                        help='also score the time-sensitive queries (both vocabularies)')
    parser.add_argument('--scene-format', choices=('bundle', '4dgaussians'), default='bundle',
                        help='4dgaussians: train and score on each scene fitted as the '
                             '4DGaussians trainer fits it (synthetic/fourdgs_fit.py)')
    parser.add_argument('--fit-steps', type=int, nargs=2, default=(3000, 14000),
                        metavar=('COARSE', 'FINE'), help='with 4dgaussians: the fit stages')
    parser.add_argument('--no-planner', dest='planner', action='store_false',
                        help='leave out the planner sets and the unrelated requests')
    parser.add_argument('--smoke', action='store_true',
                        help='one tiny scene in a temporary folder, a few steps, CPU: checks '
                             'the script only')
    args = parser.parse_args()
    args.scenes, args.scene, args.train = args.out or DEFAULT_OUT, None, {}
    args.variants = args.variants or list(SMOKE_VARIANTS if args.smoke else VARIANTS)
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    if args.smoke:
        smoke(args)
    args.out = args.out or args.scenes
    return args


def smoke(args: argparse.Namespace) -> None:
    """Make args the smoke run's: tiny scene in a folder of its own, few steps, CPU."""
    # A folder of its own: a full-size run must never pick up the tiny scene.
    args.scenes = tempfile.mkdtemp(prefix='ablation_referring_smoke_')
    atexit.register(shutil.rmtree, args.scenes, True)
    args.seeds, args.steps, args.jobs, args.threads = [0], 3, 1, 1
    args.device, args.temporal, args.scene = 'cpu', True, smoke_scene()
    args.fit_steps = (3, 3)
    args.train = {'min_pixels': 4}  # objects cover few pixels in the tiny scene's views
    for name in VARIANTS:  # the variants left untrained still have to be valid configs
        replace(variant_config(name, args.steps), **args.train)


def main() -> None:
    args = parse_args()
    out, scenes = Path(args.out), Path(args.scenes)
    started = time.perf_counter()
    for seed in args.seeds:
        prepare(scenes / f'seed_{seed}', seed, args.scene)
    scene_dir = 'scene'
    if args.scene_format == '4dgaussians':  # the fits, as many at once as trainings
        fits = [(str(scenes / f'seed_{seed}'), seed, args.scene, *args.fit_steps, args.device,
                 args.threads) for seed in args.seeds]
        scene_dir = list(_run_all(fits, args.jobs, fit_scene))[0]
    tasks = [(str(scenes / f'seed_{seed}'), seed, name, args.steps, args.threads, args.device,
              args.text_model, args.temporal, args.train, scene_dir, args.planner)
             for seed in args.seeds for name in args.variants]
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for row in _run_all(tasks, args.jobs):
        rows.append(row)
        planner = (f"planner {row['planner_training']['miou']:.3f} / held-out "
                   f"{row['planner_held-out']['miou']:.3f}, false answers "
                   f"{row['unrelated']['false_answers']:.3f} (without guard "
                   f"{row['unrelated_without_guard']['false_answers']:.3f}), "
                   if args.planner else '')
        print(f"seed {row['seed']} {row['variant']}: mIoU {row['miou']:.3f} (training words "
              f"{row['training_words_miou']:.3f}, also training's relation words "
              f"{row['all_training_words_miou']:.3f}), {planner}"
              f"{row['train_seconds']:.0f} s training", flush=True)
        for words, t in row.get('temporal', {}).items():
            print(f"  when, {words} words: routing {t['routing_accuracy']:.3f}, Acc "
                  f"{t['acc']:.3f} (never {t['never_acc']:.3f}), vIoU {t['viou']}, located "
                  f"{t['located']:.3f}", flush=True)
        seconds = time.perf_counter() - started
        (out / 'ablation.json').write_text(json.dumps(  # after every run: partial results stay
            {'seeds': args.seeds, 'steps': args.steps, 'minutes': seconds / 60, 'rows': rows},
            indent=1))
    # The same fields on the benchmark in training words: per kind, what is left besides words.
    in_words = [{**row, **row['training_words']} for row in rows]
    in_all_words = [{**row, **row['all_training_words']} for row in rows]
    markdown = (table(rows) + "\n\nIn the training captions' look words "
                f'({TRAINING_WORDS_BENCH}):\n\n' + table(in_words)
                + "\n\nIn the training captions' look, relation and generic words "
                f"({VOCABULARY_BENCHES['all_training_words'][1]}):\n\n" + table(in_all_words))
    markdown += ('\n\nPer relation (time-agnostic expressions; held-out words / training look '
                 "words / also training's relation words):\n\n" + relation_table(rows))
    if args.planner:
        markdown += ('\n\nPlanner requests (planner.json per kind, planner_held_out.json) and '
                     'requests about nothing in the scene (share answered OK):\n\n'
                     + planner_table(rows))
    fits = {row['seed']: row['fit'] for row in rows if 'fit' in row}
    if fits:
        markdown += '\n\n' + fit_summary(fits)
    print(markdown)
    print(f'\n{len(rows)} runs, {seconds / 60:.1f} min')
    (out / 'ablation.md').write_text(markdown + '\n')


if __name__ == '__main__':
    main()
