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
Stamps <-> nanoseconds, and a clock's stamps onto the scene's time axis.

Times are normalised scene time in [0, 1] unless named ``*_s`` (seconds) or ``*_ns``
(nanoseconds since the epoch). A stamp from the outside that no ROS clock makes (nanosec
outside [0, 1e9)), or one that cannot be placed on the scene's time axis, is refused with a
TimeRangeError, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import math
from typing import Optional, Union

from st4r_ros.errors import TimeRangeError
from st4r_ros.ros.messages import make, TIME, Types

NS_PER_S = 1_000_000_000


def stamp_from_ns(types: Types, ns: int):
    """Make the builtin_interfaces/Time of a time in nanoseconds since the epoch."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return make(types, TIME, sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp) -> int:
    """
    Return the nanoseconds of a builtin_interfaces/Time (either world).

    :raises TimeRangeError: nanosec outside [0, 1e9) (no ROS clock makes one).
    """
    if not 0 <= int(stamp.nanosec) < NS_PER_S:
        raise TimeRangeError(f'stamp.nanosec: expected 0..999999999, got {stamp.nanosec}')
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


class StampPolicy(str, enum.Enum):
    """What scene_time_from_stamp does with a stamp outside the scene's time range."""

    CLAMP = 'clamp'  # hold the first or last frame, and flag it
    REFUSE = 'refuse'  # raise TimeRangeError


@dataclass(frozen=True)
class SceneTime:
    """
    A stamp on the scene's time axis.

    :ivar time: normalised scene time in [0, 1].
    :ivar offset_s: the stamp's offset from the scene start in seconds, before clamping.
    :ivar clamped: True when the stamp lay outside [start, start + duration] and was clamped.
    """

    time: float
    offset_s: float
    clamped: bool


def scene_time_from_stamp(stamp, start_stamp, duration_s: Optional[float],
                          policy: Union[StampPolicy, str] = StampPolicy.CLAMP) -> SceneTime:
    """
    Map a builtin_interfaces/Time to a scene time when the scene plays in step with a clock.

    ``start_stamp`` (a Time) is the scene's first frame, ``start_stamp + duration_s`` its last.

    Policy: each stamp maps on its own, so out-of-order stamps simply give earlier scene times
    (a recording can be looked at in any order; the caller decides what order to feed). A stamp
    before the start or after the end is held at 0 or 1 and flagged (CLAMP: a robot that keeps
    running after the recording sees its last frame) or refused (REFUSE).

    :raises TimeRangeError: no usable duration (None, NaN, <= 0: the scene declares none); a
        stamp with nanosec outside [0, 1e9); with REFUSE, a stamp outside the scene's range.
    :raises ValueError: an unknown policy.
    """
    policy = StampPolicy(policy)
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        raise TimeRangeError(f"duration_s: a scene time from a stamp needs the scene's "
                             f'duration in seconds (> 0), got {duration_s!r}; give scene times '
                             'explicitly for scenes that declare none')
    offset_s = (stamp_to_ns(stamp) - stamp_to_ns(start_stamp)) / NS_PER_S
    time = offset_s / duration_s
    if 0.0 <= time <= 1.0:
        return SceneTime(time, offset_s, clamped=False)
    if policy == StampPolicy.REFUSE:
        raise TimeRangeError(f'stamp: {offset_s:.9g} s from the scene start, outside the '
                             f"scene's [0, {duration_s:g}] s")
    return SceneTime(min(max(time, 0.0), 1.0), offset_s, clamped=True)
