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
Pinhole cameras in the OpenCV convention (x right, y down, z forward).

A camera is intrinsics K, image size and a world-to-camera transform. It can be made from a
ROS-style pose (position + orientation of the camera in the world frame), either of the
optical frame itself (REP 103 ``*_optical_frame``: z forward, the same axes as OpenCV) or of a
body-convention camera link (x forward, y left, z up), and read from / written to JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Sequence, Tuple

from st4r_ros.errors import CameraError
from st4r_ros.files import read_json
import torch
from torch import Tensor

# Rotation taking optical-frame axes (x right, y down, z forward) to body-frame axes
# (x forward, y left, z up): columns are the optical axes written in body coordinates.
OPTICAL_IN_BODY = torch.tensor(
    [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64
)


def quat_xyzw_to_rotmat(q: Sequence[float]) -> Tensor:
    """Rotation matrix [3, 3] (float64) of a unit quaternion given as (x, y, z, w)."""
    x, y, z, w = (float(v) for v in q)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-6:
        raise CameraError(f'orientation: expected a non-zero finite quaternion, got {list(q)}')
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )


def rotmat_to_quat_xyzw(rotation) -> Tuple[float, float, float, float]:
    """
    Return the unit quaternion (x, y, z, w) of a rotation matrix [3, 3] (tensor or array).

    The inverse of quat_xyzw_to_rotmat, up to the sign of the quaternion (q and -q are the
    same rotation). It is computed from the largest quaternion component (the well-conditioned
    branch of Shepperd's method), so it stays exact near 180 degree rotations.
    """
    r = torch.as_tensor(rotation, dtype=torch.float64).reshape(3, 3).tolist()
    trace = r[0][0] + r[1][1] + r[2][2]
    diagonal = [trace, r[0][0], r[1][1], r[2][2]]
    largest = max(range(4), key=diagonal.__getitem__)
    if largest == 0:
        w = 0.5 * math.sqrt(1.0 + trace)
        q = ((r[2][1] - r[1][2]) / (4 * w), (r[0][2] - r[2][0]) / (4 * w),
             (r[1][0] - r[0][1]) / (4 * w), w)
    else:
        i = largest - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        v = [0.0, 0.0, 0.0]
        v[i] = 0.5 * math.sqrt(1.0 + r[i][i] - r[j][j] - r[k][k])
        v[j] = (r[j][i] + r[i][j]) / (4 * v[i])
        v[k] = (r[k][i] + r[i][k]) / (4 * v[i])
        q = (*v, (r[k][j] - r[j][k]) / (4 * v[i]))
    x, y, z, w = (float(c) for c in q)
    return (x, y, z, w)


