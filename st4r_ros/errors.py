"""The one exception family of st4r_ros.

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
