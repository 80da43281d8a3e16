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
The conversion layer of the ROS face, in both worlds it serves.

The modules of st4r_ros/ros/ that turn messages into requests and answers into messages:
messages.py (either world's classes), outputs.py, cameras.py, commands.py (with the engine's
refusals) and clock.py.

rosbags world: every message is built from the typestore of msg/ and srv/ for Jazzy and Humble
and must survive CDR. rclpy world (no ROS here): an "rclpy-like" set of classes generated from
the same definitions, with rclpy's setter rules (Python scalars; array.array or a Sequence for
sequences of numbers, never a numpy array; numpy or a Sequence for fixed arrays), proves that
the converters hand rclpy what it accepts. Fuzz tests feed hostile commands, cameras and stamps:
the layer answers (a result with a status, a CameraError or TimeRangeError) and never raises
anything else.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
import dataclasses
import math
import sys
import types as pytypes
from types import SimpleNamespace

from doubles import InstanceField, KeywordEncoder, SMALL
from hypothesis import event, given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from st4r_ros.engine import (MAX_QUERY_CHARS, QueryEngine, QueryMode, QueryRequest, QueryResult,
                             QueryStatus, refusal, TargetCloud)
from st4r_ros.errors import CameraError, St4rError, TimeRangeError
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import highlight, to_uint8
from st4r_ros.ros import cameras, clock, commands, outputs
from st4r_ros.ros import typestore as typestore_module
from st4r_ros.ros.messages import (CAMERA_INFO, IMAGE, make, MARKER, MARKER_ARRAY, POINT_CLOUD2,
                                   POINT_FIELD, RclpyTypes, RESULT, RosbagsTypes, TIME)
from st4r_ros.ros.typestore import interface_types, ros_typestore
from st4r_ros.scene.keyframes import KeyframedScene
from st4r_ros.synthetic.scene import generate_synthetic
import torch


def fuzz(examples: int) -> settings:
    """
    Return the Hypothesis settings of a fuzz test.

    Module-scoped fixtures: nothing is reset between examples, and the conversion layer keeps
    no state.
    """
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----- shared helpers (test_replay uses them too) -----

def double_engine(duration_s: float = 2.0) -> QueryEngine:
    """
    Make a QueryEngine over a small synthetic scene with test-double field and encoder.

    "object k" is relevant exactly on instance k (see test_engine.py).
    """
    synthetic = generate_synthetic(seed=1, config=SMALL)
    scene = KeyframedScene(synthetic.keyframes, duration_s=duration_s)
    ids = synthetic.keyframes[0][1].instance_ids
    return QueryEngine(scene, InstanceField(ids), KeywordEncoder(), threshold=0.4,
                       duration_s=duration_s)


def scene_camera(width: int = 48, height: int = 36) -> Camera:
    """Make a small camera that sees the synthetic table (its first training view, scaled)."""
    view = generate_synthetic(seed=1, config=SMALL).views[0].camera
    k = view.K.clone()
    k[:2] *= width / view.width
    return Camera(K=k, world_to_cam=view.world_to_cam, width=width, height=height)


def camera_msgs(types, camera: Camera, stamp, scene_frame: str = 'map',
                optical_frame: str = 'camera_optical'):
    """(PoseStamped, CameraInfo) of ``camera``: its optical frame's pose in the scene frame."""
    return (cameras.camera_to_pose(types, camera, stamp, scene_frame),
            outputs.camera_to_camera_info(types, camera, stamp, optical_frame))


def roundtrip(store, msg, msgtype: str):
    """``msg`` through CDR and back (what a subscriber gets)."""
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


# ----- fixtures -----

@pytest.fixture(scope='module', params=['jazzy', 'humble'])
def store(request):
    return ros_typestore(request.param)


@pytest.fixture(scope='module')
def types(store):
    return RosbagsTypes(store)


@pytest.fixture(scope='module')
def stamp(types):
    return clock.stamp_from_ns(types, 1_732_180_000_123_456_789)


@pytest.fixture(scope='module')
def engine():
    return double_engine()


@pytest.fixture(scope='module')
def camera():
    return scene_camera()


def ok_result(engine, camera=None) -> QueryResult:
    result = engine.query(QueryRequest('object 3', time=0.5, camera=camera, request_id='r-1'))
    assert result.status == QueryStatus.OK, result.message
    return result


# ----- typestore -----

def test_typestore_knows_our_interfaces_and_is_built_once():
    for distro in ('jazzy', 'humble', 'JAZZY'):
        store = ros_typestore(distro)
        for name in ('ReferringResult', 'TimeSpan', 'Query_Request', 'Query_Response'):
            assert f'st4r_ros/msg/{name}' in store.types
    assert ros_typestore('jazzy') is ros_typestore() is ros_typestore('Jazzy')
    assert ros_typestore('humble') is not ros_typestore('jazzy')
    with pytest.raises(St4rError, match='distro'):
        ros_typestore('rolling-2030')


