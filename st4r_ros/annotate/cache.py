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
A cache of model answers, keyed by model + prompt + input.

A key is the SHA-256 of the model's identity (name and resolved revision), the task's
parameters (prompt, thresholds, generation settings) and the exact input bytes (each image's
size, mode and pixels), so a changed model, prompt or frame never hits a stale answer. Entries
are small JSON files written atomically; a killed run loses at most the answers in flight, and
runs may share one cache folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from PIL import Image
from st4r_ros.files import atomic_write


def cache_key(model: str, params: Dict[str, Any], images: Sequence[Image.Image] = ()) -> str:
    """
    Return the hex key of one request.

    :param model: the model's identity, e.g. ``name@revision``.
    :param params: JSON-able task parameters (prompt text included).
    :param images: the images sent, in order.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({'model': model, 'params': params}, sort_keys=True).encode())
    for image in images:
        digest.update(f'|{image.mode}:{image.size[0]}x{image.size[1]}|'.encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


class AnswerCache:
    """JSON answers under ``root/<key[:2]>/<key>.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f'{key}.json'

    def get(self, key: str) -> Optional[Any]:
        """Return the stored answer or None (a missing or unreadable entry is a miss)."""
        try:
            value = json.loads(self._path(key).read_text(encoding='utf-8'))['answer']
        except (OSError, ValueError, KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, answer: Any) -> None:
        """Store ``answer`` (JSON-able) under ``key``, atomically."""
        text = json.dumps({'answer': answer})
        atomic_write(self._path(key), lambda tmp: tmp.write_text(text, encoding='utf-8'))
