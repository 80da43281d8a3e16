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
The captioner's view of one instance.

The frame with the background blurred and a red contour around the instance (the paper's
visual prompt), so that the answer is about that instance.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from PIL import Image, ImageFilter
from st4r_ros.annotate.config import HighlightConfig
from torch import Tensor


def contour(mask: np.ndarray, width: int) -> np.ndarray:
    """
    Return the band of ``width`` pixels just outside mask [H, W] bool, [H, W] bool.

    Drawn outside so that the instance's own pixels stay visible to the captioner.
    """
    if width <= 0 or not mask.any():
        return np.zeros_like(mask)
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(
        ImageFilter.MaxFilter(2 * width + 1))
    return (np.asarray(grown) > 0) & ~mask


def highlight(image: Image.Image, mask: Tensor | np.ndarray,
              config: HighlightConfig = HighlightConfig()) -> Image.Image:
    """
    Blur everything outside ``mask`` [H, W] and outline it in the contour colour.

    :param image: RGB frame of size (W, H).
    :returns: a new RGB image of the same size.
    """
    inside = np.asarray(mask, dtype=bool)
    if inside.shape != (image.height, image.width):
        raise ValueError(f'mask {inside.shape} does not match the image '
                         f'{(image.height, image.width)}')
    rgb = image.convert('RGB')
    blurred = rgb.filter(ImageFilter.GaussianBlur(config.blur_radius)) \
        if config.blur_radius > 0 else rgb
    out = np.where(inside[..., None], np.asarray(rgb), np.asarray(blurred))
    out[contour(inside, config.contour_width)] = np.asarray(config.contour_rgb, dtype=np.uint8)
    return Image.fromarray(out.astype(np.uint8))


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Shrink ``image`` (aspect kept) to at most ``max_pixels`` pixels; smaller ones unchanged."""
    area = image.width * image.height
    if area <= max_pixels:
        return image
    scale = (max_pixels / area) ** 0.5
    size: Tuple[int, int] = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    # Image.BICUBIC: Pillow 9.0 (setup.py's floor) lacks Image.Resampling, which Pillow's types
    # name instead; the module constant is still there at run time.
    return image.resize(size, Image.BICUBIC)  # type: ignore[attr-defined]
