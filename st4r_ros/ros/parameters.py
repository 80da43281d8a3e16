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

node.py declares them, launch/st4r.launch.py mirrors them as launch arguments and
config/st4r.yaml sets them (tests/test_node_files.py keeps the three equal).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Union

Value = Union[str, int, float, bool]


class Parameter(NamedTuple):
    default: Value
    description: str


PARAMETERS: Dict[str, Parameter] = {
    'scene': Parameter('', 'scene to load: st4r bundle, 4DGaussians output folder, PLY '
                           'sequence folder or .ply file'),
    'layer': Parameter('', 'referring layer folder; empty: the one inside the bundle'),
    'device': Parameter('auto', 'auto (CUDA when available), cpu, cuda, cuda:1 ...'),
    'compile_text_encoders': Parameter(False, 'on CUDA, replay the text encoders of the '
                                              "scene's layers as CUDA graphs: tens of seconds "
                                              "at load, a 7B state encoder's query ~6x faster"),
    'scene_frame': Parameter('map', 'frame of the scene: results, clouds and markers are in '
                                    'it, camera poses must be'),
    'scene_time': Parameter(0.0, 'normalised scene time [0, 1] of queries that give none; '
                                 'also settable on the scene_time topic'),
    'queue_size': Parameter(8, 'requests waiting for the worker; more are answered DROPPED'),
    'input_reliability': Parameter('reliable', 'QoS reliability of the input topics: '
                                               'reliable or best_effort'),
    'input_depth': Parameter(10, 'QoS history depth of the input topics'),
    'service_timeout_s': Parameter(10.0, 'longest a query service call waits for its answer '
                                         'before it is answered ERROR'),
}
