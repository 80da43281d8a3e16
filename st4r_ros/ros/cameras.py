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
Camera messages <-> Camera: a pose and a CameraInfo from the outside, checked.

Camera poses are of the optical frame (REP 103 ``*_optical_frame``: x right, y down,
z forward) in the scene frame, lengths in scene units. A camera from the outside (a topic, a
service request) is validated here against the plausibility limits below: a bad one becomes a
CameraError naming the field, never another exception. The way back (``camera_to_pose``, with
outputs.camera_to_camera_info) makes the messages of a Camera, for clients and tests.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from st4r_ros.errors import CameraError
from st4r_ros.render.camera import Camera, rotmat_to_quat_xyzw
from st4r_ros.ros.messages import header_msg, make, point_msg, Types
import torch

# Camera plausibility. tf2 drops transforms whose |q|^2 is off by this much (BufferCore's
# QUATERNION_NORMALIZATION_TOLERANCE); nearer ones are float noise and get normalised.
QUATERNION_TOLERANCE = 0.01
# Focal lengths in units of the larger image side: 0.05 is a ~169 degree field of view, 100 a
# ~0.6 degree one. Outside that the "pinhole" is a unit mix-up or garbage, not a lens.
FOCAL_RANGE = (0.05, 100.0)
MAX_IMAGE_SIDE = 16384  # pixels, the renderers' limit (render.camera.Camera)


def camera_from_msgs(pose_stamped, camera_info, scene_frame: Optional[str] = None) -> Camera:
    """
    Make the Camera of a geometry_msgs/PoseStamped and a sensor_msgs/CameraInfo.

    The pose is that of the camera's optical frame in the scene frame; from the CameraInfo K,
    width and height are used (d, binning and roi are ignored: renders are ideal pinholes).

    Refused (CameraError naming the field): an image of zero size or over MAX_IMAGE_SIDE; K all
    zeros (uncalibrated), not of the pinhole form [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], not
    finite, focal lengths outside FOCAL_RANGE x the larger image side or a principal point
    more than an image size off the image; a position that is not finite; an orientation that
    is not finite or whose |q|^2 is more than QUATERNION_TOLERANCE from 1 (zero included), as
    tf2 refuses it (nearer ones are normalised); a pose in another frame than ``scene_frame``
    (when given; an empty frame_id is taken as the scene frame).
    """
    frame = pose_stamped.header.frame_id
    if scene_frame is not None and frame not in ('', scene_frame):
        raise CameraError(f'camera_pose.header.frame_id: expected the scene frame '
                          f'{scene_frame!r} (transform the pose first), got {frame!r}')
    width, height = int(camera_info.width), int(camera_info.height)
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise CameraError(f'camera_info.width/height: expected a non-zero image size of at '
                          f'most {MAX_IMAGE_SIDE} px a side, got {width}x{height}')
    k = _intrinsics(camera_info.k, width, height)
    position, orientation = pose_stamped.pose.position, pose_stamped.pose.orientation
    return Camera.from_pose(torch.from_numpy(k), width, height,
                            (position.x, position.y, position.z),
                            _unit_quaternion(orientation), optical=True)


def camera_to_pose(types: Types, camera: Camera, stamp, frame_id: str):
    """
    Make the geometry_msgs/PoseStamped of ``camera``'s optical frame in ``frame_id``.

    This is the inverse of camera_from_msgs, with outputs.camera_to_camera_info.
    """
    cam_to_world = camera.cam_to_world.double()  # [4, 4]
    x, y, z, w = rotmat_to_quat_xyzw(cam_to_world[:3, :3])
    orientation = make(types, 'geometry_msgs/msg/Quaternion', x=x, y=y, z=z, w=w)
    position = point_msg(types, cam_to_world[:3, 3].tolist())
    pose = make(types, 'geometry_msgs/msg/Pose', position=position, orientation=orientation)
    return make(types, 'geometry_msgs/msg/PoseStamped',
                header=header_msg(types, stamp, frame_id), pose=pose)


def _intrinsics(k, width: int, height: int) -> np.ndarray:
    """Check CameraInfo.k (9 numbers, row-major) as a pinhole K; return it [3, 3] float64."""
    try:
        values = np.array(k, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise CameraError(f'camera_info.k: expected 9 numbers ({err})') from None
    if values.shape != (9,) or not np.isfinite(values).all():
        raise CameraError(f'camera_info.k: expected 9 finite numbers, got {values.tolist()}')
    if not values.any():
        raise CameraError('camera_info.k: all zeros (an uncalibrated camera)')
    fx, skew, cx, below_fx, fy, cy = values[:6]
    if abs(skew) > 1e-6 * abs(fx) or below_fx != 0 or not np.allclose(values[6:], [0, 0, 1]):
        raise CameraError(f'camera_info.k: expected a pinhole [[fx, 0, cx], [0, fy, cy], '
                          f'[0, 0, 1]], got {values.tolist()}')
    low, high = (bound * max(width, height) for bound in FOCAL_RANGE)
    if not (low <= fx <= high and low <= fy <= high):
        raise CameraError(f'camera_info.k: focal lengths fx={fx:g}, fy={fy:g} outside '
                          f'[{low:g}, {high:g}] px for a {width}x{height} image')
    if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
        raise CameraError(f'camera_info.k: principal point ({cx:g}, {cy:g}) far off the '
                          f'{width}x{height} image')
    return values.reshape(3, 3)


def _unit_quaternion(q) -> Tuple[float, float, float, float]:
    """Return (x, y, z, w) of a geometry_msgs/Quaternion, normalised; see camera_from_msgs."""
    with np.errstate(over='ignore', invalid='ignore'):
        values = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
        norm2 = float((values * values).sum())
    if not np.isfinite(values).all() or not abs(norm2 - 1.0) <= QUATERNION_TOLERANCE:
        raise CameraError(f'camera_pose.pose.orientation: expected a finite unit quaternion '
                          f'(|q|^2 within {QUATERNION_TOLERANCE} of 1), got '
                          f'{values.tolist()} (|q|^2 = {norm2:.4g})')
    x, y, z, w = (float(v) for v in values / math.sqrt(norm2))
    return (x, y, z, w)
