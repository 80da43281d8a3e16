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
Inria 3D Gaussian Splatting PLY files: read and write, pre-activation values.

Layout (one ``vertex`` element, float32, as written by the Inria trainer and by 4DGaussians):

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3

Values are stored before activation: opacity is a logit, scales are logarithms and the
quaternion (w, x, y, z) is not normalised. ``f_rest`` is channel-major: the K-1 higher-order
coefficients of red, then of green, then of blue. Normals are written as zeros and ignored on
reading; any other per-vertex property is ignored too.

What is read is checked as it will be used (`value_problem`): a PLY st4r reads is one it can
write again, and one it writes is one it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import plyfile
from st4r_ros.errors import SceneFormatError
from st4r_ros.limits import (MAX_ABS_LOG_SCALE, MAX_GAUSSIANS, MAX_PLY_HEADER_BYTES,
                             QUAT_NORM_TOLERANCE)
from st4r_ros.scene.gaussians import Gaussians, GaussianSet, sh_degree_for
import torch
from torch import Tensor
import torch.nn.functional as F

PathLike = Union[str, os.PathLike]

# Opacities are clamped into [eps, 1 - eps] before the logit so that 0 and 1 stay finite;
# in float32 1 - 1e-6 is still below 1.
_OPACITY_EPS = 1e-6
_F_REST = re.compile(r'f_rest_(\d+)$')

MEANS_PROPS = ('x', 'y', 'z')
NORMAL_PROPS = ('nx', 'ny', 'nz')
DC_PROPS = ('f_dc_0', 'f_dc_1', 'f_dc_2')
OPACITY_PROP = 'opacity'
SCALE_PROPS = ('scale_0', 'scale_1', 'scale_2')
ROT_PROPS = ('rot_0', 'rot_1', 'rot_2', 'rot_3')
REQUIRED_PROPS = MEANS_PROPS + DC_PROPS + (OPACITY_PROP,) + SCALE_PROPS + ROT_PROPS
# Activated field -> the PLY properties it comes from, for messages.
_FIELD_PROPS = {'means': 'x, y, z', 'quats': 'rot_0..3', 'scales': 'scale_0..2 (log scales)',
                'opacities': 'opacity (logit)', 'sh': 'f_dc_*, f_rest_*'}


