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
render(): the one entry point for turning Gaussians into images, whatever the backend.

Two backends sit behind it: gsplat 1.5.3 on CUDA (fast) and a pure-torch rasterizer that runs
anywhere and is the reference the gsplat path is tested against. Both composite front to back
with the same projection, the same 2D low-pass (eps2d) and the same alpha cut-offs.

Background is explicit: channels are composited as ``image = sum_i w_i c_i + (1 - alpha) * bg``
with ``bg`` given by the caller (0 by default) and alpha returned beside the image, so an empty
pixel is never mistaken for a half-relevant one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from st4r_ros.errors import RenderError
from st4r_ros.render.camera import Camera
from st4r_ros.render.sh import sh_to_rgb
from st4r_ros.scene.gaussians import Gaussians
import torch
from torch import Tensor

# gsplat's default 2D low-pass: added to the projected covariance's diagonal, in pixels^2.
EPS2D = 0.3
BACKENDS = ('auto', 'gsplat', 'torch')


@dataclass(frozen=True)
class RenderOutput:
    """
    What a render returns, on the Gaussians' device.

    :ivar image: composited channels including the background term, [H, W, D].
    :ivar alpha: accumulated opacity, [H, W, 1].
    :ivar depth: expected depth along the optical axis (0 where alpha is 0), [H, W, 1].
    """

    image: Tensor
    alpha: Tensor
    depth: Tensor


def resolve_backend(backend: str, device: torch.device) -> str:
    """Return the backend that will serve ``backend`` on ``device`` ('auto': gsplat on CUDA)."""
    if backend not in BACKENDS:
        raise RenderError(f'backend: expected one of {BACKENDS}, got {backend!r}')
    if backend == 'auto':
        return 'gsplat' if device.type == 'cuda' else 'torch'
    if backend == 'gsplat' and device.type != 'cuda':
        raise RenderError("backend 'gsplat' needs the Gaussians on a CUDA device")
    return backend


def render(
    gaussians: Gaussians,
    camera: Camera,
    features: Optional[Tensor] = None,
    *,
    background: Union[float, Tensor] = 0.0,
    backend: str = 'auto',
) -> RenderOutput:
    """
    Render Gaussians from one camera.

    :param gaussians: the scene at one instant (N Gaussians).
    :param camera: where to look from.
    :param features: per-Gaussian channels to composite, [N, D]; None renders view-dependent RGB
        from the spherical harmonics (D = 3).
    :param background: value of every channel where nothing is hit, scalar or [D].
    :param backend: 'auto', 'gsplat' (CUDA) or 'torch' (any device).
    :return: RenderOutput with image [H, W, D], alpha [H, W, 1] and depth [H, W, 1].
    """
    device = gaussians.device
    chosen = resolve_backend(backend, device)
    if features is not None:
        if features.dim() != 2 or features.shape[0] != len(gaussians):
            raise RenderError(
                f'features: expected shape ({len(gaussians)}, D), got {tuple(features.shape)}'
            )
        features = features.to(device=device, dtype=torch.float32)
    channels = 3 if features is None else features.shape[1]
    bg = torch.as_tensor(background, dtype=torch.float32, device=device).reshape(-1)
    if bg.numel() == 1:
        bg = bg.expand(channels)
    if bg.numel() != channels:
        raise RenderError(f'background: expected a scalar or {channels} values, got {bg.numel()}')
    if chosen == 'gsplat':
        from st4r_ros.render.gsplat_backend import render_gsplat

        return render_gsplat(gaussians, camera, features, bg)
    from st4r_ros.render.torch_backend import render_torch

    return render_torch(gaussians, camera, features, bg)


def view_colours(gaussians: Gaussians, camera: Camera) -> Tensor:
    """
    Return the view-dependent colour of every Gaussian seen from ``camera``, [N, 3].

    What ``render`` composites when given no features (gsplat's SH colour from the camera
    centre), as features: stacked with other channels, one rasterisation gives the colour image
    and those channels together.
    """
    centre = camera.cam_to_world[:3, 3].to(device=gaussians.device, dtype=torch.float32)
    return sh_to_rgb(gaussians.sh.float(), gaussians.means.float() - centre, gaussians.sh_degree)
