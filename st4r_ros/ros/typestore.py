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
A rosbags Typestore that knows st4r_ros's interfaces, for everything that runs without ROS.

The .msg/.srv files in msg/ and srv/ are the single source of truth; they are read from the
source tree (a checkout) or from ``share/st4r_ros`` of an install (pip's data_files, colcon's
ament_cmake install, or any prefix on AMENT_PREFIX_PATH). rosbags knows messages only, so the
two halves of srv/Query.srv are registered as ``st4r_ros/msg/Query_Request`` and
``st4r_ros/msg/Query_Response``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
import re
import site
import sys
from typing import Dict, List

from rosbags.typesys import get_types_from_msg, get_typestore, Stores
from rosbags.typesys.store import Typestore
from st4r_ros.errors import St4rError

PACKAGE = 'st4r_ros'
DISTROS = {'jazzy': Stores.ROS2_JAZZY, 'humble': Stores.ROS2_HUMBLE}


def ros_typestore(distro: str = 'jazzy') -> Typestore:
    """
    Return the rosbags Typestore of ROS 2 ``distro`` plus st4r_ros's interfaces.

    ``distro`` is 'jazzy' or 'humble'. Built once per distro and shared: callers must not
    register more types in it.

    :raises St4rError: unknown distro, or no msg/ and srv/ folders found.
    """
    key = str(distro).lower()
    if key not in DISTROS:
        raise St4rError(f'distro: expected one of {sorted(DISTROS)}, got {distro!r}')
    return _build(key)


@functools.lru_cache(maxsize=None)
def _build(distro: str) -> Typestore:
    store = get_typestore(DISTROS[distro])
    store.register(interface_types(interface_root()))
    return store


def interface_root() -> Path:
    """
    Find the folder holding msg/ and srv/.

    That is the checkout this module is in, else an install's ``share/st4r_ros`` (sys.prefix,
    the user base, then AMENT_PREFIX_PATH).
    """
    candidates = _candidate_roots()
    for root in candidates:
        if (root / 'msg' / 'ReferringResult.msg').is_file():
            return root
    searched = ', '.join(str(c) for c in candidates)
    raise St4rError(f'ROS interfaces: msg/ReferringResult.msg not found in {searched}; '
                    'install st4r_ros (pip or colcon) or run from a checkout')


def _candidate_roots() -> List[Path]:
    checkout = Path(__file__).resolve().parents[2]
    prefixes = [Path(sys.prefix), Path(site.getuserbase())]  # pip, pip --user
    prefixes += [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [checkout] + [prefix / 'share' / PACKAGE for prefix in prefixes]


def interface_types(root: Path) -> Dict:
    """
    Read the rosbags type definitions of every root/msg/*.msg and root/srv/*.srv.

    Service halves are named ``st4r_ros/msg/<Service>_Request`` and ``..._Response``.
    """
    types: Dict = {}
    for path in sorted((root / 'msg').glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'{PACKAGE}/msg/{path.stem}'))
    for path in sorted((root / 'srv').glob('*.srv')):
        halves = re.split(r'^---\s*$', path.read_text(), maxsplit=1, flags=re.M)
        if len(halves) != 2:
            raise St4rError(f"{path}: expected a request and a response separated by '---'")
        for part, text in zip(('Request', 'Response'), halves):
            types.update(get_types_from_msg(text, f'{PACKAGE}/msg/{path.stem}_{part}'))
    return types