def test_typestore_finds_an_installed_share_folder(tmp_path, monkeypatch):
    share = tmp_path / 'prefix' / 'share' / 'st4r_ros'
    for kind in ('msg', 'srv'):
        (share / kind).mkdir(parents=True)
        for source in (typestore_module.interface_root() / kind).iterdir():
            (share / kind / source.name).write_text(source.read_text())
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'prefix'))
    assert share in typestore_module._candidate_roots()
    installed = interface_types(share)
    assert installed.keys() == interface_types(typestore_module.interface_root()).keys()
    monkeypatch.setattr(typestore_module, '_candidate_roots', lambda: [tmp_path / 'nothing'])
    with pytest.raises(St4rError, match='ReferringResult.msg not found'):
        typestore_module.interface_root()


def test_typestore_refuses_a_service_without_separator(tmp_path):
    (tmp_path / 'msg').mkdir()
    (tmp_path / 'srv').mkdir()
    (tmp_path / 'srv' / 'Bad.srv').write_text('string query\n')
    with pytest.raises(St4rError, match='Bad.srv'):
        interface_types(tmp_path)


# ----- outputs.py: results -----

def test_ok_result_converts_and_survives_cdr(store, types, stamp, engine):
    result = ok_result(engine)
    msg = roundtrip(store, outputs.result_to_msg(types, result, stamp, 'map'), RESULT)
    cls = types[RESULT]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_732_180_000, 123_456_789)
    assert msg.header.frame_id == 'map' and msg.request_id == 'r-1'
    assert msg.status == cls.STATUS_OK and msg.mode == cls.MODE_AUTO
    assert msg.target_instance_id == 3 and msg.num_gaussians == result.num_gaussians
    assert msg.score == pytest.approx(result.score) and msg.scene_time == 0.5
    assert msg.scene_time_s == pytest.approx(1.0)
    assert [(s.start, s.end, s.end_s) for s in msg.active_spans] == [(0.0, 1.0, 2.0)]
    assert math.isnan(msg.active_spans[0].score) and math.isnan(msg.span_threshold)
    assert len(msg.frame_scores) == len(msg.frame_times) == 0
    assert (msg.centroid.x, msg.centroid.y, msg.centroid.z) == pytest.approx(result.centroid)
    assert msg.bbox_min.z <= msg.centroid.z <= msg.bbox_max.z
    assert msg.latency_total_ms == pytest.approx(result.latency_ms['total'], rel=1e-6)
    assert math.isnan(msg.latency_when_ms) and math.isnan(msg.latency_render_ms)


@pytest.mark.parametrize('status', [s for s in QueryStatus if s != QueryStatus.OK])
def test_results_without_target_keep_the_none_values(store, types, stamp, status):
    result = refusal('r-2', 'the red cube', status, 'why', QueryMode.TIME_SENSITIVE)
    msg = roundtrip(store, outputs.result_to_msg(types, result, stamp, 'map'), RESULT)
    assert msg.status == int(status) and msg.status_message == 'why'
    assert msg.mode == types[RESULT].MODE_TIME_SENSITIVE
    assert msg.target_instance_id == -1 and msg.num_gaussians == 0
    none_values = (msg.score, msg.centroid.x, msg.bbox_max.z, msg.scene_time,
                   msg.latency_total_ms)
    assert all(math.isnan(v) for v in none_values)
    assert list(msg.active_spans) == []


def test_strings_are_made_safe_for_every_ros_client(store, types, stamp):
    result = refusal('id\x00', 'a\ud800b\x00c', QueryStatus.INVALID, 'bad \udcff')
    msg = roundtrip(store, outputs.result_to_msg(types, result, stamp, 'map'), RESULT)
    assert msg.query == 'a?b\ufffdc' and msg.request_id == 'id\ufffd'
    assert msg.status_message == 'bad ?'


# ----- outputs.py: images and camera infos -----

def test_mask_is_mono8_255_on_the_target(store, types, stamp):
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 2:4] = True
    msg = roundtrip(store, outputs.mask_to_image(types, mask, stamp, 'cam'), IMAGE)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 5, 5, 'mono8')
    assert msg.is_bigendian == 0 and msg.header.frame_id == 'cam'
    expected = np.zeros((3, 5), np.uint8)
    expected[1, 2:4] = 255
    np.testing.assert_array_equal(msg.data.reshape(3, 5), expected)
    with pytest.raises(ValueError, match='H, W'):
        outputs.mask_to_image(types, torch.zeros(2, 2, 2), stamp, 'cam')


