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
The embedded demo: the main job of st4r_ros on a scene that ships as a few lines of config.

``models/demo/demo.json`` holds a seed and sizes; nothing else is stored. The demo

1. generates the synthetic scene (an st4r bundle with ground truth), its training captions and
   its held-out benchmark; with ``"scene_format": {"format": "4dgaussians", "fit_steps": [C, F]}``
   in the config it also fits the scene as the 4DGaussians trainer would and uses that one
   (a learned canonical space, no instance ids: the path of a user's own trainer output);
2. trains the scene's referring layer for a few hundred steps (as far as a laptop allows in a
   minute) and renders RGB and depth views at a few times;
3. writes a rosbag2 of what a robot would send (camera info, camera poses, text commands,
   some of them bad), replays it through the node's logic without ROS (`st4r replay`) and
   writes the result bag;
4. reads the result bag back and writes the masks and overlays as PNGs, the first target
   cloud as a PLY, a timeline of the answers' active spans, and prints a summary table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table
from st4r_ros.answer_files import answer_stem, write_cloud_ply
from st4r_ros.engine import QueryEngine
from st4r_ros.errors import St4rError
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import depth_to_gray, save_png
from st4r_ros.ros.cameras import camera_to_pose
from st4r_ros.ros.clock import stamp_from_ns
from st4r_ros.ros.messages import CAMERA_INFO, make, Message, RosbagsTypes
from st4r_ros.ros.outputs import camera_to_camera_info
from st4r_ros.ros.replay import replay, ReplayOptions, summary_table
from st4r_ros.ros.typestore import ros_typestore
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.ply import write_ply
from st4r_ros.supervision.format import TIME_SENSITIVE
from st4r_ros.synthetic.language import unseen_words
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
import torch

DEMO_CONFIG = Path('models') / 'demo' / 'demo.json'
# What an extra command may expect instead of an instance: statuses a robot can be told.
EXPECTABLE = ('NO_TARGET', 'INVALID')
START_NS = 1_700_000_000 * 10**9  # bag clock of the demo's first message
# Keys every demo config has (models/demo/demo.json); others, like "about", are ignored.
CONFIG_KEYS = ('seed', 'synthetic', 'render', 'export_time', 'train_steps', 'commands')
OPTIONAL_COUNTS = ('state_captions', 'time_sensitive')  # commands' counts that default to 0


@dataclass(frozen=True)
class DemoCommand:
    """
    One command of the demo and its ground truth.

    :ivar text: what the robot sends.
    :ivar instance_id: the instance it refers to; -1 when ``expect`` names a status instead.
    :ivar expect: the status a right answer has (OK when an instance is meant).
    :ivar times: a time-sensitive command's true scene times (the frames where it holds);
        empty for the others.
    """

    text: str
    instance_id: int = -1
    expect: str = 'OK'
    times: Tuple[float, ...] = ()


