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
Commands and service calls -> QueryRequests, or their refusals.

A std_msgs/String command and a Query service request (srv/Query.srv) become the engine's
QueryRequest, with a request id (``engine.new_request_id`` when the caller gave none) so that
every answer names its request. What the engine cannot check (the service's mode, scene time
and camera fields, and whether a latest camera exists) is validated here: a bad request
becomes a refusal result at once (INVALID, NOT_READY; ``engine.refusal``), never an
exception. The text itself is left to the engine, which answers any string.
"""

from __future__ import annotations

from typing import Optional, Union

from st4r_ros.engine import (as_mode, new_request_id, QueryMode, QueryRequest, QueryResult,
                             QueryStatus, refusal)
from st4r_ros.errors import CameraError
from st4r_ros.render.camera import Camera
from st4r_ros.ros.cameras import camera_from_msgs


def request_from_string(data: str, latest_camera: Optional[Camera] = None,
                        request_id: Optional[str] = None) -> QueryRequest:
    """
    Make the request of a std_msgs/String command.

    It is an AUTO query of ``data`` at the current scene time, with the latest camera (if any)
    for the mask. The text is checked by the engine (empty, over-long, control characters), so
    any string gets its answer there.
    """
    return QueryRequest(text=data, mode=QueryMode.AUTO, camera=latest_camera,
                        request_id=request_id or new_request_id())


def request_from_service(request_msg, latest_camera: Optional[Camera],
                         scene_frame: Optional[str] = None
                         ) -> Union[QueryRequest, QueryResult]:
    """
    Make the QueryRequest of a Query service request (srv/Query.srv), or the refusal.

    The refusal answers at once: INVALID for an unknown mode, a scene_time outside [0, 1] or
    NaN (with use_scene_time), both use_latest_camera and an explicit camera, or a malformed
    explicit camera (see cameras.camera_from_msgs); NOT_READY for use_latest_camera before
    any camera arrived.

    :param latest_camera: the camera of the latest pose + CameraInfo received, or None.
    :param scene_frame: the scene frame an explicit camera pose must be in (None: not checked;
        the node transforms the pose with TF before).
    """
    request_id = request_msg.request_id or new_request_id()
    text = request_msg.query
    mode = as_mode(request_msg.mode)
    if mode is None:
        return refusal(request_id, text, QueryStatus.INVALID,
                       f'mode: expected one of {[int(m) for m in QueryMode]}, '
                       f'got {request_msg.mode}')

    def refuse(status: QueryStatus, message: str) -> QueryResult:
        return refusal(request_id, text, status, message, mode)

    time = float(request_msg.scene_time) if request_msg.use_scene_time else None
    if time is not None and not 0.0 <= time <= 1.0:  # NaN fails too
        return refuse(QueryStatus.INVALID, f'scene_time: expected a normalised scene time in '
                                           f'[0, 1] with use_scene_time, got {time!r}')
    info = request_msg.camera_info
    explicit = info.width != 0 or info.height != 0
    if explicit and request_msg.use_latest_camera:
        return refuse(QueryStatus.INVALID, 'camera: give use_latest_camera or an explicit '
                                           'camera (camera_info width/height), not both')
    camera = None
    if request_msg.use_latest_camera:
        if latest_camera is None:
            return refuse(QueryStatus.NOT_READY, 'use_latest_camera: no camera pose and '
                                                 'CameraInfo received yet')
        camera = latest_camera
    elif explicit:
        try:
            camera = camera_from_msgs(request_msg.camera_pose, info, scene_frame)
        except CameraError as err:
            return refuse(QueryStatus.INVALID, str(err))
    return QueryRequest(text=text, mode=mode, time=time, camera=camera, request_id=request_id)
