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
st4r_node: the live ROS 2 face of st4r_ros (the only module that imports rclpy).

Everything but moving messages lives elsewhere and is tested without ROS: what a query does
(QueryEngine), what the node publishes for it (QuerySession), message conversions
(conversions.RclpyTypes) and the bounded request queue (RequestQueue). This module wires them to
rclpy: parameters (parameters.py), topics, the query service and one worker thread.

A plain node, not a lifecycle node: it loads the scene at start and is useful at once; when
loading fails it stays up and answers every query NO_SCENE with the reason, which a planner
sees in the result instead of a node that never activates.

Topics (relative, so a namespace places them):
    in   command (std_msgs/String)         one AUTO query per message, latest camera
         camera/pose (PoseStamped)         the optical frame's pose in scene_frame
         camera/camera_info (CameraInfo)   with the pose: the latest camera
         scene_time (std_msgs/Float64)     normalised scene time of later queries
    out  result, target_cloud, markers, mask, mask/camera_info, overlay (QuerySession)
    srv  query (st4r_ros/srv/Query)        answered in order with the commands
Outputs are RELIABLE (RViz and `ros2 bag record` defaults); input QoS is a parameter.

Callbacks only enqueue; the worker thread owns the engine and the session (GPU work stays out
of the executor's way). Camera poses are coalesced: the worker renders the newest one.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

from geometry_msgs.msg import PoseStamped
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from st4r_ros.engine import QueryEngine, QueryResult, QueryStatus
from st4r_ros.msg import ReferringResult
from st4r_ros.ros import conversions as conv
from st4r_ros.ros.parameters import PARAMETERS
from st4r_ros.ros.requests import RequestQueue
from st4r_ros.ros.session import QuerySession
from st4r_ros.scene.scene4d import check_time
from st4r_ros.srv import Query
from std_msgs.msg import Float64, String
from visualization_msgs.msg import MarkerArray

OUTPUT_CLASSES = {'result': ReferringResult, 'target_cloud': PointCloud2,
                  'markers': MarkerArray, 'mask': Image, 'mask/camera_info': CameraInfo,
                  'overlay': Image}


class St4rNode(Node):

    def __init__(self) -> None:
        super().__init__('st4r_node')
        for name, parameter in PARAMETERS.items():
            self.declare_parameter(name, parameter.default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.types = conv.RclpyTypes()
        self.engine = self._load_engine(p)
        self.publishers_: Dict[str, object] = {
            topic: self.create_publisher(cls, topic, 10) for topic, cls in OUTPUT_CLASSES.items()}
        self.session = QuerySession(self.engine, self.types, self._publish, p['scene_frame'])
        self.queue = RequestQueue(int(p['queue_size']))
        self.timeout_s = float(p['service_timeout_s'])
        self._waiting: Dict[str, threading.Event] = {}  # service request id -> answered
        self._answers: Dict[str, QueryResult] = {}
        self._pose: Optional[PoseStamped] = None
        self._info: Optional[CameraInfo] = None
        self._lock = threading.Lock()  # guards _pose, _info, _waiting, _answers

        inputs = QoSProfile(depth=int(p['input_depth']), reliability=(
            ReliabilityPolicy.BEST_EFFORT if p['input_reliability'] == 'best_effort'
            else ReliabilityPolicy.RELIABLE))
        group = ReentrantCallbackGroup()
        self.create_subscription(String, 'command', self._on_command, inputs,
                                 callback_group=group)
        self.create_subscription(PoseStamped, 'camera/pose', self._on_pose, inputs,
                                 callback_group=group)
        self.create_subscription(CameraInfo, 'camera/camera_info', self._on_info, inputs,
                                 callback_group=group)
        self.create_subscription(Float64, 'scene_time', self._on_scene_time, inputs,
                                 callback_group=group)
        self.create_service(Query, 'query', self._on_query, callback_group=group)
        self._worker = threading.Thread(target=self._work, name='st4r-worker', daemon=True)
        self._worker.start()

    def _load_engine(self, p: Dict) -> QueryEngine:
        try:
            engine = QueryEngine.open(p['scene'], p['layer'] or None, p['device'],
                                      p['compile_text_encoders'])
            engine.set_scene_time(float(p['scene_time']))
            self.get_logger().info(f"scene {p['scene']} loaded on {engine.device}")
            return engine
        except Exception as err:  # noqa: BLE001 - the node stays up and says why
            self.get_logger().error(f"scene {p['scene']!r} not loaded: {err}")
            return _NoScene(f"scene {p['scene']!r} not loaded: {err}")

    # ---- callbacks: validate, enqueue, return -------------------------------------------

    def _on_command(self, msg: String) -> None:
        self._enqueue(conv.request_from_string(msg.data, self.session.camera))

    def _on_pose(self, msg: PoseStamped) -> None:
        with self._lock:
            self._pose = msg  # the worker renders only the newest

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def _on_scene_time(self, msg: Float64) -> None:
        try:
            self.engine.set_scene_time(check_time(msg.data))
        except Exception as err:  # noqa: BLE001 - bad input is logged, never fatal
            self.get_logger().warning(f'scene_time ignored: {err}')

    def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        parsed = conv.request_from_service(request, self.session.camera)
        if isinstance(parsed, QueryResult):
            result = parsed
            self._publish_refusal(result)
        else:
            answered = threading.Event()
            with self._lock:
                self._waiting[parsed.request_id] = answered
            self._enqueue(parsed)
            if not answered.wait(self.timeout_s):
                result = conv.refusal(parsed.request_id, parsed.text, QueryStatus.ERROR,
                                      f'no answer within service_timeout_s={self.timeout_s}')
            with self._lock:
                self._waiting.pop(parsed.request_id, None)
                result = self._answers.pop(parsed.request_id, None) or result
        stamp = self.get_clock().now().to_msg()
        response.result = conv.result_to_msg(self.types, result, stamp, self.session.scene_frame)
        if result.mask is not None:
            response.mask = conv.mask_to_image(self.types, result.mask, stamp, '')
        return response

    def _enqueue(self, request) -> None:
        if isinstance(request, QueryResult):
            self._publish_refusal(request)
            return
        refused = self.queue.put(request)
        if refused is not None:
            self.get_logger().warning(refused.message)
            self._finish(refused)
            self._publish_refusal(refused)

    # ---- worker: the only thread that runs the engine -------------------------------------

    def _work(self) -> None:
        while not self.queue.closed:
            try:
                self._update_camera()
                request = self.queue.get(timeout=0.01)
                if request is not None:
                    self._answer(request)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any failure
                self.get_logger().error(f'worker: {type(err).__name__}: {err}')

    def _update_camera(self) -> None:
        """Apply the newest CameraInfo and pose (a new pose re-renders the current target)."""
        with self._lock:
            info, pose, self._info, self._pose = self._info, self._pose, None, None
        for handle, msg in ((self.session.on_camera_info, info), (self.session.on_pose, pose)):
            error = None if msg is None else handle(msg)
            if error:
                self.get_logger().warning(f'camera ignored: {error}')

    def _answer(self, request) -> None:
        stamp = self.get_clock().now().to_msg()
        try:
            result = self.session.answer(request, stamp)
        except Exception as err:  # noqa: BLE001 - publishing failed: still one answer
            result = conv.refusal(request.request_id, request.text, QueryStatus.ERROR,
                                  f'{type(err).__name__}: {err}', request.mode)
            self._publish_refusal(result)
        if result.status == QueryStatus.ERROR:
            self.get_logger().error(f'query {result.request_id}: {result.message}')
        self._finish(result)

    def _finish(self, result: QueryResult) -> None:
        """Hand ``result`` to a service call waiting for it, if any."""
        with self._lock:
            answered = self._waiting.get(result.request_id)
            if answered is not None:
                self._answers[result.request_id] = result
                answered.set()

    def _publish_refusal(self, result: QueryResult) -> None:
        stamp = self.get_clock().now().to_msg()
        self._publish('result', conv.result_to_msg(self.types, result, stamp,
                                                   self.session.scene_frame))

    def _publish(self, topic: str, msg) -> None:
        self.publishers_[topic].publish(msg)

    def shutdown(self) -> None:
        for result in self.queue.close():
            self._finish(result)
            self._publish_refusal(result)
        self._worker.join(timeout=2.0)


class _NoScene(QueryEngine):
    """The engine of a node whose scene did not load: every query is answered NO_SCENE."""

    def __init__(self, reason: str) -> None:  # noqa: D107 - no scene to hold
        self.reason = reason
        self.scene_time = 0.0

    def query(self, request) -> QueryResult:
        return conv.refusal(request.request_id or conv.new_request_id(), request.text,
                            QueryStatus.NO_SCENE, self.reason, request.mode)

    def set_scene_time(self, t: float) -> None:
        self.scene_time = check_time(t)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = St4rNode()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
