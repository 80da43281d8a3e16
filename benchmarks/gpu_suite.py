#!/usr/bin/env python3

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
One GPU run: correctness first, then every timing, saved as JSON and printed as a table.

    python3 benchmarks/gpu_suite.py --out DIR      (see benchmarks/README.md)

Steps (each in its own try/except: one failure never loses the other figures; the JSON is
rewritten after every step, so even a run cut short leaves what it measured):

1. fused_parity: FusedDeformation vs DeformationNetwork on the GPU (HyperNeRF, D-NeRF and an
   all-heads config; mlp torch/triton; fp32/tf32/bf16; eager and CUDA graph).
2. render_parity: the pure-torch rasterizer vs gsplat on random scenes (varied scales and
   opacities, three cameras), 1-channel feature + alpha, and RGB; max / mean abs difference,
   also away from silhouette edges.
3. timings for N in 100k, 300k, 1M, 3M on a synthetic 4DGaussians-like scene (HyperNeRF
   config, random weights with small deltas): deformation alone (reference fp32/TF32, fused
   variants), render 1-channel 640x480 and RGB 1280x720, and deform + render end to end through
   the public path (Scene4D.at(t) -> render) with t changing every frame, plus the cached case
   (same t); peak memory per N and variant. Medians of CUDA-event times, one frame at a time
   (synchronised before each frame, so a time is a frame's latency, launches included).
4. tuning: block / warps / chunk sweep of the one-kernel (mlp='triton') path at 1M.
5. pytest: tests/test_deformation_fused.py on the GPU (if time is left).

``--smoke`` runs everything tiny (2,000 Gaussians, parity scenes a fiftieth of their size,
images an eighth of their sides, three frames per figure), also on a CPU, only to check the
script itself. What cannot run there is skipped and named (``meta.smoke_skipped``, and a log
line): the Triton kernels (fused_parity, the fused timings, tuning) without triton, or on a
CPU without TRITON_INTERPRET=1; gsplat without CUDA (render_parity then compares the torch
backend with itself, which still runs the comparison code). A smoke run exits 1 when any
step or row recorded an error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import time
import traceback
import types
from typing import Callable, Dict, List, Optional

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Only PLY I/O needs plyfile and the suite builds its scenes in memory: if the GPU box lacks
# it, an empty stand-in lets st4r_ros.scene.ply import (reading a PLY would then fail). The
# imports below must come after it (and after the sys.path line above), hence noqa: E402.
PLYFILE_STUBBED = importlib.util.find_spec('plyfile') is None
if PLYFILE_STUBBED:
    sys.modules['plyfile'] = types.ModuleType('plyfile')

from st4r_ros.render.api import render  # noqa: E402
from st4r_ros.render.camera import Camera  # noqa: E402
from st4r_ros.scene.deformation import DeformationConfig, DeformationNetwork  # noqa: E402
from st4r_ros.scene.gaussians import Gaussians  # noqa: E402
from st4r_ros.scene.ply import RawGaussians  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FIELDS = ('means', 'log_scales', 'quats_raw', 'opacity_logits', 'sh')
PARITY_TIMES = (0.0, 0.3, 0.77, 1.0)
# Accepted error of the fused path: absolute for fp32; for TF32 / bf16 a fraction of the largest
# delta plus a floor (a head whose deltas are tiny, e.g. opacity, still rounds like the others).
FP32_ATOL = 1e-4
REL_TOL = {'tf32': 2e-2, 'bf16': 5e-2}
ABS_FLOOR = {'tf32': 1e-4, 'bf16': 1e-3}
ALPHA_MIN = 1.0 / 255.0  # gsplat's per-Gaussian alpha threshold: a covered pixel has alpha >= it
TARGETS_MS = {300_000: 2.0, 1_000_000: 4.0}  # deform + render 1-channel 640x480
FUSED_VARIANTS = [(mlp, precision) for mlp in ('torch', 'triton')
                  for precision in ('fp32', 'tf32', 'bf16')]
# --smoke divides image sides and parity scenes' sizes by these: same code paths, little work.
SMOKE_IMAGE_SHRINK = 8
SMOKE_PARITY_SHRINK = 50


def log(message: str) -> None:
    print(f'[{time.perf_counter() - T0:6.1f}s] {message}', flush=True)


# ------------------------------------------------------------------------------------------
# Report: JSON written after every step
# ------------------------------------------------------------------------------------------


class Report:

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: Dict = {'meta': {}, 'steps': {}, 'fused_parity': [], 'render_parity': [],
                           'timings': [], 'memory': []}

    def save(self) -> None:
        self.data['meta']['elapsed_s'] = round(time.perf_counter() - T0, 1)
        tmp = self.path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)

    @contextlib.contextmanager
    def step(self, name: str):
        """Run a step; an exception is recorded (with traceback) instead of propagating."""
        log(f'== {name}')
        entry = self.data['steps'].setdefault(name, {})
        start = time.perf_counter()
        try:
            yield entry
            entry['status'] = 'ok'
        except Exception as exc:  # noqa: BLE001 - the point is to keep going
            entry['status'] = 'error'
            entry['error'] = f'{type(exc).__name__}: {exc}'
            entry['traceback'] = traceback.format_exc()[-3000:]
            log(f"!! {name} failed: {entry['error']}")
            print(entry['traceback'], flush=True)
        finally:
            entry['elapsed_s'] = round(time.perf_counter() - start, 1)
            self.save()

    def skip(self, name: str, reason: str) -> None:
        """Record a step a smoke run cannot run here, and why."""
        log(f'== {name}: skipped ({reason})')
        self.data['steps'][name] = {'status': 'skipped', 'reason': reason}
        self.save()

    def errors(self) -> int:
        """Count the steps and rows that recorded an error."""
        rows = [row for group in ('fused_parity', 'render_parity', 'timings')
                for row in self.data[group]]
        return (sum(step.get('status') == 'error' for step in self.data['steps'].values())
                + sum('error' in row for row in rows))


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_frames(fn: Callable[[int], object], device: torch.device, iters: int,
                warmup: int) -> Dict:
    """Time fn(i) per frame in ms: synchronised before each frame, CUDA events around it."""
    for i in range(warmup):
        fn(i)
    sync(device)
    times: List[float] = []
    for i in range(warmup, warmup + iters):
        sync(device)
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - begin) * 1e3)
    times.sort()
    return {
        'median_ms': round(statistics.median(times), 4),
        'p10_ms': round(times[int(0.1 * (len(times) - 1))], 4),
        'p90_ms': round(times[int(0.9 * (len(times) - 1))], 4),
        'min_ms': round(times[0], 4),
        'iters': iters,
    }


