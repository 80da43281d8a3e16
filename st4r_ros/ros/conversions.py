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
Messages <-> QueryEngine: the one conversion layer of the ROS face, live and offline.

The same functions serve the rclpy node (rclpy's generated classes) and bag replay (rosbags
classes, no ROS needed). They never import either world: they take a ``types`` adapter that
resolves a message name such as "sensor_msgs/msg/Image" to its class and knows what that world
wants for defaults and arrays:

- ``RosbagsTypes(typestore)``: rosbags classes are dataclasses that need every field in the
  constructor, with numpy arrays for arrays and sequences of numbers;
- ``RclpyTypes()``: rclpy classes default every field themselves and take ``array.array`` for
  sequences of numbers (their setters refuse numpy arrays, which are no ``Sequence``).

Converters build messages with ``make(types, msgtype, **fields)``, giving numbers as Python
scalars and arrays as numpy arrays; ``make`` hands them over in the form each world takes.

Frames and units: the scene frame (``frame_id`` of results, clouds, markers) is the frame the
4DGS scene is expressed in, lengths in scene units (metres for a metric scene). Camera poses
are of the optical frame (REP 103 ``*_optical_frame``: x right, y down, z forward). Times are
normalised scene time in [0, 1] unless named ``*_s`` (seconds) or ``*_ns`` (nanoseconds).

Inputs from the outside (commands, service requests, camera messages, stamps) are validated
here: a bad one becomes a refusal result (INVALID, NOT_READY) or a CameraError / TimeRangeError,
never another exception.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import enum
import importlib
import math
from typing import Dict, Optional, Sequence, Tuple, Union
import uuid

import numpy as np
from st4r_ros.engine import (MAX_QUERY_CHARS, QueryMode, QueryRequest, QueryResult, QueryStatus,
                             TargetCloud, TimeSpan)
from st4r_ros.errors import CameraError, TimeRangeError
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import to_uint8
import torch
from torch import Tensor

RESULT = 'st4r_ros/msg/ReferringResult'
SPAN = 'st4r_ros/msg/TimeSpan'
HEADER = 'std_msgs/msg/Header'
TIME = 'builtin_interfaces/msg/Time'
IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
POINT_CLOUD2 = 'sensor_msgs/msg/PointCloud2'
POINT_FIELD = 'sensor_msgs/msg/PointField'
MARKER = 'visualization_msgs/msg/Marker'
MARKER_ARRAY = 'visualization_msgs/msg/MarkerArray'

LATENCY_STAGES = ('total', 'text', 'where', 'when', 'render')  # QueryResult.latency_ms keys
NS_PER_S = 1_000_000_000

# Camera plausibility. tf2 drops transforms whose |q|^2 is off by this much (BufferCore's
# QUATERNION_NORMALIZATION_TOLERANCE); nearer ones are float noise and get normalised.
QUATERNION_TOLERANCE = 0.01
# Focal lengths in units of the larger image side: 0.05 is a ~169 degree field of view, 100 a
# ~0.6 degree one. Outside that the "pinhole" is a unit mix-up or garbage, not a lens.
FOCAL_RANGE = (0.05, 100.0)
MAX_IMAGE_SIDE = 16384  # pixels, the renderers' limit (render.camera.Camera)

MARKER_NS = 'st4r_target'
MIN_BOX_SIZE = 0.01  # scene units; a one-Gaussian target would give RViz a zero-size cube
BOX_RGBA = (0.1, 0.9, 0.2, 0.35)
TEXT_RGBA = (1.0, 1.0, 1.0, 1.0)
MAX_LABEL_CHARS = 80
# PointCloud2 layout: x, y, z, rgb, score, float32 little-endian; rgb holds 0x00RRGGBB as RViz
# and PCL read it (the uint32's bytes, declared FLOAT32).
CLOUD_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<u4'),
                        ('score', '<f4')])


# ----- message classes of either world -----

