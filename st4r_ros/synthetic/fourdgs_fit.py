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
A synthetic scene as the public 4DGaussians trainer leaves a scene: a learned canonical space.

The keyframed bundle (scene.py) places every Gaussian where it really is at each frame. A
trainer's output does not: it fits a static "coarse" cloud to every frame, then a HexPlane
deformation network, and only the deformed positions mu_i(t) are where things are. This module
obtains such a scene the way the trainer does, from the synthetic scene's training views:

1. Initial cloud: each Gaussian where its object was at one frame drawn at random (a cloud
   gathered over the whole video, as structure from motion of a dynamic scene gives one), its
   colour, rotation and scale as there, opacity 0.1 (the trainer's initial opacity).
2. Coarse stage: the canonical Gaussians alone fitted to the training views of every time
   (L1 photometric): a moving object's Gaussians settle into a blur of its path.
3. Fine stage: the deformation network (``scene/deformation.py``, a HyperNeRF-style config
   with opacity deltas so a vanishing object can vanish) and the canonical Gaussians fitted
   jointly, each view at its time: L1 plus the trainer's plane regularisers (total variation
   of the space planes, smoothness and L1-to-one of the time planes).

Not done, unlike the trainer: densification and pruning (the cloud keeps its size).
Every step renders through ``render`` (gsplat on CUDA, the torch backend elsewhere). A loss
that turns non-finite, or a render no Gaussian reaches any more, stops the fit with the step
and the loss terms (``FitDivergedError``).
``save_fourdgaussians`` (scene/fourdgs.py) writes the result where ``st4r`` reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import json
import math
from pathlib import Path
import time
from typing import Dict, Iterator, List, Optional, Sequence

from st4r_ros.errors import SceneFormatError, St4rError
from st4r_ros.progress import StepProgress
from st4r_ros.render.api import render
from st4r_ros.scene.deformation import DeformationConfig, DeformationNetwork, plane_axes
from st4r_ros.scene.fourdgs import save_fourdgaussians
from st4r_ros.scene.ply import RawGaussians
from st4r_ros.synthetic.scene import CameraView, SyntheticScene
import torch
from torch import nn, Tensor

# The coordinate index of time in the HexPlane (x, y, z, t).
TIME_AXIS = 3
# The trainer's initial opacity of a new Gaussian.
INITIAL_OPACITY = 0.1
# The synthetic renders are on white.
BACKGROUND = 1.0
# Beside the synthetic scene's keyframed bundle (scene/): the fitted scene and its report.
FOURDGS_DIR = 'scene_4dgs'
FIT_REPORT = 'fit_4dgaussians.json'


class FitDivergedError(St4rError, RuntimeError):
    """The photometric fit produced a non-finite loss; nothing was written."""


