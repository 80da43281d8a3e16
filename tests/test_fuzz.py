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
The fuzz suite: mutated inputs of every kind through the public loaders (tests/fuzz_targets.py).

A valid file is mutated (JSON values replaced, deleted or added; bytes of PLYs, layers and
command bags flipped and files cut;
cfg_args numbers swapped for huge, negative or foreign values; state-dict tensors given other
dtypes, layouts, shapes or no tensor at all) and read, also through `st4r render`. Passing
means every mutation either loads into a scene that deforms and renders its inputs, or is
refused with an St4rError (the CLI: exit 2 and one line; nothing written but --out). Seeded
(derandomised hypothesis), a few dozen mutations each: a quick profile for every test run.
"""

import json
import subprocess
import sys
from pathlib import Path

from fuzz_targets import run
import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize('target, examples', [('camera', 60), ('bundle', 60), ('ply', 60),
                                              ('layer', 60), ('cli', 60), ('bag', 20)])
def test_mutated_files_load_or_are_refused_with_one_error(target, examples):
    outcomes = run(target, examples=examples)
    assert sum(outcomes.values()) >= examples // 2, outcomes  # hypothesis ran the cases
    assert outcomes.get('refused', 0) > 0, outcomes  # the mutations were hostile enough


def test_network_and_tensor_mutations_stay_under_2_gb():
    # In a child process under an address-space limit: an allocation the cfg_args and
    # state-dict checks let through fails there as a MemoryError, and so fails this test.
    done = subprocess.run([sys.executable, str(HERE / 'fuzz_targets.py'), 'cfg_args',
                           'deformation', '--examples', '40'],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for target, outcomes in summary.items():
        assert sum(outcomes.values()) >= 15 and outcomes.get('refused', 0) > 0, summary