class RosbagsTypes:
    """Message classes of a rosbags Typestore (replay, tests), e.g. ``ros_typestore()``."""

    def __init__(self, typestore) -> None:
        self.typestore = typestore

    def __getitem__(self, name: str) -> type:
        return self.typestore.types[name]

    def defaults(self, name: str, given: Dict) -> Dict:
        """
        Return the ROS default values (zeros, empty) of the fields of ``name`` not in ``given``.

        rosbags keeps no .msg default values: a field with a non-zero one (Quaternion.w) must be
        given.
        """
        _, fields = self.typestore.fielddefs[name]
        return {field: self._default(desc) for field, desc in fields if field not in given}

    def _default(self, desc):
        from rosbags.interfaces import Nodetype

        kind, detail = desc
        if kind == Nodetype.BASE:
            return {'string': '', 'bool': False, 'float32': 0.0, 'float64': 0.0}.get(detail[0], 0)
        if kind == Nodetype.NAME:
            return self[detail](**self.defaults(detail, {}))
        (item_kind, item), size = detail
        length = size if kind == Nodetype.ARRAY else 0  # sequences start empty
        if item_kind == Nodetype.BASE and item[0] not in ('string', 'bool'):
            return np.zeros(length, dtype=item[0])
        return [self._default((item_kind, item)) for _ in range(length)]

    @staticmethod
    def array(values: np.ndarray) -> np.ndarray:
        return values


class RclpyTypes:
    """rclpy's generated classes (the live node; needs ROS 2 sourced and st4r_ros built)."""

    def __getitem__(self, name: str) -> type:
        package, kind, message = name.split('/')  # "sensor_msgs/msg/Image"
        return getattr(importlib.import_module(f'{package}.{kind}'), message)

    @staticmethod
    def defaults(name: str, given: Dict) -> Dict:
        return {}  # rclpy classes default every field themselves

    @staticmethod
    def array(values: np.ndarray) -> array.array:
        return array.array(values.dtype.char, values.tobytes())


Types = Union[RosbagsTypes, RclpyTypes]


def make(types: Types, msgtype: str, /, **fields):
    """
    Make a message of type ``msgtype`` with ``fields`` set and the others at their defaults.

    Give numbers as Python scalars (rclpy refuses numpy scalars) and arrays or sequences of
    numbers as 1-D numpy arrays of the field's dtype (uint8 for uint8[], float64 for
    float64[9], ...); nested messages as messages of the same ``types``.
    """
    values = {key: types.array(value) if isinstance(value, np.ndarray) else value
              for key, value in fields.items()}
    return types[msgtype](**types.defaults(msgtype, values), **values)