@dataclass(frozen=True)
class Camera:
    """
    A pinhole camera.

    :ivar K: intrinsics [3, 3] (fx, fy, cx, cy in pixels).
    :ivar world_to_cam: rigid transform [4, 4] from world to OpenCV camera coordinates.
    :ivar width: image width in pixels.
    :ivar height: image height in pixels.
    :ivar near: near end of the depth range kept by the renderers.
    :ivar far: far end of the depth range kept by the renderers.
    """

    K: Tensor
    world_to_cam: Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10

    def __post_init__(self) -> None:
        if tuple(self.K.shape) != (3, 3) or tuple(self.world_to_cam.shape) != (4, 4):
            raise CameraError(
                f'camera: expected K [3, 3] and world_to_cam [4, 4], got '
                f'{tuple(self.K.shape)} and {tuple(self.world_to_cam.shape)}'
            )
        if not (isinstance(self.width, int) and isinstance(self.height, int)):
            raise CameraError(
                f'camera: width and height must be ints, got {self.width!r}, {self.height!r}'
            )
        if not (0 < self.width <= 16384 and 0 < self.height <= 16384):
            raise CameraError(
                'camera: width and height must be in 1..16384 pixels, '
                f'got {self.width}x{self.height}'
            )
        if not all(bool(torch.isfinite(m).all()) for m in (self.K, self.world_to_cam)):
            raise CameraError('camera: K and world_to_cam must be finite (found NaN or inf)')
        fx, fy = float(self.K[0, 0]), float(self.K[1, 1])
        if fx <= 0 or fy <= 0:
            raise CameraError(f'camera: focal lengths must be positive, got fx={fx}, fy={fy}')
        rotation = self.world_to_cam[:3, :3].double()
        identity = torch.eye(3, dtype=torch.float64)
        orthogonality = float((rotation @ rotation.T - identity).abs().max())
        det = float(torch.linalg.det(rotation))
        if orthogonality > 1e-3 or det < 0:
            raise CameraError(
                'camera: world_to_cam[:3, :3] must be a proper rotation '
                f'(|R R^T - I| = {orthogonality:.3g}, det = {det:.3g})'
            )
        if not 0 < self.near < self.far:
            raise CameraError(
                f'camera: expected 0 < near < far, got near={self.near}, far={self.far}'
            )

    @classmethod
    def from_intrinsics(
        cls,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        width: int,
        height: int,
        world_to_cam: Tensor | None = None,
        **kwargs,
    ) -> 'Camera':
        """Make a camera from pinhole intrinsics; identity pose unless ``world_to_cam`` given."""
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
        w2c = torch.eye(4) if world_to_cam is None else torch.as_tensor(world_to_cam)
        w2c = w2c.to(torch.float32)
        return cls(K=K, world_to_cam=w2c, width=int(width), height=int(height), **kwargs)

    @classmethod
    def from_fov(
        cls, fov_x_deg: float, width: int, height: int, world_to_cam: Tensor | None = None
    ) -> 'Camera':
        """Make a camera of horizontal FoV with square pixels and the principal point centred."""
        if not 0.0 < fov_x_deg < 180.0:
            raise CameraError(f'camera: fov_x must be in (0, 180) degrees, got {fov_x_deg}')
        focal = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
        return cls.from_intrinsics(focal, focal, width / 2, height / 2, width, height,
                                   world_to_cam)

    @classmethod
    def from_pose(
        cls,
        K: Tensor,
        width: int,
        height: int,
        position: Sequence[float],
        orientation_xyzw: Sequence[float],
        optical: bool = True,
    ) -> 'Camera':
        """
        Make a camera from its pose in the world frame, as in geometry_msgs/Pose.

        :param position: camera origin in the world frame, (x, y, z).
        :param orientation_xyzw: camera orientation in the world frame, (x, y, z, w).
        :param optical: True if the pose is of an optical frame (z forward, x right, y down);
            False if it is of a body-convention frame (x forward, y left, z up).
        """
        cam_to_world_rot = quat_xyzw_to_rotmat(orientation_xyzw)
        if not optical:
            cam_to_world_rot = cam_to_world_rot @ OPTICAL_IN_BODY
        origin = torch.tensor([float(v) for v in position], dtype=torch.float64)
        if origin.shape != (3,) or not bool(torch.isfinite(origin).all()):
            raise CameraError(f'position: expected 3 finite numbers, got {list(position)}')
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = cam_to_world_rot.T
        w2c[:3, 3] = -cam_to_world_rot.T @ origin
        return cls(K=torch.as_tensor(K, dtype=torch.float32), world_to_cam=w2c.float(),
                   width=int(width), height=int(height))

    @classmethod
    def look_at(
        cls,
        eye: Sequence[float],
        target: Sequence[float],
        up: Sequence[float] = (0.0, 0.0, 1.0),
        fov_x_deg: float = 60.0,
        width: int = 640,
        height: int = 480,
    ) -> 'Camera':
        """Place a camera at ``eye`` looking at ``target``, ``up`` pointing up in the image."""
        eye_t = torch.tensor(eye, dtype=torch.float64)
        forward = torch.tensor(target, dtype=torch.float64) - eye_t
        if float(forward.norm()) < 1e-9:
            raise CameraError('look_at: eye and target coincide')
        forward = forward / forward.norm()
        right = torch.linalg.cross(forward, torch.tensor(up, dtype=torch.float64))
        if float(right.norm()) < 1e-9:
            raise CameraError('look_at: up is parallel to the viewing direction')
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)
        rot = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = rot
        w2c[:3, 3] = -rot @ eye_t
        return cls.from_fov(fov_x_deg, width, height, w2c.float())

    @property
    def cam_to_world(self) -> Tensor:
        """Inverse of ``world_to_cam``, [4, 4]."""
        return torch.linalg.inv(self.world_to_cam.double()).float()

    def to_json(self) -> dict:
        return {
            'width': self.width,
            'height': self.height,
            'K': self.K.tolist(),
            'world_to_cam': self.world_to_cam.tolist(),
            'near': self.near,
            'far': self.far,
        }

    @classmethod
    def from_json(cls, data: dict, source: str = 'camera') -> 'Camera':
        """
        Make a camera from ``to_json``'s layout, or from a pose.

        The pose layout is ``{"width", "height", "K" | "fx", "fy", "cx", "cy",
        "position", "orientation_xyzw", "optical"}``.
        """
        if not isinstance(data, dict):
            raise CameraError(f'{source}: expected a JSON object, got {type(data).__name__}')
        try:
            width, height = int(data['width']), int(data['height'])
            if 'K' in data:
                K = torch.tensor(data['K'], dtype=torch.float32)
            else:
                K = torch.tensor([[data['fx'], 0.0, data['cx']],
                                  [0.0, data['fy'], data['cy']],
                                  [0.0, 0.0, 1.0]], dtype=torch.float32)
            extra = {k: float(data[k]) for k in ('near', 'far') if k in data}
            if 'world_to_cam' in data:
                w2c = torch.tensor(data['world_to_cam'], dtype=torch.float32)
                return cls(K=K, world_to_cam=w2c, width=width, height=height, **extra)
            if 'position' in data:
                cam = cls.from_pose(K, width, height, data['position'], data['orientation_xyzw'],
                                    optical=bool(data.get('optical', True)))
                return cls(K=cam.K, world_to_cam=cam.world_to_cam, width=width, height=height,
                           **extra)
        except KeyError as missing:
            raise CameraError(f'{source}: missing field {missing}') from None
        except (TypeError, ValueError, RuntimeError) as err:
            if isinstance(err, CameraError):
                raise
            raise CameraError(f'{source}: malformed camera ({err})') from None
        raise CameraError(f"{source}: expected 'world_to_cam' or 'position' + 'orientation_xyzw'")

    @classmethod
    def load(cls, path: str | Path) -> 'Camera':
        """
        Read a camera JSON file (``from_json``'s layouts).

        :raises CameraError: the file is missing, unreadable, not JSON or not a valid camera;
            the message starts with the file's path.
        """
        path = Path(path)
        data = read_json(path, CameraError)
        try:
            return cls.from_json(data, source=str(path))
        except CameraError as err:
            # The checks of a camera's values (K [3, 3], a proper rotation...) name the field,
            # not the file it came from.
            message = str(err)
            if message.startswith(f'{path}:'):
                raise
            raise CameraError(f"{path}: {message.removeprefix('camera: ')}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))