@dataclass(frozen=True)
class FitConfig:
    """
    How a scene is fitted: steps, learning rates and loss weights (the public trainer's).

    The learning rates of the canonical Gaussians are 3DGS's (means scaled by the scene's
    extent), those of the network and planes 4DGaussians' HyperNeRF defaults, held constant.
    """

    coarse_steps: int = 3000
    fine_steps: int = 14000
    lr_means: float = 1.6e-4
    lr_sh: float = 2.5e-3
    lr_opacity: float = 5e-2
    lr_scales: float = 5e-3
    lr_rotations: float = 1e-3
    lr_network: float = 1.6e-4
    lr_planes: float = 1.6e-3
    plane_tv_weight: float = 2e-4
    time_smoothness_weight: float = 1e-3
    l1_time_planes_weight: float = 1e-4
    deformation: DeformationConfig = field(
        default_factory=lambda: replace(DeformationConfig.preset('hypernerf'), no_do=False,
                                        sh_degree=0))
    device: str = 'cpu'

    def __post_init__(self) -> None:
        for name in ('coarse_steps', 'fine_steps'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SceneFormatError(f'fit option {name!r}: expected an integer >= 0, '
                                       f'got {value!r}')


@dataclass(frozen=True)
class FittedScene:
    """
    A fitted canonical cloud and its deformation network, with how the fit went.

    :ivar canonical: the canonical pre-activation Gaussians, [N].
    :ivar network: the deformation network (eval mode, on the CPU).
    :ivar history: per stage, the loss at every hundredth step.
    """

    canonical: RawGaussians
    network: DeformationNetwork
    history: Dict[str, List[float]]


def fit_fourdgaussians(scene: SyntheticScene, config: FitConfig = FitConfig(), seed: int = 0,
                       progress: bool = True) -> FittedScene:
    """
    Fit a 4DGaussians scene to ``scene``'s training views (module docstring).

    :raises FitDivergedError: a loss turned NaN or infinite (naming the stage, step and terms).
    """
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(seed)
    views = [v for v in scene.views if v.split == 'train']
    targets = [_target(scene, v, device) for v in views]
    params = _initial_cloud(scene, generator, device)
    extent = float((params['means'].detach().amax(0) - params['means'].detach().amin(0)).norm())
    network = _network(config.deformation, params['means'].detach()).to(device)
    history: Dict[str, List[float]] = {'coarse': [], 'fine': []}
    stages = (('coarse', config.coarse_steps, None), ('fine', config.fine_steps, network))
    for stage, steps, deform in stages:
        optimiser = _optimiser(params, config, extent, deform)
        with StepProgress(f'fit, {stage} stage', steps, enabled=progress) as bar:
            for step in range(steps):
                k = int(torch.randint(len(views), (1,), generator=generator))
                terms = _step_losses(params, deform, views[k], targets[k], config)
                loss = torch.stack(list(terms.values())).sum()
                # Non-finite, or blown so far that no Gaussian reaches the image any more.
                if not bool(torch.isfinite(loss)) or not loss.requires_grad:
                    shown = ', '.join(f'{n} {v.item():.4g}' for n, v in terms.items())
                    lost = '' if loss.requires_grad else ' (no Gaussian is left in the view)'
                    raise FitDivergedError(f'the {stage} stage diverged at step {step + 1} of '
                                           f'{steps}: {shown}{lost}; nothing was written')
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if step % 100 == 0:
                    history[stage].append(loss.item())
                bar.advance(note=f"L1 {terms['l1'].item():.4f}")
    canonical = RawGaussians(**{name: value.detach().cpu() for name, value in params.items()})
    return FittedScene(canonical, network.cpu().eval(), history)


def _target(scene: SyntheticScene, view: CameraView, device: torch.device) -> Tensor:
    """Render the ground truth of a training view on white: [H, W, 3]."""
    with torch.no_grad():
        gaussians = scene.keyframes[view.frame][1].to(device)
        return render(gaussians, view.camera, background=BACKGROUND).image


def _initial_cloud(scene: SyntheticScene, generator: torch.Generator,
                   device: torch.device) -> Dict[str, nn.Parameter]:
    """Place each Gaussian as it was at a random frame (module docstring, step 1)."""
    frames = torch.randint(len(scene.keyframes), (len(scene.keyframes[0][1]),),
                           generator=generator)
    picked = {name: torch.stack([kf[1].tensors()[name] for kf in scene.keyframes])
              [frames, torch.arange(len(frames))] for name in ('means', 'quats', 'scales', 'sh')}
    opacity = math.log(INITIAL_OPACITY / (1.0 - INITIAL_OPACITY))
    raw = {'means': picked['means'], 'quats_raw': picked['quats'],
           'log_scales': picked['scales'].clamp_min(1e-6).log(),
           'opacity_logits': torch.full((len(frames),), opacity), 'sh': picked['sh']}
    return {name: nn.Parameter(value.float().to(device)) for name, value in raw.items()}


def _network(config: DeformationConfig, means: Tensor) -> DeformationNetwork:
    """Build a deformation network over the cloud's box whose heads start at zero."""
    network = DeformationNetwork(config)
    grid = network.deformation_net.grid
    grid.aabb.copy_(torch.stack([means.amax(0), means.amin(0)]).cpu())
    for last in _last_layers(network):
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return network


def _last_layers(network: DeformationNetwork) -> Iterator[nn.Linear]:
    """Yield the output layer of every deformation head."""
    net = network.deformation_net
    for name in ('pos_deform', 'scales_deform', 'rotations_deform', 'opacity_deform',
                 'shs_deform'):
        head = getattr(net, name, None)
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            yield head[-1]


def _optimiser(params: Dict[str, nn.Parameter], config: FitConfig, extent: float,
               network: Optional[DeformationNetwork]) -> torch.optim.Adam:
    groups = [{'params': [params['means']], 'lr': config.lr_means * extent},
              {'params': [params['sh']], 'lr': config.lr_sh},
              {'params': [params['opacity_logits']], 'lr': config.lr_opacity},
              {'params': [params['log_scales']], 'lr': config.lr_scales},
              {'params': [params['quats_raw']], 'lr': config.lr_rotations}]
    if network is not None:
        planes = [p for p in network.deformation_net.grid.parameters()]
        ids = {id(p) for p in planes}
        groups += [{'params': planes, 'lr': config.lr_planes},
                   {'params': [p for p in network.parameters() if id(p) not in ids],
                    'lr': config.lr_network}]
    return torch.optim.Adam(groups, eps=1e-15)


def _step_losses(params: Dict[str, nn.Parameter], network: Optional[DeformationNetwork],
                 view: CameraView, target: Tensor, config: FitConfig) -> Dict[str, Tensor]:
    """L1 of one view's render, and in the fine stage the plane regularisers."""
    raw = RawGaussians(**params)
    if network is not None:
        raw = network(raw, view.time)
    image = render(raw.activate(), view.camera, background=BACKGROUND).image
    terms = {'l1': (image - target).abs().mean()}
    if network is not None:
        terms.update(plane_regularisers(network, config))
    return terms


def plane_regularisers(network: DeformationNetwork, config: FitConfig) -> Dict[str, Tensor]:
    """
    Compute the trainer's HexPlane regularisers, weighted: spatial TV, time smoothness, L1.

    Space planes (no time axis): squared differences of neighbours along both plane axes.
    Time planes: squared second differences along time, and the mean |1 - value| (they start
    at one: no change over time).
    """
    grid = network.deformation_net.grid
    tv, smooth, l1 = [], [], []
    for planes in grid.scales():
        for plane, axes in zip(planes, plane_axes(network.config.kplanes_config)):
            if TIME_AXIS in axes:  # [1, C, time, space]: time is the plane's first grid axis
                second = plane[..., 2:, :] - 2 * plane[..., 1:-1, :] + plane[..., :-2, :]
                smooth.append(second.square().mean())
                l1.append((1.0 - plane).abs().mean())
            else:
                tv.append((plane[..., 1:, :] - plane[..., :-1, :]).square().mean()
                          + (plane[..., :, 1:] - plane[..., :, :-1]).square().mean())
    zero = torch.zeros((), device=grid.aabb.device)
    return {'plane_tv': config.plane_tv_weight * sum(tv, zero),
            'time_smoothness': config.time_smoothness_weight * sum(smooth, zero),
            'l1_time_planes': config.l1_time_planes_weight * sum(l1, zero)}


def psnr(image: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio of an image [H, W, 3] in [0, 1] against its target, in dB."""
    mse = float((image.clamp(0, 1) - target).square().mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def canonical_offsets(scene: SyntheticScene, canonical: RawGaussians,
                      roles: Sequence[str] = ('mover', 'splitter')) -> Dict[int, float]:
    """
    How far each moving object's canonical cloud lies from the object at any one frame.

    Per instance of one of ``roles``: min over frames f of the mean over its Gaussians of
    |canonical_i - x_i(f)| (0: the canonical space is one of the frames, as in a keyframed
    bundle). Each fitted Gaussian starts where it was at a frame of its own, so a mover's cloud
    is spread along its path and no single frame is near all of it.
    """
    ids = scene.keyframes[0][1].instance_ids
    truth = torch.stack([kf[1].means for kf in scene.keyframes])  # [F, N, 3]
    offsets = {}
    for entry in scene.objects:
        if entry['role'] in roles:
            members = ids == entry['id']
            gap = (truth[:, members] - canonical.means[members][None]).norm(dim=-1)  # [F, n]
            offsets[int(entry['id'])] = float(gap.mean(dim=1).min())
    return offsets


def view_psnr(scene: SyntheticScene, fitted: FittedScene, split: str = 'novel') -> float:
    """Mean PSNR of the fitted scene's renders against the ground truth on ``split`` views."""
    values = []
    with torch.no_grad():
        for view in (v for v in scene.views if v.split == split):
            raw = fitted.network(fitted.canonical, view.time)
            image = render(raw.activate(), view.camera, background=BACKGROUND).image
            values.append(psnr(image, _target(scene, view, torch.device('cpu'))))
    return sum(values) / len(values) if values else math.nan


def write_fitted_scene(out_dir: str | Path, scene: SyntheticScene, config: FitConfig = FitConfig(),
                       seed: int = 0, progress: bool = True) -> Dict:
    """
    Fit ``scene`` and write it as a 4DGaussians output folder in OUT/scene_4dgs.

    The report (OUT/fit_4dgaussians.json, also returned): PSNR on the novel and training views
    against the ground truth, each moving object's canonical offset from its nearest frame
    (``canonical_offsets``),
    the steps, the final losses and the seconds taken. A diverged fit writes nothing.
    """
    out = Path(out_dir)
    started = time.perf_counter()
    fitted = fit_fourdgaussians(scene, config, seed, progress)
    seconds = time.perf_counter() - started
    steps = config.coarse_steps + config.fine_steps
    save_fourdgaussians(out / FOURDGS_DIR, fitted.canonical, fitted.network, steps,
                        {'source': 'st4r synth --format 4dgaussians', 'seed': seed,
                         'coarse_iterations': config.coarse_steps, 'iterations': steps})
    report = {'seed': seed, 'psnr_novel': view_psnr(scene, fitted, 'novel'),
              'psnr_train': view_psnr(scene, fitted, 'train'),
              'canonical_offsets_m': canonical_offsets(scene, fitted.canonical),
              'losses': fitted.history, 'seconds': seconds,
              'config': {k: v for k, v in asdict(config).items() if k != 'deformation'}}
    (out / FIT_REPORT).write_text(json.dumps(report, indent=1))
    return report
