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
Writes 4DGaussians (hustvl) output folders from code, for tests: no stored binaries.

`write_fourdgs_scene` lays out ``cfg_args`` (``str(argparse.Namespace)`` of the trainer's
arguments, as train.py writes it), ``point_cloud/iteration_N/point_cloud.ply`` and
``deformation.pth``. The state_dict is built here from the public layout rules, independently
of st4r_ros, so that loading it checks the implementation against the format.

Variant "known" sets the weights so that the deformation has a closed form (`expected_raw`):

    features: scale 0 channel 0 = t        (plane (x, t) linear along its time axis)
              scale 0 channel 1 = 1 + x_n / 2  (plane (x, y) linear along x; x_n = x normalised
                                               by the aabb, max -> -1, min -> +1, clamped)
              all other channels random, weighted 0 by feature_out
    means(t)      = means + velocity * t + spatial_gain * (1 + x_n / 2)
    log_scales(t) = log_scales + scale_rate * t
    quats(t)      = quats + rotation_rate * t
    opacity, sh unchanged (no_do / no_dshs default True), although their heads output
    large deltas.

Variant "random" draws every weight at random.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
import copy
from dataclasses import dataclass
import itertools
import math
import os
from typing import Any, Dict, Optional, Sequence

from st4r_ros.scene.ply import RawGaussians, write_ply
import torch
from torch import Tensor

# The public ModelHiddenParams defaults (arguments/__init__.py).
HIDDEN_DEFAULTS: Dict[str, Any] = {
    'net_width': 64, 'timebase_pe': 4, 'defor_depth': 1, 'posebase_pe': 10,
    'scale_rotation_pe': 2, 'opacity_pe': 2, 'timenet_width': 64, 'timenet_output': 32,
    'bounds': 1.6, 'plane_tv_weight': 0.0001, 'time_smoothness_weight': 0.01,
    'l1_time_planes': 0.0001,
    'kplanes_config': {'grid_dimensions': 2, 'input_coordinate_dim': 4,
                       'output_coordinate_dim': 32, 'resolution': [64, 64, 64, 25]},
    'multires': [1, 2, 4, 8], 'no_dx': False, 'no_grid': False, 'no_ds': False,
    'no_dr': False, 'no_do': True, 'no_dshs': True, 'empty_voxel': False, 'grid_pe': 0,
    'static_mlp': False, 'apply_rotation': False,
}

# Written independently of st4r_ros.scene.deformation.PRESETS: the public config files.
CONFIG_FILES: Dict[str, Dict[str, Any]] = {
    'hypernerf': {
        'configs': 'arguments/hypernerf/default.py',
        'kplanes_config': {'grid_dimensions': 2, 'input_coordinate_dim': 4,
                           'output_coordinate_dim': 16, 'resolution': [64, 64, 64, 150]},
        'multires': [1, 2, 4], 'defor_depth': 1, 'net_width': 128, 'plane_tv_weight': 0.0002,
        'time_smoothness_weight': 0.001, 'l1_time_planes': 0.0001, 'render_process': True,
        'iterations': 14000, 'batch_size': 2, 'coarse_iterations': 3000,
        'densify_until_iter': 10000, 'opacity_reset_interval': 300000,
    },
    'dnerf': {
        'configs': 'arguments/dnerf/dnerf_default.py',
        'multires': [1, 2], 'defor_depth': 0, 'net_width': 64, 'plane_tv_weight': 0.0001,
        'time_smoothness_weight': 0.01, 'l1_time_planes': 0.0001, 'weight_decay_iteration': 0,
        'bounds': 1.6, 'coarse_iterations': 3000, 'deformation_lr_init': 0.00016,
        'deformation_lr_final': 0.0000016, 'deformation_lr_delay_mult': 0.01,
        'grid_lr_init': 0.0016, 'grid_lr_final': 0.000016, 'iterations': 20000,
        'pruning_interval': 8000, 'percent_dense': 0.01, 'render_process': False,
    },
}


