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
The ament linters pass on the package's Python, each with its default configuration.

ament_flake8, ament_pep257 and ament_copyright as scripts/bootstrap.sh installs them (no
--config, no ignore lists), over the package folders: what ament_lint_auto would lint.
ament_copyright skips setup.py beside package.xml; it also checks scripts/ (the node's entry
point).
"""

from __future__ import annotations

import subprocess

from ros_tools import REPO, ros_tool

PYTHON_PATHS = ('st4r_ros', 'tests', 'benchmarks', 'launch', 'setup.py')
COPYRIGHT_PATHS = ('st4r_ros', 'tests', 'benchmarks', 'launch', 'scripts')


def _lint(tool: str, *paths: str) -> subprocess.CompletedProcess:
    """Run the ament linter ``tool`` on ``paths`` (relative to the repository)."""
    return subprocess.run([ros_tool(tool), *paths], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_ament_flake8():
    proc = _lint('ament_flake8', *PYTHON_PATHS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ament_pep257():
    proc = _lint('ament_pep257', *PYTHON_PATHS)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_ament_copyright():
    proc = _lint('ament_copyright', *COPYRIGHT_PATHS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
