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
rclpy. The node runs in tests/ros_live/; here it is checked by reading it. launch and launch_ros
are not on PyPI, so the launch file runs over stand-ins for them, which record what it asks for.
"""

import ast
import importlib.util
import os
from pathlib import Path
import py_compile
import re
import sys
import types

import pytest
from st4r_ros.ros.parameters import check_value, parse_launch_value, PARAMETERS, RELIABILITIES
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


class _StandIn:
    """A launch or launch_ros class: keeps what it was made with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_StandIn):

    def perform(self, context):
        return context[self.args[0]]


@pytest.fixture
def launch_file(monkeypatch):
    """Import the launch file over stand-ins for launch, launch_ros and the ament index."""
    classes = {'launch': ['LaunchDescription'],
               'launch.actions': ['DeclareLaunchArgument', 'OpaqueFunction'],
               'launch.conditions': ['IfCondition'],
               'launch_ros': [],
               'launch_ros.actions': ['Node']}
    for module_name, names in classes.items():
        module = types.ModuleType(module_name)
        for name in names:
            setattr(module, name, type(name, (_StandIn,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
    substitutions = types.ModuleType('launch.substitutions')
    substitutions.LaunchConfiguration = _LaunchConfiguration
    monkeypatch.setitem(sys.modules, 'launch.substitutions', substitutions)
    # The package's share folder is the repository's config/ and launch/, not an installed copy.
    ament = types.ModuleType('ament_index_python.packages')
    ament.get_package_share_directory = lambda package: str(REPO)
    monkeypatch.setitem(sys.modules, 'ament_index_python', types.ModuleType('ament_index_python'))
    monkeypatch.setitem(sys.modules, 'ament_index_python.packages', ament)
    spec = importlib.util.spec_from_file_location('st4r_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arguments(launch_file) -> dict:
    """Return the launch file's DeclareLaunchArgument actions by name."""
    actions = launch_file.generate_launch_description().args[0]
    return {a.args[0]: a for a in actions if type(a).__name__ == 'DeclareLaunchArgument'}


def _launch(launch_file, **given):
    """Run the launch file with the launch arguments ``given``: return st4r_node and RViz."""
    actions = launch_file.generate_launch_description().args[0]
    context = {name: a.kwargs['default_value'] for name, a in _arguments(launch_file).items()}
    context.update(given)
    [opaque] = [a for a in actions if type(a).__name__ == 'OpaqueFunction']
    node, rviz = opaque.kwargs['function'](context, **opaque.kwargs['kwargs'])
    return node, rviz


def test_launch_file_takes_the_parameters_from_their_table():
    imported = {alias.name for node in ast.parse(LAUNCH.read_text()).body
                if isinstance(node, ast.ImportFrom) and node.module == 'st4r_ros.ros.parameters'
                for alias in node.names}
    assert {'PARAMETERS', 'parse_launch_value'} <= imported
    assert 'DeclareLaunchArgument(name' in LAUNCH.read_text()


def test_launch_file_declares_one_argument_per_parameter(launch_file):
    arguments = _arguments(launch_file)
    assert list(arguments) == ['namespace', 'params_file', 'rviz', *PARAMETERS]
    sentinel = launch_file.FROM_PARAMS_FILE
    for name in PARAMETERS:
        assert arguments[name].kwargs['default_value'] == sentinel, name
        assert sentinel in arguments[name].kwargs['description'], name
    assert arguments['input_reliability'].kwargs['choices'] == [*RELIABILITIES, sentinel]


def test_launch_file_keeps_the_params_file_values_unless_given(launch_file):
    node, rviz = _launch(launch_file)
    assert node.kwargs['parameters'] == [str(REPO / 'config' / 'st4r.yaml'), {}]
    assert rviz.kwargs['arguments'] == ['-d', str(REPO / 'config' / 'st4r.rviz'), '-f', 'map']


def test_launch_arguments_given_override_typed_even_when_empty(launch_file):
    node, rviz = _launch(launch_file, layer='', queue_size='8.0', autostart='False',
                         scene_time='1', scene_frame='odom')
    assert node.kwargs['parameters'][1] == {'layer': '', 'queue_size': 8, 'autostart': False,
                                            'scene_time': 1.0, 'scene_frame': 'odom'}
    assert node.kwargs['parameters'][1]['scene_time'].__class__ is float
    assert rviz.kwargs['arguments'][-2:] == ['-f', 'odom']


def test_launch_file_refuses_a_bad_argument_by_its_name(launch_file):
    with pytest.raises(ValueError, match='launch argument queue_size'):
        _launch(launch_file, queue_size='8.5')


@pytest.mark.parametrize('parameters, frame', [({'scene_frame': 'odom'}, 'odom'), ({}, 'map')])
def test_rviz_is_fixed_to_the_params_file_scene_frame(launch_file, tmp_path, parameters, frame):
    params_file = tmp_path / 'params.yaml'
    params_file.write_text(yaml.safe_dump({'st4r_node': {'ros__parameters': parameters}}))
    _, rviz = _launch(launch_file, params_file=str(params_file))
    assert rviz.kwargs['arguments'][-2:] == ['-f', frame]


def test_rviz_starts_in_the_node_namespace(launch_file):
    node, rviz = _launch(launch_file)
    # config/st4r.rviz's topics are relative: they name the node's only in its namespace.
    assert node.kwargs['namespace'].args == rviz.kwargs['namespace'].args == ('namespace',)
    assert rviz.kwargs['condition'].args[0].args == ('rviz',)


def test_launch_file_docstring_shows_a_ros2_launch_command():
    assert ('ros2 launch st4r_ros st4r.launch.py scene:=/path/to/scene namespace:=robot1 '
            'rviz:=true') in ast.get_docstring(ast.parse(LAUNCH.read_text()))


@pytest.mark.parametrize('name, text, value', [
    ('autostart', 'true', True), ('autostart', 'False', False),
    ('queue_size', '8', 8), ('queue_size', '8.0', 8),
    ('scene_time', '1', 1.0), ('service_timeout_s', '2.5', 2.5),
    ('layer', '', ''), ('device', 'cuda:1', 'cuda:1'),
    ('input_reliability', 'best_effort', 'best_effort'),
])
def test_parse_launch_value_gives_the_parameter_type(name, text, value):
    parsed = parse_launch_value(name, text)
    # The exact type: a bool is no int, an int no float.
    assert parsed == value and parsed.__class__ is value.__class__


@pytest.mark.parametrize('name, text, expected', [
    ('autostart', 'yes', 'true or false'), ('compile_text_encoders', '1', 'true or false'),
    ('queue_size', '8.5', 'an integer'), ('input_depth', 'ten', 'an integer'),
    ('queue_size', 'inf', 'an integer'), ('queue_size', '0', 'an integer >= 1'),
    ('scene_time', 'soon', 'a number'), ('scene_time', '2', 'in [0, 1]'),
    ('service_timeout_s', 'nan', 'seconds > 0'),
    ('input_reliability', 'fast', "['reliable', 'best_effort']"),
    ('scene_frame', '', 'non-empty frame id'),
])
def test_parse_launch_value_refuses_naming_the_argument(name, text, expected):
    with pytest.raises(ValueError, match=f'^launch argument {name}: .*{re.escape(expected)}'):
        parse_launch_value(name, text)


def test_every_default_is_valid_and_says_when_it_applies():
    for name, parameter in PARAMETERS.items():
        assert check_value(name, parameter.default) is None, name
        assert parameter.applies in ('start', 'configure', 'live'), name
        assert parameter.description, name
    # Run-time changes are checked like start values (the node's set-parameters callback).
    assert 'in [0, 1], got 1.5' in check_value('scene_time', 1.5)
    assert check_value('scene_time', float('nan')) is not None


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
    # Only the fallback of an RViz started by hand: the launch file passes scene_frame (-f).
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == \
        PARAMETERS['scene_frame'].default
