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
Every script in benchmarks/ runs in its smoke mode: an API change that breaks one fails here.

Each script runs as a user runs it (``python benchmarks/X.py --smoke``, from the repository
root) in a subprocess, on the CPU, and must exit 0 and print or write what a real run reports.
bench_node.py has its own smoke test (tests/ros_live/test_bench_node_smoke.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
from typing import Callable, Dict, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / 'benchmarks'
TESTED_ELSEWHERE = {'bench_node.py'}
# A guard against a hung script only: smoke runs take seconds.
TIMEOUT_S = 600


def _ablation(out: str, tmp: Path) -> None:
    report = json.loads((tmp / 'ablation.json').read_text())
    row, = report['rows']
    assert row['variant'] == 'full' and 'training_words_miou' in row
    assert set(row['temporal']) == {'held-out', 'training'}
    assert '| full model |' in out and '1 runs' in out
    for planner in ('planner_training', 'planner_held-out'):
        assert row[planner]['pairs'] > 0 and 'request' in row[planner]['per_kind']
    assert row['unrelated']['queries'] % 40 == 0 and row['unrelated']['queries'] > 0
    assert 0.0 <= row['unrelated']['false_answers'] <= 1.0
    assert 'false answers' in out


def test_ablation_smoke_on_a_fitted_4dgaussians_scene(tmp_path):
    command = [sys.executable, 'benchmarks/ablation_referring.py', '--smoke', '--out',
               str(tmp_path), '--scene-format', '4dgaussians', '--no-planner']
    proc = subprocess.run(command, cwd=REPO, env=_environment(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    row, = json.loads((tmp_path / 'ablation.json').read_text())['rows']
    assert row['fit']['seed'] == 0 and 'psnr_novel' in row['fit']
    assert 'Fitted 4DGaussians scenes (1 seeds)' in proc.stdout
    assert 'planner_training' not in row and 'Planner requests' not in proc.stdout


def _guard_rates(out: str, tmp: Path) -> None:
    report = json.loads((tmp / 'guard.json').read_text())
    rates, = report['rows'].values()
    assert report['smoke'] and set(rates) >= {'unrelated let through', 'threshold'}
    assert all(0.0 <= v <= 1.0 for k, v in rates.items() if k.endswith(('through', 'refused')))
    assert '| mean |' in out


def _planner_words(out: str, tmp: Path) -> None:
    report = json.loads((tmp / 'planner_words.json').read_text())
    assert report['smoke'] and report['split_error'] < 1e-4
    assert set(report['outcomes']) >= {'request', 'attribute-only', 'twin'}
    assert sum(sum(c.values()) for c in report['outcomes'].values()) > 0
    assert '| request |' in out


def _query(out: str, tmp: Path) -> None:
    figures = json.loads((tmp / 'bench_query_gpu.json').read_text())
    assert figures['smoke'] and figures['n'] == 2000
    for key in ('text', 'field', 'query_where', 'query_where_guarded',
                'query_where_guarded_new_words', 'command_to_result_cloud_mask', 'mask_update'):
        assert figures[key]['iters'] == 3 and figures[key]['median_ms'] > 0, key
    assert figures['status_guarded_new_words'] == 'OK'


def _temporal_encoder(out: str, tmp: Path) -> None:
    report = json.loads((tmp / 'encoder.json').read_text())
    assert report['smoke'] and report['layers'] == 1
    assert report['bf16_vs_fp32_cosine_min'] > 0.98
    assert report['query']['repeats'] == 2 and report['captions']['count'] > 0
    assert 'skipped' in report['compiled'] and 'skipped the compiled query' in out


def _temporal_gpu(out: str, tmp: Path) -> None:
    report = json.loads(out.strip().splitlines()[-1])
    assert report['smoke'] and report['runs_match_cpu'] and report['runs'] > 0


def _torch_render(out: str, tmp: Path) -> None:
    assert 'N=500 64x48' in out and 'tile_intersections=' in out
    assert 'median ' in out and 'over 2 runs' in out


def _gpu_suite(out: str, tmp: Path) -> None:
    report = json.loads((tmp / 'gpu_suite.json').read_text())
    statuses = {name: step['status'] for name, step in report['steps'].items()}
    assert set(statuses.values()) <= {'ok', 'skipped'}, statuses
    assert statuses['render_parity'] == statuses['timings'] == 'ok'
    assert report['render_parity'] and all('image' in row for row in report['render_parity'])
    names = {row['name'] for row in report['timings'] if 'median_ms' in row}
    assert {'reference fp32', 'render 1ch 640x480', 'e2e 1ch reference fp32'} <= names
    assert 'STEPS:' in report['summary']


def _temporal_baseline(out: str, tmp: Path) -> None:
    reports = json.loads((tmp / 'baseline.json').read_text())['reports']
    assert [r['seed'] for r in reports] == [0] and reports[0]['steps'] == 5
    assert {'cache/novel/held-out/calibrated', 'baseline/train/caption/midpoint'} <= set(
        reports[0]['summary'])
    assert 'time-sensitive queries' in out


def _temporal_probe(out: str, tmp: Path) -> None:
    assert 'routing accuracy' in out and 'state cache names the right instance' in out
    assert 'answering "never" to every query' in out


Check = Callable[[str, Path], None]
# Script -> (options after --smoke, '{tmp}' standing for the test's folder; what it must report).
CASES: Dict[str, Tuple[List[str], Check]] = {
    'ablation_referring.py': (['--out', '{tmp}'], _ablation),
    'bench_query_gpu.py': (['--out', '{tmp}'], _query),
    'bench_temporal_encoder_gpu.py': (['--out', '{tmp}/encoder.json'], _temporal_encoder),
    'bench_temporal_gpu.py': ([], _temporal_gpu),
    'bench_torch_render.py': ([], _torch_render),
    'gpu_suite.py': (['--out', '{tmp}'], _gpu_suite),
    'guard_rates.py': (['--json', '{tmp}/guard.json'], _guard_rates),
    'planner_words.py': (['--json', '{tmp}/planner_words.json'], _planner_words),
    'temporal_baseline.py': (['--json', '{tmp}/baseline.json'], _temporal_baseline),
    'temporal_probe.py': ([], _temporal_probe),
}


def _environment() -> Dict[str, str]:
    """Return the subprocess environment: the repository importable, one thread per process."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    # Tiny tensors gain nothing from more threads, and on a busy CPU they wait on each other.
    env['OMP_NUM_THREADS'] = '1'
    return env


def test_every_script_has_a_smoke_case():
    scripts = {path.name for path in BENCHMARKS.glob('*.py')}
    assert scripts - TESTED_ELSEWHERE == set(CASES)


@pytest.mark.parametrize('script', sorted(CASES))
def test_smoke_mode_runs(script, tmp_path):
    options, check = CASES[script]
    command = [sys.executable, f'benchmarks/{script}', '--smoke',
               *(option.replace('{tmp}', str(tmp_path)) for option in options)]
    proc = subprocess.run(command, cwd=REPO, env=_environment(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    check(proc.stdout, tmp_path)
