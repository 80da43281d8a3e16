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
View-dependent colour from real spherical harmonics, in gsplat 1.5.3's convention.

The basis is the real SH basis of the Inria 3DGS / gsplat code (Sloan's "Efficient Spherical
Harmonic Evaluation", JCGT 2013), coefficients ordered by band l = 0..3 and, inside a band,
m = -l..l. Its odd-band signs differ from the textbook real SH (e.g. the l = 1 band is
(-y, z, -x) times C1), which is why the constants are spelled out here rather than taken from a
generic SH library. The viewing direction is the unit vector from the camera centre to the
Gaussian's mean; the colour is the SH value plus 0.5, clamped below at 0 (not above), as
gsplat's ``rasterization(sh_degree=...)`` does to match the Inria CUDA rasteriser.
"""

from __future__ import annotations

from st4r_ros.errors import RenderError
import torch
from torch import Tensor

MAX_SH_DEGREE = 3

# Band 0 and band 1 normalisation constants.
SH_C0 = 0.2820947917738781
SH_C1 = 0.48860251190292
# Band 2: the m = +-2, +-1 factor and the m = 0 polynomial 0.946 z^2 - 0.315.
SH_C2_XY = 0.5462742152960395
SH_C2_Z = 1.092548430592079
SH_C2_ZZ = 0.9461746957575601
SH_C2_0 = 0.3153915652525201
# Band 3: m = +-3, +-2, +-1 factors and the m = 0 polynomial z (1.866 z^2 - 1.120).
SH_C3_3 = 0.5900435899266435
SH_C3_2 = 1.445305721320277
SH_C3_1_ZZ = 2.285228997322329
SH_C3_1 = 0.4570457994644658
SH_C3_0_ZZ = 1.865881662950577
SH_C3_0 = 1.119528997770346


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """
    Evaluate the real SH basis at unit directions.

    :param dirs: unit directions, [N, 3].
    :param degree: 0..3.
    :return: basis values, [N, (degree + 1)^2], in the coefficient order of ``Gaussians.sh``.
    """
    n = dirs.shape[0]
    columns = [torch.full((n,), SH_C0, dtype=dirs.dtype, device=dirs.device)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        columns += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        zz = z * z
        c1 = x * x - y * y  # cos(2 phi) sin^2(theta)
        s1 = 2.0 * x * y  # sin(2 phi) sin^2(theta)
        columns += [
            SH_C2_XY * s1,
            -SH_C2_Z * z * y,
            SH_C2_ZZ * zz - SH_C2_0,
            -SH_C2_Z * z * x,
            SH_C2_XY * c1,
        ]
    if degree >= 3:
        c2 = x * c1 - y * s1  # cos(3 phi) sin^3(theta)
        s2 = x * s1 + y * c1  # sin(3 phi) sin^3(theta)
        band3_1 = -SH_C3_1_ZZ * zz + SH_C3_1
        columns += [
            -SH_C3_3 * s2,
            SH_C3_2 * z * s1,
            band3_1 * y,
            z * (SH_C3_0_ZZ * zz - SH_C3_0),
            band3_1 * x,
            SH_C3_2 * z * c1,
            -SH_C3_3 * c2,
        ]
    return torch.stack(columns, dim=-1)


def sh_to_rgb(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """
    Colour of each Gaussian seen along ``dirs``.

    :param sh: coefficients, [N, K, 3] with K >= (degree + 1)^2; only the first (degree + 1)^2
        are used, as gsplat does when ``sh_degree`` is below the stored degree.
    :param dirs: viewing directions (mean - camera centre), any length, [N, 3].
    :param degree: SH degree to evaluate, 0..3.
    :return: colour = max(SH value + 0.5, 0), [N, 3].
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise RenderError(f'sh degree: expected 0..{MAX_SH_DEGREE}, got {degree}')
    num_basis = (degree + 1) ** 2
    if sh.dim() != 3 or sh.shape[1] < num_basis or sh.shape[2] != 3:
        raise RenderError(
            f'sh: expected shape (N, K >= {num_basis}, 3) for degree {degree}, '
            f'got {tuple(sh.shape)}'
        )
    # A zero direction (a mean at the camera centre) would give NaN; such a Gaussian is culled by
    # the near plane anyway, the floor only keeps the colour finite.
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(unit.to(sh.dtype), degree)  # [N, B]
    # A broadcast product and sum: einsum lowers this to N tiny matrix-vector products.
    value = (basis.unsqueeze(-1) * sh[:, :num_basis]).sum(dim=1)  # [N, 3]
    return (value + 0.5).clamp_min(0.0)
