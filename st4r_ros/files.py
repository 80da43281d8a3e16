"""Writing files so that a reader sees the old content or the new one, never half of either."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp_path)`` on a temporary file beside ``target``, then rename it over
    ``target`` in one step (a crash or error leaves ``target`` as it was)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
