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
The node's parameters: one table for the node, its launch file and its config.

node.py declares them (each with a ParameterDescriptor built from this table),
launch/st4r.launch.py mirrors them as launch arguments and config/st4r.yaml sets them
(tests/test_node_files.py keeps the three equal).

When a parameter takes effect (``Parameter.applies``):
- ``start``: read once when the node starts (QoS, queue, frames): read-only afterwards;
- ``configure``: read by the lifecycle configure transition, which loads the scene: settable
  while the node is unconfigured, refused with the reason while a scene is loaded;
- ``live``: takes effect for later queries at any time.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

Value = Union[str, int, float, bool]

RELIABILITIES = ('reliable', 'best_effort')


class Parameter(NamedTuple):
    default: Value
    description: str
    applies: str  # 'start', 'configure' or 'live' (module docstring)
    constraints: str = ''  # what a valid value is, in words (the descriptor's constraints)


PARAMETERS: Dict[str, Parameter] = {
    'scene': Parameter('', 'scene to load: st4r bundle, 4DGaussians output folder, PLY '
                           'sequence folder or .ply file', 'configure',
                       'a path; empty: no scene (queries are answered NO_SCENE)'),
    'layer': Parameter('', 'referring layer folder; empty: the one inside the bundle',
                       'configure'),
    'device': Parameter('auto', 'auto (CUDA when available), cpu, cuda, cuda:1 ...',
                        'configure'),
    'compile_text_encoders': Parameter(False, 'on CUDA, replay the text encoders of the '
                                              "scene's layers as CUDA graphs (a slower "
                                              'configure, faster queries)', 'configure'),
    'autostart': Parameter(True, 'configure and activate at start (false: wait for a '
                                 'lifecycle manager)', 'start'),
    'scene_frame': Parameter('map', 'frame of the scene: results, clouds and markers are in '
                                    'it, camera poses must be', 'start', 'a non-empty frame id'),
    'scene_time': Parameter(0.0, 'normalised scene time of queries that give none; also '
                                 'settable on the scene_time topic', 'live', '0 <= value <= 1'),
    'queue_size': Parameter(8, 'requests waiting for the worker; more are answered DROPPED',
                            'start', 'an integer >= 1'),
    'input_reliability': Parameter('reliable', 'QoS reliability of the input topics',
                                   'start', 'reliable or best_effort'),
    'input_depth': Parameter(10, 'QoS history depth of the pose, camera_info and scene_time '
                                 'inputs (commands are kept until taken)', 'start',
                             'an integer >= 1'),
    'service_timeout_s': Parameter(10.0, 'longest a query service call waits for its answer '
                                         'before it is answered DROPPED', 'start',
                                   'seconds > 0'),
}


def _positive_int(value: Value) -> bool:
    return isinstance(value, int) and value >= 1


# Parameter -> (valid?, what is expected), for the parameters whose type is not enough.
_RULES: Dict[str, Tuple[Callable[[Value], bool], str]] = {
    'scene_frame': (lambda value: value != '', 'expected a non-empty frame id'),
    'scene_time': (lambda value: isinstance(value, float) and 0.0 <= value <= 1.0,
                   'expected a normalised scene time in [0, 1]'),
    'queue_size': (_positive_int, 'expected an integer >= 1'),
    'input_depth': (_positive_int, 'expected an integer >= 1'),
    'input_reliability': (lambda value: value in RELIABILITIES,
                          f'expected one of {list(RELIABILITIES)}'),
    'service_timeout_s': (lambda value: isinstance(value, float) and math.isfinite(value)
                          and value > 0, 'expected seconds > 0'),
}


def check_value(name: str, value: Value) -> Optional[str]:
    """
    Return why ``value`` is not a valid value of parameter ``name``, or None when it is.

    Types are the declared ones (rclpy refuses other types itself); this checks ranges and
    choices, for the node at start and for changes at run time.
    """
    valid, expected = _RULES.get(name, (lambda value: True, ''))
    return None if valid(value) else f'{name}: {expected}, got {value!r}'


def parse_launch_value(name: str, text: str) -> Value:
    """
    Return the text of launch argument ``name`` as the parameter's typed value.

    Launch arguments are text, the node's parameters are typed: 'false' must arrive as False
    (bool('false') is True) and '1' as 1.0 for a float. Raise ValueError naming the argument
    when ``text`` is not a value of the parameter's type or ``check_value`` refuses it.
    """
    parse: Dict[type, Callable[[str], Value]] = {
        bool: _parse_bool, int: _parse_int, float: _parse_float, str: str}
    try:
        value = parse[type(PARAMETERS[name].default)](text)
    except ValueError as exc:
        raise ValueError(f'launch argument {name}: {exc}') from None
    reason = check_value(name, value)
    if reason is not None:
        raise ValueError(f'launch argument {reason}')
    return value


def _parse_bool(text: str) -> bool:
    if text.lower() not in ('true', 'false'):
        raise ValueError(f'expected true or false, got {text!r}')
    return text.lower() == 'true'


def _parse_int(text: str) -> int:
    """Parse '8', or '8.0' (a whole number written as a float, as YAML dumps it) as 8."""
    try:
        return int(text)
    except ValueError:
        number = _parse_float(text, expected='an integer')
    if not number.is_integer():
        raise ValueError(f'expected an integer, got {text!r}')
    return int(number)


def _parse_float(text: str, expected: str = 'a number') -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'expected {expected}, got {text!r}') from None
