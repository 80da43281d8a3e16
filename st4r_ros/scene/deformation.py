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
The 4DGaussians (hustvl, CVPR 2024) deformation network, re-implemented for inference.

A trained scene stores ``deform_network.state_dict()`` in ``deformation.pth``; `DeformationNetwork`
has the same module tree, so that file loads with ``load_state_dict(strict=True)`` and gives the
deformed Gaussians the public renderer would give. State-dict keys (S scales, P planes, C
channels, W = ``net_width``):

    timenet.{0,2}.{weight,bias}                 time MLP, saved but unused by the renderer
    time_poc, pos_poc, rotation_scaling_poc,    positional-encoding frequencies (buffers); the
    opacity_poc                                 renderer only ever reads their first raw columns
    deformation_net.grid.aabb                   [2, 3]: row 0 = xyz max, row 1 = xyz min
    deformation_net.grid.grids.{s}.{p}          [1, C, res_b, res_a] for plane p over (a, b)
    deformation_net.feature_out.{0,2,..}.*      Linear(F, W) then (ReLU, Linear(W, W)) x (D - 1)
    deformation_net.{pos,scales,rotations,opacity,shs}_deform.{1,3}.*
                                                ReLU, Linear(W, W), ReLU, Linear(W, 3|3|4|1|48)
    deformation_net.static_mlp.{1,3}.*          only when static_mlp
    deformation_net.empty_voxel.{grid,xyz_min,xyz_max}   only when empty_voxel

Computation, for Gaussians with pre-activation values and a time t in [0, 1]:

1. ``grid_features``: p = (x - aabb[0]) * 2 / (aabb[1] - aabb[0]) - 1 (so the max corner maps to
   -1), q = (p, t) with t raw (only half of the time axis is ever used); for each scale s the
   features of the planes over the coordinate pairs (0,1), (0,2), (0,3), (1,2), (1,3), (2,3)
   (bilinear ``grid_sample``, align_corners=True, border padding) are multiplied channel-wise;
   the scales are concatenated: [N, C * S]. Plane (a, b) of scale s has resolution
   res[a] * multires[s] by res[b] * multires[s], except that the time resolution res[3] is
   never multiplied.
2. ``apply_heads``: hidden = feature_out(features); each head adds its delta to the
   pre-activation value: means + dx, log scales + ds, raw quaternion + dr (or the normalised
   product q * dr with apply_rotation), opacity logit + do only if not no_do, SH + dshs only if
   not no_dshs (both off by default). With static_mlp (or else empty_voxel) the canonical
   means, log scales, opacity and SH are first multiplied by a mask from that module.

The renderer deforms every Gaussian (``deformation_table.pth`` is not used when rendering).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, fields
import itertools
import math
import os
from typing import Any, cast, Dict, List, Mapping, Optional, Sequence, Tuple

from st4r_ros.errors import SceneFormatError
from st4r_ros.limits import (MAX_CFG_ARGS_CHARS, MAX_DEFOR_DEPTH, MAX_GRID_CHANNELS, MAX_GRID_PE,
                             MAX_MULTIRES, MAX_NET_WIDTH, MAX_PE_FREQUENCIES,
                             MAX_PLANE_PARAMETERS, MAX_PLANE_RESOLUTION)
from st4r_ros.scene.ply import RawGaussians
import torch
from torch import nn, Tensor
import torch.nn.functional as F

# The SH head's output size is fixed in the public code: 16 coefficients (degree 3) x RGB.
SHS_DEFORM_COEFFS = 16
# The renderer always feeds (x, y, z, t).
INPUT_COORDINATE_DIM = 4
EMPTY_VOXEL_SIZE = (64, 64, 64)
# The tensor types a trainer saves weights in (the state dict holds no integer tensor); any
# other (fp8, complex, integer, quantized) would be cast or refused deep in load_state_dict.
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Characters of a value quoted in a message: enough to recognise it, never a whole file.
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class KPlanesConfig:
    """The ``kplanes_config`` dict of cfg_args (defaults of the public ``ModelHiddenParams``)."""

    grid_dimensions: int = 2
    input_coordinate_dim: int = 4
    output_coordinate_dim: int = 32
    resolution: Tuple[int, ...] = (64, 64, 64, 25)


