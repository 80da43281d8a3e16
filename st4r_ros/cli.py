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

"""The `st4r` command."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path
import sys
import traceback
from typing import Iterator, Optional, Sequence

from rich.console import Console
from rich.table import Table
from st4r_ros.engine import resolve_device
from st4r_ros.errors import St4rError
from st4r_ros.query_cli import add_query_arguments
from st4r_ros.render.api import BACKENDS, render
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import depth_to_gray, save_png
from st4r_ros.ros.replay import add_replay_arguments
from st4r_ros.scene.loading import FORMATS, load_scene
from st4r_ros.scene.ply import write_ply
from st4r_ros.scene.scene4d import SceneInfo
from st4r_ros.text import DTYPES

console = Console()


def _info_table(info: SceneInfo) -> Table:
    table = Table(title=f'scene {info.path}', show_header=False)
    rows = dataclasses.asdict(info)
    details = rows.pop('details')
    for key, value in {**rows, **details}.items():
        shown = ', '.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        table.add_row(key, shown)
    return table


def cmd_scene_info(args: argparse.Namespace) -> None:
    info = load_scene(args.scene, args.format).info()
    if args.json:
        print(json.dumps(dataclasses.asdict(info), indent=2))
    else:
        console.print(_info_table(info))


def cmd_scene_export(args: argparse.Namespace) -> None:
    out = output_file(args.out, '.ply', '--out')
    gaussians = load_scene(args.scene, args.format).at(args.time)
    with writing(out):
        write_ply(out, gaussians)
    console.print(f'wrote {len(gaussians)} Gaussians at t={args.time} to {out}')


def cmd_render(args: argparse.Namespace) -> None:
    if not 0.0 <= args.background <= 1.0:  # NaN too
        raise St4rError(f'--background: expected a grey level in 0..1, got {args.background}')
    outputs = [output_file(args.out, '.png', '--out')]
    if args.depth:
        outputs.append(output_file(args.depth, '.png', '--depth'))
    camera = Camera.load(args.camera)
    device = resolve_device(args.device)
    gaussians = load_scene(args.scene, args.format).at(args.time, device)
    out = render(gaussians, camera, backend=args.backend, background=args.background)
    images = [out.image, depth_to_gray(out.depth, out.alpha)]
    for path, image in zip(outputs, images):
        with writing(path):
            save_png(path, image)
    console.print('wrote ' + ', '.join(map(str, outputs)))


def output_file(name: str, suffix: str, option: str) -> Path:
    """
    Return the file an output option names, checked before any work is done.

    :raises St4rError: another kind of file than ``suffix``, a folder, or a folder that does
        not exist (it is not made: a mistyped path should not grow a tree of folders).
    """
    path = Path(name)
    if path.suffix.lower() != suffix:
        raise St4rError(f'{option} {name}: expected a {suffix} file')
    if path.is_dir():
        raise St4rError(f'{option} {name}: is a folder; expected a {suffix} file')
    if not path.parent.is_dir():
        raise St4rError(f'{option} {name}: folder {path.parent} does not exist')
    return path


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failure to write ``path`` (no permission, a read-only place) into an St4rError."""
    try:
        yield
    except OSError as err:
        raise St4rError(f'{path}: cannot write ({err.strerror or err})') from None


def cmd_synth(args: argparse.Namespace) -> None:
    from st4r_ros.synthetic.scene import synth_main

    scene = synth_main(args.out, seed=args.seed, num_frames=args.frames)
    console.print(f'wrote synthetic scene (seed {args.seed}) to {args.out}')
    if args.format == '4dgaussians':
        from st4r_ros.synthetic.fourdgs_fit import FitConfig, FOURDGS_DIR, write_fitted_scene

        config = dataclasses.replace(FitConfig(), coarse_steps=args.fit_steps[0],
                                     fine_steps=args.fit_steps[1],
                                     device=str(resolve_device(args.device)))
        report = write_fitted_scene(args.out, scene, config, seed=args.seed)
        console.print(f"wrote the fitted 4DGaussians scene to {Path(args.out) / FOURDGS_DIR}: "
                      f"PSNR {report['psnr_novel']:.2f} dB on novel views")


def cmd_annotate(args: argparse.Namespace) -> None:
    from st4r_ros.annotate import annotate_main

    result = annotate_main(args.source, args.scene, args.out, args.config, args.cameras,
                           args.device, args.restart)
    console.print(f'wrote {result.supervision}: {result.views} views, {result.instances} '
                  f'instances, {result.captions} description and {result.state_captions} '
                  f'state captions ({result.cache_hits} answers from the cache)')


