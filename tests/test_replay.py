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
`st4r replay`: a rosbag2 of commands and camera messages in, the node's outputs out.

Input bags are generated here with rosbags' Writer. Output bags are checked with an independent
decoder, `mcap` + `mcap-ros2-support` (what Foxglove's Python tooling uses), not only with
rosbags; sqlite3 outputs are read back by rosbags and must carry rosbag2 metadata version 8
(Humble). The engine is test_engine's double over a small synthetic scene: the point here is
the bag plumbing, the engine has its own tests.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from doubles import SMALL
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from rich.console import Console
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from st4r_ros.errors import St4rError
from st4r_ros.ros.clock import stamp_from_ns
from st4r_ros.ros.messages import CAMERA_INFO, make, RosbagsTypes
from st4r_ros.ros.replay import (add_replay_arguments, OUTPUTS, replay, replay_main, ReplayOptions,
                                 resolve, summary_table)
from st4r_ros.ros.typestore import ros_typestore
from st4r_ros.scene.bundle import save_bundle
from st4r_ros.synthetic.scene import generate_synthetic
from test_ros_conversions import camera_msgs, double_engine, scene_camera
import yaml

T0 = 1_700_000_000 * 10**9  # bag start, ns
MS = 10**6
STORE = ros_typestore('jazzy')
TYPES = RosbagsTypes(STORE)
STRING = 'std_msgs/msg/String'
POSE = 'geometry_msgs/msg/PoseStamped'
UNKNOWN = 'my_pkg/msg/Thing'


def stamp(ns: int):
    return stamp_from_ns(TYPES, ns)


def command(text: str):
    return make(TYPES, STRING, data=text)


def camera_pair(stamp_ns: int, scene_frame: str = 'map'):
    """(PoseStamped, CameraInfo) of the small test camera, stamped ``stamp_ns``."""
    return camera_msgs(TYPES, scene_camera(), stamp(stamp_ns), scene_frame=scene_frame)


def write_bag(path: Path, entries, storage: str = 'mcap', version: int = 9) -> Path:
    """Write a rosbag2 at ``path`` of (topic, msgtype, bag time ns, message or raw CDR bytes)."""
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=version, storage_plugin=plugin) as writer:
        connections = {}
        for topic, msgtype, bag_ns, payload in entries:
            if (topic, msgtype) not in connections:
                known = msgtype in STORE.types
                connections[topic, msgtype] = writer.add_connection(
                    topic, msgtype, typestore=STORE if known else None,
                    msgdef=None if known else 'int32 a\n',
                    rihs01=None if known else 'RIHS01_' + '0' * 64)
            if not isinstance(payload, bytes):
                payload = STORE.serialize_cdr(payload, msgtype)
            writer.write(connections[topic, msgtype], bag_ns, payload)
    return path


def read_mcap(bag: Path):
    """[(topic, log time ns, decoded message)] of the bag's .mcap, by mcap-ros2-support."""
    (path,) = bag.glob('*.mcap')
    with path.open('rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        return [(channel.topic, message.log_time, decoded)
                for _, channel, message, decoded in reader.iter_decoded_messages()]


