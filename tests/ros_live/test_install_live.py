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

"""The colcon install as a ROS 2 user finds it: executables, share files, the `st4r` command."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess

from ament_index_python.packages import get_package_prefix, get_package_share_directory


def test_the_install_has_the_node_the_command_and_the_share_files():
    prefix = Path(get_package_prefix('st4r_ros'))
    assert (prefix / 'lib' / 'st4r_ros' / 'st4r_node').is_file()
    share = Path(get_package_share_directory('st4r_ros'))
    for name in ('launch/st4r.launch.py', 'config/st4r.yaml', 'config/st4r.rviz',
                 'models/demo/demo.json', 'package.xml'):
        assert (share / name).is_file(), name
    st4r = shutil.which('st4r')
    assert st4r and Path(st4r).parent == prefix / 'bin', st4r


def test_the_installed_st4r_command_runs(demo_scene):
    scene = demo_scene[1]
    done = subprocess.run([shutil.which('st4r'), 'scene', 'info', str(scene), '--json'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info['format'] == 'bundle' and info['num_gaussians'] > 0
