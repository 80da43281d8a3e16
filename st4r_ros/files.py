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
Files written atomically and JSON objects read with errors that name the file.

A reader sees the old content or the new one, never half of either.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Type


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """
    Run ``write(tmp_path)`` on a temporary file beside ``target``, then rename it over ``target``.

    The rename is one step: a crash or error leaves ``target`` as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f'.{target.name}.tmp')
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path, error: Type[Exception]) -> Any:  # whatever the file holds
    """
    Read the JSON document in the file at ``path``.

    :param error: the exception type to raise: the caller's kind of input (SceneFormatError for
        a scene's files, CameraError for a camera's).
    :raises error: naming ``path``, when it is missing, cannot be read as text (a folder, no
        permission, not UTF-8) or is not valid JSON (including nesting too deep to parse and
        integers of more digits than Python converts).
    """
    try:
        text = Path(path).read_text(encoding='utf-8')
    except FileNotFoundError:
        raise error(f'{path}: file not found') from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f'{path}: cannot be read as a JSON file ({err})') from None
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f'{path}: not valid JSON (nested too deeply)') from None
    except ValueError as err:  # JSONDecodeError, and int() refusing thousands of digits
        raise error(f'{path}: not valid JSON ({err})') from None


def read_json_object(path: Path, error: Type[Exception]) -> Dict:
    """
    Read the JSON object in the file at ``path``.

    :param error: the exception type to raise (``read_json``).
    :raises error: naming ``path``, when ``read_json`` does or the file holds something other
        than an object.
    """
    data = read_json(path, error)
    if not isinstance(data, dict):
        raise error(f'{path}: expected a JSON object, got {type(data).__name__}')
    return data


def finite_number(value: object) -> Optional[float]:
    """
    Return a JSON number as a finite float; None for anything else.

    Not a number: bools (JSON's true is no 1), text, null. Not finite: NaN, infinities, and
    integers beyond any float (10**400 is valid JSON; float() of it overflows).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
