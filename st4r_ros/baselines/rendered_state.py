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
A 4DLangSplat-style 'when' baseline: a time-deformable state feature learnt through renders.

4DLangSplat gives every 4D Gaussian a language feature that changes with time and learns it
only through 2D renders: the composited feature of a pixel is pulled towards the embedding of
what that pixel shows at that frame. ST4R-Splat's claim against it is view robustness (Acc
90.38% against 51.92% on novel views): a feature learnt from the few training views of each
frame degrades in other views, whereas the state cache (st4r_ros.temporal) renders nothing.

The model::

    f_i                              learnable per-Gaussian feature, [N, d]
    g_i(t) = G([f_i, gamma(t)])      time deformation, Linear-ReLU-Linear, d + 1 + 2L -> h -> c
    r(p, t) = sum_i w_i(p, t) g_i(t) composited over the frozen geometry at t (render API,
                                     background 0), [H, W, c]
    s(p, t) = normalise(Dec(r(p, t)))  per-pixel decoder, Linear-ReLU-Linear, c -> h_dec -> D

Sizes and why:

- d = 16: as the referring field's (and ReferSplat's) per-Gaussian embedding; N x d is the
  model's whole per-Gaussian memory (300k Gaussians: 19 MB).
- L = 6 Fourier frequencies of t in [0, 1] (gamma as the field's position code): the finest
  period, 1/16 of the timeline, is 1.4 frames of a 24-frame scene, so a state that lasts two
  frames can be fitted; capacity is not what the baseline should lose on.
- h = 64: the deformation runs over all N Gaussians every step; one hidden layer of 64 is
  enough to gate a 16-d code by time and keeps that pass at N x 64.
- c = 8 rendered channels: 4DLangSplat renders a 3-d autoencoder latent; 8 channels give the
  ~20 distinct (instance, state) targets of a synthetic scene room through a non-linear decoder,
  and a render's cost is linear in c.
- h_dec = 128, D = the sentence encoder's dimension (384 for MiniLM): the targets span far more
  than c dimensions, so the decoder is an MLP, not a linear map.

Training (``train_rendered_state``): the targets are the per-(instance, frame) features the
temporal layer answers from (``TemporalLayer.states``: the captions' state features), so that
both are asked the same question of the same captions.
A step draws one training view (seeded generator), renders g(t) from it and decodes the pixels
of every instance that covers at least ``min_pixels`` of the view's mask and has a state
feature at that frame; the loss is the mean over those instances of the mean over their pixels
of 1 - cos(s(p, t), c_{k,t}). Adam, lr 2.5e-3 for f (the referring field's embedding rate), 1e-3
for the networks; 1500 steps, where the loss has levelled off on the default synthetic scene
(benchmarks/HISTORY.md). On the CPU each view's compositing weights are computed once
(field.model.BlendWeights: the torch backend's exact weights), which turns a step's render
into a sparse product; on other devices render() composites every step.

Query (``RenderedStateField.state_features``): render g(t) from a camera, decode the pixels
inside a mask and average the unit features, renormalised: one [D] state feature per view and
frame, for the same interval search as the cache (temporal.intervals.find_intervals). An
empty mask raises QueryError: there is no feature to give, and a caller should mark that frame
missing (valid = False), which the interval search handles.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
import time as clock
from typing import Callable, Iterator, List, Optional

from st4r_ros.errors import QueryError, SceneFormatError, SupervisionFormatError
from st4r_ros.field.model import BlendWeights, fourier_features, frozen
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import check_time, Scene4D
from st4r_ros.supervision.format import Supervision
from st4r_ros.temporal.state_cache import StateCache
import torch
from torch import nn, Tensor
import torch.nn.functional as F

# The state cache stores frame times as float32 (spacing 6e-8 near 1), views as float64: a
# view's time matches a cache frame within this.
FRAME_TOLERANCE = 1e-5


@dataclass(frozen=True)
class BaselineConfig:
    """Architecture and training of the rendered-state baseline (sizes: module docstring)."""

    feature_dim: int = 16
    time_frequencies: int = 6
    hidden_dim: int = 64
    render_dim: int = 8
    decoder_dim: int = 128
    text_dim: int = 384
    init_std: float = 0.1
    steps: int = 1500
    lr_features: float = 2.5e-3
    lr_networks: float = 1e-3
    min_pixels: int = 16
    device: str = 'cpu'
    backend: str = 'auto'
    # Precompute each view's blending weights; None: on the CPU only (as field/train.py).
    cache_weights: Optional[bool] = None


class RenderedStateField(nn.Module):
    """
    Per-Gaussian time-deformable state features, rendered and decoded per pixel.

    :param num_gaussians: N, the same Gaussians at every time.
    :param config: sizes; ``text_dim`` must be the target features' dimension.
    """

    def __init__(self, num_gaussians: int, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        time_inputs = 1 + 2 * config.time_frequencies
        self.features = nn.Parameter(torch.randn(num_gaussians, config.feature_dim)
                                     * config.init_std)
        self.deform = nn.Sequential(
            nn.Linear(config.feature_dim + time_inputs, config.hidden_dim), nn.ReLU(),
            nn.Linear(config.hidden_dim, config.render_dim))
        self.decoder = nn.Sequential(
            nn.Linear(config.render_dim, config.decoder_dim), nn.ReLU(),
            nn.Linear(config.decoder_dim, config.text_dim))

    @property
    def num_gaussians(self) -> int:
        return self.features.shape[0]

    def gaussian_features(self, time: float) -> Tensor:
        """Return g_i(t) of every Gaussian at normalised time t, [N, c]."""
        t = torch.tensor([check_time(time)], device=self.features.device)
        code = fourier_features(t, self.config.time_frequencies)  # [1 + 2L]
        return self.deform(torch.cat([self.features,
                                      code.expand(self.num_gaussians, -1)], dim=1))

    def decode(self, rendered: Tensor) -> Tensor:
        """Decode rendered pixels [P, c] into unit state features s, [P, D]."""
        return F.normalize(self.decoder(rendered), dim=-1)

    def render_features(self, gaussians: Gaussians, camera: Camera, time: float,
                        backend: str = 'auto') -> Tensor:
        """
        Render g(t) from camera over the frozen geometry, [H, W, c], background 0.

        :param gaussians: the scene at time t (N Gaussians).
        """
        if len(gaussians) != self.num_gaussians:
            raise SceneFormatError(f'gaussians: expected the {self.num_gaussians} Gaussians the '
                                   f'baseline was trained on, got {len(gaussians)}')
        return render(frozen(gaussians), camera, self.gaussian_features(time), background=0.0,
                      backend=backend).image

    @torch.no_grad()
    def masked_feature(self, rendered: Tensor, mask: Tensor) -> Tensor:
        """
        Average the decoded unit features of rendered [H, W, c] inside mask [H, W] bool, [D].

        The mean is renormalised to unit length.

        :raises QueryError: the mask is empty or not of the render's size.
        """
        if tuple(mask.shape) != tuple(rendered.shape[:2]):
            raise QueryError(f'mask: expected shape {tuple(rendered.shape[:2])} (the view), '
                             f'got {tuple(mask.shape)}')
        inside = mask.to(device=rendered.device, dtype=torch.bool)
        if not bool(inside.any()):
            raise QueryError('mask: expected at least one pixel of the instance, got an empty '
                             'mask; the instance is not seen in this view at this time')
        return F.normalize(self.decode(rendered[inside]).mean(dim=0), dim=0)

    @torch.no_grad()
    def state_features(self, gaussians: Gaussians, camera: Camera, mask: Tensor, time: float,
                       backend: str = 'auto') -> Tensor:
        """
        Return the state feature of the masked instance seen from camera at time t, [D].

        :param gaussians: the scene at time t (N Gaussians).
        :param mask: the instance's pixels in this view, [H, W] bool.
        :raises QueryError: an empty mask (module docstring).
        """
        return self.masked_feature(self.render_features(gaussians, camera, time, backend), mask)


@dataclass(frozen=True)
class ViewTargets:
    """
    What one training view supervises.

    :ivar view: index into the supervision's views.
    :ivar time: the view's normalised time.
    :ivar pixels: flat pixel indices (y * W + x) of the supervised instances, [P] int64.
    :ivar targets: the state feature each of those pixels must decode to, [P, D].
    :ivar weights: 1 / (instance's pixels x supervised instances): every instance counts the
        same, [P].
    """

    view: int
    time: float
    pixels: Tensor
    targets: Tensor
    weights: Tensor


@dataclass
class BaselineResult:
    """
    A trained baseline.

    :ivar model: the field (eval mode).
    :ivar cache: the state features it was trained towards (c_{k,t}).
    :ivar history: the loss of every step.
    :ivar seconds: wall time of the training call.
    """

    model: RenderedStateField
    cache: StateCache
    history: List[float]
    seconds: float


def frame_column(frame_times: Tensor, time: float) -> Optional[int]:
    """Return the index of ``time`` in frame_times [T]; None when no frame is that close."""
    if len(frame_times) == 0:
        return None
    gaps = (frame_times.float().cpu() - float(time)).abs()
    column = int(gaps.argmin())
    return column if float(gaps[column]) <= FRAME_TOLERANCE else None


def view_targets(supervision: Supervision, cache: StateCache, min_pixels: int,
                 device: torch.device) -> List[ViewTargets]:
    """Return the targets of every training view that shows a captioned instance."""
    found = []
    for index, view in enumerate(supervision.views):
        column = frame_column(cache.frame_times, view.time)
        if column is None:
            continue
        ids = view.load_mask().reshape(-1)
        parts = [((ids == instance_id).nonzero()[:, 0], cache.features[row, column])
                 for row, instance_id in enumerate(cache.instance_ids.tolist())
                 if bool(cache.valid[row, column])]
        parts = [(pixels, target) for pixels, target in parts if len(pixels) >= min_pixels]
        if parts:
            found.append(ViewTargets(
                index, view.time, torch.cat([p for p, _ in parts]).to(device),
                torch.cat([t.expand(len(p), -1) for p, t in parts]).to(device),
                torch.cat([torch.full((len(p),), 1.0 / (len(p) * len(parts)))
                           for p, _ in parts]).to(device)))
    return found


def _renderers(scene: Scene4D, supervision: Supervision, targets: List[ViewTargets],
               config: BaselineConfig,
               device: torch.device) -> List[Callable[[Tensor], Tensor]]:
    """
    Per entry of targets: g [N, c] -> the rendered features of its target pixels, [P, c].

    Cached, only the weight rows of the target pixels are kept: a step composites those
    pixels and no others.
    """
    cached = device.type == 'cpu' if config.cache_weights is None else config.cache_weights
    functions: List[Callable[[Tensor], Tensor]] = []
    for item in targets:
        camera = supervision.views[item.view].camera
        if cached:
            weights = BlendWeights.of(frozen(scene.at(item.time, device)), camera).matrix
            rows = weights.index_select(0, item.pixels).coalesce()
            functions.append(_composited(rows))
        else:
            functions.append(_rendered(scene, item.time, camera, item.pixels, config, device))
    return functions


def _composited(rows: Tensor) -> Callable[[Tensor], Tensor]:
    """Return g [N, c] -> the blend-weight rows [P, N] (sparse) times g, [P, c]."""
    return lambda g: torch.sparse.mm(rows, g)


def _rendered(scene: Scene4D, t: float, camera: Camera, pixels: Tensor, config: BaselineConfig,
              device: torch.device) -> Callable[[Tensor], Tensor]:
    """Return g [N, c] -> the pixels [P] of g rendered by ``camera`` at time t, [P, c]."""
    return lambda g: render(frozen(scene.at(t, device)), camera, g, background=0.0,
                            backend=config.backend).image.reshape(-1, g.shape[1])[pixels]


def step_loss(model: RenderedStateField, item: ViewTargets,
              render_pixels: Callable[[Tensor], Tensor]) -> Tensor:
    """Return the weighted mean of 1 - cos(s(p, t), c_{k,t}) over the view's target pixels."""
    decoded = model.decode(render_pixels(model.gaussian_features(item.time)))  # [P, D]
    return (item.weights * (1.0 - (decoded * item.targets).sum(dim=-1))).sum()


def train_rendered_state(scene: Scene4D, supervision: Supervision, cache: StateCache,
                         config: Optional[BaselineConfig] = None, seed: int = 0,
                         progress: bool = True) -> BaselineResult:
    """
    Train the baseline on the supervision's training views and state captions.

    :param cache: the per-(instance, frame) features to render: what the method it is compared
        with answers from (``TemporalLayer.states``; or ``build_state_cache``'s sentences).
    :param config: BaselineConfig() by default; ``text_dim`` is taken from the cache.
    :param seed: seeds the initialisation and the order of views (same seed, same model).
    :param progress: show a rich progress bar with the running loss.
    :raises SupervisionFormatError: no state captions, or no view shows a captioned instance.
    """
    started = clock.perf_counter()
    config = replace(config or BaselineConfig(), text_dim=int(cache.dim))
    device = torch.device(config.device)
    cache = cache.to(device)
    targets = view_targets(supervision, cache, config.min_pixels, device)
    if not targets:
        raise SupervisionFormatError(f'{supervision.root}: no training view shows an instance '
                                     f'with a state caption (>= {config.min_pixels} pixels)')
    renderers = _renderers(scene, supervision, targets, config, device)
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        model = RenderedStateField(len(scene.at(targets[0].time)), config).to(device)
    networks = [p for name, p in model.named_parameters() if name != 'features']
    optimizer = torch.optim.Adam([{'params': [model.features], 'lr': config.lr_features},
                                  {'params': networks, 'lr': config.lr_networks}])
    generator = torch.Generator().manual_seed(seed)
    history: List[float] = []
    model.train()
    with _progress(progress, config.steps) as advance:
        for _ in range(config.steps):
            pick = int(torch.randint(len(targets), (1,), generator=generator))
            loss = step_loss(model, targets[pick], renderers[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            advance(history)
    model.eval()
    return BaselineResult(model, cache, history, clock.perf_counter() - started)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[List[float]], None]]:
    """Yield advance(history): a rich bar with the mean loss of the last 50 steps, or nothing."""
    if not enabled:
        yield lambda history: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn('baseline'), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn('{task.description}')) as bar:
        task = bar.add_task('', total=total)

        def advance(history: List[float]) -> None:
            recent = history[-50:]
            bar.update(task, advance=1, description=f'loss {sum(recent) / len(recent):.3f}')

        yield advance
