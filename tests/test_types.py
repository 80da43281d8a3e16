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
mypy passes on st4r_ros with mypy.ini: strict at the seams, mypy's defaults elsewhere.

The package ships py.typed, so its annotations are a promise to every caller that type-checks
against them. The cache is the repository's .mypy_cache (git ignores it): a run after an edit
rechecks what changed in seconds; a cold one takes about a minute, most of it reading torch.
"""

from __future__ import annotations

import subprocess
import sys

from ros_tools import REPO


def test_mypy_passes_on_the_package():
    proc = subprocess.run(
        [sys.executable, '-m', 'mypy', '--config-file', 'mypy.ini',
         '--cache-dir', str(REPO / '.mypy_cache'), 'st4r_ros'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
