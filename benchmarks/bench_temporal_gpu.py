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


def time_ms(call, repeats: int) -> list:
    """Sorted synchronised wall times of ``call()`` in ms, after 20 warm-up calls."""
    samples = []
    for _ in range(repeats + 20):
        torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        samples.append(1000 * (time.perf_counter() - started))
    return sorted(samples[20:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--instances', type=int, default=32)
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--repeats', type=int, default=1000)
    args = parser.parse_args()
    layer = make_layer(args.instances, args.frames, args.dim)
    query = layer.cache.features[0, 0 % 7 + 5].clone()
    reference = layer.intervals(1, query)
    gpu = layer.to('cuda')
    answer = gpu.intervals(1, query.cuda())
    samples = time_ms(lambda: gpu.intervals(7, query.cuda()), args.repeats)
    words = torch.randn(1, 24, args.dim, device='cuda')
    said = TextFeatures(words, torch.ones(1, 24, dtype=torch.bool, device='cuda'), words[:, 0],
                        (False,), ('query',))
    state = time_ms(lambda: gpu.state_of(said), args.repeats)
    print(json.dumps({'frames': args.frames, 'instances': args.instances, 'dim': args.dim,
                      'runs_match_cpu': answer.runs == reference.runs,
                      'runs': len(gpu.intervals(7, query.cuda()).runs),
                      'median_ms': samples[len(samples) // 2],
                      'p99_ms': samples[int(0.99 * len(samples))],
                      'state_of_median_ms': state[len(state) // 2],
                      'state_of_p99_ms': state[int(0.99 * len(state))],
                      'device': torch.cuda.get_device_name()}))


if __name__ == '__main__':
    main()
