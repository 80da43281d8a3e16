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
The rclpy node and the files around it agree.

Parameters (node, launch file, YAML), topics (node, session, RViz), and only node.py imports
rclpy. rclpy cannot be installed here, so the node is checked by reading it: its behaviour
lives in QuerySession, RequestQueue and the conversions, which the other tests run.
"""

import ast
import os
from pathlib import Path
import py_compile

from st4r_ros.ros.parameters import PARAMETERS
from st4r_ros.ros.session import OUTPUTS
import yaml

REPO = Path(__file__).resolve().parents[1]
NODE = REPO / 'st4r_ros' / 'ros' / 'node.py'
LAUNCH = REPO / 'launch' / 'st4r.launch.py'


def module_constant(path: Path, name: str):
    """Return the literal value of a module-level constant, without importing the module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name
                                                for t in node.targets):
            return node.value
    raise AssertionError(f'{path}: no {name}')


def test_only_the_node_imports_rclpy():
    importers = []
    for path in (REPO / 'st4r_ros').rglob('*.py'):
        tree = ast.parse(path.read_text())
        modules = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                   for alias in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if any(m == 'rclpy' or m.startswith('rclpy.') for m in modules):
            importers.append(path.relative_to(REPO).as_posix())
    assert importers == ['st4r_ros/ros/node.py']


def test_node_and_launch_file_compile(tmp_path):
    for path in (NODE, LAUNCH, REPO / 'scripts' / 'st4r_node'):
        py_compile.compile(str(path), doraise=True, cfile=str(tmp_path / f'{path.stem}.pyc'))
    assert os.access(REPO / 'scripts' / 'st4r_node', os.X_OK)


def test_launch_file_declares_every_parameter_with_its_type():
    declared = module_constant(LAUNCH, 'PARAMETERS')
    names = [ast.literal_eval(k) for k in declared.keys]
    kinds = [v.elts[0].id for v in declared.values]
    assert names == list(PARAMETERS)
    for name, kind in zip(names, kinds):
        assert kind == PARAMETERS[name].default.__class__.__name__, name
    source = LAUNCH.read_text()
    assert 'DeclareLaunchArgument(name' in source and 'PARAMETERS.items()' in source


def test_yaml_sets_every_parameter_to_its_default():
    document = yaml.safe_load((REPO / 'config' / 'st4r.yaml').read_text())
    values = document['st4r_node']['ros__parameters']
    assert values == {name: p.default for name, p in PARAMETERS.items()}
    for name, value in values.items():
        # The exact type, not isinstance: a bool is no int, an int no float.
        assert value.__class__ is PARAMETERS[name].default.__class__, name


def test_node_publishes_exactly_the_session_outputs():
    classes = module_constant(NODE, 'OUTPUT_CLASSES')
    assert [ast.literal_eval(k) for k in classes.keys] == list(OUTPUTS)
    source = NODE.read_text()
    strings = {node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert {'command', 'camera/pose', 'camera/camera_info', 'scene_time'} <= strings
    assert "create_service(Query, 'query'" in source


def test_rviz_config_shows_node_topics():
    config = yaml.safe_load((REPO / 'config' / 'st4r.rviz').read_text())
    displays = config['Visualization Manager']['Displays']
    topics = {d['Topic']['Value'] for d in displays if 'Topic' in d}
    assert topics <= set(OUTPUTS) and {'target_cloud', 'markers', 'overlay', 'mask'} <= topics
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == \
        PARAMETERS['scene_frame'].default
