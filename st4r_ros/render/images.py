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
Rendered tensors to pictures people look at (PNG files, overlays).

``highlight`` lives here rather than beside the ROS overlay message (ros/outputs.py) because it
is picture-making on render tensors, as ``to_uint8`` is, with nothing of ROS in it: the overlay
topic, and any PNG or viewer that wants the target marked, mark it the same way.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
from PIL import Image
import torch
from torch import Tensor
import torch.nn.functional as F


def to_uint8(image: Tensor) -> np.ndarray:
    """[H, W, C] floats in [0, 1] (C = 1 or 3) -> [H, W] or [H, W, 3] uint8."""
    array = (image.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


# Highlight colours, RGB: the one farthest from the target's own mean colour is used.
HIGHLIGHTS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.3, 1.0), (1.0, 0.0, 1.0),
              (1.0, 1.0, 0.0), (0.0, 1.0, 1.0))


def highlight(rgb: Tensor, mask: Tensor, strength: float = 0.5, outline: int = 2) -> Tensor:
    """
    Mark the pixels of ``mask`` [H, W] (bool) in ``rgb`` [H, W, 3]: a tint and an outline.

    The colour is whichever of HIGHLIGHTS lies farthest from the target's mean colour, so a red
    object is not tinted red; the outline (``outline`` pixels wide, at full colour) keeps the
    target's edge visible whatever its colour. RGB in [0, 1]; same shape and range out.
    """
    mask = torch.as_tensor(mask, dtype=torch.bool, device=rgb.device)
    if not bool(mask.any()):
        return rgb
    mean = rgb[mask].mean(dim=0)  # [3]
    palette = torch.tensor(HIGHLIGHTS, dtype=rgb.dtype, device=rgb.device)  # [P, 3]
    paint = palette[int((palette - mean).norm(dim=1).argmax())]
    outside = (~mask)[None, None].float()
    grown = F.max_pool2d(outside, 2 * outline + 1, stride=1, padding=outline)[0, 0] > 0
    edge = mask & grown  # target pixels within ``outline`` of a non-target pixel
    tinted = torch.where(mask[..., None], (1.0 - strength) * rgb + strength * paint, rgb)
    return torch.where(edge[..., None], paint.expand_as(rgb), tinted)


def depth_to_gray(depth: Tensor, alpha: Tensor) -> Tensor:
    """Map expected depth [H, W, 1] -> [H, W, 1] in [0, 1], near bright, far dark, empty black."""
    hit = alpha[..., 0] > 0.5
    if not bool(hit.any()):
        return torch.zeros_like(depth)
    near, far = depth[..., 0][hit].min(), depth[..., 0][hit].max()
    gray = 1.0 - (depth - near) / (far - near).clamp(min=1e-6)
    return torch.where(hit[..., None], 0.2 + 0.8 * gray.clamp(0.0, 1.0), torch.zeros_like(depth))


def save_png(path: str | Path, image: Tensor) -> Path:
    """Write [H, W, 1|3] floats in [0, 1] as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path
