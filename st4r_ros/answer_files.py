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
Answers as files a user opens: names that say which request they answer, the target cloud PLY.

`st4r query` and the demo write the same kinds of file: ``NN_SLUG_...`` (the request's index
and a short form of its text) and a point cloud of the target's Gaussians with the fields of
the node's PointCloud2 (x, y, z, red, green, blue, score), which any PLY viewer opens.
"""

from __future__ import annotations

from pathlib import Path
import re

import numpy as np

# Characters of a request's text kept in a file name.
SLUG_CHARS = 32


def slug(text: str, limit: int = SLUG_CHARS) -> str:
    """Return a short file-name form of ``text``: 'The red cube!' -> 'the-red-cube'."""
    words = re.findall(r'[a-z0-9]+', text.lower())
    return '-'.join(words)[:limit].strip('-') or 'query'


def answer_stem(index: int, text: str) -> str:
    """Return ``NN_SLUG``: the stem of every file of the index-th request."""
    return f'{index:02d}_{slug(text)}'


def write_cloud_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, score: np.ndarray) -> Path:
    """
    Write M points as a PLY point cloud; returns the path.

    :param xyz: positions in the scene frame, [M, 3] float.
    :param rgb: colours, [M, 3] uint8.
    :param score: the relevance p in [0, 1] of each point, [M] float.
    """
    from plyfile import PlyData, PlyElement

    vertices = np.empty(len(xyz), dtype=[('x', 'f4'), ('y', 'f4'), ('z', 'f4'), ('red', 'u1'),
                                         ('green', 'u1'), ('blue', 'u1'), ('score', 'f4')])
    for column, name in enumerate(('x', 'y', 'z')):
        vertices[name] = xyz[:, column]
    for column, name in enumerate(('red', 'green', 'blue')):
        vertices[name] = rgb[:, column]
    vertices['score'] = score
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertices, 'vertex')]).write(str(path))
    return path