def test_overlay_is_bgr8_with_the_target_highlighted(store, types, stamp):
    rgb = torch.full((2, 3, 3), 0.5)
    rgb[..., 1] = 0.2  # a green channel distinct from the others
    mask = torch.tensor([[True, False, False], [False, False, True]])
    marked = highlight(rgb, mask)
    assert torch.equal(marked[~mask], rgb[~mask])
    msg = roundtrip(store, outputs.overlay_to_image(types, rgb, mask, stamp, 'cam'), IMAGE)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (2, 3, 9, 'bgr8')
    pixels = msg.data.reshape(2, 3, 3)
    np.testing.assert_array_equal(pixels[0, 0], to_uint8(marked)[0, 0, ::-1])  # B, G, R
    np.testing.assert_array_equal(pixels[0, 1], [128, 51, 128])


@pytest.mark.parametrize('colour', [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.2, 0.9),
                                    (0.95, 0.95, 0.95), (0.05, 0.05, 0.05), (0.9, 0.9, 0.1)])
def test_highlight_stands_out_on_any_target_colour(colour):
    # A target the colour of the highlight would vanish under a fixed tint.
    rgb = torch.full((12, 12, 3), 0.5)
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[3:9, 3:9] = True
    rgb[mask] = torch.tensor(colour)
    marked = highlight(rgb, mask)
    assert torch.equal(marked[~mask], rgb[~mask])
    change = (marked - rgb).norm(dim=-1)
    assert float(change[mask].min()) > 0.25  # every target pixel visibly changed
    edge = marked[3, 3:9]  # the outline runs along the target's border
    assert float((edge - torch.tensor(colour)).norm(dim=-1).min()) > 0.5


def test_camera_info_and_back_give_the_same_camera(store, types, stamp, camera):
    info = roundtrip(store, outputs.camera_to_camera_info(types, camera, stamp, 'cam'),
                     CAMERA_INFO)
    assert (info.width, info.height, info.distortion_model) == (48, 36, 'plumb_bob')
    np.testing.assert_allclose(info.k.reshape(3, 3), camera.K.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3], info.k.reshape(3, 3))
    np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
    assert not info.d.any() and len(info.d) == 5
    pose, _ = camera_msgs(types, camera, stamp)
    pose = roundtrip(store, pose, 'geometry_msgs/msg/PoseStamped')
    back = cameras.camera_from_msgs(pose, info, scene_frame='map')
    assert (back.width, back.height) == (camera.width, camera.height)
    torch.testing.assert_close(back.K, camera.K)
    torch.testing.assert_close(back.world_to_cam, camera.world_to_cam, atol=1e-5, rtol=0)


# ----- outputs.py: cloud and markers -----

def decode_cloud(msg) -> np.ndarray:
    """Decode the points of a PointCloud2 as a structured array, read through its own fields."""
    kinds = {7: '<f4'}
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': [kinds[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields], 'itemsize': msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def test_target_cloud_has_xyz_rgb_score(store, types, stamp, engine):
    result = ok_result(engine)
    msg = roundtrip(store, outputs.cloud_to_pointcloud2(types, result.cloud, stamp, 'map'),
                    POINT_CLOUD2)
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb', 'score']
    assert {f.datatype for f in msg.fields} == {types[POINT_FIELD].FLOAT32}
    assert (msg.height, msg.width, msg.point_step) == (1, result.num_gaussians, 20)
    assert msg.row_step == 20 * msg.width and msg.is_dense and not msg.is_bigendian
    points = decode_cloud(msg)
    np.testing.assert_allclose(np.stack([points['x'], points['y'], points['z']], 1),
                               result.cloud.xyz.numpy(), rtol=1e-6)
    np.testing.assert_allclose(points['score'], result.cloud.score.numpy(), rtol=1e-6)
    packed = points['rgb'].view(np.uint32)
    channels = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1)
    expected = (result.cloud.rgb.clamp(0, 1) * 255).round().numpy()
    np.testing.assert_array_equal(channels, expected)
    assert not (packed >> 24).any()


def test_no_target_gives_an_empty_cloud(store, types, stamp):
    msg = roundtrip(store, outputs.cloud_to_pointcloud2(types, None, stamp, 'map'),
                    POINT_CLOUD2)
    assert (msg.width, msg.height, len(msg.data), msg.row_step) == (0, 1, 0, 0)
    assert len(msg.fields) == 5 and msg.is_dense
    cloud = TargetCloud(torch.tensor([[0.0, math.nan, 1.0]]), torch.zeros(1, 3), torch.ones(1))
    assert not outputs.cloud_to_pointcloud2(types, cloud, stamp, 'map').is_dense


