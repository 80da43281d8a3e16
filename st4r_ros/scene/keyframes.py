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
Keyframed scenes: a dynamic scene stored as Gaussians at a few instants.

Two sources produce them: a folder of per-frame 3DGS PLY files (e.g. 4DGaussians' per-timestamp
export) and the project's own bundle (st4r_ros.scene.bundle).

Between keyframes the scene is answered by one of two rules:

- ``nearest`` (default): the keyframe nearest in time, ties going to the earlier one. Frames of
  a general sequence may hold different numbers of Gaussians in an unknown order (each frame
  trained or pruned on its own), so there is no Gaussian-to-Gaussian correspondence to
  interpolate along; a keyframe is always a real, self-consistent state.
- ``linear``: only when the source declares that its frames correspond (same count, Gaussian i
  of every frame is the same particle, same instance ids), as a deformation-field export or a
  synthetic scene does. Means, opacities and SH are interpolated linearly, scales geometrically
  (linear in log scale, the parameter 3DGS optimises, so they stay positive) and rotations by
  normalised quaternion lerp along the shorter arc. Exactly at a keyframe time both rules return
  that keyframe unchanged.

Frame-folder layout read by `KeyframedScene.from_ply_folder`::

    folder/
      time_00000.ply  time_00001.ply ...   one 3DGS PLY per frame, ordered by natural sort
      frames.json                          optional, see below

Without ``frames.json`` the i-th of F files (natural order: digit runs compare as numbers, so
``t_2`` < ``t_10``) gets time i / (F - 1) (0 for a single file). ``frames.json`` may set any of::

    {"times": {"time_00000.ply": 0.0, "time_00001.ply": 0.5, ...},  # every PLY, each in [0, 1]
     "duration_s": 2.0,                                               # real length of the scene
     "interpolation": "linear"}                                       # frames correspond
"""

from __future__ import annotations

import bisect
from pathlib import Path
import re
from typing import Dict, List, Optional, Sequence, Tuple

from st4r_ros.errors import SceneFormatError
from st4r_ros.files import finite_number, read_json_object
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.ply import read_ply
from st4r_ros.scene.scene4d import Scene4D, SceneInfo
import torch

INTERPOLATIONS = ('nearest', 'linear')
FRAMES_FILE = 'frames.json'

Keyframe = Tuple[float, Gaussians]


class KeyframedScene(Scene4D):
    """
    A scene given as keyframes (time in [0, 1], Gaussians), strictly increasing in time.

    :param keyframes: at least one (time, Gaussians); every frame must have the same SH degree and
        either all or none carry instance ids.
    :param interpolation: 'nearest' or 'linear' (see the module docstring).
    :param duration_s: real length of the scene in seconds, if known.
    :param source: file or folder the keyframes came from, named in errors and `info()`.
    :param scene_format: format name reported by `info()` ('ply-sequence', 'bundle', 'ply', ...).
    :param semantic_layers: names of the semantic layers stored beside the Gaussians.
    """

    def __init__(
        self,
        keyframes: Sequence[Keyframe],
        *,
        interpolation: str = 'nearest',
        duration_s: Optional[float] = None,
        source: str = 'keyframes',
        scene_format: str = 'keyframes',
        semantic_layers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._keyframes = _checked_keyframes(keyframes, source)
        self._times = [t for t, _ in self._keyframes]
        self.interpolation = _checked_interpolation(interpolation, self._keyframes, source)
        self.duration_s = _checked_duration(duration_s, f'{source}: duration_s')
        self.source = source
        self.scene_format = scene_format
        self.semantic_layers = list(semantic_layers)

    @classmethod
    def from_ply_folder(cls, folder: str | Path) -> 'KeyframedScene':
        """
        Load a scene from a folder of per-frame 3DGS PLY files (layout in the module docstring).

        :raises SceneFormatError: the folder is missing or has no PLY, frames.json is malformed,
            or a frame cannot be read (the message names the file).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SceneFormatError(f'{folder}: expected a folder of per-frame .ply files')
        files = ply_files(folder)
        spec = _read_frames_json(folder / FRAMES_FILE, [f.name for f in files])
        times = spec.get('times') or _even_times(len(files))
        frames = sorted(zip(times, files), key=lambda pair: pair[0])
        return cls(
            [(t, read_ply(path).activate()) for t, path in frames],
            interpolation=spec.get('interpolation', 'nearest'),
            duration_s=spec.get('duration_s'),
            source=str(folder),
            scene_format='ply-sequence',
        )

    @property
    def keyframes(self) -> List[Keyframe]:
        """Return the (time, Gaussians) pairs, sorted by time (a copy of the list, not tensors)."""
        return list(self._keyframes)

    @property
    def times(self) -> List[float]:
        return list(self._times)

    def info(self) -> SceneInfo:
        counts = [len(g) for _, g in self._keyframes]
        return SceneInfo(
            path=self.source,
            format=self.scene_format,
            num_gaussians=max(counts),
            sh_degree=self._keyframes[0][1].sh_degree,
            num_frames=len(self._keyframes),
            duration_s=self.duration_s,
            semantic_layers=list(self.semantic_layers),
            details={
                'frame_times': self.times,
                'counts': counts,
                'interpolation': self.interpolation,
                'instance_ids': self._keyframes[0][1].instance_ids is not None,
            },
        )

    def _at(self, t: float, device: torch.device) -> Gaussians:
        before, after, weight = self._bracket(t)
        if self.interpolation == 'nearest' or weight in (0.0, 1.0):
            index = after if weight > 0.5 else before
            return self._keyframes[index][1].to(device)
        a, b = self._keyframes[before][1], self._keyframes[after][1]
        return interpolate(a.to(device), b.to(device), weight)

    def _bracket(self, t: float) -> Tuple[int, int, float]:
        """
        Find the keyframes around ``t`` (indices) and t's fraction of the way between them.

        Outside the keyframes' span the first or last keyframe holds (weight 0).
        """
        after = bisect.bisect_left(self._times, t)
        if after == 0:
            return 0, 0, 0.0
        if after == len(self._times):
            return after - 1, after - 1, 0.0
        t0, t1 = self._times[after - 1], self._times[after]
        return after - 1, after, (t - t0) / (t1 - t0)


