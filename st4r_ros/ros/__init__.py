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
The ROS face: messages <-> QueryEngine, live (rclpy) and offline (rosbags).

- typestore.py: a rosbags Typestore with st4r_ros's msg/ and srv/ registered (no ROS needed).
- messages.py: message classes of either world (RosbagsTypes, RclpyTypes) and ``make``, so
  that every converter is written once for rclpy and rosbags classes.
- outputs.py: results, masks, overlays, camera infos, target clouds and markers to messages.
- cameras.py: a camera pose and CameraInfo to a checked Camera (CameraError), and back.
- commands.py: requests from commands and service calls, or their refusals.
- clock.py: stamps <-> nanoseconds, and stamps to scene times (StampPolicy).
- requests.py: the bounded request queue between the node's callbacks and its worker.
- replay.py: `st4r replay`, a rosbag2 of commands and camera poses in, the node's outputs out.

Nothing here imports rclpy except node.py, so the package imports on machines without ROS.
"""