def trainer_namespace(config: str, model_path: str, overrides: Optional[Dict[str, Any]] = None
                      ) -> argparse.Namespace:
    """Return the arguments train.py holds after merging ``arguments/<config>`` (in its order)."""
    args: Dict[str, Any] = {
        # ModelParams
        'sh_degree': 3, 'source_path': f'/data/{config}/scene', 'model_path': model_path,
        'images': 'images', 'resolution': -1, 'white_background': True, 'data_device': 'cuda',
        'eval': True, 'render_process': False, 'add_points': False, 'extension': '.png',
        'llffhold': 8,
        # OptimizationParams (abridged to the keys the configs touch and a few more)
        'dataloader': False, 'zerostamp_init': False, 'custom_sampler': None,
        'iterations': 30000, 'coarse_iterations': 3000, 'position_lr_init': 0.00016,
        'deformation_lr_init': 0.00016, 'deformation_lr_final': 0.000016,
        'deformation_lr_delay_mult': 0.01, 'grid_lr_init': 0.0016, 'grid_lr_final': 0.00016,
        'percent_dense': 0.01, 'weight_decay_iteration': 5000, 'opacity_reset_interval': 3000,
        'densify_until_iter': 15000, 'pruning_interval': 100, 'batch_size': 1,
        'add_point': False,
        # PipelineParams
        'convert_SHs_python': False, 'compute_cov3D_python': False, 'debug': False,
    }
    args.update(copy.deepcopy(HIDDEN_DEFAULTS))
    args.update({
        'ip': '127.0.0.1', 'port': 6009, 'debug_from': -1, 'detect_anomaly': False,
        'test_iterations': [3000, 7000, 14000],
        'save_iterations': [14000, 20000, 30000, 45000, 60000],
        'quiet': False, 'checkpoint_iterations': [], 'start_checkpoint': None,
        'expname': f'{config}/scene', 'configs': '',
    })
    args.update(copy.deepcopy(CONFIG_FILES[config]))
    args['save_iterations'].append(args['iterations'])
    args.update(overrides or {})
    return argparse.Namespace(**args)


def plane_axes(grid_dimensions: int = 2) -> list:
    """Coordinate tuples of the planes, in the public order ((0,1), (0,2), (0,3), ...)."""
    return list(itertools.combinations(range(4), grid_dimensions))


def public_state_dict(hidden: Dict[str, Any], aabb: Tensor, gen: torch.Generator,
                      random: bool) -> 'OrderedDict[str, Tensor]':
    """
    deform_network.state_dict() of the public code for ModelHiddenParams ``hidden``.

    Weights are random when ``random``, else zeros (planes: ones) for `_set_known` to fill.
    """
    kplanes, width = hidden['kplanes_config'], hidden['net_width']
    channels, resolution = kplanes['output_coordinate_dim'], kplanes['resolution']

    def tensor(*shape: int, low: float = -1.0, high: float = 1.0) -> Tensor:
        if not random:
            return torch.zeros(shape)
        return torch.rand(shape, generator=gen) * (high - low) + low

    def linear(prefix: str, inputs: int, outputs: int) -> None:
        scale = 1.0 / math.sqrt(inputs)
        state[f'{prefix}.weight'] = tensor(outputs, inputs, low=-scale, high=scale)
        state[f'{prefix}.bias'] = tensor(outputs, low=-0.1, high=0.1)

    state: 'OrderedDict[str, Tensor]' = OrderedDict()
    for name, count in (('time_poc', 'timebase_pe'), ('pos_poc', 'posebase_pe'),
                        ('rotation_scaling_poc', 'scale_rotation_pe'),
                        ('opacity_poc', 'opacity_pe')):
        state[name] = torch.tensor([float(2 ** i) for i in range(hidden[count])])
    linear('timenet.0', 2 * hidden['timebase_pe'] + 1, hidden['timenet_width'])
    linear('timenet.2', hidden['timenet_width'], hidden['timenet_output'])
    net = 'deformation_net'
    state[f'{net}.grid.aabb'] = aabb.clone()
    for s, multiplier in enumerate(hidden['multires']):
        scaled = [r * multiplier for r in resolution[:3]] + list(resolution[3:])
        for p, axes in enumerate(plane_axes(kplanes['grid_dimensions'])):
            shape = [1, channels] + [scaled[a] for a in reversed(axes)]
            state[f'{net}.grid.grids.{s}.{p}'] = (
                tensor(*shape, low=0.6, high=1.4) if random else torch.ones(shape)
            )
    if hidden['empty_voxel']:
        state[f'{net}.empty_voxel.grid'] = tensor(1, 1, 64, 64, 64, low=0.0, high=1.0)
        state[f'{net}.empty_voxel.xyz_min'] = aabb[1].clone()
        state[f'{net}.empty_voxel.xyz_max'] = aabb[0].clone()
    heads = {'pos_deform': 3, 'scales_deform': 3, 'rotations_deform': 4, 'opacity_deform': 1,
             'shs_deform': 48}
    if hidden['static_mlp']:
        heads = {'static_mlp': 1, **heads}
    features = channels * len(hidden['multires']) * (3 if hidden['grid_pe'] else 1)
    linear(f'{net}.feature_out.0', features, width)
    for layer in range(1, max(hidden['defor_depth'], 1)):
        linear(f'{net}.feature_out.{2 * layer}', width, width)
    for head, outputs in heads.items():
        linear(f'{net}.{head}.1', width, width)
        linear(f'{net}.{head}.3', width, outputs)
    return state


