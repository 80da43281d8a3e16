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
(QueryEngine), what the node publishes for it (QuerySession), requests from messages
(commands.py), rclpy's message classes (messages.RclpyTypes) and the bounded request queue
(RequestQueue). This module wires them to rclpy: parameters (parameters.py), topics, the
query service, the lifecycle and one worker.

A lifecycle node, as perception nodes with heavy models are: configure loads the scene (and its
layers and text encoders), activate starts answering, deactivate pauses, cleanup frees the scene
(and GPU memory), so a robot that changes rooms swaps scenes without restarting the node. With
``autostart`` (the default) it configures and activates itself at start. Every request gets one
answer in every state: NO_SCENE while unconfigured (with the reason the last configure failed),
NOT_READY while inactive.

Topics (relative, so a namespace places them):
    in   command (std_msgs/String)         one AUTO query per message, latest camera
         camera/pose (PoseStamped)         the optical frame's pose in scene_frame
         camera/camera_info (CameraInfo)   with the pose: the latest camera
         scene_time (std_msgs/Float64)     sets the scene_time parameter
    out  result, target_cloud, markers, mask, mask/camera_info, overlay (QuerySession)
    srv  query (st4r_ros/srv/Query)        answered in order with the commands
Outputs are RELIABLE; the current target's views (all but result) are also TRANSIENT_LOCAL, so
a display that starts late shows the current target. Input reliability is a parameter; commands
are kept until the node takes them (KEEP_ALL), poses and camera infos only the latest few.