def interpolate(a: Gaussians, b: Gaussians, weight: float) -> Gaussians:
    """
    Gaussians a fraction ``weight`` in [0, 1] of the way from ``a`` to ``b`` (same N, order).

    quats [N, 4] are lerped after flipping b's to a's hemisphere (q and -q are one rotation) and
    renormalised; scales [N, 3] are interpolated in log space.
    """
    sign = torch.where((a.quats * b.quats).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    quats = torch.lerp(a.quats, b.quats * sign, weight)
    quats = quats / quats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return Gaussians(
        means=torch.lerp(a.means, b.means, weight),
        quats=quats,
        scales=torch.exp(torch.lerp(a.scales.log(), b.scales.log(), weight)),
        opacities=torch.lerp(a.opacities, b.opacities, weight),
        sh=torch.lerp(a.sh, b.sh, weight),
        instance_ids=a.instance_ids,
    )


def natural_key(name: str) -> Tuple:
    """Sort key comparing digit runs as numbers: 'time_2.ply' < 'time_10.ply'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name))


def ply_files(folder: Path) -> List[Path]:
    """List the frame files of a PLY-sequence folder in frame order (natural sort)."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == '.ply' and p.is_file()),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise SceneFormatError(f'{folder}: expected per-frame .ply files, found none')
    for first, second in zip(files, files[1:]):
        if natural_key(first.name) == natural_key(second.name):
            # e.g. t1.ply and t01.ply: the order (and so the time) of the two is undefined.
            raise SceneFormatError(
                f"{folder}: '{first.name}' and '{second.name}' have the same frame number; "
                'expected one file per frame'
            )
    return files


def _even_times(count: int) -> List[float]:
    return [0.0] if count == 1 else [i / (count - 1) for i in range(count)]


def _read_frames_json(path: Path, ply_names: List[str]) -> Dict:
    """Read and validate frames.json ({} when absent); 'times' aligned with ply_names."""
    if not path.exists():
        return {}
    data = read_json_object(path, SceneFormatError)
    unknown = set(data) - {'times', 'duration_s', 'interpolation'}
    if unknown:
        raise SceneFormatError(
            f'{path}: unknown field(s) {sorted(unknown)}; '
            'expected times, duration_s, interpolation'
        )
    spec = dict(data)
    if 'times' in data:
        spec['times'] = _times_for(path, data['times'], ply_names)
    if 'duration_s' in data:
        spec['duration_s'] = _checked_duration(data['duration_s'], f'{path}: duration_s')
    if spec.get('interpolation', 'nearest') not in INTERPOLATIONS:
        raise SceneFormatError(
            f"{path}: field 'interpolation' must be one of {INTERPOLATIONS}, "
            f"got {data['interpolation']!r}"
        )
    return spec


def _times_for(path: Path, times: object, ply_names: List[str]) -> List[float]:
    if not isinstance(times, dict):
        raise SceneFormatError(f"{path}: field 'times' must map PLY file name -> time in [0, 1]")
    missing = [n for n in ply_names if n not in times]
    extra = sorted(set(times) - set(ply_names))
    if missing or extra:
        raise SceneFormatError(
            f"{path}: field 'times' must list exactly the folder's PLY files; "
            f'missing {missing}, unknown {extra}'
        )
    return [_checked_time(times[n], f"{path}: times['{n}']") for n in ply_names]


def _checked_time(value: object, where: str) -> float:
    number = finite_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise SceneFormatError(f'{where}: expected a time in [0, 1], got {str(value)[:40]}')
    return number


def _checked_keyframes(keyframes: Sequence[Keyframe], source: str) -> List[Keyframe]:
    frames = list(keyframes)
    if not frames:
        raise SceneFormatError(f'{source}: expected at least one keyframe, got none')
    checked = []
    for i, (t, gaussians) in enumerate(frames):
        checked.append((_checked_time(t, f'{source}: frame {i} time'), gaussians))
    for i in range(1, len(checked)):
        if checked[i][0] <= checked[i - 1][0]:
            raise SceneFormatError(
                f'{source}: frame times must increase strictly; frame {i} has time '
                f'{checked[i][0]} after {checked[i - 1][0]}'
            )
    first = checked[0][1]
    for i, (_, gaussians) in enumerate(checked):
        if gaussians.sh.shape[1] != first.sh.shape[1]:
            raise SceneFormatError(
                f'{source}: frame {i} has SH degree {gaussians.sh_degree}, '
                f'expected {first.sh_degree} as in frame 0'
            )
        if (gaussians.instance_ids is None) != (first.instance_ids is None):
            raise SceneFormatError(
                f'{source}: frame {i} instance_ids presence differs from frame 0; '
                'expected all frames or none to carry instance ids'
            )
    return checked


def _checked_interpolation(interpolation: str, keyframes: List[Keyframe], source: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise SceneFormatError(
            f'{source}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}'
        )
    if interpolation == 'linear':
        _check_correspondence(keyframes, source)
    return interpolation


def _check_correspondence(keyframes: List[Keyframe], source: str) -> None:
    """Linear interpolation needs Gaussian i of every frame to be the same particle."""
    first = keyframes[0][1]
    for i, (_, gaussians) in enumerate(keyframes):
        if len(gaussians) != len(first):
            raise SceneFormatError(
                f"{source}: interpolation 'linear' needs equal Gaussian counts; frame {i} has "
                f'{len(gaussians)}, frame 0 has {len(first)}'
            )
        if first.instance_ids is not None and (
            gaussians.instance_ids is None
            or not torch.equal(gaussians.instance_ids.cpu(), first.instance_ids.cpu())
        ):
            raise SceneFormatError(
                f"{source}: interpolation 'linear' needs the same instance_ids in every frame; "
                f'frame {i} differs from frame 0'
            )


def _checked_duration(duration_s: object, where: str) -> Optional[float]:
    """``duration_s`` as a float: None (unknown) or a positive finite number of seconds."""
    if duration_s is None:
        return None
    number = finite_number(duration_s)
    if number is None or number <= 0:
        raise SceneFormatError(
            f'{where}: expected a positive number of seconds, got {str(duration_s)[:40]}'
        )
    return number
