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
The ROS 2 tools the interface and package tests run, found outside the virtual environment.

rosidl (translate + parser), catkin_pkg and the ament linters come from Debian/Ubuntu packages in
the system python3 (scripts/bootstrap.sh installs them) or from a sourced ROS 2 install. The venv
cannot import them, so the tests run them in a subprocess of an interpreter that can. When they are
missing the tests fail (CI always runs bootstrap first), they never skip.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]

# The same list as in scripts/bootstrap.sh.
DEBIAN_PACKAGES = (
    'python3-ament-flake8 python3-ament-pep257 python3-ament-copyright python3-ament-xmllint '
    'python3-rosidl rosidl-tools python3-catkin-pkg python3-empy python3-lark'
)
INSTALL_HINT = (
    'run scripts/bootstrap.sh as root (it apt-get installs them), or `apt-get install -y '
    f'--no-install-recommends {DEBIAN_PACKAGES}`, or source a ROS 2 setup.bash'
)
_MODULES = ('rosidl_cli.cli', 'rosidl_adapter', 'rosidl_parser.parser', 'catkin_pkg.package')


@functools.cache
def ros_python() -> str:
    """Find an interpreter that imports rosidl (cli, adapter, parser) and catkin_pkg; else fail."""
    candidates = [sys.executable, '/usr/bin/python3', shutil.which('python3')]
    check = 'import ' + ', '.join(_MODULES)
    for python in dict.fromkeys(c for c in candidates if c):
        try:
            if subprocess.run([python, '-c', check], capture_output=True).returncode == 0:
                return python
        except OSError:  # no such interpreter here
            continue
    pytest.fail(
        f"no Python interpreter here imports {', '.join(_MODULES)} (tried "
        f"{', '.join(c for c in candidates if c)}): the ROS 2 interface tools are missing; "
        f'{INSTALL_HINT}',
        pytrace=False,
    )


def ros_tool(name: str) -> str:
    """Path of a ROS 2 command-line tool (ament_xmllint, ...); fail if it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f'`{name}` is not on PATH; {INSTALL_HINT}', pytrace=False)
    return path


def run_ros_python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `code` with ros_python(); `args` land in sys.argv[1:]."""
    return subprocess.run(
        [ros_python(), '-c', code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def run_ros_python_json(code: str, *args: str, cwd: Path = REPO):
    """Run `code`, which prints one JSON document, and return it; else fail with its stderr."""
    proc = run_ros_python(code, *args, cwd=cwd)
    if proc.returncode != 0:
        pytest.fail(f'{ros_python()} failed (exit {proc.returncode}):\n{proc.stderr}',
                    pytrace=False)
    return json.loads(proc.stdout)


def rosidl_translate(out_dir: Path, files: list[Path], package: str = 'st4r_ros',
                     root: Path = REPO) -> subprocess.CompletedProcess:
    """`rosidl translate --to idl` of .msg/.srv `files` (under `root`) into `out_dir`."""
    code = 'import sys; from rosidl_cli.cli import main; sys.exit(main())'
    interface_args = [f'{root}:{f.relative_to(root).as_posix()}' for f in files]
    return run_ros_python(
        code, 'translate', '--to', 'idl', '--output-path', str(out_dir), package, *interface_args
    )