def frame_time(i: int) -> float:
    """Return a different scene time in [0, 1] every frame (golden-ratio steps: no cache hits)."""
    return (0.1 + 0.6180339887 * i) % 1.0


# ------------------------------------------------------------------------------------------
# Synthetic scenes
# ------------------------------------------------------------------------------------------


def hypernerf_network(device: torch.device, seed: int = 0, delta_scale: float = 0.05,
                      name: str = 'hypernerf') -> DeformationNetwork:
    """
    Build the HyperNeRF-config network with random weights and small deltas, aabb [-1, 1]^3.

    Planes: spatial U(0.1, 0.5) as the public init, time planes 1 + 0.2 N(0, 1) (so that t
    matters); Linear layers torch's default init; the heads' last layers scaled by
    ``delta_scale`` so the Gaussians move by a few hundredths, as trained scenes do.
    """
    torch.manual_seed(seed)
    if name == 'all-heads':
        config = dataclasses.replace(DeformationConfig.preset('dnerf'), no_do=False,
                                     no_dshs=False, defor_depth=2)
    else:
        config = DeformationConfig.preset(name)
    net = DeformationNetwork(config).eval()
    field = net.deformation_net
    with torch.no_grad():
        for scale in field.grid.grids:
            for plane, axes in zip(scale, field.grid.planes):
                if 3 in axes:
                    plane.copy_(1.0 + 0.2 * torch.randn(plane.shape))
                else:
                    plane.uniform_(0.1, 0.5)
        field.grid.aabb.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))
        for head in ('pos_deform', 'scales_deform', 'rotations_deform', 'opacity_deform',
                     'shs_deform'):
            last = getattr(field, head)[-1]
            last.weight.mul_(delta_scale)
            last.bias.mul_(delta_scale)
    return net.to(device)


