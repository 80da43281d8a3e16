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
st4r_node over real DDS beside the engine in-process: command latency and mask rate on a CPU.

    scripts/ros_env.sh .venv/bin/python benchmarks/bench_node.py [--scene DIR] [--commands 200]
        [--seconds 5] [--pose-hz 30] [--width 320 --height 240] [--json FILE] [--smoke]

Starts st4r_node as a user does (the colcon install's st4r_node with config/st4r.yaml, the
scene on the CPU) on a ROS domain of its own with discovery on this host only, and talks to it
from a client node in this process. The same scene is also opened here, so that each figure is
taken three ways:

- node: through DDS, from publishing a command (or pose) to the client receiving the message;
- session: the node's QuerySession in this process, publishing into a stopwatch: the node's
  work per message (engine and message conversions) without transport or threads;
- engine: the node's engine calls alone: ``QueryEngine.query`` with the camera and colour
  (the answer holds the mask and the overlay's colour), ``render_views`` for a camera that moved.

Commands go one at a time (send, wait for the result and the mask, then the next) and each
goes to all three in turn, so load from elsewhere on a shared machine falls on all of them
alike. The texts are the first training caption of every instance (the supervision folder
beside the scene), in turn; the camera is the demo's first orbit view at ``--width`` x
``--height``. Moving camera: after an OK answer, poses along the orbit at ``--pose-hz`` for
``--seconds``; the node renders only the newest pose, so masks received/s is at most poses
sent/s, and the pose's age when its mask arrives is reported too.

Target (the issue): the node adds at most 2 ms p50 to the engine. ``--smoke`` runs a few
commands and a second of poses: it checks the script, not the figures.
"""

from __future__ import annotations

import argparse
from collections import Counter
import contextlib
from datetime import datetime
import fcntl
import json
import os
from pathlib import Path
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ament_index_python.packages import get_package_prefix
from geometry_msgs.msg import PoseStamped
from lifecycle_msgs.srv import GetState
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rich.console import Console
from rich.table import Table
from sensor_msgs.msg import CameraInfo, Image
from st4r_ros.demo import load_demo_config, orbit_camera
from st4r_ros.engine import QueryEngine, QueryResult, QueryStatus
from st4r_ros.msg import ReferringResult
from st4r_ros.render.camera import Camera
from st4r_ros.ros.cameras import camera_to_pose
from st4r_ros.ros.clock import stamp_from_ns, stamp_to_ns
from st4r_ros.ros.commands import request_from_string
from st4r_ros.ros.messages import RclpyTypes
from st4r_ros.ros.outputs import camera_to_camera_info
from st4r_ros.ros.session import QuerySession
from st4r_ros.supervision.format import load_supervision
from std_msgs.msg import String
import torch

ROOT = Path(__file__).resolve().parents[1]
NODE_NAME = 'st4r_node'
SCENE_FRAME, OPTICAL_FRAME = 'map', 'camera_optical'
KINDS = ('result', 'mask')  # what a command's latency runs to
PATHS = ('node', 'session', 'engine')  # the ways each figure is taken
TARGET_MS = 2.0  # the limit on what the node adds to the engine, p50
ORBIT_DEG_PER_S = 30.0  # a camera walked slowly around the table
# The live tests' lock files: a benchmark and a test run never share a domain.
DOMAINS = range(1, 102)
DOMAIN_LOCK = 'st4r_ros_test_domain_{}.lock'
# What a planner asks of the node's outputs and gives its inputs: every message, in order.
RELIABLE = QoSProfile(depth=1, history=HistoryPolicy.KEEP_ALL,
                      reliability=ReliabilityPolicy.RELIABLE)
Stamp = object  # builtin_interfaces/Time


def now_stamp(types) -> Stamp:
    """Read the system clock as a ROS stamp (the node's clock reads it too)."""
    return stamp_from_ns(types, time.time_ns())


def spread(samples_ms: Sequence[float]) -> Dict[str, Optional[float]]:
    """p50, p99, mean and count of latencies in ms (None when there are none)."""
    if not samples_ms:
        return {'p50_ms': None, 'p99_ms': None, 'mean_ms': None, 'n': 0}
    values = np.asarray(samples_ms, dtype=float)
    p50, p99 = np.percentile(values, [50, 99])
    return {'p50_ms': round(float(p50), 2), 'p99_ms': round(float(p99), 2),
            'mean_ms': round(float(values.mean()), 2), 'n': len(values)}


def rate(step: Callable[[float], None], seconds: float) -> float:
    """Call ``step(elapsed seconds)`` back to back for ``seconds``; return calls per second."""
    start, calls = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        step(elapsed)
        calls += 1
    return calls / (time.perf_counter() - start)


class Orbit:
    """The demo's first camera view and the circle it lies on, at a chosen image size."""

    def __init__(self, engine: QueryEngine, width: int, height: int) -> None:
        settings = load_demo_config()['render']
        self.view = settings['views'][0]
        self.settings = dict(settings, width=width, height=height)
        first = engine.scene.at(0.0)
        self.center = first.means.mean(dim=0)
        # Placed as the demo places its cameras: the whole table in view.
        self.radius = 2.2 * float((first.means - self.center).norm(dim=1).quantile(0.95))

    def at(self, elapsed_s: float) -> Camera:
        """Return the camera ``elapsed_s`` seconds along the orbit (the demo's view at 0)."""
        view = dict(self.view, azimuth_deg=self.view['azimuth_deg'] + ORBIT_DEG_PER_S * elapsed_s)
        return orbit_camera(self.center, self.radius, view, self.settings)

    def path(self, hz: float, seconds: float) -> List[Camera]:
        """Return the cameras of ``seconds`` along the orbit, ``hz`` a second."""
        return [self.at(k / hz) for k in range(max(1, round(hz * seconds)))]


def pose_messages(types, cameras: Sequence[Camera]) -> List:
    """
    Make the cameras' poses before any clock runs.

    On two cores, making them while the clock runs would take time from the node rendering them.
    """
    return [camera_to_pose(types, camera, now_stamp(types), SCENE_FRAME) for camera in cameras]


class InProcess:
    """The scene in this process: the engine alone, and the node's session over it, no DDS."""

    def __init__(self, scene: Path, types) -> None:
        self.types = types
        self.engine = QueryEngine.open(scene, device='cpu')
        self.session = QuerySession(self.engine, types, self._publish, SCENE_FRAME)
        self.published: Dict[str, float] = {}  # topic -> when it was last published
        self.masks = 0

    def _publish(self, topic: str, msg) -> None:
        self.published[topic] = time.perf_counter()
        self.masks += topic == 'mask'

    def use_camera(self, camera: Camera) -> None:
        stamp = now_stamp(self.types)
        self.session.on_camera_info(
            camera_to_camera_info(self.types, camera, stamp, OPTICAL_FRAME))
        self.session.on_pose(camera_to_pose(self.types, camera, stamp, SCENE_FRAME))

    def request(self, text: str):
        """Make the request the node makes of a command: the text with the latest camera."""
        request = request_from_string(text, self.session.camera)
        if isinstance(request, QueryResult):
            raise ValueError(f'command {text!r} refused: {request.message}')
        return request

    def query(self, text: str) -> float:
        """Ms of the engine's answer (mask and colour with it), as the node's worker asks it."""
        request = self.request(text)
        started = time.perf_counter()
        self.engine.query(request, colour=True)
        return 1000 * (time.perf_counter() - started)

    def answer(self, text: str) -> Tuple[float, float]:
        """Ms to the session publishing the result and the mask of a command."""
        request = self.request(text)
        self.published.clear()
        started = time.perf_counter()
        result = self.session.answer(request, now_stamp(self.types))
        if 'mask' not in self.published:
            raise RuntimeError(f'{text!r}: {result.status.name}, no mask: {result.message}')
        return (1000 * (self.published['result'] - started),
                1000 * (self.published['mask'] - started))

    def mask_rates(self, cameras: Sequence[Camera], hz: float) -> Dict[str, float]:
        """Masks/s of the current target, camera on ``cameras`` at ``hz``: engine, session."""
        current, poses = self.session.current, pose_messages(self.types, cameras)
        if current is None:
            raise RuntimeError('mask rates need an OK answer first')
        seconds = len(cameras) / hz

        def index(elapsed: float) -> int:  # the newest pose by then, as the node takes it
            return min(int(elapsed * hz), len(cameras) - 1)

        engine = rate(lambda elapsed: self.engine.render_views(current, cameras[index(elapsed)]),
                      seconds)
        masks, started = self.masks, time.perf_counter()
        rate(lambda elapsed: self.session.on_pose(poses[index(elapsed)]), seconds)
        session = (self.masks - masks) / (time.perf_counter() - started)
        return {'engine': engine, 'session': session}


class Client:
    """
    The benchmark's side of the graph: an rclpy node that sends what a robot sends.

    Its own thread spins it and notes when each result (with its status) and each mask (with
    its pose's age) arrives.
    """

    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('bench_node_client', context=self.context)
        self.types = RclpyTypes()
        self.results: List[Tuple[float, int]] = []  # (arrival, status)
        self.masks: List[Tuple[float, float]] = []  # (arrival, ms since its camera's stamp)
        self._arrived = threading.Condition()
        self._subscriptions = [
            self.node.create_subscription(ReferringResult, 'result', self._on_result, RELIABLE),
            self.node.create_subscription(Image, 'mask', self._on_mask, RELIABLE)]
        self.command = self.node.create_publisher(String, 'command', RELIABLE)
        self.pose = self.node.create_publisher(PoseStamped, 'camera/pose', RELIABLE)
        self.info = self.node.create_publisher(CameraInfo, 'camera/camera_info', RELIABLE)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _on_result(self, msg: ReferringResult) -> None:
        self._note(self.results, (time.perf_counter(), msg.status))

    def _on_mask(self, msg: Image) -> None:
        age_ms = (time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e6
        self._note(self.masks, (time.perf_counter(), age_ms))

    def _note(self, arrivals: List, entry: Tuple) -> None:
        with self._arrived:
            arrivals.append(entry)
            self._arrived.notify_all()

    def wait_for_node(self, process: subprocess.Popen, timeout: float) -> None:
        """Wait until st4r_node is active (its scene loaded) and matched on every topic."""
        state = self.node.create_client(GetState, f'/{NODE_NAME}/get_state')
        deadline = time.monotonic() + timeout
        try:
            while True:
                label = self._state(state)
                if label == 'active' and self._matched():
                    return
                # Autostart runs before the node serves get_state: any other answer is final.
                if label not in (None, 'active'):
                    raise RuntimeError(f'{NODE_NAME} is {label}, not active: no scene loaded')
                if process.poll() is not None:
                    raise RuntimeError(f'{NODE_NAME} exited with {process.returncode}')
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{NODE_NAME} not active and matched after {timeout} s')
                time.sleep(0.2)
        finally:
            self.node.destroy_client(state)

    def _state(self, client) -> Optional[str]:
        """Ask for the node's lifecycle state; its label, None while it does not answer."""
        if not client.service_is_ready():
            return None
        future = client.call_async(GetState.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        return future.result().current_state.label if done.wait(5.0) else None

    def _matched(self) -> bool:
        return (all(p.get_subscription_count() for p in (self.command, self.pose, self.info))
                and all(s.get_publisher_count() for s in self._subscriptions))

    def send_camera(self, camera: Camera) -> None:
        stamp = now_stamp(self.types)
        self.info.publish(camera_to_camera_info(self.types, camera, stamp, OPTICAL_FRAME))
        self.pose.publish(camera_to_pose(self.types, camera, stamp, SCENE_FRAME))

    def ask(self, text: str, timeout: float = 60.0) -> Tuple[float, float, int]:
        """Send one command; return ms to its result and to its mask, and its status."""
        with self._arrived:
            results, masks = len(self.results), len(self.masks)
        sent = time.perf_counter()
        self.command.publish(String(data=text))
        with self._arrived:
            if not self._arrived.wait_for(
                    lambda: len(self.results) > results and len(self.masks) > masks, timeout):
                raise TimeoutError(f'{NODE_NAME}: no result and mask for {text!r} in {timeout} s')
            (result_at, status), (mask_at, _) = self.results[results], self.masks[masks]
        return 1000 * (result_at - sent), 1000 * (mask_at - sent), status

    def stream_poses(self, cameras: Sequence[Camera], hz: float) -> Dict:
        """Publish the cameras' poses at ``hz``; count the masks that came meanwhile."""
        poses = pose_messages(self.types, cameras)
        start = time.perf_counter()
        for k, pose in enumerate(poses):
            time.sleep(max(0.0, start + k / hz - time.perf_counter()))
            pose.header.stamp = now_stamp(self.types)
            self.pose.publish(pose)
        seconds = len(poses) / hz
        time.sleep(max(0.0, start + seconds - time.perf_counter()))
        with self._arrived:
            ages = [age for at, age in self.masks if start <= at <= start + seconds]
        return {'poses_per_s': len(poses) / seconds, 'masks_per_s': len(ages) / seconds,
                'pose_age': spread(ages)}

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._spinner.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@contextlib.contextmanager
def ros_domain(requested: Optional[int]) -> Iterator[int]:
    """Use ``requested``, else lock the first domain id no live test or benchmark holds."""
    if requested is not None:
        yield requested
        return
    for candidate in DOMAINS:
        with open(Path(tempfile.gettempdir()) / DOMAIN_LOCK.format(candidate), 'w') as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            yield candidate
            return
    raise RuntimeError(f'every ROS domain id in {DOMAINS} is held')


@contextlib.contextmanager
def running_node(scene: Path, domain_id: int, log: Path) -> Iterator[subprocess.Popen]:
    """Start st4r_node as a user starts it, its output in ``log``; stop it with SIGINT."""
    command = [str(Path(get_package_prefix('st4r_ros')) / 'lib' / 'st4r_ros' / NODE_NAME),
               '--ros-args', '--params-file', str(ROOT / 'config' / 'st4r.yaml'),
               '-p', f'scene:={scene}', '-p', 'device:=cpu']
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
    with log.open('wb') as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def captions(supervision: Path) -> List[str]:
    """Read the first training caption of every instance: texts the layer answers."""
    found = load_supervision(supervision).captions_at(time=0.0)
    return [texts[0] for _, texts in sorted(found.items())]


def compare_commands(client: Client, local: InProcess, texts: Sequence[str], count: int,
                     warmup: int) -> Dict[str, List]:
    """Send commands one at a time, each to the engine, the session and the node in turn."""
    samples: Dict[str, List] = {key: [] for key in (
        'text', 'engine', 'session_result', 'session_mask', 'node_result', 'node_mask',
        'status')}
    for i in range(warmup + count):
        text = texts[i % len(texts)]
        engine = local.query(text)
        session = local.answer(text)
        node = client.ask(text)
        if i >= warmup:
            for key, value in zip(samples, (text, engine, *session, *node)):
                samples[key].append(value)
    return samples


def compare_moving(client: Client, local: InProcess, orbit: Orbit, text: str,
                   args: argparse.Namespace) -> Dict:
    """Masks/s for a camera moving along the orbit after an OK answer to ``text``."""
    local.answer(text)
    *_, status = client.ask(text)
    if status != ReferringResult.STATUS_OK:
        raise RuntimeError(f'{text!r} answered {QueryStatus(status).name} by {NODE_NAME}')
    cameras = orbit.path(args.pose_hz, args.seconds)
    in_process = local.mask_rates(cameras, args.pose_hz)
    node = client.stream_poses(cameras, args.pose_hz)
    return {'seconds': args.seconds, 'node': node,
            **{path: {'masks_per_s': masks} for path, masks in in_process.items()}}


def measure(args: argparse.Namespace, texts: List[str], process: subprocess.Popen,
            domain_id: int) -> Dict:
    local = InProcess(args.scene, RclpyTypes())
    orbit = Orbit(local.engine, args.width, args.height)
    local.use_camera(orbit.at(0.0))
    with contextlib.closing(Client(domain_id)) as client:
        client.wait_for_node(process, args.start_timeout)
        client.send_camera(orbit.at(0.0))
        time.sleep(0.5)  # the node's worker takes the camera before the first command comes
        samples = compare_commands(client, local, texts, args.commands, args.warmup)
        ok = [text for text, status in zip(samples['text'], samples['status'])
              if status == ReferringResult.STATUS_OK]
        if not ok:
            raise RuntimeError(f'no command was answered OK: {Counter(samples["status"])}')
        moving = compare_moving(client, local, orbit, ok[0], args)
    return {'command': command_figures(samples), 'moving': moving,
            'statuses': {QueryStatus(s).name: n for s, n in Counter(samples['status']).items()}}


def command_figures(samples: Dict[str, List]) -> Dict:
    """Latency spreads per path, and what the node adds at p50 to the engine and the session."""
    engine = spread(samples['engine'])
    figures = {
        'node': {'result': spread(samples['node_result']), 'mask': spread(samples['node_mask'])},
        'session': {'result': spread(samples['session_result']),
                    'mask': spread(samples['session_mask'])},
        # The engine's answer carries its mask: one figure for both.
        'engine': {'result': engine, 'mask': engine}}
    for base in ('engine', 'session'):
        figures[f'node_minus_{base}_p50_ms'] = {
            kind: round(figures['node'][kind]['p50_ms'] - figures[base][kind]['p50_ms'], 2)
            for kind in KINDS}
    added = figures['node_minus_engine_p50_ms']
    figures['target'] = {'limit_ms': TARGET_MS,
                         **{f'{kind}_met': added[kind] <= TARGET_MS for kind in KINDS}}
    return figures


def machine() -> Dict:
    models = [line.split(':', 1)[1].strip()
              for line in Path('/proc/cpuinfo').read_text().splitlines()
              if line.startswith('model name')]
    return {'nproc': len(os.sched_getaffinity(0)), 'cpu': models[0] if models else '',
            'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
            'python': platform.python_version(), 'load_average': os.getloadavg()}


def revision() -> str:
    """Name the checkout's commit (``-dirty``: with changes not committed), '' outside git."""
    try:
        return subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except OSError:
        return ''


def cell(figure: Dict) -> str:
    if not figure['n']:
        return '-'
    return f"{figure['p50_ms']:.1f} / {figure['p99_ms']:.1f}"


def report(figures: Dict, console: Console) -> None:
    """Print the figures as a table and say whether the target is met."""
    meta, command, moving = figures['meta'], figures['command'], figures['moving']
    table = Table(title=f"st4r_node vs engine: {meta['commands']} commands, {meta['camera']} "
                        f"camera, CPU ({meta['machine']['nproc']} cores)")
    table.add_column('ms, p50 / p99')
    for column in ('node over DDS', 'session in-process', 'engine in-process',
                   'node - engine (p50)', 'node - session (p50)'):
        table.add_column(column, justify='right')
    for kind, label in zip(KINDS, ('command -> result', 'command -> first mask')):
        table.add_row(label, *(cell(command[path][kind]) for path in PATHS),
                      *(f"{command[f'node_minus_{base}_p50_ms'][kind]:+.1f}"
                        for base in ('engine', 'session')))
    node = moving['node']
    table.add_row(f"moving camera: masks/s over {moving['seconds']:g} s",
                  f"{node['masks_per_s']:.1f} ({node['poses_per_s']:.0f} poses/s sent)",
                  *(f"{moving[path]['masks_per_s']:.1f}" for path in PATHS[1:]))
    table.add_row("moving camera: pose's age at its mask", cell(node['pose_age']))
    console.print(table)
    target = command['target']
    for kind in KINDS:
        verdict = 'met' if target[f'{kind}_met'] else 'NOT met'
        console.print(f"target: the node adds <= {target['limit_ms']:g} ms p50 to the engine; "
                      f"command -> {kind}: {command['node_minus_engine_p50_ms'][kind]:+.1f} ms, "
                      f'{verdict}')
    console.print(f"statuses: {figures['statuses']}")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--scene', type=Path, default=ROOT / 'out' / 'demo' / 'synthetic' /
                        'scene', help='a trained scene (`st4r demo` makes one)')
    parser.add_argument('--supervision', type=Path,
                        help="the texts' source; default: the scene's sibling supervision/")
    parser.add_argument('--commands', type=int, default=200, help='timed commands')
    parser.add_argument('--warmup', type=int, default=10, help='untimed commands first')
    parser.add_argument('--seconds', type=float, default=5.0, help='of moving camera')
    parser.add_argument('--pose-hz', type=float, default=30.0, help='poses sent per second')
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--height', type=int, default=240)
    parser.add_argument('--domain-id', type=int, help='default: a free one (lock file)')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='seconds for st4r_node to load its scene')
    parser.add_argument('--json', type=Path, help='also write the figures here')
    parser.add_argument('--smoke', action='store_true',
                        help='a few commands and a second of poses: checks the script')
    args = parser.parse_args(argv)
    if args.smoke:
        args.commands, args.warmup, args.seconds = 5, 1, 1.0
    args.scene = args.scene.resolve()
    args.supervision = args.supervision or args.scene.parent / 'supervision'
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # DDS stays on this machine
    texts = captions(args.supervision)
    started, host = datetime.now().astimezone(), machine()  # the load before the run
    with tempfile.TemporaryDirectory() as tmp, ros_domain(args.domain_id) as domain_id:
        log = Path(tmp) / 'st4r_node.log'
        with running_node(args.scene, domain_id, log) as process:
            try:
                figures = measure(args, texts, process, domain_id)
            except Exception:
                sys.stderr.write(f'{NODE_NAME} output:\n{log.read_text(errors="replace")}\n')
                raise
    figures['meta'] = {
        'date': started.isoformat(timespec='seconds'), 'machine': host,
        'scene': str(args.scene), 'camera': f'{args.width}x{args.height}',
        'commands': args.commands, 'warmup': args.warmup, 'pose_hz': args.pose_hz,
        'texts': texts, 'domain_id': domain_id, 'revision': revision(), 'smoke': args.smoke}
    report(figures, Console())
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