def test_markers_clear_then_box_and_label_the_target(store, types, stamp, engine):
    cls = types[MARKER]
    result = ok_result(engine)
    msg = roundtrip(store, outputs.result_markers(types, result, stamp, 'map'), MARKER_ARRAY)
    clear, box, label = msg.markers
    assert clear.action == cls.DELETEALL and clear.ns == box.ns == label.ns == outputs.MARKER_NS
    assert (box.type, box.action, label.type) == (cls.CUBE, cls.ADD, cls.TEXT_VIEW_FACING)
    low, high = np.array(result.bbox_min), np.array(result.bbox_max)
    position = box.pose.position
    np.testing.assert_allclose([position.x, position.y, position.z], (low + high) / 2)
    np.testing.assert_allclose([box.scale.x, box.scale.y, box.scale.z],
                               np.maximum(high - low, outputs.MIN_BOX_SIZE))
    assert box.pose.orientation.w == 1.0 and 0 < box.color.a < 1
    assert label.text == 'object 3 (1.00)' and label.pose.position.z > position.z
    assert {m.header.frame_id for m in msg.markers} == {'map'}


def test_markers_of_an_answer_without_target_only_clear(types, stamp):
    cls = types[MARKER]
    result = refusal('r', 'object 99', QueryStatus.NO_TARGET, 'no target')
    markers = outputs.result_markers(types, result, stamp, 'map').markers
    assert [m.action for m in markers] == [cls.DELETEALL]


def test_a_single_gaussian_box_is_not_flat(types, stamp):
    result = QueryResult('r', 'dot', QueryStatus.OK, 'ok', score=0.9, bbox_min=(1, 2, 3),
                         bbox_max=(1, 2, 3), centroid=(1, 2, 3), num_gaussians=1)
    box = outputs.result_markers(types, result, stamp, 'map').markers[1]
    assert min(box.scale.x, box.scale.y, box.scale.z) == outputs.MIN_BOX_SIZE


# ----- cameras.py: cameras from messages -----

def _with(msg, **changes):
    """Make a shallow copy of a rosbags message with fields replaced (nested: 'a.b')."""
    nested = {}
    for key, value in changes.items():
        head, _, rest = key.partition('.')
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            msg = dataclasses.replace(msg, **{head: value})
    for head, inner in nested.items():
        msg = dataclasses.replace(msg, **{head: _with(getattr(msg, head), **inner)})
    return msg


K_GOOD = np.array([50.0, 0, 24, 0, 50.0, 18, 0, 0, 1])


@pytest.mark.parametrize('change, words', [
    ({'info.width': 0}, 'image size'),
    ({'info.height': 0}, 'image size'),
    ({'info.width': 100_000}, '16384'),
    ({'info.k': np.zeros(9)}, 'uncalibrated'),
    ({'info.k': np.where(np.arange(9) == 0, np.nan, K_GOOD)}, 'finite'),
    ({'info.k': np.where(np.arange(9) == 1, 3.0, K_GOOD)}, 'pinhole'),
    ({'info.k': np.where(np.arange(9) == 8, 2.0, K_GOOD)}, 'pinhole'),
    ({'info.k': np.where(np.arange(9) == 0, -50.0, K_GOOD)}, 'focal'),
    ({'info.k': np.where(np.arange(9) == 4, 1e9, K_GOOD)}, 'focal'),
    ({'info.k': np.where(np.arange(9) == 0, 0.5, K_GOOD)}, 'focal'),
    ({'info.k': np.where(np.arange(9) == 2, 1e5, K_GOOD)}, 'principal point'),
    ({'pose.pose.orientation.w': 0.0, 'pose.pose.orientation.z': 0.0}, 'unit quaternion'),
    ({'pose.pose.orientation.w': math.nan}, 'unit quaternion'),
    ({'pose.pose.orientation.w': 3.0}, 'unit quaternion'),
    ({'pose.pose.orientation.w': 1e200}, 'unit quaternion'),
    ({'pose.pose.position.x': math.inf}, 'finite'),
    ({'pose.pose.position.x': 1e300}, 'finite'),
    ({'pose.header.frame_id': 'odom'}, 'scene frame'),
])
def test_bad_cameras_are_refused_with_the_field_named(types, stamp, camera, change, words):
    pose, info = camera_msgs(types, camera, stamp)
    msgs = {'pose': pose, 'info': info}
    for key, value in change.items():
        head, _, rest = key.partition('.')
        msgs[head] = _with(msgs[head], **{rest: value})
    with pytest.raises(CameraError, match=words):
        cameras.camera_from_msgs(msgs['pose'], msgs['info'], scene_frame='map')


