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
benchmarks/bench_node.py runs: its smoke mode against a node of its own, over DDS.

The script starts and stops its own st4r_node, so this module shares the domain with the other
live modules only one after another. Only that the figures exist is checked: timing belongs in
BENCHMARKS.md, never in a test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from planner import REPO

SCRIPT = REPO / 'benchmarks' / 'bench_node.py'
PATHS = ('node', 'session', 'engine')


def positive(figure) -> bool:
    return all(isinstance(figure[key], float) and math.isfinite(figure[key]) and figure[key] > 0
               for key in ('p50_ms', 'p99_ms', 'mean_ms'))


def test_smoke_run_prints_and_writes_the_figures(demo_scene, domain_id, tmp_path):
    _, scene, _, _ = demo_scene
    out = tmp_path / 'bench_node.json'
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--smoke', '--scene', str(scene), '--domain-id',
         str(domain_id), '--json', str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env=dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', COLUMNS='160'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'command -> result' in proc.stdout and 'target: the node adds' in proc.stdout

    figures = json.loads(out.read_text())
    command = figures['command']
    for path in PATHS:
        for kind in ('result', 'mask'):
            assert command[path][kind]['n'] == 5, (path, kind)
            assert positive(command[path][kind]), (path, kind, command[path][kind])
    for base in ('engine', 'session'):
        assert set(command[f'node_minus_{base}_p50_ms']) == {'result', 'mask'}
    assert isinstance(command['target']['result_met'], bool)
    moving = figures['moving']
    assert moving['node']['poses_per_s'] > 0
    assert all(moving[path]['masks_per_s'] >= 0 for path in PATHS)
    assert figures['statuses'].get('OK', 0) >= 1
    assert figures['meta']['camera'] == '320x240' and figures['meta']['smoke'] is True
