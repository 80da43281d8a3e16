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

"""load_scene(): one entry point that recognises every scene format st4r_ros reads."""

from __future__ import annotations

from pathlib import Path

from st4r_ros.errors import SceneFormatError
from st4r_ros.scene.scene4d import Scene4D

FORMATS = ('bundle', '4dgaussians', 'ply-sequence', 'ply')


def detect_format(path: Path) -> str:
    """Name of the format stored at ``path`` (one of FORMATS)."""
    if not path.exists():
        raise SceneFormatError(f'{path}: no such file or folder')
    if path.is_file():
        if path.suffix.lower() == '.ply':
            return 'ply'
        raise SceneFormatError(f'{path}: expected a scene folder or a .ply file')
    if (path / 'manifest.json').is_file():
        return 'bundle'
    if (path / 'cfg_args').is_file() or (path / 'point_cloud').is_dir():
        return '4dgaussians'
    if any(path.glob('*.ply')):
        return 'ply-sequence'
    raise SceneFormatError(
        f'{path}: not a scene: expected manifest.json (st4r bundle), cfg_args + point_cloud/ '
        '(4DGaussians output) or *.ply files (per-frame sequence)'
    )


def load_scene(path: str | Path, scene_format: str | None = None) -> Scene4D:
    """Open the scene at ``path``; ``scene_format`` overrides detection (one of FORMATS)."""
    path = Path(path)
    scene_format = scene_format or detect_format(path)
    if scene_format == 'bundle':
        from st4r_ros.scene.bundle import load_bundle

        return load_bundle(path)
    if scene_format == '4dgaussians':
        from st4r_ros.scene.fourdgs import FourDGaussiansScene

        return FourDGaussiansScene.load(path)
    if scene_format == 'ply-sequence':
        from st4r_ros.scene.keyframes import KeyframedScene

        return KeyframedScene.from_ply_folder(path)
    if scene_format == 'ply':
        from st4r_ros.scene.keyframes import KeyframedScene
        from st4r_ros.scene.ply import read_ply

        return KeyframedScene([(0.0, read_ply(path).activate())], source=str(path),
                              scene_format='ply')
    raise SceneFormatError(f'format: expected one of {FORMATS}, got {scene_format!r}')