def test_nearly_unit_quaternions_are_normalised_and_empty_frames_accepted(types, stamp, camera):
    pose, info = camera_msgs(types, camera, stamp, scene_frame='')
    q = pose.pose.orientation
    scaled = _with(pose, **{f'pose.orientation.{c}': getattr(q, c) * 1.004 for c in 'xyzw'})
    back = cameras.camera_from_msgs(scaled, info, scene_frame='map')
    torch.testing.assert_close(back.world_to_cam, camera.world_to_cam, atol=1e-5, rtol=0)


# ----- commands.py and engine.refusal: requests or their refusals -----

def service_request(types, **fields):
    return make(types, 'st4r_ros/msg/Query_Request', **fields)


def test_a_default_service_request_is_an_auto_query_now_without_camera(types):
    request = commands.request_from_service(service_request(types, query='object 3'), None)
    assert isinstance(request, QueryRequest)
    assert (request.text, request.mode, request.time, request.camera) == (
        'object 3', QueryMode.AUTO, None, None)
    assert len(request.request_id) == 12


def test_service_request_with_time_and_cameras(types, stamp, camera):
    pose, info = camera_msgs(types, camera, stamp)
    explicit = service_request(types, request_id='q1', query='object 3', mode=2,
                               use_scene_time=True, scene_time=0.25, camera_pose=pose,
                               camera_info=info)
    request = commands.request_from_service(explicit, None, scene_frame='map')
    assert (request.request_id, request.mode, request.time) == ('q1', QueryMode.TIME_SENSITIVE,
                                                                0.25)
    torch.testing.assert_close(request.camera.world_to_cam, camera.world_to_cam, atol=1e-5,
                               rtol=0)
    latest = service_request(types, query='object 3', use_latest_camera=True)
    assert commands.request_from_service(latest, camera).camera is camera


@pytest.mark.parametrize('fields, status, words', [
    ({'mode': 9}, QueryStatus.INVALID, 'mode'),
    ({'use_scene_time': True, 'scene_time': 1.5}, QueryStatus.INVALID, 'scene_time'),
    ({'use_scene_time': True, 'scene_time': math.nan}, QueryStatus.INVALID, 'scene_time'),
    ({'use_latest_camera': True}, QueryStatus.NOT_READY, 'no camera'),
    ({'use_latest_camera': True, 'camera_info.width': 640}, QueryStatus.INVALID, 'not both'),
    ({'camera_info.width': 640}, QueryStatus.INVALID, 'image size'),
])
def test_service_requests_refused_at_once(types, fields, status, words):
    msg = service_request(types, request_id='bad', query='object 3')
    msg = _with(msg, **fields)
    result = commands.request_from_service(msg, None)
    assert isinstance(result, QueryResult)
    assert (result.status, result.request_id, result.query) == (status, 'bad', 'object 3')
    assert words in result.message and result.target_instance_id == -1


def test_string_commands_use_the_latest_camera(camera):
    request = commands.request_from_string('object 3', camera, request_id='c1')
    assert (request.text, request.mode, request.camera, request.request_id) == (
        'object 3', QueryMode.AUTO, camera, 'c1')
    ids = {commands.request_from_string('x').request_id for _ in range(2)}
    assert len(ids) == 2


def test_refusals_echo_a_bounded_text_a_known_mode_and_an_id():
    long = refusal('', 'x' * (MAX_QUERY_CHARS + 5), QueryStatus.DROPPED, 'full', 9)
    assert (len(long.query), long.mode, len(long.request_id)) == (
        MAX_QUERY_CHARS, QueryMode.AUTO, 12)
    odd = refusal('r', None, QueryStatus.INVALID, 'bad', QueryMode.TIME_SENSITIVE)
    assert (odd.request_id, odd.query, odd.mode) == ('r', 'None', QueryMode.TIME_SENSITIVE)
    assert (odd.target_instance_id, odd.num_gaussians, odd.cloud) == (-1, 0, None)
    assert {refusal('r', 'x', QueryStatus.INVALID, 'bad', mode).mode
            for mode in (None, 'two', math.inf, -1)} == {QueryMode.AUTO}


# ----- clock.py: scene time from stamps -----

def _time(types, seconds: float):
    return clock.stamp_from_ns(types, round(seconds * 1e9))


def test_stamps_in_range_map_linearly(types):
    start = _time(types, 1000.0)
    mapped = clock.scene_time_from_stamp(_time(types, 1001.0), start, 4.0)
    assert (mapped.time, mapped.offset_s, mapped.clamped) == (0.25, 1.0, False)
    assert clock.scene_time_from_stamp(start, start, 4.0).time == 0.0
    assert clock.scene_time_from_stamp(_time(types, 1004.0), start, 4.0).time == 1.0