def stamp_from_ns(types: Types, ns: int):
    """builtin_interfaces/Time of a time in nanoseconds since the epoch."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return make(types, TIME, sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp) -> int:
    """
    Nanoseconds of a builtin_interfaces/Time (either world).

    :raises TimeRangeError: nanosec outside [0, 1e9) (no ROS clock makes one).
    """
    if not 0 <= int(stamp.nanosec) < NS_PER_S:
        raise TimeRangeError(f'stamp.nanosec: expected 0..999999999, got {stamp.nanosec}')
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ros_string(text: str) -> str:
    """
    Return ``text`` as every ROS client carries it.

    That is valid UTF-8 (lone surrogates become '?') and no NUL characters (C and C++
    subscribers would cut the string there).
    """
    return text.encode('utf-8', 'replace').decode('utf-8').replace('\x00', '\ufffd')


def _header(types: Types, stamp, frame_id: str):
    return make(types, HEADER, stamp=stamp, frame_id=frame_id)


def _point(types: Types, xyz: Sequence[float]):
    x, y, z = (float(v) for v in xyz)
    return make(types, 'geometry_msgs/msg/Point', x=x, y=y, z=z)


# ----- results -----

def result_to_msg(types: Types, result: QueryResult, stamp, frame_id: str):
    """
    st4r_ros/ReferringResult of ``result``.

    :param stamp: builtin_interfaces/Time; that of the camera pose the mask was rendered for, or
        the time the request was received (msg/ReferringResult.msg).
    :param frame_id: the scene frame, in which centroid and box are expressed.

    NaN conventions are the engine's (score, times, centroid, box of answers without a target);
    latencies the engine did not measure are NaN. frame_times, frame_scores and span_threshold
    are filled for time-sensitive answers only (empty and NaN otherwise).
    """
    cls = types[RESULT]
    latencies = {f'latency_{stage}_ms': float(result.latency_ms.get(stage, math.nan))
                 for stage in LATENCY_STAGES}
    return make(
        types, RESULT,
        header=_header(types, stamp, frame_id),
        request_id=ros_string(result.request_id),
        query=ros_string(result.query),
        # By name: a status or mode the .msg does not define fails here, not in a planner.
        status=getattr(cls, 'STATUS_' + QueryStatus(result.status).name),
        status_message=ros_string(result.message),
        mode=getattr(cls, 'MODE_' + QueryMode(result.mode).name),
        time_sensitive=bool(result.time_sensitive),
        time_sensitivity_reason=ros_string(result.time_sensitivity_reason),
        target_instance_id=int(result.target_instance_id),
        score=float(result.score),
        no_target_threshold=float(result.no_target_threshold),
        active_spans=[span_to_msg(types, span) for span in result.active_spans],
        frame_scores=np.asarray(result.frame_scores, np.float32),
        frame_times=np.asarray(result.frame_times, np.float32),
        span_threshold=float(result.span_threshold),
        centroid=_point(types, result.centroid),
        bbox_min=_point(types, result.bbox_min),
        bbox_max=_point(types, result.bbox_max),
        num_gaussians=int(result.num_gaussians),
        scene_time=float(result.scene_time),
        scene_time_s=float(result.scene_time_s),
        **latencies,
    )


def span_to_msg(types: Types, span: TimeSpan):
    """st4r_ros/TimeSpan of ``span`` (normalised times, seconds, mean score)."""
    return make(types, SPAN, start=float(span.start), end=float(span.end),
                start_s=float(span.start_s), end_s=float(span.end_s), score=float(span.score))


# ----- images -----

def _numpy(values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _image(types: Types, pixels: np.ndarray, encoding: str, stamp, frame_id: str):
    """sensor_msgs/Image of uint8 ``pixels`` [H, W] or [H, W, C], rows top to bottom."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return make(types, IMAGE, header=_header(types, stamp, frame_id), height=int(height),
                width=int(width), encoding=encoding, is_bigendian=0,
                step=int(width * channels), data=pixels.reshape(-1))


def mask_to_image(types: Types, mask, stamp, frame_id: str):
    """
    sensor_msgs/Image mono8 of a mask [H, W] (bool tensor or array): 255 target, 0 else.

    frame_id: the camera's optical frame, as in the sibling CameraInfo.
    """
    mask = _numpy(mask)
    if mask.ndim != 2:
        raise ValueError(f'mask: expected shape [H, W], got {mask.shape}')
    return _image(types, np.where(mask.astype(bool), 255, 0), 'mono8', stamp, frame_id)


def camera_to_camera_info(types: Types, camera: Camera, stamp, frame_id: str):
    """
    Convert ``camera`` to a sensor_msgs/CameraInfo.

    Width, height, K, P = [K | 0], R = I and a zero plumb_bob distortion (renders are ideal
    pinholes). Published beside a mask or overlay so that RViz's Camera display can project
    them; frame_id is the camera's optical frame.
    """
    k = camera.K.detach().cpu().double().numpy()  # [3, 3]
    p = np.hstack([k, np.zeros((3, 1))])  # [3, 4]: monocular, no baseline
    return make(types, CAMERA_INFO, header=_header(types, stamp, frame_id),
                height=int(camera.height), width=int(camera.width),
                distortion_model='plumb_bob', d=np.zeros(5), k=k.reshape(-1),
                r=np.eye(3).reshape(-1), p=p.reshape(-1))


