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
import os
from pathlib import Path
from typing import Callable, Dict, Type


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


def read_json_object(path: Path, error: Type[Exception]) -> Dict:
    """
    Read the JSON object in the file at ``path``.

    :param error: the exception type to raise: the caller's kind of input (SceneFormatError for
        a scene's files, AnnotationError for a dataset's).
    :raises error: naming ``path``, when it cannot be read, is not valid JSON or holds
        something other than an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f'{path}: not valid JSON ({err})') from None
    if not isinstance(data, dict):
        raise error(f'{path}: expected a JSON object, got {type(data).__name__}')
    return data