def test_stamps_out_of_order_simply_go_back_in_scene_time(types):
    start = _time(types, 1000.0)
    times = [clock.scene_time_from_stamp(_time(types, 1000.0 + s), start, 4.0).time
             for s in (3.0, 1.0, 2.0)]
    assert times == [0.75, 0.25, 0.5]


@pytest.mark.parametrize('offset_s, clamped_to', [(-5.0, 0.0), (4.5, 1.0), (1e9, 1.0)])
def test_stamps_outside_the_scene_are_clamped_and_flagged_or_refused(types, offset_s,
                                                                     clamped_to):
    start = _time(types, 2e9)
    stamp = _time(types, 2e9 + offset_s)
    mapped = clock.scene_time_from_stamp(stamp, start, 4.0, 'clamp')
    assert (mapped.time, mapped.clamped, mapped.offset_s) == (clamped_to, True, offset_s)
    with pytest.raises(TimeRangeError, match='outside'):
        clock.scene_time_from_stamp(stamp, start, 4.0, clock.StampPolicy.REFUSE)


@pytest.mark.parametrize('duration', [None, 0.0, -1.0, math.nan, math.inf])
def test_no_duration_no_scene_time_from_stamps(types, duration):
    with pytest.raises(TimeRangeError, match='duration'):
        clock.scene_time_from_stamp(_time(types, 1.0), _time(types, 0.0), duration)


def test_bad_nanoseconds_and_unknown_policies(types):
    bad = make(types, TIME, sec=1, nanosec=2_000_000_000)
    with pytest.raises(TimeRangeError, match='nanosec'):
        clock.scene_time_from_stamp(bad, _time(types, 0.0), 4.0)
    with pytest.raises(ValueError):
        clock.scene_time_from_stamp(_time(types, 1.0), _time(types, 0.0), 4.0, 'loop')


# ----- messages.py: the rclpy world -----

PY_SCALARS = {'string': str, 'bool': bool, 'float32': float, 'float64': float}  # else int
TYPECODES = {'uint8': 'B', 'int8': 'b', 'float32': 'f', 'float64': 'd', 'int32': 'i',
             'uint32': 'I', 'int16': 'h', 'uint16': 'H', 'int64': 'q', 'uint64': 'Q'}


def _rclpy_check(world, desc, value, where: str) -> None:
    """Apply rclpy's setter rules for one field (rosidl_generator_py's generated _msg.py)."""
    from rosbags.interfaces import Nodetype

    kind, detail = desc
    if kind == Nodetype.BASE:
        assert isinstance(value, PY_SCALARS.get(detail[0], int)), (where, type(value))
        return
    if kind == Nodetype.NAME:
        assert isinstance(value, world[detail]), (where, type(value))
        return
    (item_kind, item), size = detail
    numeric = item_kind == Nodetype.BASE and item[0] not in ('string', 'bool')
    if numeric and kind == Nodetype.ARRAY and isinstance(value, np.ndarray):
        assert value.dtype == np.dtype(item[0]) and value.shape == (size,), where
        return
    if numeric and kind == Nodetype.SEQUENCE and isinstance(value, array.array):
        assert np.dtype(value.typecode).itemsize == np.dtype(item[0]).itemsize, where
        assert value.typecode == np.dtype(item[0]).char, where
        return
    assert isinstance(value, Sequence) and not isinstance(value, str), (where, type(value))
    assert kind != Nodetype.ARRAY or len(value) == size, where
    for element in value:
        _rclpy_check(world, (item_kind, item), element, f'{where}[]')


class _RclpyWorld(dict):
    """Message name -> an rclpy-like class (keyword arguments, setter rules checked)."""

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store

    def __missing__(self, name: str) -> type:
        consts, fields = self.store.fielddefs[name]
        world = self

        def __init__(self, **kwargs):
            names = [field for field, _ in fields]
            assert set(kwargs) <= set(names), f'{name}: no fields {set(kwargs) - set(names)}'
            for field, desc in fields:
                if field in kwargs:
                    _rclpy_check(world, desc, kwargs[field], f'{name}.{field}')
                setattr(self, field, kwargs.get(field))

        attributes = {'__init__': __init__, **{c: v for c, _, v in consts}}
        cls = type(name.rsplit('/', 1)[1], (), attributes)
        self[name] = cls
        return cls


@pytest.fixture()
def rclpy_types(store, monkeypatch):
    """Provide RclpyTypes over rclpy-like modules (sensor_msgs.msg, ...) put into sys.modules."""
    world = _RclpyWorld(store)
    for package in ('builtin_interfaces', 'std_msgs', 'geometry_msgs', 'sensor_msgs',
                    'visualization_msgs', 'st4r_ros'):
        module = pytypes.ModuleType(f'{package}.msg')
        module.__getattr__ = lambda cls, package=package: world[f'{package}/msg/{cls}']
        monkeypatch.setitem(sys.modules, f'{package}.msg', module)
    return RclpyTypes()