def find_demo_config() -> Path:
    """Find the demo config in a source checkout, else in the installed share folder."""
    candidates = [
        Path(__file__).resolve().parents[1] / DEMO_CONFIG,
        Path(sys.prefix) / 'share' / 'st4r_ros' / DEMO_CONFIG,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise St4rError('demo config not found; looked in ' + ', '.join(map(str, candidates)))


def orbit_camera(center: torch.Tensor, radius: float, view: Dict, settings: Dict) -> Camera:
    """Place a camera on a sphere around ``center``, looking at it (z up)."""
    azimuth, elevation = math.radians(view['azimuth_deg']), math.radians(view['elevation_deg'])
    offset = radius * torch.tensor(
        [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
         math.sin(elevation)]
    )
    return Camera.look_at((center + offset).tolist(), center.tolist(),
                          fov_x_deg=settings['fov_x_deg'], width=settings['width'],
                          height=settings['height'])


def load_demo_config() -> Dict:
    """Read the packaged demo config (``models/demo/demo.json``)."""
    return json.loads(find_demo_config().read_text())


def run_demo(out: Path, console: Console, config: Optional[Dict] = None) -> List[Path]:
    """
    Run every stage of the demo under ``out``; return the files written.

    :param out: output folder, created as needed; earlier outputs of the same names are
        replaced.
    :param console: where the stages, tables and progress are printed.
    :param config: a dict with the keys of ``models/demo/demo.json`` (a smaller scene, fewer
        steps, views or commands); None: the packaged demo config.
    :raises St4rError: the config lacks one of the keys.
    """
    from st4r_ros.field.train import TrainConfig
    from st4r_ros.supervision.format import load_benchmark, load_supervision
    from st4r_ros.synthetic.task import build_synthetic_task
    from st4r_ros.training import train_layers

    started = time.perf_counter()
    config = load_demo_config() if config is None else config
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise St4rError(f'demo config: missing key(s) {missing}; expected {list(CONFIG_KEYS)}')
    _check_commands(config['commands'])
    _scene_format(config)
    out = Path(out)
    synthetic_dir = out / 'synthetic'
    console.print(f"[bold]1. scene[/]: synthetic, seed {config['seed']}, in {synthetic_dir}")
    scene = write_synthetic(synthetic_dir, config['seed'],
                            SyntheticConfig(**config['synthetic']),
                            progress=lambda views: track(views, description='ground-truth masks'))
    supervision_dir, bench_path = build_synthetic_task(synthetic_dir, config['seed'])
    scene_dir, layer_dir = _scene_to_train(synthetic_dir, scene, config, console)

    console.print(f"[bold]2. referring layer[/]: {config['train_steps']} training steps")
    train_layers(load_scene(scene_dir), load_supervision(supervision_dir),
                 TrainConfig(steps=config['train_steps']), layer_dir, seed=config['seed'])
    engine = QueryEngine.open(scene_dir, layer_dir, device='cpu')
    cameras = _demo_cameras(engine, config['render'])
    written = _render_views(engine, cameras, config, out, console)

    console.print('[bold]3. replay[/]: a rosbag2 of commands and camera poses, through the '
                  "node's logic")
    frame_times = json.loads((synthetic_dir / 'objects.json').read_text())['frame_times']
    commands = _demo_commands(load_supervision(supervision_dir), load_benchmark(bench_path),
                              config['commands'], frame_times)
    in_bag, out_bag = out / 'commands_bag', out / 'results_bag'
    for bag in (in_bag, out_bag):
        _remove_bag(bag)
    _write_command_bag(in_bag, [c.text for c in commands], list(cameras.values()))
    summary = replay(in_bag, out_bag, engine, ReplayOptions(scene_time=None))
    console.print(summary_table(summary))

    console.print('[bold]4. results[/]: read back from', out_bag)
    frame_step = 1.0 / max(len(frame_times) - 1, 1)
    written += _export_results(out_bag, out / 'results', commands, frame_step, console)
    console.print(f'demo done in {time.perf_counter() - started:.0f} s; outputs in {out}')
    return written


def _scene_to_train(synthetic_dir: Path, scene, config: Dict,
                    console: Console) -> Tuple[Path, Path]:
    """
    Return (scene folder, layer folder) the demo trains and answers on.

    The keyframed bundle by default; with the config's ``"scene_format": {"format":
    "4dgaussians", "fit_steps": [COARSE, FINE]}`` the scene fitted as the 4DGaussians trainer
    fits one (synthetic/fourdgs_fit.py: what a user's own trainer output looks like), its
    layers in a folder of their own beside it.
    """
    if _scene_format(config) == 'bundle':
        return synthetic_dir / 'scene', synthetic_dir / 'scene'
    from st4r_ros.synthetic.fourdgs_fit import FitConfig, FOURDGS_DIR, write_fitted_scene

    coarse, fine = config['scene_format'].get('fit_steps', (FitConfig.coarse_steps,
                                                            FitConfig.fine_steps))
    console.print(f'   fitted as the 4DGaussians trainer fits: {coarse} + {fine} steps')
    report = write_fitted_scene(synthetic_dir, scene, FitConfig(coarse_steps=coarse,
                                                                fine_steps=fine), config['seed'])
    console.print(f"   PSNR {report['psnr_novel']:.2f} dB on novel views")
    return synthetic_dir / FOURDGS_DIR, synthetic_dir / 'layers_4dgs'


def _scene_format(config: Dict) -> str:
    """Return the config's scene format, 'bundle' unless it says '4dgaussians'."""
    choice = config.get('scene_format', {}).get('format', 'bundle')
    if choice not in ('bundle', '4dgaussians'):
        raise St4rError(f"demo config: scene_format.format must be 'bundle' or '4dgaussians', "
                        f'got {choice!r}')
    return str(choice)


def _demo_cameras(engine: QueryEngine, settings: Dict) -> Dict[str, Camera]:
    first = engine.scene.at(0.0)
    center = first.means.mean(dim=0)
    radius = 2.2 * float((first.means - center).norm(dim=1).quantile(0.95))
    return {view['name']: orbit_camera(center, radius, view, settings)
            for view in settings['views']}


def _render_views(engine: QueryEngine, cameras: Dict[str, Camera], config: Dict, out: Path,
                  console: Console) -> List[Path]:
    """RGB and depth PNGs of every demo camera at the configured times, and a 3DGS PLY."""
    written: List[Path] = []
    for t in config['render']['times']:
        gaussians = engine.scene.at(t)
        for name, camera in cameras.items():
            result = render(gaussians, camera, background=1.0)
            stem = out / 'renders' / f't{t:.2f}_{name}'
            written += [save_png(f'{stem}_rgb.png', result.image),
                        save_png(f'{stem}_depth.png', depth_to_gray(result.depth, result.alpha))]
    export_path = out / f"scene_t{config['export_time']:.2f}.ply"
    write_ply(export_path, engine.scene.at(config['export_time']))
    console.print(f"   {len(written)} renders in {out / 'renders'}, 3DGS PLY {export_path}")
    return written + [export_path]


def _check_commands(settings) -> None:
    """
    Refuse a commands section that would not pick what it says.

    :raises St4rError: a count that is not a non-negative int (``OPTIONAL_COUNTS`` may be
        left out), or extra that is not a list of str.
    """
    if not isinstance(settings, dict):
        raise St4rError(f'demo config: commands: expected an object, got {settings!r}')
    for key in ('training', 'held_out', *OPTIONAL_COUNTS):
        count = settings.get(key, 0) if key in OPTIONAL_COUNTS else settings.get(key)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise St4rError(f'demo config: commands.{key}: expected a count >= 0, got {count!r}')
    extra = settings.get('extra')
    if not isinstance(extra, list) or not all(_is_extra(item) for item in extra):
        raise St4rError(f'demo config: commands.extra: expected a list of {{"text": ..., '
                        f'"expect": one of {list(EXPECTABLE)}}}, got {extra!r}')


def _is_extra(item) -> bool:
    return (isinstance(item, dict) and set(item) == {'text', 'expect'}
            and isinstance(item['text'], str) and item['expect'] in EXPECTABLE)


def _demo_commands(supervision, benchmark, settings: Dict,
                   frame_times: Sequence[float]) -> List[DemoCommand]:
    """
    Pick the demo's commands, each with its ground truth.

    Training captions (wording the layer was trained on), one held-out expression of each
    time-agnostic kind (the benchmark's other sentence shapes and relation words), up to
    ``state_captions`` when-questions in the state captions' words (``state_questions``), up
    to ``time_sensitive`` of the benchmark's time-sensitive queries (when-questions first:
    "when does ... fade out?"; the router decides, as for a robot's command), then the extra
    (bad) commands. Held-out expressions in words training also used come first: a held-out
    synonym ("crimson" for red) is understood only as far as the text encoder relates the two
    words, which BENCHMARKS.md measures apart.
    """
    captions = [DemoCommand(texts[0], instance) for instance, texts
                in sorted(supervision.captions_at(time=0.0).items())]
    ordered = sorted(benchmark.expressions, key=lambda e: bool(unseen_words(e.text)))
    chosen, kinds = [], set()
    for expression in ordered:
        if expression.kind not in kinds and expression.kind != TIME_SENSITIVE:
            kinds.add(expression.kind)
            chosen.append(DemoCommand(expression.text, expression.instance_id))
    # A planner asking about time asks "when ...?" outright: those come first.
    sensitive = sorted((e for e in ordered if e.kind == TIME_SENSITIVE),
                       key=lambda e: not e.text.lower().startswith('when '))
    stated = state_questions(supervision, sensitive, frame_times)
    asked = [DemoCommand(e.text, e.instance_id, times=tuple(frame_times[f] for f in e.frames))
             for e in sensitive[: settings.get('time_sensitive', 0)]]
    extra = [DemoCommand(item['text'], expect=item['expect']) for item in settings['extra']]
    return (captions[: settings['training']] + chosen[: settings['held_out']]
            + stated[: settings.get('state_captions', 0)] + asked + extra)


def state_questions(supervision, events: Sequence, frame_times: Sequence[float]
                    ) -> List[DemoCommand]:
    """
    Ask when each event happens in the words of the instance's state caption of it.

    An event is a time-sensitive expression's instance and frames (its ground truth); the
    caption is the instance's only state caption at the event's middle such frame, and
    "<object> is <state>" becomes "when is <object> <state>?". Events whose caption has
    another shape are left out, and so is an event already asked.
    """
    questions: List[DemoCommand] = []
    seen = set()
    for event in events:
        key = (event.instance_id, tuple(event.frames))
        instance = next((i for i in supervision.instances if i.id == event.instance_id), None)
        if key in seen or instance is None:
            continue
        seen.add(key)
        said = [[c.text for c in instance.state_captions if c.frame == f] for f in event.frames]
        alone = [texts[0] for texts in said if len(texts) == 1]
        caption = alone[len(alone) // 2] if alone else ''
        subject, verb, state = caption.partition(' is ')
        if verb and subject and state:
            questions.append(DemoCommand(f'when is {subject} {state}?', event.instance_id,
                                         times=tuple(frame_times[f] for f in event.frames)))
    return questions


def judge(command: DemoCommand, status: str, instance_id: int,
          spans: Sequence[Tuple[float, float]], frame_step: float) -> Tuple[bool, str]:
    """
    Say whether an answer is right against the command's ground truth, and why not.

    Right: the expected status and instance; for a time-sensitive command also spans that
    agree with the true times to one frame (``frame_step``) either way: every true time within
    one frame of a spanned frame, and every frame a span covers within one frame of a true
    time (the three-frame smoothing may move an interval's edge by one frame).
    """
    if status != command.expect:
        return False, f'{status}, expected {command.expect}'
    if command.instance_id >= 0 and instance_id != command.instance_id:
        return False, f'instance {instance_id}, expected {command.instance_id}'
    if not command.times:
        return True, ''
    tolerance = frame_step + 1e-6

    def near(t: float, times: Sequence[float]) -> bool:
        return any(abs(t - u) <= tolerance for u in times)

    spanned = {(a, b): [a + k * frame_step for k in range(round((b - a) / frame_step) + 1)]
               for a, b in spans}
    covered = [t for frames in spanned.values() for t in frames]
    missed = [t for t in command.times if not near(t, covered)]
    stray = [(a, b) for (a, b), frames in spanned.items()
             if not all(near(t, command.times) for t in frames)]
    problems = [f'misses t = {", ".join(f"{t:.2f}" for t in missed)}'] if missed else []
    problems += [f'span {a:.2f}-{b:.2f} where it does not hold' for a, b in stray]
    return not problems, '; '.join(problems)


def _remove_bag(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def _write_command_bag(path: Path, commands: List[str], cameras: List[Camera]) -> None:
    """
    Write a rosbag2 (mcap) of what a robot would send.

    CameraInfo + pose of the first camera, the commands one by one, the other cameras' poses
    between them, 400 ms apart.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = ros_typestore('jazzy')
    types = RosbagsTypes(store)
    topics = {'camera/camera_info': CAMERA_INFO,
              'camera/pose': 'geometry_msgs/msg/PoseStamped',
              'command': 'std_msgs/msg/String'}
    events: List[Tuple[str, object]] = []
    for i, command in enumerate(commands):
        camera = cameras[i % len(cameras)]
        stamp = stamp_from_ns(types, START_NS + 2 * i * 400_000_000)
        events += [('camera/camera_info', camera_to_camera_info(types, camera, stamp,
                                                                'camera_optical')),
                   ('camera/pose', camera_to_pose(types, camera, stamp, 'map')),
                   ('command', make(types, 'std_msgs/msg/String', data=command))]
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(f'/{topic}', msgtype, typestore=store)
                       for topic, msgtype in topics.items()}
        for index, (topic, msg) in enumerate(events):
            writer.write(connections[topic], START_NS + index * 266_666_666,
                         store.serialize_cdr(msg, topics[topic]))


def _export_results(bag: Path, out: Path, commands: List[DemoCommand], frame_step: float,
                    console: Console) -> List[Path]:
    """
    Write what the result bag holds, named by the request each file answers; print the table.

    Per request NN (in command order): ``NN_SLUG_vK_mask.png`` and ``NN_SLUG_vK_overlay.png``
    for its views (v0 the answer's own camera, v1... the poses that re-rendered it), and
    ``NN_SLUG_cloud.ply`` when it has a target; ``index.json`` lists each command, its ground
    truth, its answer, whether the answer is right and its files; ``spans.png`` the timeline.
    """
    from rosbags.rosbag2 import Reader

    store = ros_typestore('jazzy')
    out.mkdir(parents=True, exist_ok=True)
    results: List[Message] = []
    files: List[List[Path]] = []
    stem, views = '', 0
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            msg: Message = store.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == '/result':
                results.append(msg)
                files.append([])
                stem, views = answer_stem(len(results) - 1, msg.query), 0
            elif connection.topic in ('/mask', '/overlay') and results:
                name = connection.topic.strip('/')
                files[-1].append(_save_image(out / f'{stem}_v{views}_{name}.png', msg))
                views += name == 'overlay'  # the overlay closes a view (mask, overlay)
            elif connection.topic == '/target_cloud' and msg.width and results:
                files[-1].append(_save_cloud(out / f'{stem}_cloud.ply', msg))
    verdicts = [judge(c, _status_name(r.status), r.target_instance_id,
                      [(s.start, s.end) for s in r.active_spans], frame_step)
                for c, r in zip(commands, results)]
    index = _write_index(out / 'index.json', commands, results, verdicts, files, out)
    timeline = _plot_timeline(out / 'spans.png', results)
    console.print(_results_table(commands, results, verdicts))
    right = sum(ok for ok, _ in verdicts)
    console.print(f'{right} of {len(commands)} answers right against the ground truth'
                  + ('' if right == len(commands) else ': see the verdict column'))
    return [path for paths in files for path in paths] + [index, timeline]


def _write_index(path: Path, commands: List[DemoCommand], results: List[Message],
                 verdicts: List[Tuple[bool, str]], files: List[List[Path]],
                 folder: Path) -> Path:
    entries = [{'index': i, 'command': c.text, 'request_id': r.request_id,
                'truth': {'status': c.expect, 'instance': c.instance_id,
                          'times': list(c.times)},
                'status': _status_name(r.status), 'instance': r.target_instance_id,
                'score': None if math.isnan(r.score) else round(float(r.score), 4),
                'scene_time': None if math.isnan(r.scene_time) else round(r.scene_time, 4),
                'spans': [[round(s.start, 4), round(s.end, 4)] for s in r.active_spans],
                'message': r.status_message, 'right': ok, 'why_not': why,
                'files': [p.relative_to(folder).as_posix() for p in paths]}
               for i, (c, r, (ok, why), paths)
               in enumerate(zip(commands, results, verdicts, files))]
    path.write_text(json.dumps({'answers': entries}, indent=2) + '\n')
    return path


def _save_image(path: Path, image) -> Path:
    from PIL import Image

    pixels = np.frombuffer(bytes(image.data), np.uint8)
    if image.encoding == 'mono8':
        array = pixels.reshape(image.height, image.width)
    else:  # bgr8
        array = pixels.reshape(image.height, image.width, 3)[..., ::-1]
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path


def _save_cloud(path: Path, cloud) -> Path:
    """Save a PointCloud2 of (x, y, z, rgb, score) float32 fields as a PLY point cloud."""
    fields = np.frombuffer(bytes(cloud.data), np.float32).reshape(cloud.width, -1)
    packed = fields[:, 3].copy().view(np.uint32)
    rgb = np.stack([(packed >> shift) & 255 for shift in (16, 8, 0)], axis=1).astype(np.uint8)
    return write_cloud_ply(path, fields[:, :3], rgb, fields[:, 4])


def _plot_timeline(path: Path, results) -> Path:
    """One row per query: its active spans over normalised scene time, coloured by status."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colours = {1: 'tab:green', 2: 'tab:orange'}
    figure, axes = plt.subplots(figsize=(8, 0.5 + 0.45 * len(results)))
    for row, result in enumerate(results):
        for span in result.active_spans:
            axes.barh(row, span.end - span.start, left=span.start, height=0.6,
                      color=colours.get(result.status, 'tab:gray'))
        marker = result.scene_time if math.isfinite(result.scene_time) else None
        if marker is not None:
            axes.plot([marker], [row], 'k|', markersize=14)
    axes.set_yticks(range(len(results)),
                    [f"{r.query[:38] or '(empty)'} [{_status_name(r.status)}]" for r in results])
    axes.set_xlim(0, 1)
    axes.set_xlabel('normalised scene time (| = time of the query)')
    axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _status_name(status: int) -> str:
    from st4r_ros.engine import QueryStatus

    return QueryStatus(status).name


def _results_table(commands: List[DemoCommand], results: List[Message],
                   verdicts: List[Tuple[bool, str]]) -> Table:
    table = Table(title='answers (read back from the result bag), against the ground truth')
    for column in ('#', 'query', 'status', 'instance', 'truth', 'score', 't', 'spans',
                   'verdict'):
        table.add_column(column)
    for i, (command, r, (ok, why)) in enumerate(zip(commands, results, verdicts)):
        truth = str(command.instance_id) if command.instance_id >= 0 else command.expect
        if command.times:
            truth += ' at t = ' + ', '.join(f'{t:.2f}' for t in command.times)
        spans = ' '.join(f'{s.start:.2f}-{s.end:.2f}' for s in r.active_spans
                         if (s.start, s.end) != (0.0, 1.0))
        table.add_row(str(i), r.query[:48] or '(empty)', _status_name(r.status),
                      str(r.target_instance_id), truth, f'{r.score:.3f}',
                      f'{r.scene_time:.2f}', spans,
                      '[green]right[/]' if ok else f'[red]wrong[/]: {escape(why)}')
    return table