def ns_of(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


# The main scenario; stamps S1, S2 of the two camera poses differ from their bag times.
S1, S2 = T0 + 90 * MS, T0 + 390 * MS
POSE1, INFO = camera_pair(S1)
POSE2, _ = camera_pair(S2)
POSE_ODOM, _ = camera_pair(S2, scene_frame='odom')
SCENARIO = [
    ('/camera/camera_info', CAMERA_INFO, T0, INFO),
    ('/command', STRING, T0 + 50 * MS, command('object 3')),  # no camera yet
    ('/camera/pose', POSE, T0 + 100 * MS, POSE1),  # re-renders the OK target
    ('/command', STRING, T0 + 200 * MS, command('object 99')),  # NO_TARGET, zero mask
    ('/command', STRING, T0 + 300 * MS, command('object 3')),
    ('/camera/pose', POSE, T0 + 400 * MS, POSE2),  # re-renders
    ('/command', STRING, T0 + 500 * MS, command('')),  # INVALID
    ('/camera/pose', POSE, T0 + 550 * MS, POSE_ODOM),  # wrong frame: camera stays POSE2
    ('/chatter', STRING, T0 + 600 * MS, command('hello')),  # not an input topic
    ('/command', POSE, T0 + 650 * MS, POSE1),  # wrong type on an input topic
    ('/command', STRING, T0 + 800 * MS, command('object 3')),
]


@pytest.fixture(scope='module')
def engine():
    return double_engine()


@pytest.fixture(scope='module')
def scenario_out(tmp_path_factory, engine):
    folder = tmp_path_factory.mktemp('scenario')
    bag = write_bag(folder / 'in', SCENARIO)
    summary = replay(bag, folder / 'out', engine)
    return folder / 'out', summary


def test_scenario_summary_counts_everything(scenario_out):
    _, summary = scenario_out
    assert summary.read == {'/camera/camera_info': 1, '/command': 6, '/camera/pose': 3,
                            '/chatter': 1}
    assert summary.skipped == {'invalid camera': 1, 'not an input topic': 1,
                               'wrong type on /command': 1}
    assert summary.statuses == {'OK': 3, 'NO_TARGET': 1, 'INVALID': 1}
    # The INVALID command's refusal leaves the views alone: 5 masks, not 6.
    assert summary.written == {'result': 5, 'target_cloud': 5, 'markers': 5, 'mask': 5,
                               'mask/camera_info': 5, 'overlay': 5}


def test_scenario_outputs_decode_with_mcap_ros2(scenario_out, engine):
    out, _ = scenario_out
    messages = read_mcap(out)
    by_topic = {}
    for topic, log_ns, msg in messages:
        by_topic.setdefault(topic, []).append((log_ns, msg))
    assert set(by_topic) == {resolve('/', t) for t in OUTPUTS}

    results = [msg for _, msg in by_topic['/result']]
    assert [r.request_id for r in results] == [f'replay-{i}' for i in range(1, 6)]
    assert [r.status for r in results] == [1, 2, 1, 3, 1]  # OK, NO_TARGET, OK, INVALID, OK
    assert [ns_of(r.header) for r in results] == [T0 + 50 * MS, S1, S1, S2, S2]
    assert [log for log, _ in by_topic['/result']] == [T0 + t * MS for t in (50, 200, 300,
                                                                             500, 800)]
    assert {r.header.frame_id for r in results} == {'map'}
    ok = results[0]
    assert ok.query == 'object 3' and ok.target_instance_id == 3 and ok.num_gaussians > 0
    assert len(ok.active_spans) == 1 and ok.active_spans[0].end == 1.0
    assert np.isnan(results[1].centroid.x) and results[1].target_instance_id == -1

    clouds = [msg for _, msg in by_topic['/target_cloud']]
    assert [c.width for c in clouds] == [r.num_gaussians for r in results]
    assert [len(c.data) for c in clouds] == [20 * r.num_gaussians for r in results]
    assert [ns_of(c.header) for c in clouds] == [ns_of(r.header) for r in results]

    masks = [msg for _, msg in by_topic['/mask']]
    assert [ns_of(m.header) for m in masks] == [S1, S1, S1, S2, S2]
    assert {(m.width, m.height, m.encoding, m.header.frame_id) for m in masks} == {
        (48, 36, 'mono8', 'camera_optical')}
    lit = [int(np.count_nonzero(np.frombuffer(bytes(m.data), np.uint8))) for m in masks]
    assert lit[0] > 0 and lit[1] == 0 and lit[2] > 0 and lit[4] > 0
    assert lit[0] == lit[2]  # the same target from the same pose
    infos = [msg for _, msg in by_topic['/mask/camera_info']]
    assert [ns_of(i.header) for i in infos] == [S1, S1, S1, S2, S2]
    assert list(infos[0].k) == pytest.approx(list(INFO.k))
    overlays = [msg for _, msg in by_topic['/overlay']]
    assert {(o.width, o.height, o.encoding, o.step) for o in overlays} == {(48, 36, 'bgr8', 144)}
    markers = [msg for _, msg in by_topic['/markers']]
    assert [len(m.markers) for m in markers] == [3, 1, 3, 1, 3]


def test_output_mcap_declares_ros2_schemas(scenario_out):
    out, _ = scenario_out
    (path,) = out.glob('*.mcap')
    with path.open('rb') as stream:
        summary = make_reader(stream).get_summary()
    schemas = {s.name: s.encoding for s in summary.schemas.values()}
    assert schemas['st4r_ros/msg/ReferringResult'] == 'ros2msg'
    assert {c.message_encoding for c in summary.channels.values()} == {'cdr'}
    metadata = yaml.safe_load((out / 'metadata.yaml').read_text())
    assert metadata['rosbag2_bagfile_information']['version'] == 8


def test_corrupt_and_unknown_messages_are_skipped_and_counted(tmp_path, engine):
    good = STORE.serialize_cdr(command('object 3'), STRING)
    bag = write_bag(tmp_path / 'in', [
        ('/command', STRING, T0, command('object 3')),
        ('/command', STRING, T0 + MS, bytes(good[:-6])),  # truncated CDR
        ('/camera/pose', POSE, T0 + 2 * MS, bytes(STORE.serialize_cdr(POSE1, POSE)[:30])),
        ('/gadget', UNKNOWN, T0 + 3 * MS, b'\x00\x01\x00\x00\x2a\x00\x00\x00'),
        ('/command', STRING, T0 + 4 * MS, command('object 99')),
    ])
    summary = replay(bag, tmp_path / 'out', engine)
    assert summary.skipped == {'corrupt std_msgs/msg/String': 1,
                               'corrupt geometry_msgs/msg/PoseStamped': 1,
                               f'unknown type {UNKNOWN}': 1}
    assert summary.statuses == {'OK': 1, 'NO_TARGET': 1}
    results = [msg for topic, _, msg in read_mcap(tmp_path / 'out') if topic == '/result']
    assert [(r.request_id, r.status) for r in results] == [('replay-1', 1), ('replay-2', 2)]


def test_sqlite3_output_for_humble_reads_back_with_version_8(tmp_path, engine):
    bag = write_bag(tmp_path / 'in', SCENARIO[:5], storage='sqlite3', version=8)
    options = ReplayOptions(storage='sqlite3', distro='humble', namespace='/robot',
                            command_topic='/command', pose_topic='/camera/pose',
                            info_topic='/camera/camera_info')
    summary = replay(bag, tmp_path / 'out', engine, options)
    metadata = yaml.safe_load((tmp_path / 'out' / 'metadata.yaml').read_text())
    info = metadata['rosbag2_bagfile_information']
    assert (info['version'], info['storage_identifier']) == (8, 'sqlite3')
    store = ros_typestore('humble')
    with Reader(tmp_path / 'out') as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {f'/robot/{t}': msgtype for t, msgtype in OUTPUTS.items()}
        results = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == '/robot/result']
        assert reader.message_count == sum(summary.written.values())
    assert [r.status for r in results] == [1, 2, 1]
    assert [r.request_id for r in results] == ['replay-1', 'replay-2', 'replay-3']