@dataclass(frozen=True)
class DeformationConfig:
    """
    What cfg_args says about the deformation network and the PLY (public defaults).

    ``configs`` is the training config file (e.g. ``arguments/hypernerf/default.py``).
    """

    net_width: int = 64
    defor_depth: int = 1
    timebase_pe: int = 4
    posebase_pe: int = 10
    scale_rotation_pe: int = 2
    opacity_pe: int = 2
    timenet_width: int = 64
    timenet_output: int = 32
    bounds: float = 1.6
    kplanes_config: KPlanesConfig = field(default_factory=KPlanesConfig)
    multires: Tuple[int, ...] = (1, 2, 4, 8)
    no_dx: bool = False
    no_grid: bool = False
    no_ds: bool = False
    no_dr: bool = False
    no_do: bool = True
    no_dshs: bool = True
    empty_voxel: bool = False
    grid_pe: int = 0
    static_mlp: bool = False
    apply_rotation: bool = False
    sh_degree: int = 3
    configs: str = ''

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], source: str = 'cfg_args'
    ) -> 'DeformationConfig':
        """
        Build from cfg_args key -> value (other keys ignored, missing keys defaulted).

        :raises SceneFormatError: naming ``source`` and the key: a value of another type, a
            setting the public renderer cannot run, or a size beyond ``st4r_ros.limits`` (all
            checked before anything of the network is allocated).
        """
        kwargs: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if isinstance(value, _Unparsed):
                raise SceneFormatError(
                    f"{source}: '{f.name}' = {value.text} is not a literal; expected "
                    f'{_type_name(f.name)}'
                )
            kwargs[f.name] = _convert(f.name, value, source)
        config = cls(**kwargs)
        config._check_supported(source)
        return config

    @classmethod
    def from_cfg_args(cls, path: str | os.PathLike) -> 'DeformationConfig':
        """
        Parse a trainer-written ``cfg_args`` file (``Namespace(...)``) without eval.

        At most ``MAX_CFG_ARGS_CHARS`` characters are read: a longer file is refused unread.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding='utf-8') as handle:
                text = handle.read(MAX_CFG_ARGS_CHARS + 1)
        except FileNotFoundError:
            raise SceneFormatError(f'{path}: cfg_args file not found') from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SceneFormatError(f'{path}: cannot read cfg_args as text: {exc}') from exc
        if len(text) > MAX_CFG_ARGS_CHARS:
            raise SceneFormatError(f'{path}: cfg_args longer than {MAX_CFG_ARGS_CHARS} '
                                   'characters; expected the Namespace(...) line a trainer writes')
        return cls.from_values(parse_cfg_args(text, path), path)

    @classmethod
    def preset(cls, name: str) -> 'DeformationConfig':
        """Return the public training preset ``name`` ('hypernerf' or 'dnerf') over defaults."""
        if name not in PRESETS:
            raise KeyError(f'preset: unknown {name!r}; expected one of {sorted(PRESETS)}')
        return cls.from_values(PRESETS[name], f'preset {name}')

    @property
    def feature_dim(self) -> int:
        """F, the width of the grid features: C channels per scale, concatenated."""
        return self.kplanes_config.output_coordinate_dim * len(self.multires)

    @property
    def name(self) -> str:
        """Name the training config ('hypernerf/default'), else the matching preset or 'custom'."""
        if self.configs:
            stem = os.path.splitext(self.configs.replace('\\', '/'))[0]
            return stem.split('arguments/', 1)[-1]
        return self.matching_preset() or 'custom'

    def matching_preset(self) -> Optional[str]:
        """Return the public preset whose network-shaping settings this config has, if any."""
        for preset_name, overrides in PRESETS.items():
            preset = DeformationConfig.preset(preset_name)
            if all(getattr(self, key) == getattr(preset, key) for key in overrides):
                return preset_name
        return None

    def _check_supported(self, source: str) -> None:
        # Settings the public renderer itself cannot run, and sizes beyond limits.py, are
        # refused with the reason before any tensor of the network exists.
        problems = self._unsupported() + self._out_of_range()
        if not problems:  # the products below need every factor in range
            problems = self._too_large()
        if problems:
            raise SceneFormatError(
                f'{source}: unsupported deformation settings: ' + '; '.join(problems)
            )

    def _unsupported(self) -> List[str]:
        kplanes = self.kplanes_config
        problems = []
        if self.no_grid:
            problems.append('no_grid=True (the public query_time then fails: no hidden features)')
        if self.grid_pe == 1:
            problems.append(f'grid_pe={_shown(self.grid_pe)} (public code: feature_out expects '
                            '3F inputs but only encodes features when grid_pe > 1); expected 0 '
                            'or > 1')
        if kplanes.input_coordinate_dim != INPUT_COORDINATE_DIM:
            problems.append('kplanes_config.input_coordinate_dim='
                            f'{_shown(kplanes.input_coordinate_dim)}; expected 4 (x, y, z, t)')
        if kplanes.grid_dimensions not in (2, 3):
            problems.append(f'kplanes_config.grid_dimensions={_shown(kplanes.grid_dimensions)}; '
                            'expected 2 or 3')
        if len(kplanes.resolution) != INPUT_COORDINATE_DIM:
            problems.append(f'kplanes_config.resolution={_shown(list(kplanes.resolution))}; '
                            f'expected {INPUT_COORDINATE_DIM} values')
        if not self.no_dshs and self.sh_degree != 3:
            problems.append(f'no_dshs=False with sh_degree={_shown(self.sh_degree)} (the SH '
                            'head outputs 16 x 3 coefficients); expected sh_degree 3')
        if not self.multires:
            problems.append('multires is empty; expected at least one scale')
        return problems

    def _out_of_range(self) -> List[str]:
        """Each size against its sign and its bound in limits.py."""
        kplanes = self.kplanes_config
        sizes = {'net_width': (self.net_width, 1, MAX_NET_WIDTH),
                 'timenet_width': (self.timenet_width, 1, MAX_NET_WIDTH),
                 'timenet_output': (self.timenet_output, 1, MAX_NET_WIDTH),
                 'kplanes_config.output_coordinate_dim': (kplanes.output_coordinate_dim, 1,
                                                          MAX_GRID_CHANNELS),
                 'len(multires)': (len(self.multires), 0, MAX_MULTIRES),
                 'defor_depth': (self.defor_depth, 0, MAX_DEFOR_DEPTH),
                 'grid_pe': (self.grid_pe, 0, MAX_GRID_PE),
                 'sh_degree': (self.sh_degree, 0, None)}
        sizes.update({name: (getattr(self, name), 0, MAX_PE_FREQUENCIES)
                      for name in ('timebase_pe', 'posebase_pe', 'scale_rotation_pe',
                                   'opacity_pe')})
        sizes.update({f'kplanes_config.resolution[{i}]': (r, 1, MAX_PLANE_RESOLUTION)
                      for i, r in enumerate(kplanes.resolution[:INPUT_COORDINATE_DIM])})
        sizes.update({f'multires[{i}]': (m, 1, MAX_PLANE_RESOLUTION)
                      for i, m in enumerate(self.multires[:MAX_MULTIRES])})
        problems = []
        for key, (value, low, high) in sizes.items():
            if value < low:
                problems.append(f"{key}={_shown(value)}; expected {'> 0' if low else '>= 0'}")
            elif high is not None and value > high:
                problems.append(f'{key}={_shown(value)}; expected <= {high} (st4r_ros.limits)')
        return problems

    def _too_large(self) -> List[str]:
        """Plane sizes (resolution x multires factor) and their total against limits.py."""
        kplanes = self.kplanes_config
        shapes = plane_shapes(kplanes, self.multires)
        widest = max(max(shape[2:]) for planes in shapes for shape in planes)
        total = sum(math.prod(shape) for planes in shapes for shape in planes)
        problems = []
        if widest > MAX_PLANE_RESOLUTION:
            problems.append(f'a plane {widest} cells wide (kplanes_config.resolution x '
                            f'multires); expected <= {MAX_PLANE_RESOLUTION} (st4r_ros.limits)')
        if total > MAX_PLANE_PARAMETERS:
            problems.append(f'{total} plane parameters (kplanes_config x multires); expected '
                            f'<= {MAX_PLANE_PARAMETERS} (st4r_ros.limits)')
        return problems


_DEFAULT_CONFIG = DeformationConfig()

# Overrides of the public config files arguments/hypernerf/default.py and
# arguments/dnerf/dnerf_default.py that shape the network.
PRESETS: Dict[str, Dict[str, Any]] = {
    'hypernerf': {
        'kplanes_config': {'grid_dimensions': 2, 'input_coordinate_dim': 4,
                           'output_coordinate_dim': 16, 'resolution': [64, 64, 64, 150]},
        'multires': [1, 2, 4],
        'defor_depth': 1,
        'net_width': 128,
    },
    'dnerf': {'multires': [1, 2], 'defor_depth': 0, 'net_width': 64, 'bounds': 1.6},
}


@dataclass(frozen=True)
class _Unparsed:
    """A cfg_args value that is not a Python literal (kept only to report it if needed)."""

    text: str


def parse_cfg_args(text: str, source: str = 'cfg_args') -> Dict[str, Any]:
    """
    Parse a ``Namespace(key=value, ..., **{'odd-key': value})`` text into key -> value, via ast.

    Values that are not literals are kept as opaque placeholders; they only matter (and raise
    SceneFormatError) if the deformation config needs them.

    :raises SceneFormatError: naming ``source``, for text longer than ``MAX_CFG_ARGS_CHARS`` or
        that does not parse (including expressions nested too deeply for the parser).
    """
    text = text.strip()
    if len(text) > MAX_CFG_ARGS_CHARS:
        raise SceneFormatError(f'{source}: cfg_args longer than {MAX_CFG_ARGS_CHARS} characters; '
                               'expected the Namespace(...) line a trainer writes')
    try:
        tree = ast.parse(text, mode='eval')
    # SyntaxError, ValueError (null bytes), RecursionError / MemoryError (deep expressions).
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise SceneFormatError(
            f'{source}: not a Namespace(...) text: {_clipped(str(exc) or type(exc).__name__)}'
        ) from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == 'Namespace' and not call.args):
        raise SceneFormatError(f'{source}: expected text of the form Namespace(key=value, ...)')
    values: Dict[str, Any] = {}
    for keyword in call.keywords:
        value = _literal(keyword.value, text)
        if keyword.arg is not None:
            values[keyword.arg] = value
        elif isinstance(value, dict):
            # argparse's repr puts names that are not identifiers in a trailing **{...}.
            values.update(value)
        else:
            raise SceneFormatError(f"{source}: '**' entry is not a dict literal")
    return values


def _literal(node: ast.AST, text: str) -> Any:
    """Evaluate the literal ``node`` of ``text``, else keep its source text (unparse recurses)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _Unparsed(_clipped(ast.get_source_segment(text, node) or type(node).__name__))