@dataclass(frozen=True)
class KnownDeformation:
    """The closed-form deformation of the "known" variant (see the module docstring)."""

    aabb: Tensor            # [2, 3], row 0 max, row 1 min
    velocity: Tensor        # [3]
    spatial_gain: Tensor    # [3]
    scale_rate: Tensor      # [3]
    rotation_rate: Tensor   # [4]

    def x_normalised(self, means: Tensor) -> Tensor:
        """Map x by the aabb (max -> -1, min -> +1), clamped like border padding: [N]."""
        x_max, x_min = self.aabb[0, 0], self.aabb[1, 0]
        return ((means[:, 0] - x_max) * 2.0 / (x_min - x_max) - 1.0).clamp(-1.0, 1.0)

    def expected_raw(self, canonical: RawGaussians, t: float) -> RawGaussians:
        spatial = (1.0 + 0.5 * self.x_normalised(canonical.means))[:, None]
        return RawGaussians(
            means=canonical.means + self.velocity * t + self.spatial_gain * spatial,
            quats_raw=canonical.quats_raw + self.rotation_rate * t,
            log_scales=canonical.log_scales + self.scale_rate * t,
            opacity_logits=canonical.opacity_logits,
            sh=canonical.sh,
        )


def _set_known(state: Dict[str, Tensor], hidden: Dict[str, Any], known: KnownDeformation,
               gen: torch.Generator) -> None:
    """Fill a zero state (planes ones) so that the deformation is `known` (module docstring)."""
    net = 'deformation_net'
    axes = plane_axes(hidden['kplanes_config']['grid_dimensions'])
    for key, value in state.items():
        if '.grid.grids.' in key:
            # Unused channels get random values: they must not leak into the output.
            value[:, 2:] = torch.rand(value[:, 2:].shape, generator=gen) + 0.5
            if not key.startswith(f'{net}.grid.grids.0.'):
                value[:, :2] = torch.rand(value[:, :2].shape, generator=gen) + 0.5
    xt = state[f'{net}.grid.grids.0.{axes.index((0, 3))}']    # [1, C, res_t, res_x]
    xt[0, 0] = torch.linspace(-1.0, 1.0, xt.shape[2])[:, None]    # rows: time from -1 to 1
    xy = state[f'{net}.grid.grids.0.{axes.index((0, 1))}']    # [1, C, res_y, res_x]
    xy[0, 1] = 1.0 + 0.5 * torch.linspace(-1.0, 1.0, xy.shape[3])[None, :]   # columns: x
    # feature_out: hidden unit 0 = t, unit 1 = 1 + x_n / 2 (both >= 0, so ReLUs pass them).
    for key in [k for k in state if k.startswith(f'{net}.feature_out.') and k.endswith('weight')]:
        state[key][0, 0] = state[key][1, 1] = 1.0
    rates = {'pos_deform': (known.velocity, known.spatial_gain),
             'scales_deform': (known.scale_rate, torch.zeros(3)),
             'rotations_deform': (known.rotation_rate, torch.zeros(4)),
             'opacity_deform': (torch.tensor([5.0]), torch.tensor([-3.0])),
             'shs_deform': (torch.randn(48, generator=gen), torch.randn(48, generator=gen))}
    for head, (rate, gain) in rates.items():
        state[f'{net}.{head}.1.weight'][0, 0] = state[f'{net}.{head}.1.weight'][1, 1] = 1.0
        state[f'{net}.{head}.3.weight'][:, 0] = rate
        state[f'{net}.{head}.3.weight'][:, 1] = gain