def test_scene_time_can_follow_the_bag_clock(tmp_path, engine):
    # The double engine's scene lasts 2 s: commands at 0.5 s, 1 s and 3 s (clamped to the end).
    bag = write_bag(tmp_path / 'in', [
        ('/camera/camera_info', CAMERA_INFO, T0, INFO),
        ('/command', STRING, T0 + 500 * MS, command('object 3')),
        ('/command', STRING, T0 + 1000 * MS, command('object 3')),
        ('/command', STRING, T0 + 3000 * MS, command('object 3')),
    ])
    summary = replay(bag, tmp_path / 'out', engine, ReplayOptions(scene_time=None))
    results = [msg for topic, _, msg in read_mcap(tmp_path / 'out') if topic == '/result']
    assert [r.scene_time for r in results] == [0.25, 0.5, 1.0]
    assert summary.clamped == 1
    refused = replay(bag, tmp_path / 'refused', engine,
                     ReplayOptions(scene_time=None, stamp_policy='refuse'))
    assert refused.statuses == {'OK': 2, 'INVALID': 1}
    engine.set_scene_time(0.0)


def test_replay_refuses_bad_options_and_paths(tmp_path, engine):
    bag = write_bag(tmp_path / 'in', SCENARIO[:2])
    with pytest.raises(St4rError, match='storage'):
        replay(bag, tmp_path / 'a', engine, ReplayOptions(storage='rosbag1'))
    with pytest.raises(St4rError, match='time'):
        replay(bag, tmp_path / 'b', engine, ReplayOptions(scene_time=2.0))
    with pytest.raises(ValueError):
        replay(bag, tmp_path / 'c', engine, ReplayOptions(stamp_policy='loop'))
    with pytest.raises(St4rError, match='not a readable rosbag2'):
        replay(tmp_path / 'missing', tmp_path / 'd', engine)
    with pytest.raises(St4rError, match='cannot write'):
        replay(bag, bag, engine)