def _clipped(text: str) -> str:
    """``text`` cut to ``_SHOWN_CHARS`` characters for a message."""
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + '...'


def _shown(value: Any) -> str:
    """Show a cfg_args value in a message, clipped (an int of 5000 digits has no repr)."""
    try:
        return _clipped(repr(value))
    except ValueError:
        if isinstance(value, int):
            return f'an integer of {value.bit_length()} bits'
        return f'a {type(value).__name__} too large to print'


def _type_name(key: str) -> str:
    """How cfg_args value ``key`` must look, for messages ('an integer', ...)."""
    default = getattr(_DEFAULT_CONFIG, key)
    if isinstance(default, KPlanesConfig):
        return 'a dict'
    if isinstance(default, tuple):
        return 'a list of integers'
    return {bool: 'a bool', int: 'an integer', float: 'a finite number',
            str: 'a string'}[type(default)]


def _convert(key: str, value: Any, source: str) -> Any:
    """Check the type of cfg_args value ``key`` against its default's and convert it."""
    default = getattr(_DEFAULT_CONFIG, key)
    if isinstance(default, KPlanesConfig):
        return _kplanes(value, source)
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
            return tuple(value)
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if _is_int(value):
            return value
    elif isinstance(default, float):
        if (_is_int(value) or isinstance(value, float)) and _is_finite(value):
            return float(value)
    elif isinstance(value, str):
        return value
    raise SceneFormatError(f"{source}: '{key}' = {_shown(value)}; expected {_type_name(key)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(number: float) -> bool:
    """Tell whether ``number`` (an int or float) is a finite float (1e999 is inf; 10**400 none)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _kplanes(value: Any, source: str) -> KPlanesConfig:
    names = [f.name for f in fields(KPlanesConfig)]
    if not isinstance(value, dict):
        raise SceneFormatError(
            f"{source}: 'kplanes_config' = {_shown(value)}; expected a dict with {names}"
        )
    missing = [name for name in names if name not in value]
    if missing:
        raise SceneFormatError(
            f"{source}: 'kplanes_config' lacks {missing}; expected keys {names}"
        )
    resolution = value['resolution']
    if not (isinstance(resolution, (list, tuple)) and all(_is_int(r) for r in resolution)):
        raise SceneFormatError(
            f"{source}: 'kplanes_config.resolution' = {_shown(resolution)}; expected a list of "
            'integers'
        )
    for name in names[:3]:
        if not _is_int(value[name]):
            raise SceneFormatError(
                f"{source}: 'kplanes_config.{name}' = {_shown(value[name])}; expected an "
                'integer'
            )
    return KPlanesConfig(value['grid_dimensions'], value['input_coordinate_dim'],
                         value['output_coordinate_dim'], tuple(resolution))


class HexPlaneGrid(nn.Module):
    """
    ``deformation_net.grid``: multi-scale planes over pairs of (x, y, z, t).

    Buffers and parameters:
        aabb: [2, 3], row 0 the xyz maximum, row 1 the minimum (saved by the trainer).
        grids[s][p]: [1, C, res_b * m_s, res_a * m_s] for ``planes[p]`` = (a, b) (3D grids for
            grid_dimensions 3: [1, C, res_c, res_b, res_a]); the time resolution is not scaled.
    """

    aabb: Tensor  # a buffer

    def __init__(self, bounds: float, kplanes: KPlanesConfig, multires: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer(
            'aabb', torch.tensor([[bounds] * 3, [-bounds] * 3], dtype=torch.float32)
        )
        self.planes = plane_axes(kplanes)
        self.grids = nn.ModuleList(
            nn.ParameterList(_init_plane(shape, axes) for shape, axes in zip(shapes, self.planes))
            for shapes in plane_shapes(kplanes, multires)
        )
        self.feature_dim = kplanes.output_coordinate_dim * len(multires)

    def forward(self, means: Tensor, t: float) -> Tensor:
        """Grid features of world points ``means`` [N, 3] at time ``t``: [N, C * S]."""
        xyz_max, xyz_min = self.aabb[0], self.aabb[1]
        # The public formula, operation for operation: xyz_max -> -1, xyz_min -> +1.
        normalised = (means - xyz_max) * (2.0 / (xyz_min - xyz_max)) - 1.0
        time = torch.full((means.shape[0], 1), t, dtype=means.dtype, device=means.device)
        coords = torch.cat([normalised, time], dim=-1)
        per_scale = []
        for planes in self.scales():
            features = _sample(planes[0], coords[:, list(self.planes[0])])
            for plane, axes in zip(planes[1:], self.planes[1:]):
                features = features * _sample(plane, coords[:, list(axes)])
            per_scale.append(features)
        return torch.cat(per_scale, dim=-1)

    def scales(self) -> List[nn.ParameterList]:
        """Return ``grids``: per scale, its planes."""
        return cast(List[nn.ParameterList], list(self.grids))


def plane_axes(kplanes: KPlanesConfig) -> List[Tuple[int, ...]]:
    """Coordinate tuples of the planes in itertools order: (0,1), (0,2), (0,3), (1,2), ..."""
    return list(itertools.combinations(range(kplanes.input_coordinate_dim),
                                       kplanes.grid_dimensions))


def plane_shapes(kplanes: KPlanesConfig, multires: Sequence[int]) -> List[List[List[int]]]:
    """
    Shape of every plane, per scale then per `plane_axes` entry: [1, C, res_b, res_a] (2D).

    Computed from the config alone, so sizes can be checked before anything is allocated.
    """
    shapes = []
    for multiplier in multires:
        # Only the spatial resolutions are multiplied; time keeps res[3] at every scale.
        resolution = [r * multiplier for r in kplanes.resolution[:3]]
        resolution += list(kplanes.resolution[3:])
        shapes.append([[1, kplanes.output_coordinate_dim] + [resolution[a] for a in reversed(axes)]
                       for axes in plane_axes(kplanes)])
    return shapes


def _init_plane(shape: List[int], axes: Tuple[int, ...]) -> nn.Parameter:
    """Make a plane of ``shape`` over ``axes``; public init: time planes 1, others U(0.1, 0.5)."""
    plane = torch.empty(shape)
    if INPUT_COORDINATE_DIM - 1 in axes:
        nn.init.ones_(plane)
    else:
        nn.init.uniform_(plane, a=0.1, b=0.5)
    return nn.Parameter(plane)


def _sample(plane: Tensor, coords: Tensor) -> Tensor:
    """Bilinear samples of ``plane`` [1, C, *res] at ``coords`` [N, g] in [-1, 1]: [N, C]."""
    n, g = coords.shape
    grid = coords.reshape([1] * g + [n, g])
    samples = F.grid_sample(
        plane, grid, mode='bilinear', padding_mode='border', align_corners=True
    )
    return samples.reshape(plane.shape[1], n).t()


class EmptyVoxelGrid(nn.Module):
    """
    ``deformation_net.empty_voxel`` (public DenseGrid): a 64^3 mask volume over the aabb.

    Parameters and buffers: grid [1, 1, 64, 64, 64]; xyz_min [3]; xyz_max [3].
    """

    xyz_min: Tensor  # buffers
    xyz_max: Tensor

    def __init__(self, bounds: float) -> None:
        super().__init__()
        self.grid = nn.Parameter(torch.ones([1, 1, *EMPTY_VOXEL_SIZE]))
        self.register_buffer('xyz_min', torch.full((3,), -bounds))
        self.register_buffer('xyz_max', torch.full((3,), bounds))

    def forward(self, means: Tensor) -> Tensor:
        """Trilinear mask at ``means`` [N, 3] (zero outside the box): [N, 1]."""
        unit = (means - self.xyz_min) / (self.xyz_max - self.xyz_min)
        # grid_sample reads (x, y, z) as (W, H, D); the volume is indexed [x, y, z] = [D, H, W].
        coords = unit.flip((-1,)) * 2 - 1
        samples = F.grid_sample(self.grid, coords.reshape(1, 1, 1, -1, 3), mode='bilinear',
                                align_corners=True)
        return samples.reshape(1, -1).t()


def _head(width: int, out: int) -> nn.Sequential:
    """ReLU, Linear(W, W), ReLU, Linear(W, out): every deformation head of the public code."""
    return nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))


def _feature_out(in_dim: int, width: int, depth: int) -> nn.Sequential:
    """Linear(in, W) then (ReLU, Linear(W, W)) x (depth - 1): depth 0 and 1 give one layer."""
    layers: List[nn.Module] = [nn.Linear(in_dim, width)]
    for _ in range(depth - 1):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    return nn.Sequential(*layers)


class DeformationField(nn.Module):
    """``deform_network.deformation_net``: the grid, the feature MLP and the heads."""

    def __init__(self, config: DeformationConfig) -> None:
        super().__init__()
        width = config.net_width
        self.grid = HexPlaneGrid(config.bounds, config.kplanes_config, config.multires)
        if config.empty_voxel:
            self.empty_voxel = EmptyVoxelGrid(config.bounds)
        if config.static_mlp:
            self.static_mlp = _head(width, 1)
        # grid_pe > 1 feeds [f, sin(f * pe), cos(f * pe)].
        in_dim = config.feature_dim * (3 if config.grid_pe else 1)
        self.feature_out = _feature_out(in_dim, width, config.defor_depth)
        self.pos_deform = _head(width, 3)
        self.scales_deform = _head(width, 3)
        self.rotations_deform = _head(width, 4)
        self.opacity_deform = _head(width, 1)
        self.shs_deform = _head(width, SHS_DEFORM_COEFFS * 3)


class DeformationNetwork(nn.Module):
    """
    ``deform_network`` of 4DGaussians: same state-dict keys, same deformed Gaussians.

    Submodules: ``timenet`` and the ``*_poc`` buffers exist only so that the saved state
    loads strictly (the renderer never uses them); ``deformation_net`` does the work (see
    the module docstring for every key).
    """

    def __init__(self, config: DeformationConfig) -> None:
        super().__init__()
        self.config = config
        self.timenet = nn.Sequential(
            nn.Linear(2 * config.timebase_pe + 1, config.timenet_width), nn.ReLU(),
            nn.Linear(config.timenet_width, config.timenet_output),
        )
        self.deformation_net = DeformationField(config)
        for name, count in (('time_poc', config.timebase_pe), ('pos_poc', config.posebase_pe),
                            ('rotation_scaling_poc', config.scale_rotation_pe),
                            ('opacity_poc', config.opacity_pe)):
            self.register_buffer(name, torch.tensor([2.0 ** i for i in range(count)]))

    def grid_features(self, means: Tensor, t: float) -> Tensor:
        """
        Compute HexPlane features of canonical world means [N, 3] at time t in [0, 1]: [N, F].

        Normalisation by ``deformation_net.grid.aabb`` happens inside; F = C * len(multires).
        """
        return self.deformation_net.grid(means, t)

    def apply_heads(self, features: Tensor, raw: RawGaussians) -> RawGaussians:
        """
        Deformed pre-activation Gaussians from grid features [N, F] and canonical ``raw``.

        Time enters only through the features: the heads see no t.
        """
        config, net = self.config, self.deformation_net
        if config.grid_pe:
            scaled = features * config.grid_pe
            features = torch.cat([features, scaled.sin(), scaled.cos()], dim=-1)
        hidden = net.feature_out(features)
        mask = self._mask(hidden, raw.means)

        def masked(value: Tensor) -> Tensor:
            # [N, D...] * mask [N, 1] broadcast over the trailing dims.
            return value if mask is None else value * mask.view([-1] + [1] * (value.dim() - 1))

        means = raw.means if config.no_dx else masked(raw.means) + net.pos_deform(hidden)
        log_scales = (raw.log_scales if config.no_ds
                      else masked(raw.log_scales) + net.scales_deform(hidden))
        quats = (raw.quats_raw if config.no_dr
                 else self._rotate(raw.quats_raw, net.rotations_deform(hidden)))
        opacity = (raw.opacity_logits if config.no_do
                   else masked(raw.opacity_logits) + net.opacity_deform(hidden)[:, 0])
        sh = raw.sh if config.no_dshs else masked(raw.sh) + self._sh_delta(hidden, raw.sh)
        return RawGaussians(means=means, quats_raw=quats, log_scales=log_scales,
                            opacity_logits=opacity, sh=sh)

    def forward(self, raw: RawGaussians, t: float) -> RawGaussians:
        """Deform the pre-activation Gaussians ``raw`` (N of them) to time t in [0, 1]."""
        return self.apply_heads(self.grid_features(raw.means, t), raw)

    def _mask(self, hidden: Tensor, means: Tensor) -> Optional[Tensor]:
        """[N, 1] factor on canonical values (static_mlp wins over empty_voxel), else None."""
        if self.config.static_mlp:
            return self.deformation_net.static_mlp(hidden)
        if self.config.empty_voxel:
            return self.deformation_net.empty_voxel(means)
        return None

    def _rotate(self, quats: Tensor, delta: Tensor) -> Tensor:
        """Raw quaternions [N, 4] plus head output [N, 4] (or normalised product q * delta)."""
        if not self.config.apply_rotation:
            return quats + delta
        product = _quaternion_product(quats, delta)
        return product / product.norm(dim=1, keepdim=True)

    def _sh_delta(self, hidden: Tensor, sh: Tensor) -> Tensor:
        if sh.shape[1] != SHS_DEFORM_COEFFS:
            raise SceneFormatError(
                f'sh: {sh.shape[1]} coefficients per channel, but the SH deformation head '
                f'(no_dshs=False) outputs {SHS_DEFORM_COEFFS} (degree 3)'
            )
        return self.deformation_net.shs_deform(hidden).reshape(sh.shape[0], SHS_DEFORM_COEFFS, 3)

    @classmethod
    def from_state(cls, config: DeformationConfig, state: Mapping[str, Any],
                   source: str) -> 'DeformationNetwork':
        """
        Build the network ``config`` describes and load ``state`` into it, strictly.

        The state is checked (``check_state``) against a network built on the meta device first
        (shapes without storage), so a cfg_args that does not describe the file allocates
        nothing.
        """
        with torch.device('meta'):
            cls(config).check_state(state, source)
        network = cls(config)
        network.load_state_dict(dict(state), strict=True)
        return network

    def check_state(self, state: Mapping[str, Any], source: str) -> None:
        """
        Check that ``state`` loads into this network strictly; name every bad key and shape.

        :raises SceneFormatError: missing or unexpected keys, non-tensor values, tensors that are
            not dense CPU float tensors (``WEIGHT_DTYPES``; the message names key and type),
            wrong shapes, or NaN / inf values; the message names the keys with expected shapes.
        """
        expected = self.state_dict()
        missing = [f'{k} {tuple(v.shape)}' for k, v in expected.items() if k not in state]
        unexpected = [k for k in state if k not in expected]
        given = {k: state[k] for k in expected if k in state}
        kinds = {k: _tensor_kind(v) for k, v in given.items() if torch.is_tensor(v)}
        not_tensors = [k for k in given if k not in kinds]
        unusable = [f'{k}: {kind}' for k, kind in kinds.items() if kind]
        wrong = [f'{k}: got {tuple(given[k].shape)}, expected {tuple(expected[k].shape)}'
                 for k, kind in kinds.items() if not kind and given[k].shape != expected[k].shape]
        labelled = (('missing keys (expected shape)', missing), ('unexpected keys', unexpected),
                    ('values that are not tensors', not_tensors),
                    ('tensors that are not dense float16, bfloat16, float32 or float64 weights',
                     unusable),
                    ('wrong shapes', wrong))
        problems = [f'{label} {_listing(items)}' for label, items in labelled if items]
        if problems:
            raise SceneFormatError(
                f'{source}: state_dict does not fit the 4DGaussians deformation network '
                'described by cfg_args (check multires, kplanes_config, net_width, defor_depth, '
                'static_mlp, empty_voxel, grid_pe): ' + '; '.join(problems)
            )
        not_finite = [k for k in expected if _has_non_finite(state[k])]
        if not_finite:
            raise SceneFormatError(f'{source}: NaN or inf values in {_listing(not_finite)}; '
                                   'expected finite weights')


def _tensor_kind(tensor: Tensor) -> Optional[str]:
    """Say what makes ``tensor`` unfit as a weight (layout, device, dtype), or None."""
    if tensor.is_nested or tensor.layout != torch.strided:
        return 'nested' if tensor.is_nested else f'layout {tensor.layout}'
    if tensor.device.type != 'cpu':  # 'meta' survives map_location: shapes without data
        return f'device {tensor.device.type}'
    return None if tensor.dtype in WEIGHT_DTYPES else f'dtype {tensor.dtype}'


def _has_non_finite(tensor: Tensor) -> bool:
    if not tensor.is_floating_point():
        return False
    # A NaN / inf element makes the sum non-finite: a cheap first test without an [N] mask;
    # the elementwise test only confirms (a finite sum can also overflow).
    return not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all())


def _listing(items: List[str], limit: int = 50) -> str:
    shown = ', '.join(items[:limit])
    return f"[{shown}{f', ... {len(items) - limit} more' if len(items) > limit else ''}]"


def _quaternion_product(q: Tensor, r: Tensor) -> Tensor:
    """Hamilton product q * r of (w, x, y, z) quaternions [N, 4] -> [N, 4]."""
    qw, qx, qy, qz = q.unbind(dim=1)
    rw, rx, ry, rz = r.unbind(dim=1)
    return torch.stack((
        qw * rw - qx * rx - qy * ry - qz * rz,
        qw * rx + qx * rw + qy * rz - qz * ry,
        qw * ry - qx * rz + qy * rw + qz * rx,
        qw * rz + qx * ry - qy * rx + qz * rw,
    ), dim=1)
