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
Time the pure-torch rasterizer on a random but scene-like cloud of Gaussians.

    python benchmarks/bench_torch_render.py --n 30000 --width 320 --height 240
    python benchmarks/bench_torch_render.py --smoke

The cloud fills a 60-degree view between 2 m and 8 m with anisotropic Gaussians of 1-8 cm
(a few pixels to a few tiles on screen), random orientations, opacities and degree-3 SH, which
is roughly what a trained 3DGS scene looks like from inside. Prints the median wall time of
``--runs`` renders after one warm-up, with the work sizes that drive it.

Measure on an otherwise idle machine: with every core busy elsewhere, torch's OpenMP threads
wait on each other at every operation and a render can take ten times longer (``--threads 1``
shows the single-core figure).

``--smoke`` checks the script: 500 Gaussians, 64x48, two timed renders (plus the warm-up), one
thread.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from st4r_ros.render.camera import Camera
from st4r_ros.render.torch_backend import bin_to_tiles, project, render_torch, TILE_SIZE
from st4r_ros.scene.gaussians import Gaussians
import torch


def random_scene(n: int, seed: int = 0) -> Gaussians:
    """Draw n Gaussians in front of an identity camera (z forward), [2, 8] m deep."""
    gen = torch.Generator().manual_seed(seed)
    depth = 2.0 + 6.0 * torch.rand(n, generator=gen)
    half_fov = math.tan(math.radians(30.0))
    lateral = (2.0 * torch.rand(n, 2, generator=gen) - 1.0) * half_fov * depth[:, None]
    means = torch.cat([lateral[:, :1], 0.75 * lateral[:, 1:], depth[:, None]], dim=1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1)
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.01), math.log(0.08), generator=gen))
    opacities = torch.sigmoid(torch.randn(n, generator=gen) * 2.0)
    sh = 0.3 * torch.randn(n, 16, 3, generator=gen)
    return Gaussians(means=means, quats=quats, scales=scales, opacities=opacities, sh=sh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--n', type=int, default=30000, help='number of Gaussians')
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--height', type=int, default=240)
    parser.add_argument('--runs', type=int, default=7, help='timed renders (median reported)')
    parser.add_argument('--channels', type=int, default=0, help='feature channels; 0 = SH RGB')
    parser.add_argument('--threads', type=int, default=0,
                        help="torch threads; 0 = torch's default")
    parser.add_argument('--smoke', action='store_true',
                        help='tiny cloud and image, two runs: checks the script only')
    args = parser.parse_args()
    if args.smoke:
        args.n, args.width, args.height, args.runs, args.threads = 500, 64, 48, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    gaussians = random_scene(args.n)
    camera = Camera.from_fov(60.0, args.width, args.height)
    features = torch.rand(args.n, args.channels) if args.channels else None
    background = torch.zeros(args.channels or 3)

    splats = project(gaussians, camera)
    tiles_x = -(-args.width // TILE_SIZE)
    tiles_y = -(-args.height // TILE_SIZE)
    isects = len(bin_to_tiles(splats, tiles_x, tiles_y)[0])
    render_torch(gaussians, camera, features, background)  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        out = render_torch(gaussians, camera, features, background)
        times.append(time.perf_counter() - start)
    print(
        f"N={args.n} {args.width}x{args.height} channels={args.channels or 'RGB(SH3)'} "
        f'threads={torch.get_num_threads()} visible={len(splats.index)} '
        f'tile_intersections={isects} mean_alpha={out.alpha.mean():.3f}'
    )
    print(f'median {statistics.median(times):.4f} s over {args.runs} runs '
          f'(min {min(times):.4f}, max {max(times):.4f})')


if __name__ == '__main__':
    main()