def test_converters_give_rclpy_what_its_setters_accept(rclpy_types, engine, camera):
    types = rclpy_types
    stamp = clock.stamp_from_ns(types, 5 * 10**9 + 7)
    result = ok_result(engine, camera)
    msg = outputs.result_to_msg(types, result, stamp, 'map')
    assert msg.status == 1 and isinstance(msg.frame_scores, array.array)
    assert msg.header.stamp.sec == 5 and msg.header.stamp.nanosec == 7
    image = outputs.mask_to_image(types, result.mask, stamp, 'cam')
    assert image.data.typecode == 'B' and len(image.data) == 48 * 36
    assert bytes(image.data) == (result.mask.numpy() * 255).astype(np.uint8).tobytes()
    outputs.overlay_to_image(types, torch.rand(36, 48, 3), result.mask, stamp, 'cam')
    info = outputs.camera_to_camera_info(types, camera, stamp, 'cam')
    assert list(info.k) == pytest.approx(camera.K.reshape(-1).tolist())
    cloud = outputs.cloud_to_pointcloud2(types, result.cloud, stamp, 'map')
    assert len(cloud.data) == 20 * result.num_gaussians and cloud.fields[3].name == 'rgb'
    outputs.cloud_to_pointcloud2(types, None, stamp, 'map')
    assert len(outputs.result_markers(types, result, stamp, 'map').markers) == 3


def test_the_rclpy_like_world_refuses_numpy_sequences(rclpy_types):
    """The control of the test above: its checks catch what rclpy's setters catch."""
    cls = rclpy_types['sensor_msgs/msg/Image']
    with pytest.raises(AssertionError):
        cls(data=np.zeros(3, np.uint8))
    with pytest.raises(AssertionError):
        cls(height=np.uint32(3))
    with pytest.raises(AssertionError):
        rclpy_types['st4r_ros/msg/TimeSpan'](start=np.float32(0.5))
    cls(data=array.array('B', b'abc'), height=3)


# ----- fuzz: hostile input gets an answer, never an unexpected exception -----

HOSTILE_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=200),  # lone surrogates included
    st.sampled_from(['', ' \t\n', '\x00', '\ud800', 'object 3\x00', '\x1b[31mobject 3',
                     'x' * 100_000, 'object 3' * 300]),
)


@fuzz(400)
@given(text=HOSTILE_TEXT)
def test_fuzz_string_commands_get_one_result_that_publishes(store, types, stamp, engine, text):
    result = engine.query(commands.request_from_string(text, request_id='f'))
    assert result.status in {QueryStatus.OK, QueryStatus.NO_TARGET, QueryStatus.INVALID}
    msg = roundtrip(store, outputs.result_to_msg(types, result, stamp, 'map'), RESULT)
    assert msg.request_id == 'f' and len(msg.query) <= 2000 and '\x00' not in msg.query
    roundtrip(store, outputs.result_markers(types, result, stamp, 'map'), MARKER_ARRAY)


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-300, 1e300]))


def _near_unit(values, scale):
    norm = math.sqrt(sum(v * v for v in values))
    return tuple(v / norm * scale for v in values) if norm > 1e-3 else values


def _pinhole(f, cx, cy):
    return [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]


def _check_camera_or_refusal(types, stamp, position, quaternion, k, size, frame) -> None:
    info = make(types, CAMERA_INFO, width=size[0], height=size[1],
                k=np.array(k, dtype=np.float64))
    pose = SimpleNamespace(
        header=SimpleNamespace(frame_id=frame, stamp=stamp),
        pose=SimpleNamespace(position=SimpleNamespace(x=position[0], y=position[1],
                                                      z=position[2]),
                             orientation=SimpleNamespace(x=quaternion[0], y=quaternion[1],
                                                         z=quaternion[2], w=quaternion[3])))
    try:
        camera = cameras.camera_from_msgs(pose, info, scene_frame='map')
    except CameraError as err:
        event(f"refused: {str(err).split(':')[0]}")
        return
    event('built')
    assert (camera.width, camera.height) == size
    assert bool(torch.isfinite(camera.world_to_cam).all())
    assert abs(sum(q * q for q in quaternion) - 1) <= cameras.QUATERNION_TOLERANCE + 1e-12


@fuzz(350)
@given(position=st.tuples(FLOATS, FLOATS, FLOATS),
       quaternion=st.tuples(FLOATS, FLOATS, FLOATS, FLOATS),
       # Good intrinsics half the time, so that hostile poses get past them.
       k=st.one_of(st.lists(FLOATS, min_size=9, max_size=9), st.just(K_GOOD.tolist())),
       size=st.one_of(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                      st.just((48, 36))),
       frame=st.sampled_from(['', 'map', 'odom']))