@dataclass(frozen=True)
class RawGaussians(GaussianSet):
    """
    N Gaussians as stored and as deformed by 4DGaussians: values before activation.

    :ivar means: centres, [N, 3].
    :ivar quats_raw: rotation quaternions (w, x, y, z), not normalised, [N, 4].
    :ivar log_scales: natural logarithm of the scales, [N, 3].
    :ivar opacity_logits: logit of the opacities, [N].
    :ivar sh: spherical-harmonics coefficients, [N, K, 3], ``sh[:, 0]`` the DC term.
    """

    means: Tensor
    quats_raw: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor

    def __post_init__(self) -> None:
        self._check_shapes(
            {'means': (3,), 'quats_raw': (4,), 'log_scales': (3,), 'opacity_logits': ()}
        )

    def to(self, device: torch.device | str) -> 'RawGaussians':
        """Return the same Gaussians on ``device`` (no copy when already there)."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def activate(self) -> Gaussians:
        """
        Activated Gaussians: normalised quaternions, exp scales, sigmoid opacities.

        The same activations as the 3DGS / 4DGaussians renderers (``F.normalize``, ``exp``,
        ``sigmoid``), so a deformed state renders as the original would render it.
        """
        return Gaussians(
            means=self.means,
            quats=F.normalize(self.quats_raw, dim=-1),
            scales=torch.exp(self.log_scales),
            opacities=torch.sigmoid(self.opacity_logits),
            sh=self.sh,
        )

    @classmethod
    def from_gaussians(cls, gaussians: Gaussians) -> 'RawGaussians':
        """Invert the activations of ``gaussians`` (opacities clamped so 0 and 1 stay finite)."""
        # float64 for the logit: near 0 and 1 float32 loses most of its digits.
        opacities = gaussians.opacities.double().clamp(_OPACITY_EPS, 1.0 - _OPACITY_EPS)
        scales = gaussians.scales.clamp_min(torch.finfo(gaussians.scales.dtype).tiny)
        return cls(
            means=gaussians.means,
            quats_raw=gaussians.quats,
            log_scales=log_scales_of(scales),
            opacity_logits=torch.logit(opacities).to(gaussians.opacities.dtype),
            sh=gaussians.sh,
        )


def read_ply(path: PathLike) -> RawGaussians:
    """
    Read an Inria 3DGS PLY into pre-activation float32 tensors on the CPU.

    :raises SceneFormatError: the file is missing, not a PLY, truncated, declares more rows than
        ``MAX_GAUSSIANS`` or than its bytes hold, has no ``vertex`` element, lacks a required
        property, has an f_rest count that is not 3 * ((d + 1)^2 - 1), holds NaN / inf values,
        or values that do not activate to renderable Gaussians (`value_problem`). The message
        names the file and the property.
    """
    path = os.fspath(path)
    vertex = _vertex_element(path, _read_plydata(path))
    f_rest_names = _f_rest_names(path, vertex)
    values = {name: _scalar_property(path, vertex, name) for name in REQUIRED_PROPS + f_rest_names}
    for name, array in values.items():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise SceneFormatError(
                f"{path}: property '{name}' has {bad} NaN or inf value(s); expected finite numbers"
            )

    n = vertex.count

    def stack(names: Sequence[str]) -> Tensor:
        columns = [values[name] for name in names]
        if not columns:  # SH degree 0: no f_rest
            return torch.empty((n, 0))
        return torch.from_numpy(np.stack(columns, axis=1))

    rest_per_channel = len(f_rest_names) // 3
    # [N, 3 * (K-1)] channel-major -> [N, 3, K-1] -> [N, K-1, 3].
    sh_rest = stack(f_rest_names).reshape(n, 3, rest_per_channel).transpose(1, 2)
    sh = torch.cat([stack(DC_PROPS).unsqueeze(1), sh_rest], dim=1).contiguous()
    raw = RawGaussians(
        means=stack(MEANS_PROPS),
        quats_raw=stack(ROT_PROPS),
        log_scales=stack(SCALE_PROPS),
        opacity_logits=torch.from_numpy(values[OPACITY_PROP]),
        sh=sh,
    )
    _check_renderable(path, raw)
    return raw


def write_ply(path: PathLike, gaussians: Union[Gaussians, RawGaussians]) -> None:
    """
    Write Gaussians as a binary little-endian Inria 3DGS PLY that any 3DGS viewer opens.

    Activated ``Gaussians`` are inverted first (log scales, logit opacities clamped to
    [1e-6, 1 - 1e-6]); ``RawGaussians`` are written as they are. Normals are zeros.
    Parent folders are created.

    :raises SceneFormatError: naming ``path``, for Gaussians `read_ply` would refuse (more than
        ``MAX_GAUSSIANS``, or values `value_problem` names); nothing is written then.
    """
    path = os.fspath(path)
    raw = (RawGaussians.from_gaussians(gaussians) if isinstance(gaussians, Gaussians)
           else gaussians)
    if len(raw) > MAX_GAUSSIANS:
        raise SceneFormatError(f'{path}: not written: {len(raw)} Gaussians; a PLY st4r reads '
                               f'holds at most {MAX_GAUSSIANS} (st4r_ros.limits)')
    # What is written as float32 is checked, exactly as read_ply will check it.
    written = RawGaussians(**{f.name: getattr(raw, f.name).detach().to('cpu', torch.float32)
                              for f in fields(raw)})
    _check_renderable(f'{path}: not written', written)
    columns = _ply_columns(written)
    vertices = np.empty(len(raw), dtype=[(name, '<f4') for name in columns])
    for name, column in columns.items():
        vertices[name] = column
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    element = plyfile.PlyElement.describe(vertices, 'vertex')
    plyfile.PlyData([element], byte_order='<').write(path)


def log_scales_of(scales: Tensor) -> Tensor:
    """
    Log scales [N, 3] of positive scales [N, 3], in their dtype: what a PLY stores.

    The log is taken in float64, so that exp then log gives back the float32 log scale exactly
    where it matters (near the bounds of `value_problem`) and a read PLY writes back unchanged.
    """
    return torch.log(scales.double()).to(scales.dtype)


def value_problem(field: str, values: Tensor) -> Optional[str]:
    """
    Say what keeps activated Gaussian ``field`` values [N, ...] from rendering as stored.

    The one check of the Gaussians in a scene file, read or written (a PLY, each PLY of a
    sequence, each frame of a bundle): every value finite; scales positive with log scales
    (`log_scales_of`) within +-MAX_ABS_LOG_SCALE; opacities in [0, 1]; unit quaternions.

    :param field: a `Gaussians` field name; integer fields (instance ids) are not checked.
    :return: None, or the problem as ``has ...; expected ...`` (the caller names the file).
    """
    if not values.is_floating_point() or not len(values):
        return None
    rows = values.reshape(len(values), -1)
    count = int((~torch.isfinite(rows)).any(dim=1).sum())
    if count:
        return f'has {count} Gaussian(s) with NaN or inf values; expected finite numbers'
    if field == 'scales':
        # ~(<=): the log of a negative scale is NaN, which compares False.
        count = int((~(log_scales_of(values).abs() <= MAX_ABS_LOG_SCALE)).any(dim=1).sum())
        if count:
            return (f'has {count} Gaussian(s) with scales <= 0 or beyond exp(+-'
                    f'{MAX_ABS_LOG_SCALE:g}); expected positive scales whose log is within +-'
                    f'{MAX_ABS_LOG_SCALE:g} (st4r_ros.limits)')
    if field == 'opacities':
        count = int((~((values >= 0) & (values <= 1))).sum())
        if count:
            return f'has {count} opacities outside [0, 1]; expected opacities in [0, 1]'
    if field == 'quats':
        worst = float((values.norm(dim=1) - 1).abs().max())
        if worst > QUAT_NORM_TOLERANCE:
            return (f'has quaternions of norm off 1 by {worst:.3g}; expected unit quaternions '
                    '(activated values; a raw quaternion must not be zero)')
    return None


def _check_renderable(where: str, raw: RawGaussians) -> None:
    """Raise SceneFormatError naming ``where`` and the PLY properties if `value_problem` says."""
    for field, values in raw.activate().tensors().items():
        problem = value_problem(field, values)
        if problem:
            raise SceneFormatError(f"{where}: field '{field}' (from {_FIELD_PROPS[field]}) "
                                   f'{problem}')


def _ply_columns(raw: RawGaussians) -> Dict[str, np.ndarray]:
    """Property name -> float32 column [N], in the Inria order."""
    n, k = len(raw), raw.sh.shape[1]

    def numpy(tensor: Tensor) -> np.ndarray:
        return tensor.detach().to('cpu', torch.float32).numpy()

    # [N, K-1, 3] -> [N, 3, K-1] -> [N, 3 * (K-1)]: channel-major, as the trainer writes it.
    f_rest = numpy(raw.sh[:, 1:].transpose(1, 2).reshape(n, 3 * (k - 1)))
    groups = [
        (MEANS_PROPS, numpy(raw.means)),
        (NORMAL_PROPS, np.zeros((n, 3), dtype=np.float32)),
        (DC_PROPS, numpy(raw.sh[:, 0])),
        (tuple(f'f_rest_{i}' for i in range(3 * (k - 1))), f_rest),
        ((OPACITY_PROP,), numpy(raw.opacity_logits).reshape(n, 1)),
        (SCALE_PROPS, numpy(raw.log_scales)),
        (ROT_PROPS, numpy(raw.quats_raw)),
    ]
    return {name: block[:, i] for names, block in groups for i, name in enumerate(names)}


def _read_plydata(path: str) -> plyfile.PlyData:
    if not os.path.isfile(path):
        raise SceneFormatError(f'{path}: PLY file not found')
    ply_element_counts(path)
    try:
        # mmap=False: read everything now, so a truncated body fails here and the file is
        # not kept mapped after loading.
        return plyfile.PlyData.read(path, mmap=False)
    # plyfile reports malformed input through many exception types (PlyParseError,
    # UnicodeDecodeError, ValueError, EOFError, ...); all mean "not a readable PLY".
    except Exception as exc:
        raise SceneFormatError(
            f'{path}: not a readable PLY file (truncated or malformed): {exc}'
        ) from exc


def ply_element_counts(path: PathLike) -> Dict[str, int]:
    """
    Read the element counts a PLY header declares (name -> rows), refusing unbounded ones.

    plyfile reads the header a character at a time into a list, then sizes each element's array
    from its declared count before reading a byte of it: a short file declaring billions of rows
    would be allocated first and found short after. So the header must end within
    ``MAX_PLY_HEADER_BYTES``, no element may declare more than ``MAX_GAUSSIANS`` rows, and the
    rows must fit in the bytes after the header.

    :raises SceneFormatError: naming the file and the element.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as handle:
            head = handle.read(MAX_PLY_HEADER_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except OSError as err:
        raise SceneFormatError(f'{path}: cannot be read as a PLY file ({err})') from None
    end = head.find(b'end_header')
    if not head.startswith(b'ply') or end < 0:
        raise SceneFormatError(f"{path}: not a readable PLY file: expected 'ply' and an "
                               f"'end_header' line within its first {MAX_PLY_HEADER_BYTES} bytes")
    lines = [line.split() for line in head[:end].decode('latin-1').splitlines()]
    # Each value takes at least a byte in binary, a digit and a separator in ASCII.
    least_bytes = 2 if ['format', 'ascii'] in [line[:2] for line in lines] else 1
    elements: List[Tuple[str, int]] = []  # (name, rows), in header order
    values = 0  # in the body: rows x properties, summed over the elements
    for line in lines:
        if line[:1] == ['element'] and len(line) == 3:
            elements.append((line[1], _declared_rows(path, line[1], line[2])))
        elif line[:1] == ['property'] and elements:
            values += elements[-1][1]
    body = size - end - len(b'end_header\n')
    if values * least_bytes > body:
        raise SceneFormatError(f'{path}: not a readable PLY file: its header declares '
                               f'{values} values, more than the {body} bytes after it hold '
                               '(truncated or malformed)')
    return dict(elements)


def _declared_rows(path: str, element: str, text: str) -> int:
    """Read the row count ``text`` of ``element`` in a header, at most ``MAX_GAUSSIANS``."""
    try:
        # More digits than MAX_GAUSSIANS has are too many, whatever int() would make of them.
        rows = int(text) if len(text) <= len(str(MAX_GAUSSIANS)) else MAX_GAUSSIANS + 1
    except ValueError:
        raise SceneFormatError(f"{path}: element '{element}' count {text[:20]!r}; expected an "
                               'integer') from None
    if not 0 <= rows <= MAX_GAUSSIANS:
        raise SceneFormatError(f"{path}: element '{element}' declares {text[:20]} rows; "
                               f'expected 0 to {MAX_GAUSSIANS} (st4r_ros.limits)')
    return rows


def _vertex_element(path: str, ply: plyfile.PlyData) -> plyfile.PlyElement:
    names = [element.name for element in ply.elements]
    if 'vertex' not in names:
        raise SceneFormatError(
            f"{path}: no 'vertex' element (found {names}); expected a 3DGS PLY whose "
            "'vertex' element holds the Gaussians"
        )
    return ply['vertex']


def _f_rest_names(path: str, vertex: plyfile.PlyElement) -> Tuple[str, ...]:
    """Names f_rest_0..f_rest_{M-1}, after checking that every required property is there."""
    present = {prop.name for prop in vertex.properties}
    indices = sorted(int(m.group(1)) for m in map(_F_REST.match, present) if m)
    count = len(indices)
    rest_per_channel, remainder = divmod(count, 3)
    degree = _sh_degree_or_none(rest_per_channel + 1) if remainder == 0 else None
    if degree is None:
        raise SceneFormatError(
            f"{path}: {count} 'f_rest_*' properties; expected 3 * ((d + 1)^2 - 1) for an SH "
            'degree d (0, 9, 24 or 45 for degrees 0..3)'
        )
    rest = tuple(f'f_rest_{i}' for i in range(count))
    missing = [name for name in REQUIRED_PROPS + rest if name not in present]
    if missing:
        raise SceneFormatError(
            f"{path}: 'vertex' element lacks properties {missing}; expected "
            f'{list(REQUIRED_PROPS)} and f_rest_0..f_rest_{count - 1}'
        )
    return rest


def _sh_degree_or_none(num_coeffs: int) -> int | None:
    try:
        return sh_degree_for(num_coeffs)
    except SceneFormatError:
        return None


def _scalar_property(path: str, vertex: plyfile.PlyElement, name: str) -> np.ndarray:
    """One property as a float32 column [N]."""
    prop = vertex.ply_property(name)
    if isinstance(prop, plyfile.PlyListProperty):
        raise SceneFormatError(f"{path}: property '{name}' is a list; expected a scalar number")
    return np.ascontiguousarray(vertex[name], dtype=np.float32)
