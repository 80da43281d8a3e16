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
The one exception family of st4r_ros.

Every message names the file or field at fault and what was expected, so that a user can fix
the input without reading the code.
"""


class St4rError(Exception):
    """Base of every error st4r_ros raises on purpose."""


class SceneFormatError(St4rError, ValueError):
    """A scene file or folder is missing, malformed or inconsistent."""


class TimeRangeError(St4rError, ValueError):
    """A scene time outside the normalised range [0, 1]."""


class CameraError(St4rError, ValueError):
    """A camera that cannot be rendered from (degenerate intrinsics or pose)."""


class RenderError(St4rError, RuntimeError):
    """A render request that cannot be served (unknown backend, bad channels, no CUDA)."""


class TextEncoderError(St4rError, RuntimeError):
    """A text encoder that cannot be loaded (missing weights, unreadable folder)."""


class QueryError(St4rError, ValueError):
    """A referring expression or query that cannot be answered as given."""


class SupervisionFormatError(St4rError, ValueError):
    """A supervision or benchmark folder that is missing, malformed or inconsistent."""


class AnnotationError(St4rError, RuntimeError):
    """An annotation run that cannot start or go on (config, input, missing model weights)."""
