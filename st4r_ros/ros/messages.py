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
Message classes of either world, and how to make a message in both.

The ROS face's converters (outputs.py, cameras.py, clock.py) serve the rclpy node (rclpy's
generated classes) and bag replay (rosbags classes, no ROS needed). They never import either
world: they take a ``types`` adapter that resolves a message name such as
"sensor_msgs/msg/Image" to its class and knows what that world wants for defaults and arrays:

- ``RosbagsTypes(typestore)``: rosbags classes are dataclasses that need every field in the
  constructor, with numpy arrays for arrays and sequences of numbers;
- ``RclpyTypes()``: rclpy classes default every field themselves and take ``array.array`` for
  sequences of numbers (their setters refuse numpy arrays, which are no ``Sequence``).

Converters build messages with ``make(types, msgtype, **fields)``, giving numbers as Python
scalars and arrays as numpy arrays; ``make`` hands them over in the form each world takes.

(Named messages.py, not types.py: a module ``types`` would shadow the standard library's for
a script run from this folder, and clash with the ``types`` arguments of every converter.)
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Dict, Mapping, Protocol, Sequence, TYPE_CHECKING, Union

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from rosbags.interfaces.typing import FieldDesc
    from rosbags.typesys.store import Typestore

# The message types the ROS face makes or reads, by their full names.
RESULT = 'st4r_ros/msg/ReferringResult'
SPAN = 'st4r_ros/msg/TimeSpan'
HEADER = 'std_msgs/msg/Header'
TIME = 'builtin_interfaces/msg/Time'
IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
POINT_CLOUD2 = 'sensor_msgs/msg/PointCloud2'
POINT_FIELD = 'sensor_msgs/msg/PointField'
MARKER = 'visualization_msgs/msg/Marker'
MARKER_ARRAY = 'visualization_msgs/msg/MarkerArray'

# A message of either world. Both make their classes at run time from the interface definitions,
# so no static type names a message's fields: converters set and read them unchecked.
Message = Any


class Types(Protocol):
    """
    A world's message classes: the ``types`` adapter every converter takes.

    RosbagsTypes and RclpyTypes are the two; ``make`` builds messages through it.
    """

    def __getitem__(self, name: str) -> type[Message]:
        """Return the class of the message type ``name``, e.g. "sensor_msgs/msg/Image"."""

    def defaults(self, name: str, given: Mapping[str, object]) -> Dict[str, object]:
        """Return values for the fields of ``name`` not in ``given`` that must be passed."""

    def array(self, values: NDArray[Any]) -> Union[NDArray[Any], array.array[Any]]:
        """Return a 1-D numpy array in the form this world takes for an array field."""


class RosbagsTypes:
    """Message classes of a rosbags Typestore (replay, tests), e.g. ``ros_typestore()``."""

    def __init__(self, typestore: Typestore) -> None:
        self.typestore = typestore

    def __getitem__(self, name: str) -> type[Message]:
        return self.typestore.types[name]

    def defaults(self, name: str, given: Mapping[str, object]) -> Dict[str, object]:
        """
        Return the ROS default values (zeros, empty) of the fields of ``name`` not in ``given``.

        rosbags keeps no .msg default values: a field with a non-zero one (Quaternion.w) must be
        given.
        """
        _, fields = self.typestore.fielddefs[name]
        return {field: self._default(desc) for field, desc in fields if field not in given}

    def _default(self, desc: FieldDesc) -> object:
        from rosbags.interfaces import Nodetype

        # Indexed, not unpacked: mypy tells the kinds of FieldDesc apart by desc[0].
        if desc[0] == Nodetype.BASE:
            zeros = {'string': '', 'bool': False, 'float32': 0.0, 'float64': 0.0}
            return zeros.get(desc[1][0], 0)
        if desc[0] == Nodetype.NAME:
            return self[desc[1]](**self.defaults(desc[1], {}))
        item, size = desc[1]
        length = size if desc[0] == Nodetype.ARRAY else 0  # sequences start empty
        if item[0] == Nodetype.BASE and item[1][0] not in ('string', 'bool'):
            return np.zeros(length, dtype=item[1][0])
        return [self._default(item) for _ in range(length)]

    @staticmethod
    def array(values: NDArray[Any]) -> NDArray[Any]:
        return values


class RclpyTypes:
    """rclpy's generated classes (the live node; needs ROS 2 sourced and st4r_ros built)."""

    def __getitem__(self, name: str) -> type[Message]:
        package, kind, message = name.split('/')  # "sensor_msgs/msg/Image"
        found: type[Message] = getattr(importlib.import_module(f'{package}.{kind}'), message)
        return found

    @staticmethod
    def defaults(name: str, given: Mapping[str, object]) -> Dict[str, object]:
        return {}  # rclpy classes default every field themselves

    @staticmethod
    def array(values: NDArray[Any]) -> array.array[Any]:
        return array.array(values.dtype.char, values.tobytes())


def make(types: Types, msgtype: str, /, **fields: object) -> Message:
    """
    Make a message of type ``msgtype`` with ``fields`` set and the others at their defaults.

    Give numbers as Python scalars (rclpy refuses numpy scalars) and arrays or sequences of
    numbers as 1-D numpy arrays of the field's dtype (uint8 for uint8[], float64 for
    float64[9], ...); nested messages as messages of the same ``types``.
    """
    values = {key: types.array(value) if isinstance(value, np.ndarray) else value
              for key, value in fields.items()}
    return types[msgtype](**types.defaults(msgtype, values), **values)


def header_msg(types: Types, stamp: Message, frame_id: str) -> Message:
    """Make the std_msgs/Header of ``stamp`` (a builtin_interfaces/Time) in ``frame_id``."""
    return make(types, HEADER, stamp=stamp, frame_id=frame_id)


def point_msg(types: Types, xyz: Sequence[float]) -> Message:
    """Make the geometry_msgs/Point of ``xyz`` (3 numbers)."""
    x, y, z = (float(v) for v in xyz)
    return make(types, 'geometry_msgs/msg/Point', x=x, y=y, z=z)