def synthetic_canonical(n: int, device: torch.device, seed: int = 0) -> RawGaussians:
    """Draw n canonical Gaussians in the box [-1, 1]^3: 3-20 mm anisotropic, degree-3 SH."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=device)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device)

    log_scales = math.log(0.003) + (math.log(0.02) - math.log(0.003)) * rand(n, 3)
    sh = 0.15 * randn(n, 16, 3)
    sh[:, 0] = 0.8 * randn(n, 3)
    return RawGaussians(means=rand(n, 3) * 2.0 - 1.0, quats_raw=randn(n, 4),
                        log_scales=log_scales, opacity_logits=2.0 * randn(n), sh=sh)


def make_scene(canonical: RawGaussians, network: DeformationNetwork, deformation) -> object:
    """
    Make a FourDGaussiansScene over in-memory canonical Gaussians and network (no folder).

    Its at(t) runs the real Scene4D.at -> deform_raw -> activate path.
    """
    from st4r_ros.scene.fourdgs import FourDGaussiansScene

    return FourDGaussiansScene(canonical, network, deformation_factory=lambda _: deformation)


def look_at(eye, width=640, height=480, fov=60.0, target=(0.0, 0.0, 0.0)) -> Camera:
    return Camera.look_at(eye=eye, target=target, up=(0.0, 0.0, 1.0), fov_x_deg=fov,
                          width=width, height=height)


# ------------------------------------------------------------------------------------------
# Step 1: fused deformation parity
# ------------------------------------------------------------------------------------------


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def step_fused_parity(report: Report, device: torch.device, n: int) -> None:
    from st4r_ros.scene.deformation_fused import FusedDeformation

    rows = report.data['fused_parity']
    for name in ('hypernerf', 'dnerf', 'all-heads'):
        net = hypernerf_network(device, seed=1, delta_scale=1.0, name=name)
        with torch.no_grad():  # random planes everywhere (time planes too): t matters
            for param in net.deformation_net.grid.grids.parameters():
                param.uniform_(0.1, 1.0)
        raw = synthetic_canonical(n, device, seed=2)
        raw = dataclasses.replace(raw, means=raw.means * 1.1)  # 10% outside the aabb: border
        with torch.no_grad():
            refs = {t: net(raw, t) for t in PARITY_TIMES}
            feats = {t: net.grid_features(raw.means, t) for t in PARITY_TIMES}
        for mlp, precision in FUSED_VARIANTS:
            for graph in (False, True):
                label = f"{name} mlp={mlp} {precision} {'graph' if graph else 'eager'}"
                row = {'config': name, 'mlp': mlp, 'precision': precision, 'graph': graph, 'n': n}
                try:
                    fused = FusedDeformation.from_network(net, mlp=mlp, precision=precision,
                                                          cuda_graph=graph)
                    worst: Dict[str, float] = {}
                    worst_rel: Dict[str, float] = {}
                    within = True
                    feat_err = 0.0
                    for t in PARITY_TIMES:
                        got = fused(raw, t)
                        if precision == 'fp32' and not graph:
                            feat_err = max(feat_err, max_abs(fused.grid_features(raw.means, t),
                                                             feats[t]))
                        for field in FIELDS:
                            err = max_abs(getattr(got, field), getattr(refs[t], field))
                            delta = max_abs(getattr(refs[t], field), getattr(raw, field))
                            worst[field] = max(worst.get(field, 0.0), err)
                            if precision != 'fp32':
                                within &= err <= REL_TOL[precision] * delta + ABS_FLOOR[precision]
                            if delta > 0:
                                worst_rel[field] = max(worst_rel.get(field, 0.0), err / delta)
                    row.update(max_abs_diff=worst, max_rel_to_delta=worst_rel)
                    if precision == 'fp32':
                        row['features_max_abs_diff'] = feat_err
                        ok = all(v <= FP32_ATOL for v in worst.values()) and feat_err <= 1e-5
                    else:
                        ok = within
                    row['ok'] = ok
                    log(f"   {label}: means {worst['means']:.1e} "
                        f"log_scales {worst['log_scales']:.1e} quats {worst['quats_raw']:.1e} "
                        f'rel {max(worst_rel.values(), default=0):.1e} '
                        f"{'OK' if ok else 'FAIL'}")
                except Exception as exc:  # noqa: BLE001
                    row.update(ok=False, error=f'{type(exc).__name__}: {exc}',
                               traceback=traceback.format_exc()[-2000:])
                    log(f"   {label}: ERROR {row['error']}")
                rows.append(row)
                report.save()
        del net, raw, refs, feats
        if device.type == 'cuda':
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------
# Step 2: render parity, torch backend vs gsplat
# ------------------------------------------------------------------------------------------


def parity_scene(kind: str, device: torch.device, seed: int, shrink: int = 1) -> Gaussians:
    """Random scenes around the origin with different scales and opacities (n / shrink)."""
    gen = torch.Generator().manual_seed(seed)
    spec = {
        # n, log10 scale range, opacity logit mean/std, extent of the cloud
        'small-mixed': (20_000, (-2.5, -1.5), (0.0, 2.0), 1.0),
        'large-opaque': (3_000, (-1.5, -0.6), (4.0, 1.0), 1.0),
        'faint-wide': (30_000, (-2.2, -0.9), (-2.5, 1.0), 1.5),
    }[kind]
    n, (lo, hi), (mu, sd), extent = spec
    n //= shrink
    means = (torch.rand(n, 3, generator=gen) * 2 - 1) * extent
    scales = 10 ** (lo + (hi - lo) * torch.rand(n, 3, generator=gen))
    scales[: n // 5, 0] *= 0.1  # some flat (needle / disc) Gaussians
    quats = F.normalize(torch.randn(n, 4, generator=gen), dim=1)
    opacities = torch.sigmoid(mu + sd * torch.randn(n, generator=gen))
    sh = 0.3 * torch.randn(n, 16, 3, generator=gen)
    return Gaussians(means=means, quats=quats, scales=scales, opacities=opacities,
                     sh=sh).to(device)


def parity_cameras(shrink: int = 1) -> Dict[str, Camera]:
    """Return the three parity cameras, named by their full size, sides divided by shrink."""
    side = look_at((0.0, -3.0, 1.0), width=640 // shrink, height=480 // shrink)
    fx, fy, cx, cy = (v / shrink for v in (300.0, 340.0, 130.0, 110.0))
    offset = Camera.from_intrinsics(fx, fy, cx, cy, 320 // shrink, 240 // shrink,
                                    world_to_cam=look_at((2.2, 1.5, 0.8)).world_to_cam)
    # close: Gaussians off-screen / near
    close = look_at((0.3, -1.2, 0.4), width=480 // shrink, height=360 // shrink, fov=75.0)
    return {'640x480': side, '320x240-offset': offset, '480x360-close': close}


def edge_mask(alpha_ref: torch.Tensor) -> torch.Tensor:
    """
    Pixels within one pixel of a silhouette edge, [H, W] bool.

    A pixel is covered when its accumulated alpha >= 1/255 (a Gaussian below gsplat's 1/255
    threshold contributes nothing, so coverage is exactly alpha > 0). Edge pixels are those
    whose 3x3 neighbourhood holds both covered and uncovered pixels: there, a tiny difference
    in a Gaussian's extent or threshold decision legitimately flips the result.
    """
    covered = (alpha_ref[..., 0] >= ALPHA_MIN).float()[None, None]
    any_covered = F.max_pool2d(covered, 3, stride=1, padding=1)
    any_empty = F.max_pool2d(1.0 - covered, 3, stride=1, padding=1)
    return ((any_covered > 0) & (any_empty > 0))[0, 0]


def diff_stats(got: torch.Tensor, want: torch.Tensor, edges: torch.Tensor) -> Dict[str, float]:
    diff = (got.float() - want.float()).abs().amax(dim=-1)  # [H, W], worst channel
    interior = diff[~edges]
    return {
        'max': float(diff.max()),
        'mean': float(diff.mean()),
        'max_away_from_edges': float(interior.max()) if interior.numel() else 0.0,
        'p999_away_from_edges': float(torch.quantile(interior.flatten()[:1_000_000], 0.999))
        if interior.numel() else 0.0,
        'pixels_over_1e-3': int((diff > 1e-3).sum()),
    }


# The test files with CUDA-only cases, plus the loaders' and CLI's, run again on the GPU machine.
GPU_TESTS = ('tests/test_deformation_fused.py', 'tests/test_render_parity_gpu.py',
             'tests/test_fourdgs.py', 'tests/test_cli.py', 'tests/test_render_torch.py')


def step_render_parity(report: Report, device: torch.device, other: str = 'gsplat',
                       smoke: bool = False) -> None:
    """Compare the torch backend with ``other`` (gsplat; torch itself in a smoke run on a CPU)."""
    rows = report.data['render_parity']
    for s, kind in enumerate(('small-mixed', 'large-opaque', 'faint-wide')):
        gaussians = parity_scene(kind, device, seed=10 + s,
                                 shrink=SMOKE_PARITY_SHRINK if smoke else 1)
        feature = torch.rand(len(gaussians), 1,
                             generator=torch.Generator().manual_seed(s)).to(device)
        for cam_name, camera in parity_cameras(SMOKE_IMAGE_SHRINK if smoke else 1).items():
            for mode in ('feature1', 'rgb'):
                features = feature if mode == 'feature1' else None
                row = {'scene': kind, 'n': len(gaussians), 'camera': cam_name, 'mode': mode}
                try:
                    start = time.perf_counter()
                    ref = render(gaussians, camera, features, backend='torch')
                    sync(device)
                    row['torch_s'] = round(time.perf_counter() - start, 3)
                    out = render(gaussians, camera, features, backend=other)
                    edges = edge_mask(ref.alpha)
                    row['edge_fraction'] = round(float(edges.float().mean()), 4)
                    row['covered_fraction'] = round(
                        float((ref.alpha >= ALPHA_MIN).float().mean()), 4)
                    row['image'] = diff_stats(out.image, ref.image, edges)
                    row['alpha'] = diff_stats(out.alpha, ref.alpha, edges)
                    covered = (ref.alpha[..., 0] > 0.5) & (out.alpha[..., 0] > 0.5) & ~edges
                    depth_diff = (out.depth - ref.depth).abs()[..., 0][covered]
                    row['depth_max_where_alpha_gt_0.5'] = (
                        float(depth_diff.max()) if depth_diff.numel() else 0.0)
                    image, alpha = row['image'], row['alpha']
                    log(f"   {kind:12s} {cam_name:14s} {mode:8s} image max {image['max']:.1e} "
                        f"mean {image['mean']:.1e} "
                        f"away-from-edges {image['max_away_from_edges']:.1e} | "
                        f"alpha max {alpha['max']:.1e} away {alpha['max_away_from_edges']:.1e} "
                        f"(torch {row['torch_s']}s)")
                except Exception as exc:  # noqa: BLE001
                    row.update(error=f'{type(exc).__name__}: {exc}',
                               traceback=traceback.format_exc()[-2000:])
                    log(f"   {kind} {cam_name} {mode}: ERROR {row['error']}")
                rows.append(row)
                report.save()


# ------------------------------------------------------------------------------------------
# Step 3: timings
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def matmul_precision(mode: str):
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(mode)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class Timer:
    """Records one timing row per call; failures become rows with an error, never exceptions."""

    def __init__(self, report: Report, device: torch.device, iters: int, warmup: int) -> None:
        self.report, self.device, self.iters, self.warmup = report, device, iters, warmup

    def __call__(self, group: str, name: str, n: int, fn: Callable[[int], object],
                 memory: bool = False, **extra) -> Optional[Dict]:
        row = {'group': group, 'name': name, 'n': n, **extra}
        try:
            if memory and self.device.type == 'cuda':
                torch.cuda.synchronize()
                baseline = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            row.update(time_frames(fn, self.device, self.iters, self.warmup))
            if memory and self.device.type == 'cuda':
                peak = torch.cuda.max_memory_allocated()
                mem = {'n': n, 'name': name, 'peak_mb': round(peak / 2**20, 1),
                       'baseline_mb': round(baseline / 2**20, 1),
                       'extra_mb': round((peak - baseline) / 2**20, 1)}
                self.report.data['memory'].append(mem)
                row['peak_mb'] = mem['peak_mb']
            log(f"   {group:7s} {name:34s} N={n:>9,d}  median {row['median_ms']:8.3f} ms "
                f"(p10 {row['p10_ms']:.3f}, p90 {row['p90_ms']:.3f})"
                + (f"  peak {row['peak_mb']:.0f} MB" if 'peak_mb' in row else ''))
        except Exception as exc:  # noqa: BLE001
            row.update(error=f'{type(exc).__name__}: {exc}',
                       traceback=traceback.format_exc()[-2000:])
            log(f"   {group} {name} N={n}: ERROR {row['error']}")
            if self.device.type == 'cuda':
                torch.cuda.empty_cache()
        self.report.data['timings'].append(row)
        self.report.save()
        return row


def step_timings_for_n(report: Report, timer: Timer, device: torch.device, n: int,
                       net: DeformationNetwork, render_backend: str, fused: bool = True,
                       shrink: int = 1) -> None:
    """Time N Gaussians; without ``fused`` (a smoke run without triton) the reference only."""
    canonical = synthetic_canonical(n, device, seed=n % 9973)
    feature = torch.rand(n, 1, device=device)
    camera = look_at((0.0, -3.2, 1.2), width=640 // shrink, height=480 // shrink)
    camera_hd = look_at((0.0, -3.2, 1.2), width=1280 // shrink, height=720 // shrink)

    # Deformation alone.
    with torch.no_grad():
        timer('deform', 'reference fp32', n, lambda i: net(canonical, frame_time(i)))
        with matmul_precision('high'):
            timer('deform', 'reference tf32', n, lambda i: net(canonical, frame_time(i)))
    if fused:
        time_fused_deformation(timer, n, net, canonical)

    # Render alone (the canonical state).
    gaussians = canonical.activate()
    timer('render', 'render 1ch 640x480', n,
          lambda i: render(gaussians, camera, feature, backend=render_backend))
    timer('render', 'render RGB 1280x720', n,
          lambda i: render(gaussians, camera_hd, None, backend=render_backend))
    time_end_to_end(timer, device, n, net, canonical, fused, feature, (camera, camera_hd),
                    render_backend)


def time_fused_deformation(timer: Timer, n: int, net: DeformationNetwork,
                           canonical: RawGaussians) -> None:
    """Time the Triton feature kernel alone, then every fused variant, eager and graph."""
    from st4r_ros.scene.deformation_fused import FusedDeformation

    fused_fp32 = FusedDeformation.from_network(net)
    timer('deform', 'fused features only (Triton)', n,
          lambda i: fused_fp32.grid_features(canonical.means, frame_time(i)))
    for mlp, precision in FUSED_VARIANTS:
        for graph in (False, True):
            name = f"fused {mlp}-mlp {precision} {'graph' if graph else 'eager'}"
            try:
                fused = FusedDeformation.from_network(net, mlp=mlp, precision=precision,
                                                      cuda_graph=graph)
            except Exception as exc:  # noqa: BLE001
                timer.report.data['timings'].append({'group': 'deform', 'name': name, 'n': n,
                                                     'error': f'{type(exc).__name__}: {exc}'})
                continue
            timer('deform', name, n, lambda i, f=fused: f(canonical, frame_time(i)),
                  mlp=mlp, precision=precision, graph=graph)


def time_end_to_end(timer: Timer, device: torch.device, n: int, net: DeformationNetwork,
                    canonical: RawGaussians, fused: bool, feature: torch.Tensor,
                    cameras, render_backend: str) -> None:
    """
    Time Scene4D.at(t) -> render through the public path, t changing every frame.

    The cached and RGB figures go with the CUDA default (AutoDeformation), or with the
    reference network when the fused one is left out.
    """
    from st4r_ros.scene.deformation_fused import FusedDeformation

    camera, camera_hd = cameras
    e2e_variants = [('reference fp32', lambda: net)] + [
        (f'fused {mlp}-mlp {precision} graph',
         lambda mlp=mlp, precision=precision: FusedDeformation.from_network(
             net, mlp=mlp, precision=precision, cuda_graph=True))
        for mlp, precision in (FUSED_VARIANTS if fused else [])
    ]
    default = 'fused triton-mlp tf32 graph' if fused else 'reference fp32'
    for name, build in e2e_variants:
        try:
            scene = make_scene(canonical, net, build())
        except Exception as exc:  # noqa: BLE001
            timer.report.data['timings'].append({'group': 'e2e', 'name': name, 'n': n,
                                                 'error': f'{type(exc).__name__}: {exc}'})
            continue

        def frame(i, scene=scene):
            return render(scene.at(frame_time(i), device), camera, feature, backend=render_backend)

        row = timer('e2e', f'e2e 1ch {name}', n, frame, memory=True, variant=name)
        if row and 'median_ms' in row and n in TARGETS_MS:
            row['target_ms'] = TARGETS_MS[n]
            row['meets_target'] = row['median_ms'] <= TARGETS_MS[n]
        if name == default:
            timer('e2e', 'e2e 1ch cached (same t)', n,
                  lambda i, scene=scene: render(scene.at(0.5, device), camera, feature,
                                                backend=render_backend))
            timer('e2e', f'e2e RGB 1280x720 {name}', n,
                  lambda i, scene=scene: render(scene.at(frame_time(i), device), camera_hd, None,
                                                backend=render_backend))
        scene = None  # frees a captured graph before the next variant is built
        if device.type == 'cuda':
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------
# Step 4: tuning sweep of the one-kernel path
# ------------------------------------------------------------------------------------------


def step_tuning(report: Report, timer: Timer, device: torch.device, n: int,
                net: DeformationNetwork, deadline: float) -> None:
    from st4r_ros.scene.deformation_fused import FusedDeformation

    canonical = synthetic_canonical(n, device, seed=5)
    means = canonical.means.contiguous()
    t_dev = torch.full((1,), 0.4, device=device)
    configs = [(64, 4, 32), (64, 8, 32), (32, 4, 32), (128, 8, 32), (64, 8, 16), (64, 8, 64)]
    for precision in ('bf16', 'tf32', 'fp32'):
        for block, warps, chunk in configs:
            if time.perf_counter() > deadline:
                log('   tuning: out of time, stopping')
                return
            fused = FusedDeformation.from_network(net, mlp='triton', precision=precision,
                                                  mlp_block=block, mlp_warps=warps,
                                                  mlp_chunk=chunk)
            out = fused.pack_base(canonical)  # accumulated into again and again: timing only
            timer('tuning', f'triton-mlp {precision} block={block} warps={warps} chunk={chunk}',
                  n, lambda i, f=fused, o=out: f.run_packed(means, t_dev, o),
                  precision=precision, block=block, warps=warps, chunk=chunk)
    for block, warps in ((32, 4), (64, 8), (128, 16), (128, 8), (256, 16)):
        if time.perf_counter() > deadline:
            log('   tuning: out of time, stopping')
            return
        fused = FusedDeformation.from_network(net, block=block, block_warps=warps)
        timer('tuning', f'features kernel block={block} warps={warps}', n,
              lambda i, f=fused: f.grid_features(means, t_dev), block=block, warps=warps)


# ------------------------------------------------------------------------------------------
# Summary table
# ------------------------------------------------------------------------------------------


def summary(report: Report) -> str:
    rows = [r for r in report.data['timings'] if 'median_ms' in r]
    by = {(r['name'], r['n']): r['median_ms'] for r in rows}
    ns = sorted({r['n'] for r in rows if r['group'] != 'tuning'})
    lines = []

    def best(prefix: str, n: int, group: str) -> str:
        cands = [(r['median_ms'], r['name']) for r in rows
                 if r['n'] == n and r['group'] == group and r['name'].startswith(prefix)]
        if not cands:
            return '-'
        ms, name = min(cands)
        return f"{ms:.3f} ({name.replace(prefix, '').strip()})"

    def get(name: str, n: int) -> str:
        v = by.get((name, n))
        return f'{v:.3f}' if v is not None else '-'

    lines.append('TIMINGS (median ms per frame)')
    for n in ns:
        lines.append(f'N={n:,}')
        lines.append(f"  deform  reference fp32 {get('reference fp32', n)}"
                     f" | tf32 {get('reference tf32', n)}"
                     f" | features only {get('fused features only (Triton)', n)}")
        for precision in ('fp32', 'tf32', 'bf16'):
            cells = []
            for mlp in ('torch', 'triton'):
                cells.append(f"{mlp}-mlp eager {get(f'fused {mlp}-mlp {precision} eager', n)}"
                             f" graph {get(f'fused {mlp}-mlp {precision} graph', n)}")
            lines.append(f'  fused {precision}: ' + ' | '.join(cells))
        lines.append(f"  render  1ch 640x480 {get('render 1ch 640x480', n)} | RGB 1280x720 "
                     f"{get('render RGB 1280x720', n)}")
        lines.append(f"  e2e 1ch reference {get('e2e 1ch reference fp32', n)} | best fused "
                     f"{best('e2e 1ch fused', n, 'e2e')}"
                     f" | cached {get('e2e 1ch cached (same t)', n)}"
                     f" | RGB720 default {get('e2e RGB 1280x720 fused triton-mlp tf32 graph', n)}")
        if n in TARGETS_MS:
            verdicts = [f"{r['variant'].replace('fused ', '')}: "
                        f"{'PASS' if r['meets_target'] else 'miss'}"
                        for r in rows if r['n'] == n and 'meets_target' in r]
            lines.append(f'  target <= {TARGETS_MS[n]} ms: ' + ', '.join(verdicts))
        mems = [m for m in report.data['memory'] if m['n'] == n]
        if mems:
            lines.append('  peak MB: ' + ', '.join(
                f"{m['name'].replace('e2e 1ch ', '')} {m['peak_mb']:.0f}" for m in mems))
    fp = report.data['fused_parity']
    if fp:
        bad = [f"{r['config']}/{r['mlp']}/{r['precision']}/{'graph' if r['graph'] else 'eager'}"
               for r in fp if not r.get('ok')]
        worst32 = max((max(r['max_abs_diff'].values()) for r in fp
                       if r.get('precision') == 'fp32' and 'max_abs_diff' in r),
                      default=float('nan'))
        lines.append(f'FUSED PARITY: {len(fp) - len(bad)}/{len(fp)} ok; '
                     f'worst fp32 abs diff {worst32:.2e}'
                     + (f"; FAILED: {', '.join(bad)}" if bad else ''))
    rp = [r for r in report.data['render_parity'] if 'image' in r]
    if rp:
        for mode in ('feature1', 'rgb'):
            sel = [r for r in rp if r['mode'] == mode]
            if sel:
                lines.append(
                    f"RENDER PARITY {mode}: image max {max(r['image']['max'] for r in sel):.2e}, "
                    f"mean {max(r['image']['mean'] for r in sel):.2e}, away from edges "
                    f"{max(r['image']['max_away_from_edges'] for r in sel):.2e} (p99.9 "
                    f"{max(r['image']['p999_away_from_edges'] for r in sel):.2e}); alpha max "
                    f"{max(r['alpha']['max'] for r in sel):.2e}, away "
                    f"{max(r['alpha']['max_away_from_edges'] for r in sel):.2e}")
    errs = [r for r in report.data['render_parity'] if 'error' in r]
    if errs:
        lines.append(f"RENDER PARITY errors: {len(errs)} (first: {errs[0]['error']})")
    tun = [r for r in rows if r['group'] == 'tuning']
    if tun:
        for precision in ('bf16', 'tf32', 'fp32'):
            sel = [r for r in tun if r.get('precision') == precision]
            if sel:
                b = min(sel, key=lambda r: r['median_ms'])
                lines.append(f"TUNING triton-mlp {precision} best: {b['name']} "
                             f"{b['median_ms']:.3f} ms")
    steps = ', '.join(f"{k}={v.get('status')}" for k, v in report.data['steps'].items())
    lines.append(f'STEPS: {steps}')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def environment(device: torch.device) -> Dict:
    meta = {'python': platform.python_version(), 'torch': torch.__version__,
            'cuda': torch.version.cuda, 'device': str(device), 'plyfile_stubbed': PLYFILE_STUBBED,
            'started': time.strftime('%Y-%m-%d %H:%M:%S'),
            'TRITON_INTERPRET': os.environ.get('TRITON_INTERPRET')}
    if device.type == 'cuda':
        meta['gpu'] = torch.cuda.get_device_name(device)
        memory = torch.cuda.get_device_properties(device).total_memory
        meta['gpu_memory_gb'] = round(memory / 2**30, 1)
    for module in ('triton', 'gsplat'):
        try:
            meta[module] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001
            meta[module] = f'unavailable: {exc}'
    return meta


def smoke_unavailable(device: torch.device) -> Dict[str, str]:
    """Return what a smoke run cannot run here ('triton', 'gsplat') and why."""
    from st4r_ros.scene.deformation_fused import triton_available

    missing = {}
    if not triton_available():
        missing['triton'] = 'triton is not installed'
    elif device.type != 'cuda' and os.environ.get('TRITON_INTERPRET') != '1':
        missing['triton'] = 'no CUDA device, and TRITON_INTERPRET is not 1'
    if device.type != 'cuda':
        missing['gsplat'] = 'gsplat needs a CUDA device'
    elif importlib.util.find_spec('gsplat') is None:
        missing['gsplat'] = 'gsplat is not installed'
    for part, reason in missing.items():
        log(f'smoke: skipping what needs {part}: {reason}')
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out', default=os.environ.get('OUT', '.'),
                        help='folder for gpu_suite.json')
    parser.add_argument('--sizes', default='100000,300000,1000000,3000000')
    parser.add_argument('--iters', type=int, default=50, help='timed frames per figure (median)')
    parser.add_argument('--warmup', type=int, default=8)
    parser.add_argument('--parity-n', type=int, default=300_000)
    parser.add_argument('--budget-s', type=float, default=400.0,
                        help='optional steps (tuning, pytest) are skipped past this many seconds')
    parser.add_argument('--skip', default='', help='comma-separated steps to skip: '
                        'fused_parity,render_parity,timings,tuning,pytest')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny sizes and few frames, CPU allowed: checks the script only')
    args = parser.parse_args()

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / 'gpu_suite.json')
    # An explicit index, so that tensors' devices compare equal to it (cuda != cuda:0).
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device('cpu')
    sizes = [int(s) for s in args.sizes.split(',') if s]
    skip = set(filter(None, args.skip.split(',')))
    render_backend, missing = 'gsplat', {}
    if args.smoke:
        sizes, args.iters, args.warmup, args.parity_n = [2_000], 3, 1, 500
        missing = smoke_unavailable(device)
        if 'gsplat' in missing:
            render_backend = 'torch'
    elif device.type != 'cuda':
        report.data['meta'] = environment(device)
        report.data['meta']['fatal'] = 'no CUDA device: this suite needs a GPU (or --smoke)'
        report.save()
        log(report.data['meta']['fatal'])
        return 2
    report.data['meta'] = environment(device)
    report.data['meta'].update(sizes=sizes, iters=args.iters, warmup=args.warmup,
                               parity_n=args.parity_n, smoke=args.smoke,
                               smoke_skipped=missing)
    report.save()
    log(f"device {report.data['meta'].get('gpu', device)}; torch {torch.__version__}; "
        f"triton {report.data['meta']['triton']}; gsplat {report.data['meta']['gsplat']}")
    deadline = T0 + args.budget_s

    if 'fused_parity' not in skip and 'triton' in missing:
        report.skip('fused_parity', missing['triton'])
    elif 'fused_parity' not in skip:
        with report.step('fused_parity'):
            step_fused_parity(report, device, args.parity_n)

    if 'render_parity' not in skip:
        with report.step('render_parity'):
            step_render_parity(report, device, 'torch' if 'gsplat' in missing else 'gsplat',
                               args.smoke)

    timer = Timer(report, device, args.iters, args.warmup)
    net = None
    if 'timings' not in skip:
        with report.step('timings'):
            net = hypernerf_network(device)
            for n in sizes:
                with report.step(f'timings N={n}'):
                    if time.perf_counter() > deadline:
                        raise TimeoutError('skipped: time budget spent')
                    step_timings_for_n(report, timer, device, n, net, render_backend,
                                       'triton' not in missing,
                                       SMOKE_IMAGE_SHRINK if args.smoke else 1)

    if 'tuning' not in skip and 'triton' in missing:
        report.skip('tuning', missing['triton'])
    elif 'tuning' not in skip:
        with report.step('tuning'):
            if time.perf_counter() > deadline:
                raise TimeoutError('skipped: time budget spent')
            net = net or hypernerf_network(device)
            step_tuning(report, timer, device, 2_000 if args.smoke else 1_000_000, net,
                        deadline + 30)

    if 'pytest' not in skip and not args.smoke:
        with report.step('pytest') as entry:
            remaining = T0 + args.budget_s + 50 - time.perf_counter()
            if remaining < 30:
                raise TimeoutError('skipped: time budget spent')
            proc = subprocess.run(
                [sys.executable, '-m', 'pytest', '-q', '-rs', *GPU_TESTS],
                cwd=ROOT, capture_output=True, text=True, timeout=remaining)
            entry['returncode'] = proc.returncode
            entry['output_tail'] = (proc.stdout + proc.stderr)[-3000:]
            (out_dir / 'pytest.txt').write_text(proc.stdout + proc.stderr)
            log('   pytest: ' + (proc.stdout.strip().splitlines() or ['(no output)'])[-1])
            if proc.returncode != 0:
                raise RuntimeError(f'pytest exited {proc.returncode}')

    table = summary(report)
    report.data['summary'] = table
    report.save()
    print('\n' + table, flush=True)
    log(f'wrote {report.path}')
    if args.smoke and report.errors():
        log(f'SMOKE FAILED: {report.errors()} steps or rows recorded an error')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
