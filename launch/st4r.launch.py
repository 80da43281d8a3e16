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

Values come from params_file (default: the package's config/st4r.yaml); a launch argument that
is given overrides the file's value, one left empty keeps it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Mirrors st4r_ros/ros/parameters.py (tests/test_node_files.py keeps them equal).
PARAMETERS = {
    'scene': (str, 'scene to load (bundle, 4DGaussians output, PLY sequence or .ply)'),
    'layer': (str, 'referring layer folder; empty: the one inside the bundle'),
    'device': (str, 'auto, cpu, cuda, cuda:1 ...'),
    'compile_text_encoders': (bool, 'on CUDA, text encoders as CUDA graphs (slower load)'),
    'scene_frame': (str, 'frame of the scene'),
    'scene_time': (float, 'normalised scene time [0, 1] of queries that give none'),
    'queue_size': (int, 'requests waiting for the worker; more are answered DROPPED'),
    'input_reliability': (str, 'QoS reliability of the input topics: reliable or best_effort'),
    'input_depth': (int, 'QoS history depth of the input topics'),
    'service_timeout_s': (float, 'longest a query service call waits for its answer'),
}


def generate_launch_description():
    share = get_package_share_directory('st4r_ros')
    arguments = [
        DeclareLaunchArgument('namespace', default_value='', description='node namespace'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'st4r.yaml'),
                              description='parameter YAML of st4r_node'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/st4r.rviz'),
    ]
    arguments += [DeclareLaunchArgument(name, default_value='', description=text)
                  for name, (_, text) in PARAMETERS.items()]
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2',
                arguments=['-d', os.path.join(share, 'config', 'st4r.rviz')],
                condition=IfCondition(LaunchConfiguration('rviz')))
    return LaunchDescription([*arguments, OpaqueFunction(function=_node), rviz])


def _node(context):
    """st4r_node with the YAML, then the launch arguments that were given."""
    overrides = {}
    for name, (kind, _) in PARAMETERS.items():
        value = LaunchConfiguration(name).perform(context)
        if value != '':
            # The node declares typed parameters: '1' must arrive as 1.0 for a float one,
            # and 'false' as False for a bool one (bool('false') is True).
            overrides[name] = value.lower() in ('true', '1') if kind is bool else kind(value)
    return [Node(
        package='st4r_ros',
        executable='st4r_node',
        name='st4r_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
        output='screen',
    )]