Callbacks only enqueue; the worker thread owns the session and runs the engine (GPU work stays
out of the executor's way). Camera poses are coalesced: the worker renders the newest one.
"""

from __future__ import annotations

from concurrent.futures import Future
from queue import Empty, SimpleQueue
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple, TypeVar

from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter as RosParameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from st4r_ros.engine import QueryEngine, QueryRequest, QueryResult, QueryStatus, refusal
from st4r_ros.errors import St4rError
from st4r_ros.msg import ReferringResult
from st4r_ros.ros import outputs
from st4r_ros.ros.commands import request_from_service, request_from_string
from st4r_ros.ros.messages import RclpyTypes
from st4r_ros.ros.parameters import check_value, PARAMETERS, Value
from st4r_ros.ros.requests import RequestQueue
from st4r_ros.ros.session import QuerySession
from st4r_ros.srv import Query
from std_msgs.msg import Float64, String
import torch
from visualization_msgs.msg import MarkerArray

OUTPUT_CLASSES = {'result': ReferringResult, 'target_cloud': PointCloud2,
                  'markers': MarkerArray, 'mask': Image, 'mask/camera_info': CameraInfo,
                  'overlay': Image}
RESULT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
VIEW_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
Job = TypeVar('Job')
TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}
UNCONFIGURED = 'no scene loaded: st4r_node is unconfigured (lifecycle configure loads it)'


class ParameterError(St4rError, ValueError):
    """A parameter the node cannot start with (wrong type or value)."""


class St4rNode(LifecycleNode):

    def __init__(self, **kwargs) -> None:
        super().__init__('st4r_node', **kwargs)
        p = self._declare_parameters()
        self.autostart = bool(p['autostart'])
        self.scene_frame = str(p['scene_frame'])
        self.timeout_s = float(p['service_timeout_s'])
        self.types = RclpyTypes()
        self.publishers_: Dict[str, Publisher[Any]] = {
            topic: self.create_publisher(cls, topic, RESULT_QOS if topic == 'result' else VIEW_QOS)
            for topic, cls in OUTPUT_CLASSES.items()}
        self.session = QuerySession(_Unloaded(UNCONFIGURED), self.types, self._publish,
                                    self.scene_frame)
        self.queue = RequestQueue(int(p['queue_size']))
        self._active = False
        self._engine_lock = threading.Lock()  # the worker's engine use vs. configure/cleanup
        self._lock = threading.Lock()  # guards _pose, _info, _waiting, _answers, _abandoned
        self._pose: Optional[PoseStamped] = None
        self._info: Optional[CameraInfo] = None
        self._waiting: Dict[str, threading.Event] = {}  # service request id -> answered
        self._answers: Dict[str, QueryResult] = {}
        self._abandoned: Set[str] = set()  # service calls answered by their timeout
        self._jobs: 'SimpleQueue[Tuple[Callable[[], Any], Future]]' = SimpleQueue()
        self._subscribe(p)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name='st4r-worker', daemon=True)
        self._worker.start()

    def _declare_parameters(self) -> Dict[str, Value]:
        """Declare every parameter with its descriptor; return the values (ParameterError)."""
        values: Dict[str, Value] = {}
        for name, parameter in PARAMETERS.items():
            descriptor = ParameterDescriptor(
                description=parameter.description, additional_constraints=parameter.constraints,
                read_only=parameter.applies == 'start')
            try:
                values[name] = self.declare_parameter(name, parameter.default, descriptor).value
            except InvalidParameterTypeException as err:
                kind = TYPE_NAMES[type(parameter.default)]
                raise ParameterError(f'{name}: expected {kind} (default {parameter.default!r})'
                                     f': {err}') from None
            problem = check_value(name, values[name])
            if problem:
                raise ParameterError(problem)
        return values

    def _subscribe(self, p: Dict) -> None:
        reliability = (ReliabilityPolicy.BEST_EFFORT if p['input_reliability'] == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)
        latest = QoSProfile(depth=int(p['input_depth']), reliability=reliability)
        commands = QoSProfile(depth=1, history=HistoryPolicy.KEEP_ALL, reliability=reliability)
        group = ReentrantCallbackGroup()
        self.create_subscription(String, 'command', self._on_command, commands,
                                 callback_group=group)
        self.create_subscription(PoseStamped, 'camera/pose', self._on_pose, latest,
                                 callback_group=group)
        self.create_subscription(CameraInfo, 'camera/camera_info', self._on_info, latest,
                                 callback_group=group)
        self.create_subscription(Float64, 'scene_time', self._on_scene_time, latest,
                                 callback_group=group)
        self.create_service(Query, 'query', self._on_query, callback_group=group)

    # ---- lifecycle: configure loads the scene, cleanup frees it ---------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        scene, layer = self._value('scene'), self._value('layer')
        if not scene:
            self._swap_engine(_Unloaded('no scene loaded: the scene parameter is empty'))
            self.get_logger().error('configure: the scene parameter is empty')
            return TransitionCallbackReturn.FAILURE
        try:
            engine = self._on_worker(lambda: self._open_engine(scene, layer))
        except Exception as err:  # noqa: BLE001 - the node stays up and says why
            reason = f'scene {scene!r} not loaded: {type(err).__name__}: {err}'
            self.get_logger().error(reason)
            self._swap_engine(_Unloaded(reason))
            return TransitionCallbackReturn.FAILURE
        self._swap_engine(engine)
        self.get_logger().info(f'scene {scene} loaded on {engine.device}')
        return TransitionCallbackReturn.SUCCESS

    def _open_engine(self, scene: str, layer: str) -> QueryEngine:
        engine = QueryEngine.open(scene, layer or None, self._value('device'),
                                  self._value('compile_text_encoders'))
        engine.set_scene_time(self._value('scene_time'))
        return engine

    def _on_worker(self, work: Callable[[], Job]) -> Job:
        """
        Run ``work`` on the worker thread; return what it returns, raise what it raises.

        The engine loads on the thread that runs it: torch keeps an intra-op thread pool per
        thread, and ops from a second thread pay for waking theirs (BENCHMARKS.md, the node).
        """
        if self.queue.closed:
            raise RuntimeError('the worker has stopped')
        done: Future = Future()
        self._jobs.put((work, done))
        return done.result()

    def _run_jobs(self) -> None:
        """Run the jobs handed to the worker (``_on_worker``), each to its future."""
        for work, done in self._waiting_jobs():
            try:
                done.set_result(work())
            except BaseException as err:  # noqa: B036 - handed to the caller, not swallowed
                done.set_exception(err)

    def _waiting_jobs(self) -> Iterator[Tuple[Callable[[], Any], Future]]:
        """Take the jobs waiting now, oldest first."""
        while True:
            try:
                yield self._jobs.get_nowait()
            except Empty:
                return

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._swap_engine(_Unloaded(UNCONFIGURED))
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._swap_engine(_Unloaded('st4r_node is shutting down'))
        return TransitionCallbackReturn.SUCCESS

    def _swap_engine(self, engine: QueryEngine) -> None:
        """Hand the worker another engine once it is between requests; free the old one."""
        with self._engine_lock:
            self.session.use_engine(engine)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def loaded(self) -> bool:
        return not isinstance(self.session.engine, _Unloaded)

    # ---- parameters at run time ---------------------------------------------------------

    def _value(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Refuse changes that cannot take effect now (with why); apply scene_time at once."""
        for parameter in parameters:
            problem = check_value(parameter.name, parameter.value)
            known = PARAMETERS.get(parameter.name)
            if problem is None and self.loaded and known and known.applies == 'configure':
                problem = (f'{parameter.name} is read when the scene loads: deactivate and '
                           'clean up the node (lifecycle), set it, then configure')
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for parameter in parameters:
            if parameter.name == 'scene_time':
                self.session.engine.set_scene_time(parameter.value)
        return SetParametersResult(successful=True)

    # ---- callbacks: validate, enqueue, return -------------------------------------------

    def _on_command(self, msg: String) -> None:
        self._enqueue(request_from_string(msg.data, self.session.camera))

    def _on_pose(self, msg: PoseStamped) -> None:
        with self._lock:
            self._pose = msg  # the worker renders only the newest

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def _on_scene_time(self, msg: Float64) -> None:
        result = self.set_parameters([RosParameter('scene_time', value=float(msg.data))])[0]
        if not result.successful:
            self.get_logger().warning(f'scene_time topic ignored: {result.reason}')

    def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        parsed = request_from_service(request, self.session.camera, self.scene_frame)
        if isinstance(parsed, QueryResult):
            self._publish_refusal(parsed)
            result = parsed
        else:
            result = self._call(parsed)
        stamp = self.get_clock().now().to_msg()
        response.result = outputs.result_to_msg(self.types, result, stamp, self.scene_frame)
        if result.mask is not None:
            frame = (self.session.camera_frame if request.use_latest_camera
                     else request.camera_info.header.frame_id)
            response.mask = outputs.mask_to_image(self.types, result.mask, stamp, frame or '')
        return response

    def _call(self, request: QueryRequest) -> QueryResult:
        """Queue a service request and wait for its one answer (or answer it DROPPED)."""
        answered = threading.Event()
        with self._lock:
            self._waiting[request.request_id] = answered
        self._enqueue(request)
        answered.wait(self.timeout_s)
        with self._lock:
            self._waiting.pop(request.request_id, None)
            result = self._answers.pop(request.request_id, None)
            if result is not None:
                return result
            # The worker has not claimed it: it never will (one request, one answer).
            self._abandoned.add(request.request_id)
        result = refusal(request.request_id, request.text, QueryStatus.DROPPED,
                         f'no answer within service_timeout_s={self.timeout_s:g} s: not '
                         'processed, send it again later', request.mode)
        self._publish_refusal(result)
        return result

    def _enqueue(self, request) -> None:
        if isinstance(request, QueryResult):
            self._publish_refusal(request)
            return
        refused = self.queue.put(request)
        if refused is not None:
            self.get_logger().warning(refused.message)
            if self._claim(refused):
                self._publish_refusal(refused)

    # ---- worker: the only thread that runs the engine -------------------------------------

    def _work(self) -> None:
        while not self.queue.closed:
            try:
                self._run_jobs()
                with self._engine_lock:
                    self._update_camera()
                request = self.queue.get(timeout=0.01)
                if request is not None:
                    with self._engine_lock:
                        self._answer(request)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any failure
                self.get_logger().error(f'worker: {type(err).__name__}: {err}')
        self._fail_jobs()

    def _fail_jobs(self) -> None:
        """Fail the jobs still waiting once the worker has stopped."""
        for _, done in self._waiting_jobs():
            done.set_exception(RuntimeError('the worker has stopped'))

    def _update_camera(self) -> None:
        """Apply the newest CameraInfo and pose (a new pose re-renders the current target)."""
        with self._lock:
            info, pose, self._info, self._pose = self._info, self._pose, None, None
        for handle, msg in ((self.session.on_camera_info, info), (self.session.on_pose, pose)):
            error = None if msg is None else handle(msg)
            if error:
                self.get_logger().warning(f'camera ignored: {error}')

    def _answer(self, request: QueryRequest) -> None:
        with self._lock:
            if request.request_id in self._abandoned:  # its service call already answered
                self._abandoned.discard(request.request_id)
                return
        stamp = self.get_clock().now().to_msg()
        if self._active or not self.loaded:
            result = self.session.engine.query(request, colour=True)
        else:
            result = refusal(request.request_id, request.text, QueryStatus.NOT_READY,
                             'st4r_node is inactive (lifecycle): activate it to answer',
                             request.mode)
        if result.status == QueryStatus.ERROR:
            self.get_logger().error(f'query {result.request_id}: {result.message}')
        if not self._claim(result):
            return
        try:
            self.session.publish_answer(request, result, stamp)
        except Exception as err:  # noqa: BLE001 - publishing failed: still one answer
            self._publish_refusal(refusal(request.request_id, request.text, QueryStatus.ERROR,
                                          f'{type(err).__name__}: {err}', request.mode))

    def _claim(self, result: QueryResult) -> bool:
        """
        Make ``result`` the answer of its request, unless its service call timed out first.

        Returns False when the request was already answered (then nothing is published).
        """
        with self._lock:
            if result.request_id in self._abandoned:
                self._abandoned.discard(result.request_id)
                return False
            answered = self._waiting.get(result.request_id)
            if answered is not None:
                self._answers[result.request_id] = result
                answered.set()
            return True

    def _publish_refusal(self, result: QueryResult) -> None:
        stamp = self.get_clock().now().to_msg()
        self._publish('result', outputs.result_to_msg(self.types, result, stamp,
                                                      self.scene_frame))

    def _publish(self, topic: str, msg) -> None:
        self.publishers_[topic].publish(msg)

    def close(self) -> None:
        """Answer the requests still queued DROPPED and stop the worker."""
        for result in self.queue.close():
            if self._claim(result) and rclpy.ok():
                self._publish_refusal(result)
        self._worker.join(timeout=2.0)


class _Unloaded(QueryEngine):
    """The engine of a node without a scene: every query is answered NO_SCENE with why."""

    def __init__(self, reason: str) -> None:  # noqa: D107 - no scene to hold
        self.reason = reason
        self.scene_time = 0.0

    def query(self, request, colour: bool = False) -> QueryResult:
        return refusal(request.request_id, request.text, QueryStatus.NO_SCENE, self.reason,
                       request.mode)


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = St4rNode()
    except ParameterError as err:
        print(f'st4r_node: parameter {err}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        if node.autostart and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