def tint(rgb: Tensor, mask: Tensor, color: Sequence[float] = (1.0, 0.0, 0.0),
         strength: float = 0.5) -> Tensor:
    """
    Blend the pixels of ``mask`` [H, W] (bool) in ``rgb`` [H, W, 3] towards ``color``.

    ``rgb`` and ``color`` are RGB in [0, 1], blended by ``strength``; the result has the same
    shape and range.
    """
    mask = torch.as_tensor(mask, dtype=torch.bool, device=rgb.device)
    paint = torch.as_tensor(color, dtype=rgb.dtype, device=rgb.device)
    return torch.where(mask[..., None], (1.0 - strength) * rgb + strength * paint, rgb)


def overlay_to_image(types: Types, rgb: Tensor, mask: Tensor, stamp, frame_id: str):
    """
    Convert an RGB render [H, W, 3] in [0, 1] to a sensor_msgs/Image bgr8, the mask tinted red.

    The mask is [H, W]; frame_id is the camera's optical frame.
    """
    pixels = to_uint8(tint(rgb, mask))  # [H, W, 3] RGB
    return _image(types, pixels[..., ::-1], 'bgr8', stamp, frame_id)


# ----- target cloud and markers -----

def cloud_to_pointcloud2(types: Types, cloud: Optional[TargetCloud], stamp, frame_id: str):
    """
    Convert the target's Gaussians to a sensor_msgs/PointCloud2.

    One row (height 1) of M points with x, y, z (scene frame, scene units), rgb (0x00RRGGBB in
    a FLOAT32 field, as RViz reads it) and score (relevance in [0, 1]); 20 bytes a point.
    ``None`` (no target) gives an empty cloud (width 0), which clears a stale one in RViz.
    """
    count = 0 if cloud is None else len(cloud.xyz)
    points = np.zeros(count, dtype=CLOUD_DTYPE)
    if count:
        xyz = _numpy(cloud.xyz).astype(np.float32)  # [M, 3]
        rgb = _numpy((cloud.rgb.clamp(0.0, 1.0) * 255.0).round()).astype(np.uint32)  # [M, 3]
        points['x'], points['y'], points['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        points['rgb'] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        points['score'] = _numpy(cloud.score).astype(np.float32)
    float32 = types[POINT_FIELD].FLOAT32
    fields = [make(types, POINT_FIELD, name=name, offset=int(CLOUD_DTYPE.fields[name][1]),
                   datatype=float32, count=1) for name in CLOUD_DTYPE.names]
    finite = all(np.isfinite(points[axis]).all() for axis in ('x', 'y', 'z'))
    return make(types, POINT_CLOUD2, header=_header(types, stamp, frame_id), height=1,
                width=count, fields=fields, is_bigendian=False,
                point_step=CLOUD_DTYPE.itemsize, row_step=CLOUD_DTYPE.itemsize * count,
                data=points.view(np.uint8), is_dense=bool(finite))


def _pose(types: Types, xyz: Sequence[float]):
    """geometry_msgs/Pose at ``xyz``, unrotated (w given: rosbags would default it to 0)."""
    orientation = make(types, 'geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0, w=1.0)
    return make(types, 'geometry_msgs/msg/Pose', position=_point(types, xyz),
                orientation=orientation)


def _marker(types: Types, stamp, frame_id: str, marker_id: int, kind: int, action: int,
            centre=(0.0, 0.0, 0.0), size=(1.0, 1.0, 1.0), rgba=(0.0, 0.0, 0.0, 0.0), text=''):
    sx, sy, sz = (float(v) for v in size)
    r, g, b, a = (float(v) for v in rgba)
    return make(types, MARKER, header=_header(types, stamp, frame_id), ns=MARKER_NS,
                id=marker_id, type=kind, action=action, pose=_pose(types, centre),
                scale=make(types, 'geometry_msgs/msg/Vector3', x=sx, y=sy, z=sz),
                color=make(types, 'std_msgs/msg/ColorRGBA', r=r, g=g, b=b, a=a), text=text)


def result_markers(types: Types, result: QueryResult, stamp, frame_id: str):
    """
    Make the visualization_msgs/MarkerArray of ``result`` for RViz.

    A DELETEALL of namespace "st4r_target" first (markers of an earlier target vanish), then
    for an OK result a translucent CUBE on the target's box (scene frame; at least
    MIN_BOX_SIZE a side) and a TEXT_VIEW_FACING label "query (score)" above it.
    """
    cls = types[MARKER]
    markers = [_marker(types, stamp, frame_id, 0, cls.CUBE, cls.DELETEALL)]  # type ignored
    if result.ok:
        low, high = np.array(result.bbox_min), np.array(result.bbox_max)
        centre, size = (low + high) / 2, np.maximum(high - low, MIN_BOX_SIZE)
        text_height = max(MIN_BOX_SIZE, 0.25 * float(size.max()))
        label = ros_string(f'{result.query[:MAX_LABEL_CHARS]} ({result.score:.2f})')
        above = centre + np.array([0.0, 0.0, size[2] / 2 + text_height])
        markers += [
            _marker(types, stamp, frame_id, 1, cls.CUBE, cls.ADD, centre, size, BOX_RGBA),
            _marker(types, stamp, frame_id, 2, cls.TEXT_VIEW_FACING, cls.ADD, above,
                    (0.0, 0.0, text_height), TEXT_RGBA, label),
        ]
    return make(types, MARKER_ARRAY, markers=markers)


# ----- cameras -----

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

    This is the inverse of camera_from_msgs, with camera_to_camera_info.
    """
    cam_to_world = camera.cam_to_world.double().numpy()
    x, y, z, w = _rotation_to_quaternion(cam_to_world[:3, :3])
    px, py, pz = (float(v) for v in cam_to_world[:3, 3])
    position = make(types, 'geometry_msgs/msg/Point', x=px, y=py, z=pz)
    orientation = make(types, 'geometry_msgs/msg/Quaternion', x=x, y=y, z=z, w=w)
    pose = make(types, 'geometry_msgs/msg/Pose', position=position, orientation=orientation)
    return make(types, 'geometry_msgs/msg/PoseStamped', header=_header(types, stamp, frame_id),
                pose=pose)


def _rotation_to_quaternion(rotation: np.ndarray) -> Tuple[float, float, float, float]:
    """
    Convert a rotation matrix [3, 3] to a quaternion (x, y, z, w).

    It is computed from its largest quaternion component (the well-conditioned branch of
    Shepperd's method).
    """
    trace = float(np.trace(rotation))
    diagonal = [trace, *np.diag(rotation)]
    largest = int(np.argmax(diagonal))
    r = rotation
    if largest == 0:
        w = 0.5 * math.sqrt(1.0 + trace)
        q = ((r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w),
             (r[1, 0] - r[0, 1]) / (4 * w), w)
    else:
        i = largest - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        v = [0.0, 0.0, 0.0]
        v[i] = 0.5 * math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        v[j] = (r[j, i] + r[i, j]) / (4 * v[i])
        v[k] = (r[k, i] + r[i, k]) / (4 * v[i])
        q = (*v, (r[k, j] - r[j, k]) / (4 * v[i]))
    return tuple(float(c) for c in q)


def _intrinsics(k, width: int, height: int) -> np.ndarray:
    """CameraInfo.k (9 numbers, row-major) checked as a pinhole K, as a [3, 3] float64 array."""
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


def _unit_quaternion(q) -> tuple:
    """(x, y, z, w) of a geometry_msgs/Quaternion, normalised; see camera_from_msgs."""
    with np.errstate(over='ignore', invalid='ignore'):
        values = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
        norm2 = float((values * values).sum())
    if not np.isfinite(values).all() or not abs(norm2 - 1.0) <= QUATERNION_TOLERANCE:
        raise CameraError(f'camera_pose.pose.orientation: expected a finite unit quaternion '
                          f'(|q|^2 within {QUATERNION_TOLERANCE} of 1), got '
                          f'{values.tolist()} (|q|^2 = {norm2:.4g})')
    x, y, z, w = (float(v) for v in values / math.sqrt(norm2))
    return (x, y, z, w)


# ----- requests -----

def new_request_id() -> str:
    """Make a request id for queries that came without one (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def refusal(request_id: str, text, status: QueryStatus, message: str,
            mode=QueryMode.AUTO) -> QueryResult:
    """
    Make the result of a request answered without running it (INVALID, NOT_READY, DROPPED...).

    Target fields are at their "none" values, the text is echoed (bounded), the mode too if it
    is one (else AUTO, so that the result still converts).
    """
    shown = text if isinstance(text, str) else repr(text)
    try:
        mode = QueryMode(int(mode))
    except (TypeError, ValueError):
        mode = QueryMode.AUTO
    return QueryResult(request_id=request_id, query=shown[:MAX_QUERY_CHARS], status=status,
                       message=message, mode=mode)


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
    explicit camera (see camera_from_msgs); NOT_READY for use_latest_camera before any camera
    arrived.

    :param latest_camera: the camera of the latest pose + CameraInfo received, or None.
    :param scene_frame: the scene frame an explicit camera pose must be in (None: not checked;
        the node transforms the pose with TF before).
    """
    request_id = request_msg.request_id or new_request_id()
    text = request_msg.query
    try:
        mode = QueryMode(int(request_msg.mode))
    except ValueError:
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


# ----- scene time from stamps -----

class StampPolicy(str, enum.Enum):
    """What scene_time_from_stamp does with a stamp outside the scene's time range."""

    CLAMP = 'clamp'  # hold the first or last frame, and flag it
    REFUSE = 'refuse'  # raise TimeRangeError


@dataclass(frozen=True)
class SceneTime:
    """
    A stamp on the scene's time axis.

    :ivar time: normalised scene time in [0, 1].
    :ivar offset_s: the stamp's offset from the scene start in seconds, before clamping.
    :ivar clamped: True when the stamp lay outside [start, start + duration] and was clamped.
    """

    time: float
    offset_s: float
    clamped: bool


def scene_time_from_stamp(stamp, start_stamp, duration_s: Optional[float],
                          policy: Union[StampPolicy, str] = StampPolicy.CLAMP) -> SceneTime:
    """
    Map a builtin_interfaces/Time to a scene time when the scene plays in step with a clock.

    ``start_stamp`` (a Time) is the scene's first frame, ``start_stamp + duration_s`` its last.

    Policy: each stamp maps on its own, so out-of-order stamps simply give earlier scene times
    (a recording can be looked at in any order; the caller decides what order to feed). A stamp
    before the start or after the end is held at 0 or 1 and flagged (CLAMP: a robot that keeps
    running after the recording sees its last frame) or refused (REFUSE).

    :raises TimeRangeError: no usable duration (None, NaN, <= 0: the scene declares none); a
        stamp with nanosec outside [0, 1e9); with REFUSE, a stamp outside the scene's range.
    :raises ValueError: an unknown policy.
    """
    policy = StampPolicy(policy)
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        raise TimeRangeError(f"duration_s: a scene time from a stamp needs the scene's "
                             f'duration in seconds (> 0), got {duration_s!r}; give scene times '
                             'explicitly for scenes that declare none')
    offset_s = (stamp_to_ns(stamp) - stamp_to_ns(start_stamp)) / NS_PER_S
    time = offset_s / duration_s
    if 0.0 <= time <= 1.0:
        return SceneTime(time, offset_s, clamped=False)
    if policy == StampPolicy.REFUSE:
        raise TimeRangeError(f'stamp: {offset_s:.9g} s from the scene start, outside the '
                             f"scene's [0, {duration_s:g}] s")
    return SceneTime(min(max(time, 0.0), 1.0), offset_s, clamped=True)
