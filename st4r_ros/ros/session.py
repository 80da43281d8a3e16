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
QuerySession: what the node does with its inputs, whatever carries the messages.

The live node (rclpy publishers) and `st4r replay` (a bag writer) drive the same session, so a
replayed bag shows exactly what the node would have published:

- camera poses (geometry_msgs/PoseStamped, the optical frame's pose in the scene frame) and
  camera infos (sensor_msgs/CameraInfo) make the latest camera; a new pose re-renders the mask
  of the current answer (the last OK one) at its scene time;
- every answered request publishes ``result``, ``target_cloud`` and ``markers``; a processed
  one (OK or NO_TARGET) with a camera also ``mask``, ``mask/camera_info`` and ``overlay`` (an
  all-zero mask when there is no target, so a display never keeps showing a stale one), while
  a refused one (INVALID, DROPPED, NO_SCENE, ERROR) leaves the current target's views alone.

Stamps: an answer's outputs carry the stamp of the camera pose it used, else the stamp the
caller gives (the time the request arrived); a re-render carries its pose's stamp.
"""

from __future__ import annotations

from typing import Callable, Optional

from st4r_ros.engine import QueryEngine, QueryRequest, QueryResult, QueryStatus
from st4r_ros.errors import CameraError
from st4r_ros.render.camera import Camera
from st4r_ros.ros import outputs
from st4r_ros.ros.cameras import camera_from_msgs
from st4r_ros.ros.messages import CAMERA_INFO, IMAGE, MARKER_ARRAY, POINT_CLOUD2, RESULT
import torch

# Output topic (relative name) -> message type.
OUTPUTS = {
    'result': RESULT,
    'target_cloud': POINT_CLOUD2,
    'markers': MARKER_ARRAY,
    'mask': IMAGE,
    'mask/camera_info': CAMERA_INFO,
    'overlay': IMAGE,
}

Publish = Callable[[str, object], None]


class QuerySession:
    """
    The node's state between messages: latest camera and current answer.

    :param engine: answers the queries.
    :param types: message classes (messages.RosbagsTypes or messages.RclpyTypes).
    :param publish: ``publish(topic, msg)`` sends one output on a topic of OUTPUTS.
    :param scene_frame: the frame the scene is in (results' frame_id; camera poses must be in it).
    """

    def __init__(self, engine: QueryEngine, types, publish: Publish,
                 scene_frame: str = 'map') -> None:
        self.engine, self.types, self.publish = engine, types, publish
        self.scene_frame = scene_frame
        self.camera: Optional[Camera] = None
        self.current: Optional[QueryResult] = None
        self._pose = self._info = None
        self._camera_stamp = None
        self.camera_frame: Optional[str] = None  # the latest CameraInfo's frame_id

    def use_engine(self, engine: QueryEngine) -> None:
        """Answer later queries with ``engine`` (another scene): the current target is gone."""
        self.engine, self.current = engine, None

    def on_camera_info(self, msg) -> Optional[str]:
        """
        Take a CameraInfo.

        Returns why the camera is invalid, None when it is fine or still waits for its pose.
        """
        self._info = msg
        return self._update_camera()

    def on_pose(self, msg) -> Optional[str]:
        """
        Take a camera pose; re-renders the current answer's mask for the new camera.

        Returns why the camera is invalid, None otherwise.
        """
        self._pose = msg
        error = self._update_camera()
        if error is None and self.camera is not None and self.current is not None:
            mask, image = self.engine.render_views(self.current, self.camera)
            self._publish_views(mask, image, self._camera_stamp, self.camera)
        return error

    def answer(self, request: QueryRequest, stamp) -> QueryResult:
        """Run ``request`` through the engine (its views too) and publish the answer."""
        result = self.engine.query(request, colour=True)
        self.publish_answer(request, result, stamp)
        return result

    def publish_answer(self, request: QueryRequest, result: QueryResult, stamp) -> None:
        """
        Publish ``result`` (an engine answer or a refusal) for ``request``.

        ``stamp`` is used when the request had no camera.
        """
        if request.camera is not None and request.camera is self.camera:
            stamp = self._camera_stamp
        frame, types = self.scene_frame, self.types
        self.publish('result', outputs.result_to_msg(types, result, stamp, frame))
        self.publish('target_cloud',
                     outputs.cloud_to_pointcloud2(types, result.cloud, stamp, frame))
        self.publish('markers', outputs.result_markers(types, result, stamp, frame))
        # A processed answer replaces the current target and its views (none and an all-zero
        # mask after NO_TARGET or NOT_IN_STATE); refusals (INVALID, DROPPED, NO_SCENE, ERROR,
        # NO_STATE_CACHE ...) leave both.
        if result.status not in (QueryStatus.OK, QueryStatus.NO_TARGET, QueryStatus.NOT_IN_STATE):
            return
        self.current = result if result.ok else None
        if request.camera is not None and result.image is not None:
            mask = result.mask if result.mask is not None else torch.zeros(
                request.camera.height, request.camera.width, dtype=torch.bool)
            self._publish_views(mask, result.image, stamp, request.camera)

    def _update_camera(self) -> Optional[str]:
        if self._pose is None or self._info is None:
            return None
        try:
            self.camera = camera_from_msgs(self._pose, self._info, self.scene_frame)
        except CameraError as err:  # the previous camera stays in use
            return str(err)
        self._camera_stamp = self._pose.header.stamp
        self.camera_frame = self._info.header.frame_id
        return None

    def _publish_views(self, mask: torch.Tensor, rgb: torch.Tensor, stamp,
                       camera: Camera) -> None:
        """Mask [H, W], its CameraInfo and the overlay (the colour [H, W, 3], target marked)."""
        frame, types = self.camera_frame or '', self.types
        self.publish('mask', outputs.mask_to_image(types, mask, stamp, frame))
        self.publish('mask/camera_info',
                     outputs.camera_to_camera_info(types, camera, stamp, frame))
        self.publish('overlay', outputs.overlay_to_image(types, rgb, mask, stamp, frame))
