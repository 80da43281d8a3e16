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
Launch st4r_node; every node parameter is also a launch argument.

    ros2 launch st4r_ros st4r.launch.py scene:=/path/to/scene namespace:=robot1 rviz:=true

Parameters come from params_file (default: the package's config/st4r.yaml); a parameter's
argument, when given, overrides the file's value (`layer:=` sets layer to ''), typed and checked
as the node declares it (st4r_ros/ros/parameters.py). rviz:=true starts RViz with
config/st4r.rviz in the node's namespace, with the node's scene_frame as its fixed frame.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from st4r_ros.ros.parameters import PARAMETERS, parse_launch_value, RELIABILITIES
import yaml

# Default of the parameters' arguments: keep params_file's value. Not '', which an argument
# must be able to set (`layer:=`).
FROM_PARAMS_FILE = '<params_file>'
# Arguments with a fixed set of values, which launch checks and lists.
CHOICES = {'input_reliability': [*RELIABILITIES, FROM_PARAMS_FILE]}


def generate_launch_description():
    config = os.path.join(get_package_share_directory('st4r_ros'), 'config')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of st4r_node, and of RViz'),
        DeclareLaunchArgument('params_file', default_value=os.path.join(config, 'st4r.yaml'),
                              description='parameter YAML of st4r_node'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/st4r.rviz'),
        *[DeclareLaunchArgument(name, default_value=FROM_PARAMS_FILE, choices=CHOICES.get(name),
                                description=_description(parameter))
          for name, parameter in PARAMETERS.items()],
        OpaqueFunction(function=_nodes, kwargs={'rviz_config': os.path.join(config, 'st4r.rviz')}),
    ])


def _description(parameter):
    kind = type(parameter.default).__name__
    return f"{parameter.description} ({kind}; {FROM_PARAMS_FILE}: params_file's value)"


def _nodes(context, rviz_config):
    """st4r_node with params_file, then the arguments given; RViz beside it when asked for."""
    params_file = LaunchConfiguration('params_file').perform(context)
    given = _given_parameters(context)
    namespace = LaunchConfiguration('namespace')
    node = Node(package='st4r_ros', executable='st4r_node', name='st4r_node',
                namespace=namespace, parameters=[params_file, given], output='screen')
    # config/st4r.rviz names the node's topics relative to RViz's namespace, and its fixed
    # frame is only a fallback: the node's results are in scene_frame.
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', namespace=namespace,
                arguments=['-d', rviz_config, '-f', _scene_frame(params_file, given)],
                condition=IfCondition(LaunchConfiguration('rviz')))
    return [node, rviz]


def _given_parameters(context):
    """Return the parameters given as launch arguments, typed as the node declares them."""
    texts = {name: LaunchConfiguration(name).perform(context) for name in PARAMETERS}
    return {name: parse_launch_value(name, text) for name, text in texts.items()
            if text != FROM_PARAMS_FILE}


def _scene_frame(params_file, given):
    """Return the node's scene_frame: the argument, else params_file's value, else the default."""
    if 'scene_frame' in given:
        return given['scene_frame']
    with open(params_file) as stream:
        document = yaml.safe_load(stream) or {}
    values = document.get('st4r_node', {}).get('ros__parameters', {})
    return values.get('scene_frame', PARAMETERS['scene_frame'].default)