def cmd_train(args: argparse.Namespace) -> None:
    from st4r_ros.training import train_main

    options = {'steps': args.steps, 'device': resolve_device(args.device).type}
    if args.text_model:
        options['text_model'] = args.text_model
    if args.temporal_text_model:
        options['temporal_text_model'] = args.temporal_text_model
    options['temporal_text_dtype'] = args.temporal_text_dtype
    if args.temporal_query_prompt is not None:
        options['temporal_query_prompt'] = args.temporal_query_prompt.replace('\\n', '\n')
    result = train_main(args.scene, args.supervision, args.out, seed=args.seed,
                        resume=not args.no_resume, **options)
    console.print(f'referring layer written to {result.layer_path} '
                  f'(no-target threshold {result.threshold:.3f})')


def cmd_eval(args: argparse.Namespace) -> None:
    from st4r_ros.evaluation.runner import eval_main

    eval_main(args.scene, args.bench, json=args.json, layer=args.layer, device=args.device,
              supervision=args.supervision, vocabulary_guard=args.vocabulary_guard,
              whole_commands=args.whole_commands)


def cmd_demo(args: argparse.Namespace) -> None:
    from st4r_ros.demo import run_demo

    # Off a terminal (a log file) rich lays tables out 80 columns wide: the answers' table
    # needs more to stay readable.
    run_demo(Path(args.out), console if console.is_terminal else Console(width=160))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='st4r', description=__doc__)
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an internal error')
    commands = parser.add_subparsers(dest='command', required=True)

    def with_scene(p: argparse.ArgumentParser) -> None:
        p.add_argument('scene', help='scene folder (bundle, 4DGaussians output, PLY sequence) '
                                     'or a .ply file')
        p.add_argument('--format', choices=FORMATS, help='skip format detection')

    scene = commands.add_parser('scene', help='inspect and convert scenes')
    scene_commands = scene.add_subparsers(dest='scene_command', required=True)
    info = scene_commands.add_parser('info', help='format, size, time range, semantic layers')
    with_scene(info)
    info.add_argument('--json', action='store_true', help='machine-readable output')
    info.set_defaults(run=cmd_scene_info)
    export = scene_commands.add_parser('export', help='the Gaussians at one time as a 3DGS PLY')
    with_scene(export)
    export.add_argument('--time', type=float, required=True,
                        help='normalised scene time in [0, 1]')
    export.add_argument('--out', required=True, help='output .ply')
    export.set_defaults(run=cmd_scene_export)

    rend = commands.add_parser('render', help='render the scene at one time from one camera')
    with_scene(rend)
    rend.add_argument('--time', type=float, required=True, help='normalised scene time in [0, 1]')
    rend.add_argument('--camera', required=True, help='camera JSON (see README)')
    rend.add_argument('--out', required=True, help='output .png (RGB)')
    rend.add_argument('--depth', help='also write the expected depth as a grey .png')
    rend.add_argument('--backend', choices=BACKENDS, default='auto')
    rend.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:1 ...')
    rend.add_argument('--background', type=float, default=0.0,
                      help='background grey level in 0..1 (default 0, black)')
    rend.set_defaults(run=cmd_render)

    synth = commands.add_parser('synth', help='write a synthetic dynamic scene with ground truth')
    synth.add_argument('out', help='output folder')
    synth.add_argument('--seed', type=int, default=0)
    synth.add_argument('--frames', type=int, default=24)
    synth.add_argument('--format', choices=('bundle', '4dgaussians'), default='bundle',
                       help='4dgaussians: also fit the scene as the 4DGaussians trainer does '
                            '(a learned canonical space) into OUT/scene_4dgs')
    synth.add_argument('--fit-steps', type=int, nargs=2, default=(3000, 14000),
                       metavar=('COARSE', 'FINE'), help='steps of the two fitting stages')
    synth.add_argument('--device', default='auto', help='auto, cpu, cuda ... (the fit)')
    synth.set_defaults(run=cmd_synth)

    note = commands.add_parser('annotate', help='masks and captions for `st4r train` from a '
                                                'video and its cameras (docs/annotation.md)')
    note.add_argument('source', help='dataset folder (synthetic, D-NeRF, HyperNeRF), video '
                                     'or frames folder')
    note.add_argument('scene', help='the 4DGS scene the views belong to')
    note.add_argument('--out', required=True, help='supervision folder to write')
    note.add_argument('--cameras', help='dataset folder with the views of a video or frames')
    note.add_argument('--config', help='annotation config (default: config/annotate.yaml '
                                       'values)')
    note.add_argument('--device', help='overrides the config: auto, cpu, cuda, cuda:1 ...')
    note.add_argument('--restart', action='store_true',
                      help="drop OUT's earlier tracks and masks (the cache stays)")
    note.set_defaults(run=cmd_annotate)

    train = commands.add_parser('train', help="train the scene's referring layer")
    train.add_argument('scene', help='the scene (any `st4r scene` format)')
    train.add_argument('supervision', help='supervision folder (supervision.json + masks)')
    train.add_argument('--out', help='layer folder (default: inside the scene bundle)')
    train.add_argument('--steps', type=int, default=1500)
    train.add_argument('--seed', type=int, default=0)
    train.add_argument('--device', default='auto', help='auto, cpu, cuda ...')
    train.add_argument('--text-model', help='encoder folder or hub id (default: MiniLM)')
    train.add_argument('--temporal-text-model',
                       help="the temporal layer's sentence encoder (default: --text-model's)")
    train.add_argument('--temporal-text-dtype', choices=list(DTYPES), default='float32',
                       help="its weights' type (bfloat16 fits a 7B encoder such as "
                            'e5-mistral-7b-instruct on one GPU)')
    train.add_argument('--temporal-query-prompt',
                       help='instruction put in front of time-sensitive queries, a literal \\n '
                            "for a newline (default: the encoder's own 'query' prompt, if its "
                            'folder names one)')
    train.add_argument('--no-resume', action='store_true',
                       help='start over instead of continuing from the last checkpoint')
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser('eval', help='mIoU; routing, Acc and vIoU of time-sensitive '
                                                'queries, on a benchmark')
    evaluate.add_argument('scene', help='the scene (any `st4r scene` format)')
    evaluate.add_argument('bench', help='benchmark file (bench.json)')
    evaluate.add_argument('--layer', help='referring layer folder (default: in the bundle)')
    evaluate.add_argument('--supervision', help='training supervision folder: vIoU on its '
                                                'training views too')
    evaluate.add_argument('--json', action='store_true', help='machine-readable output')
    evaluate.add_argument('--device', default='auto', help='auto, cpu, cuda ...')
    evaluate.add_argument('--no-vocabulary-guard', dest='vocabulary_guard', action='store_false',
                          help='let the field answer queries in words foreign to the captions '
                               '(an ablation)')
    evaluate.add_argument('--whole-commands', action='store_true',
                          help="let the field read a command's request frame too, not only the "
                               'expression inside it (an ablation)')
    evaluate.set_defaults(run=cmd_eval)

    add_replay_arguments(commands.add_parser('replay', help='replay a rosbag2 of commands and '
                                                            'poses into a rosbag2 of results'))
    add_query_arguments(commands.add_parser(
        'query', help='answer referring expressions over a scene: status, target, spans; with '
                      'a camera, masks, overlays and target clouds'))

    demo = commands.add_parser('demo', help='run the main job on the embedded demo scene')
    demo.add_argument('--out', default='out/demo', help='output folder')
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the `st4r` command; return its exit status: 0, 2 after an St4rError, 1 after a bug.

    Every command's ``--device`` is checked before it starts. An error is one line on stderr,
    ``st4r: error: `` and the message, plain text: a path is printed as it is, never read as
    rich markup. Any other exception is st4r's own fault: one line says so, and ``--debug``
    shows its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, 'device', None) is not None:  # annotate's None: its config decides
            resolve_device(args.device)
        args.run(args)
    except St4rError as err:
        print(error_line(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('st4r: interrupted', file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the boundary: a bug gets one line, not a trace
        if args.debug:
            traceback.print_exc()
        print(f'st4r: internal error, a bug in st4r ({type(err).__name__}: '
              f"{' '.join(str(err).splitlines())}); run the same command with --debug and "
              'report its output', file=sys.stderr)
        return 1
    return 0


def error_line(err: BaseException) -> str:
    """Return the one line that reports ``err``: its message's lines joined."""
    return 'st4r: error: ' + ' '.join(str(err).splitlines())


if __name__ == '__main__':
    sys.exit(main())
