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

"""Random but valid activated Gaussians for the scene-format tests, reproducible by seed."""

from __future__ import annotations

from st4r_ros.scene.gaussians import Gaussians
import torch


def make_gaussians(n: int, seed: int, sh_degree: int = 0, ids: bool = False) -> Gaussians:
    """
    Draw ``n`` Gaussians from ``seed``.

    Opacities stay in [0.05, 0.95] so that they survive the PLY logit round trip. Instance ids
    are -1 (none), 0, ..., n - 2 whatever the seed: frames of equal ``n`` correspond, as linear
    interpolation requires.

    :param sh_degree: spherical-harmonics degree of the colours.
    :param ids: whether the Gaussians carry instance ids.
    """
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    return Gaussians(
        means=torch.randn(n, 3, generator=g),
        quats=quats / quats.norm(dim=1, keepdim=True),
        scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
        opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
        sh=torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g),
        instance_ids=torch.arange(n) - 1 if ids else None,
    )
