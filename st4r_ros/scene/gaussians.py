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

"""The state of a Gaussian scene at one instant, with activated parameters."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from st4r_ros.errors import SceneFormatError
import torch
from torch import Tensor

# Zeroth-order real spherical harmonic constant: colour = SH_C0 * f_dc + 0.5.
SH_C0 = 0.28209479177387814


def sh_degree_for(num_coeffs: int) -> int:
    """Spherical-harmonics degree whose basis has ``num_coeffs`` = (degree + 1)^2 functions."""
    degree = math.isqrt(num_coeffs) - 1
    if degree < 0 or (degree + 1) ** 2 != num_coeffs:
        raise SceneFormatError(
            f'sh: {num_coeffs} coefficients per channel is not (degree + 1)^2 for any degree'
        )
    return degree


class GaussianSet:
    """
    What every dataclass of N Gaussians answers from its ``means`` [N, 3] and ``sh`` [N, K, 3].

    Shared by the activated `Gaussians` and ply's pre-activation `RawGaussians`: their other
    fields have other names (quats / quats_raw, ...) but the same shapes.
    """

    # Declared by every subclass (a dataclass field each); named here for the methods below.
    means: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_for(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def _check_shapes(self, trailing: Mapping[str, Tuple[int, ...]]) -> None:
        """
        Raise SceneFormatError unless every per-Gaussian field holds N = len(means) rows.

        Errors start with the class and field name, e.g. ``Gaussians.quats``.

        :param trailing: field name -> shape after the leading N, checked in this order; then
            ``sh`` must be [N, K, 3] with K = (degree + 1)^2.
        """
        n = len(self)
        for name, rest in trailing.items():
            self._check_shape(name, (n,) + rest)
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise SceneFormatError(
                f'{type(self).__name__}.sh: expected shape ({n}, K, 3), '
                f'got {tuple(self.sh.shape)}'
            )
        sh_degree_for(self.sh.shape[1])

    def _check_shape(self, name: str, shape: Tuple[int, ...]) -> None:
        got = tuple(getattr(self, name).shape)
        if got != shape:
            raise SceneFormatError(
                f'{type(self).__name__}.{name}: expected shape {shape}, got {got}'
            )


@dataclass(frozen=True)
class Gaussians(GaussianSet):
    """
    N anisotropic 3D Gaussians, activated and ready to render.

    :ivar means: centres in world coordinates, [N, 3].
    :ivar quats: unit rotation quaternions, (w, x, y, z), [N, 4].
    :ivar scales: standard deviations along the rotated axes (positive), [N, 3].
    :ivar opacities: in [0, 1], [N].
    :ivar sh: spherical-harmonics colour coefficients, [N, K, 3] with K = (degree + 1)^2;
        ``sh[:, 0]`` is the DC term (``rgb = SH_C0 * sh[:, 0] + 0.5``).
    :ivar instance_ids: optional ground-truth instance of each Gaussian, [N] int64 (-1: none).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    instance_ids: Optional[Tensor] = None

    def __post_init__(self) -> None:
        self._check_shapes({'means': (3,), 'quats': (4,), 'scales': (3,), 'opacities': ()})
        if self.instance_ids is not None:
            self._check_shape('instance_ids', (len(self),))

    @property
    def rgb(self) -> Tensor:
        """View-independent base colour from the DC term, clamped to [0, 1], [N, 3]."""
        return (SH_C0 * self.sh[:, 0] + 0.5).clamp(0.0, 1.0)

    def to(self, device: torch.device | str) -> 'Gaussians':
        """Return the same Gaussians on ``device`` (no copy when already there)."""
        # Any: each field's own type (Tensor, or None for an unset optional one).
        moved: Dict[str, Any] = {f.name: _to(getattr(self, f.name), device) for f in fields(self)}
        return replace(self, **moved)

    def select(self, index: Tensor) -> 'Gaussians':
        """Select a subset by boolean mask [N] or integer indices [M]."""
        chosen: Dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
            for f in fields(self)
        }
        return replace(self, **chosen)

    def tensors(self) -> Dict[str, Tensor]:
        """Name -> tensor for every field that is set (the bundle's storage layout)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if value is not None}


def _to(tensor: Optional[Tensor], device: torch.device | str) -> Optional[Tensor]:
    return None if tensor is None else tensor.to(device)
