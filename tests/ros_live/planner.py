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
The live tests' side of the graph: a planner node and a st4r_node process, over real DDS.

``NodeProcess`` starts st4r_node as a user does (the colcon install's lib/st4r_ros/st4r_node
with --ros-args) in its own process; ``Planner`` is an rclpy node in the test process that
sends what a robot sends (camera info, poses, commands, service calls, lifecycle transitions,
parameter changes) and records every output of the node, spinning in a thread of its own.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

from ament_index_python.packages import get_package_prefix
from geometry_msgs.msg import PoseStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Log
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from st4r_ros.msg import ReferringResult
from st4r_ros.ros.cameras import camera_to_pose
from st4r_ros.ros.messages import RclpyTypes
from st4r_ros.ros.outputs import camera_to_camera_info
from st4r_ros.srv import Query
from std_msgs.msg import Float64, String
from visualization_msgs.msg import MarkerArray

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = 'st4r_node'
OUTPUTS = {'result': ReferringResult, 'target_cloud': PointCloud2, 'markers': MarkerArray,
           'mask': Image, 'mask/camera_info': CameraInfo, 'overlay': Image}
RELIABLE = QoSProfile(depth=1, history=HistoryPolicy.KEEP_ALL,
                      reliability=ReliabilityPolicy.RELIABLE)
# What RViz and `ros2 topic echo` ask for by default: reliable, volatile.
DISPLAY = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def node_executable() -> Path:
    """Return the node's executable in the colcon install (what `ros2 run` runs)."""
    return Path(get_package_prefix('st4r_ros')) / 'lib' / 'st4r_ros' / 'st4r_node'


class NodeProcess:
    """st4r_node in a process of its own, on ``domain_id``; output in ``log``."""

    def __init__(self, domain_id: int, log: Path, params: Dict[str, object],
                 params_file: Optional[Path] = REPO / 'config' / 'st4r.yaml') -> None:
        command = [str(node_executable()), '--ros-args']
        if params_file is not None:
            command += ['--params-file', str(params_file)]
        for name, value in params.items():
            command += ['-p', f'{name}:={_ros_arg(value)}']
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id),
                   ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
        self.log = log
        self._out = log.open('wb')
        self.process = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT,
                                        env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors='replace')

    def resident_kib(self) -> int:
        """Return the resident memory (VmRSS) of the node's process in KiB."""
        for line in Path(f'/proc/{self.pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
        raise AssertionError('no VmRSS')

    def interrupt(self, timeout: float) -> Optional[int]:
        """Send SIGINT; return the exit code, or None when it did not end within ``timeout``."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.alive():
            if self.interrupt(10.0) is None:
                self.process.kill()
                self.process.wait()
        self._out.close()


def _ros_arg(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value) if value != '' else "''"


class Planner:
    """
    A planner node in the test process: sends inputs, records outputs.

    ``received[topic]`` lists every message of the node's outputs (with display QoS), and
    ``rosout`` the node's log messages, in arrival order.
    """

    def __init__(self, domain_id: int, name: str = 'planner') -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.received: Dict[str, List] = {topic: [] for topic in OUTPUTS}
        self.rosout: List[Log] = []
        self._changed = threading.Condition()
        for topic, cls in OUTPUTS.items():
            # A planner keeps every answer; displays keep the latest few.
            qos = RELIABLE if topic == 'result' else DISPLAY
            self.node.create_subscription(cls, topic, self._recorder(topic), qos)
        self.node.create_subscription(Log, '/rosout', self._on_log, QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.command = self.node.create_publisher(String, 'command', RELIABLE)
        self.pose = self.node.create_publisher(PoseStamped, 'camera/pose', RELIABLE)
        self.info = self.node.create_publisher(CameraInfo, 'camera/camera_info', RELIABLE)
        self.scene_time = self.node.create_publisher(Float64, 'scene_time', RELIABLE)
        self.query = self.node.create_client(Query, 'query')
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down under it
            pass

    def _recorder(self, topic: str) -> Callable:
        def record(msg) -> None:
            with self._changed:
                self.received[topic].append(msg)
                self._changed.notify_all()
        return record

    def _on_log(self, msg: Log) -> None:
        if msg.name == NODE_NAME:
            with self._changed:
                self.rosout.append(msg)
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate()`` holds (checked on every message); return whether it did."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def results(self, query: Optional[str] = None) -> List[ReferringResult]:
        with self._changed:
            return [r for r in self.received['result'] if query is None or r.query == query]

    def clear(self) -> None:
        with self._changed:
            for messages in self.received.values():
                messages.clear()
            self.rosout.clear()

    # ---- the graph --------------------------------------------------------------------

    def wait_for_node(self, timeout: float = 120.0) -> None:
        """Wait until the node answers its lifecycle and query services and hears commands."""
        state = self.node.create_client(GetState, f'/{NODE_NAME}/get_state')
        deadline = time.monotonic() + timeout
        assert state.wait_for_service(timeout_sec=timeout), 'st4r_node never came up'
        assert self.query.wait_for_service(timeout_sec=max(1.0, deadline - time.monotonic()))
        while self.command.get_subscription_count() < 1 or \
                self.node.count_publishers('result') < 1 or \
                len(self.node.get_publishers_info_by_topic('result')) < 1:
            assert time.monotonic() < deadline, 'st4r_node never matched the planner'
            time.sleep(0.05)
        self.node.destroy_client(state)

    def lifecycle_state(self) -> str:
        client = self.node.create_client(GetState, f'/{NODE_NAME}/get_state')
        try:
            return self._call(client, GetState.Request()).current_state.label
        finally:
            self.node.destroy_client(client)

    def transition(self, transition_id: int) -> bool:
        client = self.node.create_client(ChangeState, f'/{NODE_NAME}/change_state')
        try:
            request = ChangeState.Request(transition=Transition(id=transition_id))
            return self._call(client, request, timeout=120.0).success
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, name: str, value):
        """Set one of the node's parameters; return its SetParametersResult."""
        client = self.node.create_client(SetParameters, f'/{NODE_NAME}/set_parameters')
        try:
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()])
            return self._call(client, request).results[0]
        finally:
            self.node.destroy_client(client)

    def get_parameters(self, names: List[str]) -> List:
        client = self.node.create_client(GetParameters, f'/{NODE_NAME}/get_parameters')
        try:
            return self._call(client, GetParameters.Request(names=names)).values
        finally:
            self.node.destroy_client(client)

    def describe_parameters(self, names: List[str]) -> List:
        client = self.node.create_client(DescribeParameters,
                                         f'/{NODE_NAME}/describe_parameters')
        try:
            return self._call(client, DescribeParameters.Request(names=names)).descriptors
        finally:
            self.node.destroy_client(client)

    def ask(self, request: Query.Request, timeout: float = 60.0) -> Query.Response:
        return self._call(self.query, request, timeout)

    def _call(self, client, request, timeout: float = 30.0):
        assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name} not served'
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), f'{client.srv_name}: no answer in {timeout} s'
        return future.result()

    # ---- inputs -----------------------------------------------------------------------

    def send_camera(self, camera, frame_id: str = 'map') -> None:
        stamp = self.node.get_clock().now().to_msg()
        types = RclpyTypes()
        self.info.publish(camera_to_camera_info(types, camera, stamp, 'camera_optical'))
        self.pose.publish(camera_to_pose(types, camera, stamp, frame_id))

    def send(self, text: str) -> None:
        self.command.publish(String(data=text))

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(timeout=2.0)
