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

"""Cameras: conventions, constructors, JSON, and the degenerate inputs they refuse."""

import json
import math

import pytest
from st4r_ros.errors import CameraError
from st4r_ros.render.camera import Camera, quat_xyzw_to_rotmat, rotmat_to_quat_xyzw
import torch


def project(camera: Camera, point) -> torch.Tensor:
    """Pixel coordinates (u, v) and depth z of a world point."""
    p = camera.world_to_cam @ torch.tensor([*point, 1.0])
    uvw = camera.K @ p[:3]
    return torch.tensor([uvw[0] / uvw[2], uvw[1] / uvw[2], p[2]])


def test_look_at_puts_target_at_image_centre_with_up_upwards():
    camera = Camera.look_at(eye=(4.0, 1.0, 2.0), target=(0.0, 0.0, 0.0), width=640, height=480)
    u, v, z = project(camera, (0.0, 0.0, 0.0))
    assert u == pytest.approx(320.0, abs=1e-3) and v == pytest.approx(240.0, abs=1e-3)
    assert z == pytest.approx(math.sqrt(21.0), rel=1e-5)
    # A point above the target (world +z) appears higher in the image (smaller v).
    assert project(camera, (0.0, 0.0, 0.5))[1] < 240.0


def test_optical_and_body_poses_agree():
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    # Body frame with identity orientation looks along world +x, left is +y, up is +z.
    body = Camera.from_pose(K, 640, 480, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), optical=False)
    u, v, z = project(body, (5.0, 0.0, 0.0))
    assert (float(u), float(v), float(z)) == pytest.approx((320.0, 240.0, 5.0), abs=1e-4)
    assert project(body, (5.0, 1.0, 0.0))[0] < 320.0  # left in the world is left in the image
    assert project(body, (5.0, 0.0, 1.0))[1] < 240.0  # up in the world is up in the image
    # The optical frame of the same camera: rotation body->optical = (-0.5, 0.5, -0.5, 0.5) xyzw.
    optical = Camera.from_pose(K, 640, 480, (0.0, 0.0, 0.0), (-0.5, 0.5, -0.5, 0.5), optical=True)
    assert torch.allclose(optical.world_to_cam, body.world_to_cam, atol=1e-6)


def random_quaternion(seed: int) -> tuple:
    """Return a unit quaternion (x, y, z, w) drawn uniformly from the rotations."""
    q = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return tuple(torch.nn.functional.normalize(q, dim=0).tolist())


# Identity, 180 degrees about x, y and z (each branch of the extraction), a not quite unit one,
# and random rotations.
QUATERNIONS = [(0.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0),
               (0.0, 0.0, 1.0, 0.0), (0.0, 0.7071, 0.0, -0.7071)]
QUATERNIONS += [random_quaternion(seed) for seed in range(40)]


@pytest.mark.parametrize('q', QUATERNIONS)
def test_quaternion_and_rotation_matrix_round_trip(q):
    rotation = quat_xyzw_to_rotmat(q)
    back = rotmat_to_quat_xyzw(rotation)
    assert sum(c * c for c in back) == pytest.approx(1.0, abs=1e-12)
    unit = torch.nn.functional.normalize(torch.tensor(q, dtype=torch.float64), dim=0)
    sign = 1.0 if float(torch.dot(unit, torch.tensor(back, dtype=torch.float64))) >= 0 else -1.0
    assert torch.allclose(sign * torch.tensor(back, dtype=torch.float64), unit, atol=1e-12)
    torch.testing.assert_close(quat_xyzw_to_rotmat(back), rotation, atol=1e-12, rtol=0)
    assert rotmat_to_quat_xyzw(rotation.numpy()) == back  # arrays as tensors


def test_pose_translation_is_the_camera_centre():
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    camera = Camera.from_pose(K, 100, 100, (1.0, 2.0, 3.0), (0.1, 0.2, 0.3, 0.9))
    assert torch.allclose(camera.cam_to_world[:3, 3], torch.tensor([1.0, 2.0, 3.0]), atol=1e-5)


def test_json_round_trip(tmp_path):
    camera = Camera.look_at((2.0, -3.0, 1.0), (0.0, 0.0, 0.5), fov_x_deg=50, width=320, height=240)
    camera.save(tmp_path / 'cam.json')
    again = Camera.load(tmp_path / 'cam.json')
    assert torch.equal(again.K, camera.K) and torch.equal(again.world_to_cam, camera.world_to_cam)
    assert (again.width, again.height) == (320, 240)


def test_json_from_pose_fields():
    camera = Camera.from_json(
        {'width': 64, 'height': 48, 'fx': 50, 'fy': 50, 'cx': 32, 'cy': 24,
         'position': [0, 0, -2], 'orientation_xyzw': [0, 0, 0, 1]}
    )
    u, v, z = project(camera, (0.0, 0.0, 0.0))
    assert (float(u), float(v), float(z)) == pytest.approx((32.0, 24.0, 2.0))


@pytest.mark.parametrize(
    'kwargs, message',
    [
        ({'fx': 0.0}, 'focal lengths must be positive'),
        ({'fx': float('nan')}, 'finite'),
        ({'width': 0}, 'width and height'),
        ({'width': 100000}, 'width and height'),
        ({'world_to_cam': torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))}, 'proper rotation'),
        ({'world_to_cam': torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))}, 'proper rotation'),
    ],
)
def test_degenerate_cameras_are_refused(kwargs, message):
    args = {'fx': 100.0, 'fy': 100.0, 'cx': 50.0, 'cy': 50.0, 'width': 100, 'height': 100}
    args.update(kwargs)
    with pytest.raises(CameraError, match=message):
        Camera.from_intrinsics(**args)


@pytest.mark.parametrize(
    'pose, message',
    [
        (((0, 0, 0), (0, 0, 0, 0)), 'non-zero finite quaternion'),
        (((0, 0, 0), (float('inf'), 0, 0, 1)), 'non-zero finite quaternion'),
        (((0, float('nan'), 0), (0, 0, 0, 1)), 'position'),
    ],
)
def test_degenerate_poses_are_refused(pose, message):
    with pytest.raises(CameraError, match=message):
        Camera.from_pose(torch.eye(3) * 100, 100, 100, *pose)


def test_look_at_degenerate():
    with pytest.raises(CameraError, match='coincide'):
        Camera.look_at((1, 1, 1), (1, 1, 1))
    with pytest.raises(CameraError, match='parallel'):
        Camera.look_at((0, 0, 5), (0, 0, 0), up=(0, 0, 1))


@pytest.mark.parametrize(
    'content, message',
    [
        ('{not json', 'not valid JSON'),
        ('[1, 2]', 'expected a JSON object'),
        (json.dumps({'width': 10, 'height': 10, 'fx': 5, 'fy': 5, 'cx': 5}), "missing field 'cy'"),
        (json.dumps({'width': 10, 'height': 10, 'K': [[1, 0], [0, 1]], 'world_to_cam': []}),
         'K \\[3, 3\\]|malformed'),
        (json.dumps({'width': 10, 'height': 10, 'fx': 5, 'fy': 5, 'cx': 5, 'cy': 5}),
         "expected 'world_to_cam'"),
    ],
)
def test_bad_camera_files(tmp_path, content, message):
    path = tmp_path / 'cam.json'
    path.write_text(content)
    with pytest.raises(CameraError, match=message):
        Camera.load(path)


def test_missing_camera_file(tmp_path):
    with pytest.raises(CameraError, match='not found'):
        Camera.load(tmp_path / 'nope.json')
