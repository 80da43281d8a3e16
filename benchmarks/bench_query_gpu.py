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
Referring-query latency on a GPU, through the public QueryEngine.

    python3 benchmarks/bench_query_gpu.py --out DIR [--n 300000] [--text-model FOLDER]
    python3 benchmarks/bench_query_gpu.py --smoke --out DIR

``--smoke`` checks the script, not the GPU: 2,000 Gaussians, a 64x48 camera, three timed
queries per figure after one warm-up, on the CPU, with the packaged MiniLM unless
``--text-model`` names another encoder.

Scene: N canonical Gaussians with the HyperNeRF-config deformation network (random weights,
as in gpu_suite.py), deformed by the CUDA default (fused kernels). Field: a ReferringField of
the default size (d = 16, h = 128) with random weights: its cost does not depend on what it
learnt. Text: the encoder in ``--text-model``; a folder that holds a config and tokenizer but
no weights gets randomly initialised weights of that architecture (same cost as the trained
model), which is how the MiniLM-L6 architecture is timed on a machine that cannot receive the
90 MB weights.

Figures (CUDA events / synchronised wall clock, medians and p99 over many queries):
- text: encoding one expression;
- field: relevance of one expression for all N Gaussians at a fixed time (scene cached);
- query (where): text + field + relevance + target selection, no camera, fixed time;
- command -> result + cloud + first mask: `engine.query` with a 640x480 camera at a new scene
  time every query (deformation included), the target cloud copied to the host;
- mask updates: `engine.render_views(..., colour=False)` for a moving camera right after the
  answer (its relevance reused, as the node does for its current target);
- view updates: the same with the colour image, what the node renders per pose (mask and
  overlay from one rasterisation);
- query (where), guarded: the same query through an engine with a vocabulary guard
  (field/vocabulary.py; a vocabulary of the synthetic captions' words): the expression's words
  are judged once and cached, so this is the guard's cost in the steady state;
- query (where), guarded, new words: every query carries a word the guard has not judged yet
  ("... near crate17"), which it encodes before the field answers: the guard's cost at worst;
- text, compiled (CUDA only): encoding one expression after ``compile_for_queries``, as the
  node's ``compile_text_encoders`` runs it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

# Run as a script from a checkout: st4r_ros and gpu_suite import from the repository, so the
# imports below can only come after these lines (hence the noqa: E402).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))

from gpu_suite import frame_time, hypernerf_network, synthetic_canonical  # noqa: E402
from st4r_ros.engine import QueryEngine, QueryRequest  # noqa: E402
from st4r_ros.field.model import FieldConfig, ReferringField  # noqa: E402
from st4r_ros.field.vocabulary import build_vocabulary  # noqa: E402
from st4r_ros.render.camera import Camera  # noqa: E402
from st4r_ros.scene.fourdgs import FourDGaussiansScene  # noqa: E402
from st4r_ros.text import TextEncoder  # noqa: E402
import torch  # noqa: E402

EXPRESSION = 'the white sphere to the left of the red cube'
CAPTIONS = ('the white sphere', 'the red cube', 'a small blue torus behind the green cylinder',
            'the large yellow cuboid to the right of the white sphere')
CAMERA_SIZE = (640, 480)
SMOKE_CAMERA_SIZE = (64, 48)


def wall_ms(fn: Callable[[int], object], device: torch.device, iters: int,
            warmup: int = 10) -> Dict[str, float]:
    """Measure fn(i)'s synchronised wall-clock latency in ms: median, p99, min over ``iters``."""
    for i in range(warmup):
        fn(i)
    times: List[float] = []
    for i in range(warmup, warmup + iters):
        sync(device)
        start = time.perf_counter()
        fn(i)
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {'median_ms': round(statistics.median(times), 3),
            'p99_ms': round(times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)], 3),
            'min_ms': round(times[0], 3), 'iters': iters}


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def text_encoder(folder: str, device: torch.device) -> TextEncoder:
    """Load the encoder in ``folder``; random weights of its architecture when it has none."""
    path = Path(folder)
    if any(path.glob('*.safetensors')) or any(path.glob('*.bin')):
        return TextEncoder(path, device)
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    target = Path(tempfile.mkdtemp(prefix='random-encoder-'))
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(path)).save_pretrained(target)
    AutoTokenizer.from_pretrained(path).save_pretrained(target)
    return TextEncoder(target, device)


