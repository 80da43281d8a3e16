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
Fixtures of the live ROS 2 tests: a ROS domain of their own, the trained demo scene, the node.

They need ROS 2 and the colcon-built package in the environment, as `make test` provides
(scripts/ros_env.sh). Outside it they skip with the command to run, except on CI (CI=true),
where a missing ROS 2 fails them: CI must run them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
import tempfile

import pytest

try:
    import rclpy  # noqa: F401 - only whether ROS 2 is here
    from st4r_ros.msg import ReferringResult  # noqa: F401 - and the package was built
except ImportError as err:
    MISSING = f'ROS 2 or the built st4r_ros interfaces are missing ({err}): run `make test`, ' \
              'or `make ros` and `source scripts/ros_env.sh`'
    if os.environ.get('CI'):
        raise RuntimeError(MISSING) from err
    pytest.skip(MISSING, allow_module_level=True)

from st4r_ros.demo import load_demo_config  # noqa: E402 - after the check above
from st4r_ros.field.train import TrainConfig  # noqa: E402
from st4r_ros.scene.loading import load_scene  # noqa: E402
from st4r_ros.supervision.format import load_supervision  # noqa: E402
from st4r_ros.synthetic.task import build_synthetic_task  # noqa: E402
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic  # noqa: E402
from st4r_ros.training import train_layers  # noqa: E402

# Linux DDS domains that map to valid ports; 0 (the default) stays for people's own graphs.
DOMAINS = range(1, 102)


@pytest.fixture(scope='session')
def domain_id():
    """
    Hold a ROS domain id that no other test run on this machine holds (a lock file per id).

    Parallel runs cannot see each other's nodes; discovery stays on this host
    (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST in NodeProcess and here).
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    for candidate in DOMAINS:
        lock = open(Path(tempfile.gettempdir()) / f'st4r_ros_test_domain_{candidate}.lock', 'w')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        yield candidate
        lock.close()
        return
    pytest.fail(f'every ROS domain id in {DOMAINS} is held by another test run')


@pytest.fixture(scope='session')
def demo_scene(tmp_path_factory):
    """
    Make the demo's scene as `make demo` does (seed, sizes, training steps of demo.json).

    Returns (synthetic folder, scene folder, supervision folder, benchmark path).
    """
    config = load_demo_config()
    out = tmp_path_factory.mktemp('live_demo')
    write_synthetic(out, config['seed'], SyntheticConfig(**config['synthetic']))
    supervision, bench = build_synthetic_task(out, config['seed'])
    scene = out / 'scene'
    train_layers(load_scene(scene), load_supervision(supervision),
                 TrainConfig(steps=config['train_steps']), scene, seed=config['seed'])
    return out, scene, supervision, bench
