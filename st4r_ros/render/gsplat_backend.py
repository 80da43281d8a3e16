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

"""The CUDA backend: gsplat 1.5.3's rasterization behind st4r_ros's render contract."""

from __future__ import annotations

from typing import Optional

from st4r_ros.errors import RenderError
from st4r_ros.render.api import EPS2D, RenderOutput
from st4r_ros.render.camera import Camera
from st4r_ros.scene.gaussians import Gaussians
from torch import Tensor

GSPLAT_VERSION = '1.5.3'


def _rasterization():
    """Return gsplat's entry point, imported on first use so CPU-only installs need no gsplat."""
    try:
        import gsplat
    except ImportError as err:
        raise RenderError(
            f"backend 'gsplat' needs gsplat=={GSPLAT_VERSION} "
            "(pip install 'st4r_ros[cuda]'), or use backend='torch'"
        ) from err
    if gsplat.__version__ != GSPLAT_VERSION:
        raise RenderError(
            f"backend 'gsplat' is tested with gsplat=={GSPLAT_VERSION}, found {gsplat.__version__}"
        )
    return gsplat.rasterization


def render_gsplat(
    gaussians: Gaussians, camera: Camera, features: Optional[Tensor], background: Tensor
) -> RenderOutput:
    """
    Render with gsplat; arguments as `st4r_ros.render.api.render` after validation.

    :param features: per-Gaussian channels [N, D], or None for RGB from the SH coefficients.
    :param background: per-channel background [D].
    """
    device = gaussians.device
    if features is None:
        colors, sh_degree = gaussians.sh, gaussians.sh_degree
    else:
        colors, sh_degree = features, None
    images, alphas, _ = _rasterization()(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=colors,
        viewmats=camera.world_to_cam.to(device)[None],
        Ks=camera.K.to(device)[None],
        width=camera.width,
        height=camera.height,
        near_plane=camera.near,
        far_plane=camera.far,
        eps2d=EPS2D,
        sh_degree=sh_degree,
        backgrounds=background[None],
        render_mode='RGB+ED',
        # gsplat 1.5.3's packed mode fails an assertion when backgrounds are given
        # (nerfstudio-project/gsplat#764).
        packed=False,
    )
    # gsplat renders a batch of one camera: [1, H, W, D + 1] with expected depth last.
    return RenderOutput(image=images[0, ..., :-1], alpha=alphas[0], depth=images[0, ..., -1:])
