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
QueryEngine answers -> the messages the ROS face publishes, live and offline.

Results (st4r_ros/ReferringResult), masks and overlays (sensor_msgs/Image) with the CameraInfo
they were rendered for, target clouds (sensor_msgs/PointCloud2) and RViz markers; written once
for rclpy and rosbags classes through a ``types`` adapter (messages.py).

Frames and units: the scene frame (``frame_id`` of results, clouds, markers) is the frame the
4DGS scene is expressed in, lengths in scene units (metres for a metric scene); images and
their CameraInfo are in the camera's optical frame (REP 103 ``*_optical_frame``: x right,
y down, z forward). Times are normalised scene time in [0, 1] unless named ``*_s`` (seconds).

Every string goes out through ``ros_string``, so any text a result echoes (a hostile query
included) is one every ROS client can carry.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
from st4r_ros.engine import QueryMode, QueryResult, QueryStatus, TargetCloud, TimeSpan
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import highlight, to_uint8
from st4r_ros.ros.messages import (CAMERA_INFO, header_msg, IMAGE, make, MARKER, MARKER_ARRAY,
                                   point_msg, POINT_CLOUD2, POINT_FIELD, RESULT, SPAN, Types)
from torch import Tensor

LATENCY_STAGES = ('total', 'text', 'where', 'when', 'render')  # QueryResult.latency_ms keys

MARKER_NS = 'st4r_target'
MIN_BOX_SIZE = 0.01  # scene units; a one-Gaussian target would give RViz a zero-size cube
BOX_RGBA = (0.1, 0.9, 0.2, 0.35)
TEXT_RGBA = (1.0, 1.0, 1.0, 1.0)
MAX_LABEL_CHARS = 80
# PointCloud2 layout: x, y, z, rgb, score, float32 little-endian; rgb holds 0x00RRGGBB as RViz
# and PCL read it (the uint32's bytes, declared FLOAT32).
CLOUD_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<u4'),
                        ('score', '<f4')])


def ros_string(text: str) -> str:
    """
    Return ``text`` as every ROS client carries it.

    That is valid UTF-8 (lone surrogates become '?') and no NUL characters (C and C++
    subscribers would cut the string there).
    """
    return text.encode('utf-8', 'replace').decode('utf-8').replace('\x00', '\ufffd')


# ----- results -----

def result_to_msg(types: Types, result: QueryResult, stamp, frame_id: str):
    """
    Make the st4r_ros/ReferringResult of ``result``.

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
        header=header_msg(types, stamp, frame_id),
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
        centroid=point_msg(types, result.centroid),
        bbox_min=point_msg(types, result.bbox_min),
        bbox_max=point_msg(types, result.bbox_max),
        num_gaussians=int(result.num_gaussians),
        scene_time=float(result.scene_time),
        scene_time_s=float(result.scene_time_s),
        **latencies,
    )


def span_to_msg(types: Types, span: TimeSpan):
    """Make the st4r_ros/TimeSpan of ``span`` (normalised times, seconds, mean score)."""
    return make(types, SPAN, start=float(span.start), end=float(span.end),
                start_s=float(span.start_s), end_s=float(span.end_s), score=float(span.score))


# ----- images -----

def _numpy(values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _image(types: Types, pixels: np.ndarray, encoding: str, stamp, frame_id: str):
    """Make the sensor_msgs/Image of uint8 ``pixels`` [H, W] or [H, W, C], rows top to bottom."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return make(types, IMAGE, header=header_msg(types, stamp, frame_id), height=int(height),
                width=int(width), encoding=encoding, is_bigendian=0,
                step=int(width * channels), data=pixels.reshape(-1))


def mask_to_image(types: Types, mask, stamp, frame_id: str):
    """
    Make the sensor_msgs/Image mono8 of a mask [H, W] (bool tensor or array): 255 target, 0 else.

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
    them; frame_id is the camera's optical frame. With cameras.camera_to_pose, the inverse of
    cameras.camera_from_msgs.
    """
    k = camera.K.detach().cpu().double().numpy()  # [3, 3]
    p = np.hstack([k, np.zeros((3, 1))])  # [3, 4]: monocular, no baseline
    return make(types, CAMERA_INFO, header=header_msg(types, stamp, frame_id),
                height=int(camera.height), width=int(camera.width),
                distortion_model='plumb_bob', d=np.zeros(5), k=k.reshape(-1),
                r=np.eye(3).reshape(-1), p=p.reshape(-1))


def overlay_to_image(types: Types, rgb: Tensor, mask: Tensor, stamp, frame_id: str):
    """
    Convert an RGB render [H, W, 3] in [0, 1] to a sensor_msgs/Image bgr8, the mask marked.

    The mask is [H, W] (render.images.highlight); frame_id is the camera's optical frame.
    """
    pixels = to_uint8(highlight(rgb, mask))  # [H, W, 3] RGB
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
    if cloud is not None and count:
        xyz = _numpy(cloud.xyz).astype(np.float32)  # [M, 3]
        rgb = _numpy((cloud.rgb.clamp(0.0, 1.0) * 255.0).round()).astype(np.uint32)  # [M, 3]
        points['x'], points['y'], points['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        points['rgb'] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        points['score'] = _numpy(cloud.score).astype(np.float32)
    float32 = types[POINT_FIELD].FLOAT32
    # name -> (dtype, offset): a structured dtype has them.
    layout: Mapping[str, Tuple[Any, ...]] = CLOUD_DTYPE.fields or {}
    fields = [make(types, POINT_FIELD, name=name, offset=int(layout[name][1]),
                   datatype=float32, count=1) for name in CLOUD_DTYPE.names or ()]
    finite = all(np.isfinite(points[axis]).all() for axis in ('x', 'y', 'z'))
    return make(types, POINT_CLOUD2, header=header_msg(types, stamp, frame_id), height=1,
                width=count, fields=fields, is_bigendian=False,
                point_step=CLOUD_DTYPE.itemsize, row_step=CLOUD_DTYPE.itemsize * count,
                data=points.view(np.uint8), is_dense=bool(finite))


def _pose(types: Types, xyz: Sequence[float]):
    """Make the geometry_msgs/Pose at ``xyz``, unrotated (w given: rosbags would default it 0)."""
    orientation = make(types, 'geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0, w=1.0)
    return make(types, 'geometry_msgs/msg/Pose', position=point_msg(types, xyz),
                orientation=orientation)


def _marker(types: Types, stamp, frame_id: str, marker_id: int, kind: int, action: int,
            centre=(0.0, 0.0, 0.0), size=(1.0, 1.0, 1.0), rgba=(0.0, 0.0, 0.0, 0.0), text=''):
    sx, sy, sz = (float(v) for v in size)
    r, g, b, a = (float(v) for v in rgba)
    return make(types, MARKER, header=header_msg(types, stamp, frame_id), ns=MARKER_NS,
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