@dataclass(frozen=True)
class FixtureScene:
    path: str
    namespace: argparse.Namespace
    canonical: RawGaussians            # as written to the PLY (float32)
    state: Dict[str, Tensor]           # as written to deformation.pth
    known: Optional[KnownDeformation]  # None for the random variant


def random_raw(n: int, gen: torch.Generator, sh_degree: int = 3) -> RawGaussians:
    """N pre-activation Gaussians with plausible values, [N] each."""
    k = (sh_degree + 1) ** 2
    return RawGaussians(
        means=torch.randn(n, 3, generator=gen) * torch.tensor([1.0, 0.6, 0.4]),
        quats_raw=torch.randn(n, 4, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) * 0.3 - 4.0,
        opacity_logits=torch.randn(n, generator=gen),
        sh=torch.randn(n, k, 3, generator=gen) * 0.3,
    )


def write_fourdgs_scene(
    root: str | os.PathLike,
    config: str = 'dnerf',
    n: int = 64,
    seed: int = 0,
    variant: str = 'known',
    iterations: Sequence[int] = (7000, 14000),
    overrides: Optional[Dict[str, Any]] = None,
) -> FixtureScene:
    """
    Write a 4DGaussians output folder at ``root`` for ``config`` ('hypernerf' or 'dnerf').

    Every iteration folder gets the same PLY and state (the highest is the one loaded by
    default); a ``coarse_iteration_3000`` folder with a different PLY is added as a decoy.
    ``overrides`` change cfg_args entries (e.g. a smaller ``kplanes_config``).
    """
    if variant not in ('known', 'random'):
        raise ValueError(f"variant: expected 'known' or 'random', got {variant!r}")
    root = os.fspath(root)
    gen = torch.Generator().manual_seed(seed)
    namespace = trainer_namespace(config, root, overrides)
    hidden = {key: getattr(namespace, key) for key in HIDDEN_DEFAULTS}
    canonical = random_raw(n, gen, namespace.sh_degree)
    # The trainer sets the aabb from the initial point cloud; half the points here, so that
    # some Gaussians lie outside it and exercise the border padding.
    cloud = canonical.means[: max(n // 2, 2)]
    aabb = torch.stack([cloud.max(dim=0).values, cloud.min(dim=0).values])
    state = public_state_dict(hidden, aabb, gen, random=(variant == 'random'))
    known = None
    if variant == 'known':
        known = KnownDeformation(
            aabb=aabb,
            velocity=torch.tensor([0.3, -0.2, 0.5]),
            spatial_gain=torch.tensor([0.05, 0.02, -0.04]),
            scale_rate=torch.tensor([0.1, -0.2, 0.05]),
            rotation_rate=torch.tensor([0.2, 0.0, -0.1, 0.3]),
        )
        _set_known(state, hidden, known, gen)

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, 'cfg_args'), 'w', encoding='utf-8') as handle:
        handle.write(str(namespace))  # exactly what train.py writes
    for iteration in iterations:
        folder = os.path.join(root, 'point_cloud', f'iteration_{iteration}')
        write_ply(os.path.join(folder, 'point_cloud.ply'), canonical)
        torch.save(state, os.path.join(folder, 'deformation.pth'))
    coarse = os.path.join(root, 'point_cloud', 'coarse_iteration_3000')
    write_ply(os.path.join(coarse, 'point_cloud.ply'), random_raw(3, gen, namespace.sh_degree))
    return FixtureScene(root, namespace, canonical, state, known)


def small_grid(config: str) -> Dict[str, Any]:
    """cfg_args overrides with the preset's layout but small grids, for fast scene tests."""
    kplanes = dict(CONFIG_FILES[config].get('kplanes_config', HIDDEN_DEFAULTS['kplanes_config']))
    kplanes['resolution'] = [8, 8, 8, 5]
    return {'kplanes_config': kplanes}
