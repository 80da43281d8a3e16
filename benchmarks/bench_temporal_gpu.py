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
Time an interval query over a state cache once the instance is known (no rendering).

A state cache of K instances x T frames x D dims with random unit features and a few runs of
one state per instance (serving as both the sentence cache and the state features); the query
is that state. Checks that the CUDA answer equals the CPU one, then times
TemporalLayer.intervals (scores, smoothing, threshold, runs) and, apart, TemporalLayer.state_of
for one query of 24 words (the query's state feature from its word features); synchronised.

Usage:
    PYTHONPATH=. python benchmarks/bench_temporal_gpu.py [--frames 300] [--instances 32]
    PYTHONPATH=. python benchmarks/bench_temporal_gpu.py --smoke

``--smoke`` checks the script, not the GPU: 8 instances x 30 frames x 16 dims, three timed
calls after two warm-ups, on the CPU (the "device" answer is then a second CPU copy's).
"""

import argparse
import json
import time

from st4r_ros.temporal.intervals import IntervalParams
from st4r_ros.temporal.layer import TemporalLayer
from st4r_ros.temporal.routing import Router
from st4r_ros.temporal.state_cache import StateCache
from st4r_ros.text import TextFeatures
import torch
import torch.nn.functional as F


def make_layer(instances: int, frames: int, dim: int) -> TemporalLayer:
    generator = torch.Generator().manual_seed(0)
    rest, state = F.normalize(torch.randn(2, dim, generator=generator), dim=-1)
    features = rest.repeat(instances, frames, 1)
    for k in range(instances):
        for start in range(k % 7, frames, 60):
            features[k, start:start + 20] = state
    features = F.normalize(features + 0.05 * torch.randn(features.shape, generator=generator),
                           dim=-1)
    cache = StateCache(torch.arange(1, instances + 1), torch.linspace(0, 1, frames), features,
                       torch.ones(instances, frames, dtype=torch.bool))
    router = Router(torch.randn(dim, generator=generator), 0.0)
    return TemporalLayer(cache, router, cache, IntervalParams(level=0.0))


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(call, repeats: int, device: torch.device, warmup: int = 20) -> list:
    """Sorted synchronised wall times of ``call()`` in ms, after ``warmup`` calls."""
    samples = []
    for _ in range(repeats + warmup):
        synchronize(device)
        started = time.perf_counter()
        call()
        synchronize(device)
        samples.append(1000 * (time.perf_counter() - started))
    return sorted(samples[warmup:])


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` replaces the sizes with tiny ones on the CPU."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--instances', type=int, default=32)
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--repeats', type=int, default=1000)
    parser.add_argument('--device', default='cuda', help='cpu only to check the script')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny cache, few calls, CPU: checks the script only')
    args = parser.parse_args()
    args.warmup = 20
    if args.smoke:
        args.frames, args.instances, args.dim, args.repeats = 30, 8, 16, 3
        args.warmup, args.device = 2, 'cpu'
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    layer = make_layer(args.instances, args.frames, args.dim)
    query = layer.cache.features[0, 0 % 7 + 5].clone()
    reference = layer.intervals(1, query)
    moved = layer.to(device)
    answer = moved.intervals(1, query.to(device))
    samples = time_ms(lambda: moved.intervals(7, query.to(device)), args.repeats, device,
                      args.warmup)
    words = torch.randn(1, 24, args.dim, device=device)
    said = TextFeatures(words, torch.ones(1, 24, dtype=torch.bool, device=device), words[:, 0],
                        (False,), ('query',))
    state = time_ms(lambda: moved.state_of(said), args.repeats, device, args.warmup)
    print(json.dumps({'frames': args.frames, 'instances': args.instances, 'dim': args.dim,
                      'runs_match_cpu': answer.runs == reference.runs,
                      'runs': len(moved.intervals(7, query.to(device)).runs),
                      'median_ms': samples[len(samples) // 2],
                      'p99_ms': samples[int(0.99 * len(samples))],
                      'state_of_median_ms': state[len(state) // 2],
                      'state_of_p99_ms': state[int(0.99 * len(state))],
                      'device': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                                 else 'cpu'),
                      'smoke': args.smoke}))


if __name__ == '__main__':
    main()