def orbit(i: int, size: Tuple[int, int] = CAMERA_SIZE) -> Camera:
    angle = 0.05 * i
    eye = (3.0 * math.cos(angle), 3.0 * math.sin(angle), 1.5)
    return Camera.look_at(eye, (0.0, 0.0, 0.0), fov_x_deg=60.0, width=size[0], height=size[1])


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` replaces the sizes with tiny ones on the CPU."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--out', default='.')
    parser.add_argument('--n', type=int, default=300_000)
    parser.add_argument('--text-model', help='encoder folder (weights optional); required '
                                             'unless --smoke')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--device', default='cuda', help='cpu only to check the script')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny scene and camera, few queries, CPU: checks the script only')
    args = parser.parse_args()
    args.warmup, args.camera_size = 10, CAMERA_SIZE
    if args.smoke:
        from st4r_ros.text import default_model_dir

        args.n, args.iters, args.warmup, args.device = 2_000, 3, 1, 'cpu'
        args.camera_size = SMOKE_CAMERA_SIZE
        args.text_model = args.text_model or str(default_model_dir())
    elif not args.text_model:
        parser.error('--text-model is required (unless --smoke)')
    return args


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)

    canonical = synthetic_canonical(args.n, device)
    scene = FourDGaussiansScene(canonical, hypernerf_network(device))
    encoder = text_encoder(args.text_model, device)
    torch.manual_seed(1)
    field = ReferringField(args.n, canonical.means, FieldConfig(text_dim=encoder.dim),
                           torch.randint(1, 21, (args.n,), device=device))
    engine = QueryEngine(scene, field, encoder, threshold=0.0, device=device)
    guarded = QueryEngine(scene, field, encoder, threshold=0.0, device=device,
                          vocabulary=build_vocabulary(CAPTIONS, encoder))
    camera = orbit(0, args.camera_size)
    encoded = encoder.encode([EXPRESSION])
    words, mask = encoded.words.to(device), encoded.word_mask.to(device)
    sentence = encoded.sentence.to(device)  # the default field reads it as a first token
    fixed = scene.at(0.5, device)

    def timed(fn: Callable[[int], object]) -> Dict[str, float]:
        return wall_ms(fn, device, args.iters, args.warmup)

    def field_only(i: int) -> None:
        with torch.no_grad():
            field(fixed.means, words, mask, sentence)

    def command(i: int) -> None:
        result = engine.query(QueryRequest(EXPRESSION, time=frame_time(i), camera=camera))
        if result.cloud is not None:
            result.cloud.xyz.cpu(), result.cloud.rgb.cpu(), result.cloud.score.cpu()

    answer = engine.query(QueryRequest(EXPRESSION, time=0.5, camera=camera))
    figures = {
        'n': args.n,
        'text_model': encoder.name,
        'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        'torch': torch.__version__,
        'deformation': scene.info().details['deformation'],
        'status': answer.status.name,
        # Both guarded figures time answers the guard lets through to the field.
        'status_guarded_new_words': guarded.query(
            QueryRequest(f'{EXPRESSION} near crate', time=0.5)).status.name,
        'target_gaussians': answer.num_gaussians,
        'text': timed(lambda i: encoder.encode([EXPRESSION])),
        'field': timed(field_only),
        'query_where': timed(lambda i: engine.query(QueryRequest(EXPRESSION, time=0.5))),
        'query_where_guarded': timed(lambda i: guarded.query(QueryRequest(EXPRESSION, time=0.5))),
        'query_where_guarded_new_words': timed(lambda i: guarded.query(
            QueryRequest(f'{EXPRESSION} near crate{i}', time=0.5))),
        'command_to_result_cloud_mask': timed(command),
        'smoke': args.smoke,
    }
    # The node re-renders its current target: make `answer` the engine's last query again.
    answer = engine.query(QueryRequest(EXPRESSION, time=0.5, camera=camera))
    for name, colour in (('mask_update', False), ('views_update', True)):
        figures[name] = timed(lambda i: engine.render_views(answer, orbit(i, args.camera_size),
                                                            colour=colour))
    figures['mask_updates_per_s'] = round(1000 / figures['mask_update']['median_ms'], 1)
    figures['views_updates_per_s'] = round(1000 / figures['views_update']['median_ms'], 1)
    if device.type == 'cuda':  # compiling rebinds the encoder: time it last
        encoder.compile_for_queries()
        figures['text_compiled'] = timed(lambda i: encoder.encode([EXPRESSION]))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / 'bench_query_gpu.json').write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