def test_cli_arguments_run_replay_main_on_a_scene_folder(tmp_path):
    """`st4r replay` end to end on a bundle without a referring layer: NO_SCENE answers."""
    synthetic = generate_synthetic(seed=1, config=SMALL)
    scene = save_bundle(tmp_path / 'scene', synthetic.keyframes, duration_s=2.0)
    bag = write_bag(tmp_path / 'in', SCENARIO[:3])
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    args = parser.parse_args([str(bag), str(tmp_path / 'out'), '--scene', str(scene),
                              '--storage', 'sqlite3', '--scene-time', 'bag',
                              '--device', 'cpu'])
    assert args.scene_time is None and args.storage == 'sqlite3'
    args.run(args)
    console = Console(file=io.StringIO(), width=120)
    summary = replay_main(bag, tmp_path / 'out2', scene, console=console, device='cpu')
    assert summary.statuses == {'NO_SCENE': 1}
    printed = console.file.getvalue()
    assert 'NO_SCENE' in printed and '/command' in printed and 'target_cloud' in printed


def corrupted(bag: Path, how: str, where: float = 0.5) -> Path:
    """Damage the bag's one .mcap file in place: flip bytes, or cut it short."""
    (path,) = bag.glob('*.mcap')
    data = bytearray(path.read_bytes())
    if how == 'flip':
        for offset in range(int(len(data) * where), len(data), 97):
            data[offset] ^= 0xA5
    else:
        data = data[:int(len(data) * where)]
    path.write_bytes(bytes(data))
    return bag


@pytest.mark.parametrize('how, where', [('flip', 0.3), ('flip', 0.6), ('flip', 0.05),
                                        ('cut', 0.5), ('cut', 0.95), ('cut', 0.01)])
def test_a_corrupt_bag_is_one_error_naming_it_or_is_replayed_as_far_as_it_reads(
        tmp_path, engine, how, where):
    bag = corrupted(write_bag(tmp_path / 'in', SCENARIO), how, where)
    try:
        summary = replay(bag, tmp_path / 'out', engine, progress=False)
    except St4rError as err:  # nothing could be read: one error naming the bag
        assert str(bag) in str(err) and '\n' not in str(err), err
        return
    read = sum(summary.read.values())
    assert 0 < read <= len(SCENARIO)
    if read < len(SCENARIO):  # stopped early: the summary says why, the table shows it
        assert summary.damage
        table = io.StringIO()
        Console(file=table, width=200).print(summary_table(summary))
        assert 'damaged bag' in table.getvalue() and 'the rest unread' in table.getvalue()
    assert summary.written['result'] == sum(summary.statuses.values())  # what was read, answered