def test_fuzz_hostile_cameras_are_refused(types, stamp, position, quaternion, k, size, frame):
    _check_camera_or_refusal(types, stamp, position, quaternion, k, size, frame)


@fuzz(350)
@given(position=st.tuples(*[st.floats(-1e6, 1e6)] * 3),
       quaternion=st.builds(_near_unit, st.tuples(*[st.floats(-1, 1)] * 4),
                            st.floats(0.99, 1.01)),
       k=st.builds(_pinhole, st.floats(0, 2e4), st.floats(-500, 1000), st.floats(-500, 1000)),
       size=st.tuples(st.integers(0, 500), st.integers(0, 500)),
       frame=st.sampled_from(['', 'map']))
def test_fuzz_plausible_cameras_are_built_or_refused_at_the_limits(
        types, stamp, position, quaternion, k, size, frame):
    _check_camera_or_refusal(types, stamp, position, quaternion, k, size, frame)


@fuzz(400)
@given(mode=st.integers(0, 255), use_scene_time=st.booleans(), scene_time=FLOATS,
       use_latest=st.booleans(), width=st.sampled_from([0, 48, 100_000]),
       height=st.sampled_from([0, 36]), k0=FLOATS, w=FLOATS, have_latest=st.booleans(),
       request_id=st.text(max_size=5), query=HOSTILE_TEXT)
def test_fuzz_service_requests_become_requests_or_refusals(
        store, types, stamp, camera, mode, use_scene_time, scene_time, use_latest, width,
        height, k0, w, have_latest, request_id, query):
    k = K_GOOD.copy()
    k[0] = k0
    pose, _ = camera_msgs(types, camera, stamp)
    pose = _with(pose, **{'pose.orientation.w': w})
    info = make(types, CAMERA_INFO, width=width, height=height, k=k)
    msg = service_request(types, request_id=request_id, query=query, mode=mode,
                          use_scene_time=use_scene_time, scene_time=scene_time,
                          use_latest_camera=use_latest, camera_pose=pose, camera_info=info)
    answer = commands.request_from_service(msg, camera if have_latest else None, scene_frame='map')
    if isinstance(answer, QueryResult):
        assert answer.status in {QueryStatus.INVALID, QueryStatus.NOT_READY}
        roundtrip(store, outputs.result_to_msg(types, answer, stamp, 'map'), RESULT)
    else:
        assert answer.request_id and answer.mode == mode
        assert answer.time is None or 0.0 <= answer.time <= 1.0


@fuzz(700)
@given(sec=st.integers(-2**31, 2**31 - 1), nanosec=st.integers(0, 2**32 - 1),
       start_sec=st.integers(-2**31, 2**31 - 1), duration=FLOATS,
       policy=st.sampled_from(['clamp', 'refuse']))
def test_fuzz_stamps_map_into_the_scene_or_are_refused(types, sec, nanosec, start_sec,
                                                       duration, policy):
    stamp = make(types, TIME, sec=sec, nanosec=nanosec)
    start = make(types, TIME, sec=start_sec, nanosec=0)
    try:
        mapped = clock.scene_time_from_stamp(stamp, start, duration, policy)
    except TimeRangeError:
        return
    assert 0.0 <= mapped.time <= 1.0
    assert mapped.clamped == (not 0.0 <= mapped.offset_s / duration <= 1.0)
    assert not (mapped.clamped and policy == 'refuse')


@pytest.mark.parametrize('seed', range(20))
def test_camera_to_pose_round_trips_through_camera_from_msgs(seed):
    """
    camera_to_pose + camera_to_camera_info are the inverse of camera_from_msgs.

    This holds for orientations drawn uniformly (every branch of the quaternion extraction).
    """
    from st4r_ros.render.camera import Camera
    from st4r_ros.ros.typestore import ros_typestore

    types = RosbagsTypes(ros_typestore('jazzy'))
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(4, generator=gen), dim=0).tolist()
    position = (torch.randn(3, generator=gen) * 3).tolist()
    K = torch.tensor([[300.0, 0, 160], [0, 310.0, 120], [0, 0, 1]])
    camera = Camera.from_pose(K, 320, 240, position, q)
    stamp = clock.stamp_from_ns(types, 5)
    pose = cameras.camera_to_pose(types, camera, stamp, 'map')
    info = outputs.camera_to_camera_info(types, camera, stamp, 'camera_optical')
    again = cameras.camera_from_msgs(pose, info, 'map')
    assert torch.allclose(again.world_to_cam, camera.world_to_cam, atol=1e-5)
    assert torch.allclose(again.K, camera.K)
