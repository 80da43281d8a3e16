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
`st4r replay IN_BAG OUT_BAG --scene SCENE`: the live node's work on a recorded rosbag2, no ROS.

Reads a rosbag2 (mcap or sqlite3) in bag order:

- commands, std_msgs/String on ``command``: each is one AUTO query with the latest camera;
- camera poses, geometry_msgs/PoseStamped on ``camera/pose`` (the optical frame's pose in the
  scene frame), and sensor_msgs/CameraInfo on ``camera/camera_info``: together the latest
  camera; a new pose after an OK answer re-renders the mask of that target, as the node does.

and writes a rosbag2 (metadata version 8) with what the node
publishes, on the node's topic names resolved in ``namespace``:

    result             st4r_ros/ReferringResult   one per command
    target_cloud       sensor_msgs/PointCloud2    one per command (empty without a target)
    markers            visualization_msgs/MarkerArray  one per command (DELETEALL first)
    mask               sensor_msgs/Image mono8    per command with a camera, and per re-render
    mask/camera_info   sensor_msgs/CameraInfo     beside every mask (RViz's Camera display)
    overlay            sensor_msgs/Image bgr8     beside every mask: the RGB render, target marked

Stamps: a command's outputs carry the stamp of the camera pose used, else the command's bag
time (a String has no header); a re-render carries its pose's stamp. Every output is logged at
the bag time of the input that caused it, so the output bag runs in step with the input bag.

Messages that cannot be used are skipped and counted by reason (unknown type, corrupt CDR,
wrong type for an input topic, invalid camera, ...); everything else is still answered.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import struct
from typing import Any, Dict, Final, Iterator, Optional, Tuple, Union

from rich.console import Console
from rich.table import Table
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from st4r_ros.engine import QueryEngine, QueryStatus, refusal
from st4r_ros.errors import St4rError, TimeRangeError
from st4r_ros.progress import StepProgress
from st4r_ros.ros.clock import scene_time_from_stamp, stamp_from_ns, StampPolicy
from st4r_ros.ros.commands import request_from_string
from st4r_ros.ros.messages import CAMERA_INFO, RosbagsTypes
from st4r_ros.ros.session import OUTPUTS, QuerySession
from st4r_ros.ros.typestore import DISTROS, ros_typestore

STRING = 'std_msgs/msg/String'
POSE_STAMPED = 'geometry_msgs/msg/PoseStamped'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# What a damaged bag makes the reader raise (flipped bytes: bad UTF-8, bad lengths; a cut
# file: short reads), besides its own ReaderError.
DAMAGED = (ReaderError, OSError, ValueError, TypeError, KeyError, IndexError, struct.error,
           EOFError, MemoryError, OverflowError)
BAG_VERSION: Final = 8  # rosbag2 metadata version 8: the newest Humble reads; Jazzy reads it too


@dataclass(frozen=True)
class ReplayOptions:
    """
    How to read the input bag and write the output bag.

    :ivar storage: the output bag's storage, 'mcap' or 'sqlite3' (the input's is detected).
    :ivar distro: message definitions of 'jazzy' or 'humble'.
    :ivar namespace: the node's namespace; relative topic names below resolve in it.
    :ivar command_topic: the input topic of the commands.
    :ivar pose_topic: the input topic of the camera poses.
    :ivar info_topic: the input topic of the camera infos.
    :ivar scene_frame: the frame the scene is in: results' frame_id; camera poses in another
        (non-empty) frame are skipped (no TF offline).
    :ivar scene_time: the normalised scene time of every query, or None to play the scene in
        step with the bag clock (the bag's start is the scene's first frame; needs a scene
        that declares its duration), stamps outside its range handled by ``stamp_policy``.
    :ivar stamp_policy: 'clamp' or 'refuse' (clock.scene_time_from_stamp).
    """

    storage: str = 'mcap'
    distro: str = 'jazzy'
    namespace: str = '/'
    command_topic: str = 'command'
    pose_topic: str = 'camera/pose'
    info_topic: str = 'camera/camera_info'
    scene_frame: str = 'map'
    scene_time: Optional[float] = 0.0
    stamp_policy: str = StampPolicy.CLAMP.value


@dataclass
class ReplaySummary:
    """
    Counts of one replay.

    Messages read per input topic, skipped by reason, results per status name, messages
    written per output topic, stamps clamped into the scene's range, and what stopped the
    reading of a damaged bag (empty when it was read to its end).
    """

    read: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    written: Counter = field(default_factory=Counter)
    clamped: int = 0
    damage: str = ''


def resolve(namespace: str, topic: str) -> str:
    """
    Return the fully qualified name of ``topic`` in ``namespace``.

    "camera/pose" in "/robot" -> "/robot/camera/pose"; absolute names stay as they are.
    """
    if topic.startswith('/'):
        return topic
    return f"{namespace.rstrip('/')}/{topic}"


class _Session:
    """A QuerySession whose outputs go into the output bag at the bag time of their input."""

    def __init__(self, engine: QueryEngine, writer: Writer, options: ReplayOptions,
                 start_ns: int, summary: ReplaySummary) -> None:
        self.engine, self.writer, self.options = engine, writer, options
        self.store = ros_typestore(options.distro)
        self.types = RosbagsTypes(self.store)
        self.start = stamp_from_ns(self.types, start_ns)
        self.summary = summary
        self.connections = {
            topic: writer.add_connection(resolve(options.namespace, topic), msgtype,
                                         typestore=self.store)
            for topic, msgtype in OUTPUTS.items()}
        self.session = QuerySession(engine, self.types, self._write, options.scene_frame)
        self.bag_ns = start_ns  # bag time of the input being handled: the outputs' log time
        self.commands = 0

    def handlers(self) -> Dict[str, tuple]:
        """Fully qualified input topic -> (expected type, handler(msg))."""
        o = self.options
        return {resolve(o.namespace, o.command_topic): (STRING, self.on_command),
                resolve(o.namespace, o.pose_topic): (POSE_STAMPED, self.on_pose),
                resolve(o.namespace, o.info_topic): (CAMERA_INFO, self.on_info)}

    def on_command(self, msg) -> None:
        self.commands += 1
        request = request_from_string(msg.data, self.session.camera,
                                      request_id=f'replay-{self.commands}')
        stamp = stamp_from_ns(self.types, self.bag_ns)
        try:
            self._follow_clock()
        except TimeRangeError as err:
            result = refusal(request.request_id, request.text, QueryStatus.INVALID, str(err))
            self.session.publish_answer(request, result, stamp)
        else:
            result = self.session.answer(request, stamp)
        self.summary.statuses[result.status.name] += 1

    def on_pose(self, msg) -> None:
        self._count_invalid(self.session.on_pose(msg))

    def on_info(self, msg) -> None:
        self._count_invalid(self.session.on_camera_info(msg))

    def _count_invalid(self, error: Optional[str]) -> None:
        if error is not None:
            self.summary.skipped['invalid camera'] += 1

    def _follow_clock(self) -> None:
        """With scene_time None, set the engine's scene time from the bag clock."""
        if self.options.scene_time is not None:
            return
        scene_time = scene_time_from_stamp(
            stamp_from_ns(self.types, self.bag_ns), self.start, self.engine.duration_s,
            self.options.stamp_policy)
        self.summary.clamped += scene_time.clamped
        self.engine.set_scene_time(scene_time.time)

    def _write(self, topic: str, msg) -> None:
        data = self.store.serialize_cdr(msg, OUTPUTS[topic])
        self.writer.write(self.connections[topic], self.bag_ns, data)
        self.summary.written[topic] += 1


def replay(in_bag: Union[str, Path], out_bag: Union[str, Path], engine: QueryEngine,
           options: ReplayOptions = ReplayOptions(), progress: bool = True) -> ReplaySummary:
    """
    Run the commands and camera messages of ``in_bag`` through ``engine`` in bag order.

    The node's outputs are written to the new bag ``out_bag``; see the module docstring. A
    damaged bag is read up to the damage: what was read is answered and written, and the
    summary says what stopped the reading.
    ``progress`` reports the messages done (progress.StepProgress).

    :raises St4rError: bad options, an input bag of which nothing can be read, an existing
        output bag.
    """
    if options.storage not in STORAGES or options.distro not in DISTROS:
        raise St4rError(f'replay: expected storage in {sorted(STORAGES)} and distro in '
                        f'{sorted(DISTROS)}, got {options.storage!r}, {options.distro!r}')
    StampPolicy(options.stamp_policy)  # an unknown policy fails before any work
    if options.scene_time is not None:
        engine.set_scene_time(options.scene_time)
    summary = ReplaySummary()
    reader = _open_reader(in_bag)
    try:
        with Writer(out_bag, version=BAG_VERSION,
                    storage_plugin=STORAGES[options.storage]) as out:
            with StepProgress('replay', reader.message_count, enabled=progress) as bar:
                _run(reader, _Session(engine, out, options, reader.start_time, summary),
                     summary, bar)
    except WriterError as err:
        raise St4rError(f'{out_bag}: cannot write the output bag ({err})') from None
    except ReaderError as err:
        raise St4rError(f'{in_bag}: unreadable rosbag2 ({err})') from None
    finally:
        reader.close()
    if summary.damage and not sum(summary.read.values()):
        raise St4rError(f'{in_bag}: damaged rosbag2, no message could be read '
                        f'({summary.damage})')
    return summary


def _open_reader(path: Union[str, Path]) -> Reader:
    try:
        reader = Reader(path)
        reader.open()
    except DAMAGED as err:
        raise St4rError(f'{path}: not a readable rosbag2 ({type(err).__name__}: {err})') from None
    return reader


def _messages(reader: Reader, summary: ReplaySummary) -> Iterator[Tuple[Any, int, bytes]]:
    """
    Yield the reader's (connection, bag time, raw message) in bag order, up to any damage.

    What a damaged file makes the reader raise ends the reading: the messages before it are
    answered and written, and ``summary.damage`` says what stopped it.
    """
    messages = reader.messages()
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except DAMAGED as err:
            summary.damage = f'{type(err).__name__}: {str(err)[:200]}'
            return
        yield item


def _run(reader: Reader, session: _Session, summary: ReplaySummary, bar: StepProgress) -> None:
    handlers = session.handlers()
    known = session.store.types
    for connection, bag_ns, raw in _messages(reader, summary):
        bar.advance()
        summary.read[connection.topic] += 1
        expected, handler = handlers.get(connection.topic, (None, None))
        if connection.msgtype not in known:
            summary.skipped[f'unknown type {connection.msgtype}'] += 1
        elif handler is None:
            summary.skipped['not an input topic'] += 1
        elif connection.msgtype != expected:
            summary.skipped[f'wrong type on {connection.topic}'] += 1
        else:
            try:
                msg = session.store.deserialize_cdr(raw, connection.msgtype)
            except SerdeError:
                summary.skipped[f'corrupt {connection.msgtype}'] += 1
                continue
            session.bag_ns = bag_ns
            handler(msg)


def summary_table(summary: ReplaySummary) -> Table:
    """Lay the summary out as a rich table: one row per count."""
    table = Table(title='st4r replay')
    for column in ('', 'what', 'count'):
        table.add_column(column)
    sections = (('read', summary.read), ('skipped', summary.skipped),
                ('results', summary.statuses), ('written', summary.written))
    for section, counts in sections:
        for name, count in sorted(counts.items()):
            table.add_row(section, name, str(count))
    table.add_row('scene time', 'stamps clamped', str(summary.clamped))
    if summary.damage:
        table.add_row('damaged bag', 'the rest unread', summary.damage)
    return table


def replay_main(in_bag: Union[str, Path], out_bag: Union[str, Path], scene: Union[str, Path],
                layer: Union[str, Path, None] = None, *, device: str = 'auto',
                console: Optional[Console] = None, **options) -> ReplaySummary:
    """
    Run `st4r replay`: open the scene as a QueryEngine, replay, print the summary table.

    The engine opens the scene with its referring layer. ``options`` are ReplayOptions'
    fields.
    """
    summary = replay(in_bag, out_bag, QueryEngine.open(scene, layer, device),
                     ReplayOptions(**options))
    (console or Console()).print(summary_table(summary))
    return summary


def _scene_time(text: str) -> Optional[float]:
    return None if text == 'bag' else float(text)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """
    Add `st4r replay`'s arguments to ``parser`` (a subcommand's).

    ``run`` is set to replay_from_args, as the CLI's other subcommands do.
    """
    defaults = ReplayOptions()
    parser.add_argument('in_bag', help='input rosbag2 folder (mcap or sqlite3)')
    parser.add_argument('out_bag', help='output rosbag2 folder (must not exist)')
    parser.add_argument('--scene', required=True, help='the scene (any `st4r scene` format)')
    parser.add_argument('--layer', help='its referring layer folder (default: in the bundle)')
    parser.add_argument('--storage', choices=sorted(STORAGES), default=defaults.storage)
    parser.add_argument('--distro', choices=sorted(DISTROS), default=defaults.distro)
    parser.add_argument('--namespace', default=defaults.namespace)
    parser.add_argument('--command-topic', default=defaults.command_topic)
    parser.add_argument('--pose-topic', default=defaults.pose_topic)
    parser.add_argument('--info-topic', default=defaults.info_topic)
    parser.add_argument('--scene-frame', default=defaults.scene_frame)
    parser.add_argument('--scene-time', type=_scene_time, default=defaults.scene_time,
                        help="normalised scene time of every query, or 'bag' to play the "
                             'scene in step with the bag clock')
    parser.add_argument('--stamp-policy', choices=[p.value for p in StampPolicy],
                        default=defaults.stamp_policy)
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    parser.set_defaults(run=replay_from_args)


def replay_from_args(args: argparse.Namespace) -> ReplaySummary:
    """replay_main with the arguments add_replay_arguments defined."""
    options = {name: getattr(args, name) for name in ReplayOptions.__dataclass_fields__}
    return replay_main(args.in_bag, args.out_bag, args.scene, args.layer, device=args.device,
                       **options)
