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

"""Scene4D: what exists where and when, whatever file format it came from."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
import math
from typing import List, Optional, Tuple

from st4r_ros.errors import TimeRangeError
from st4r_ros.scene.gaussians import Gaussians
import torch


@dataclass(frozen=True)
class SceneInfo:
    """What `st4r scene info` reports about a scene."""

    path: str
    # A003: the scene format's name, a key of the `st4r scene info` report; a dataclass
    # field shadows the builtin nowhere.
    format: str  # noqa: A003
    num_gaussians: int
    sh_degree: int
    time_range: Tuple[float, float] = (0.0, 1.0)
    num_frames: Optional[int] = None
    duration_s: Optional[float] = None
    semantic_layers: List[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def check_time(t: float) -> float:
    """Return ``t`` as a float if it is a finite normalised scene time in [0, 1]."""
    if isinstance(t, (bool, str, bytes)):  # float() would take True and '0.5'
        raise TimeRangeError(f'time: expected a number in [0, 1], got {t!r}')
    try:
        value = float(t)
    except (TypeError, ValueError, OverflowError):  # None, a list, an int beyond any float
        raise TimeRangeError(f'time: expected a number in [0, 1], got {str(t)[:40]}') from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise TimeRangeError(f'time: expected a normalised scene time in [0, 1], got {t!r}')
    return value


class Scene4D(abc.ABC):
    """
    A dynamic Gaussian scene queried by normalised time t in [0, 1].

    Subclasses implement `_at`; `at` validates the time and keeps the last result so that a
    caller asking again for the same instant (scene time standing still while the camera
    moves) gets the deformed Gaussians without recomputing them.
    """

    def __init__(self) -> None:
        self._last: Optional[Tuple[float, torch.device, Gaussians]] = None

    @abc.abstractmethod
    def info(self) -> SceneInfo:
        """Format, size and time range of the scene."""

    @abc.abstractmethod
    def _at(self, t: float, device: torch.device) -> Gaussians:
        """Return the Gaussians at validated time ``t`` on ``device``."""

    def at(self, t: float, device: torch.device | str = 'cpu') -> Gaussians:
        """Return the activated Gaussians at normalised time ``t`` on ``device``."""
        t = check_time(t)
        device = torch.device(device)
        if self._last is not None and self._last[0] == t and self._last[1] == device:
            return self._last[2]
        gaussians = self._at(t, device)
        self._last = (t, device, gaussians)
        return gaussians

    def static_means(self) -> Optional[torch.Tensor]:
        """
        Return the centres of the static picture the scene's format keeps, [N, 3], or None.

        A format trained with a canonical space (4DGaussians) keeps one: what a static method
        given that output would see. Keyframes and PLY sequences keep none.
        """
        return None

    def __len__(self) -> int:
        return self.info().num_gaussians
