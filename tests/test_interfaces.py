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
The ROS 2 interfaces in msg/ and srv/: valid for the real ROS 2 tools, with the agreed layout.

rosidl (what colcon runs) translates every .msg/.srv to IDL and rosidl_parser parses it; the
layouts found there must equal LAYOUTS below, so renaming, retyping, reordering or adding a field
fails here until this file is updated on purpose. rosbags (what the offline replay uses, no ROS
needed) must register the same .msg files into Jazzy and Humble typestores, agree with rosidl on
the layout, and carry a ReferringResult through CDR unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
import re

import numpy as np
import pytest
from ros_tools import REPO, rosidl_translate, run_ros_python_json

MSG_FILES = sorted((REPO / 'msg').glob('*.msg'))
SRV_FILES = sorted((REPO / 'srv').glob('*.srv'))
INTERFACE_FILES = MSG_FILES + SRV_FILES

# The agreed layouts, field by field in wire order, with .msg type names.
LAYOUTS = {
    'st4r_ros/msg/TimeSpan': [
        ('start', 'float32'),
        ('end', 'float32'),
        ('start_s', 'float64'),
        ('end_s', 'float64'),
        ('score', 'float32'),
    ],
    'st4r_ros/msg/ReferringResult': [
        ('header', 'std_msgs/msg/Header'),
        ('request_id', 'string'),
        ('query', 'string'),
        ('status', 'uint8'),
        ('status_message', 'string'),
        ('mode', 'uint8'),
        ('time_sensitive', 'bool'),
        ('time_sensitivity_reason', 'string'),
        ('target_instance_id', 'int32'),
        ('score', 'float32'),
        ('no_target_threshold', 'float32'),
        ('active_spans', 'st4r_ros/msg/TimeSpan[]'),
        ('frame_scores', 'float32[]'),
        ('frame_times', 'float32[]'),
        ('span_threshold', 'float32'),
        ('centroid', 'geometry_msgs/msg/Point'),
        ('bbox_min', 'geometry_msgs/msg/Point'),
        ('bbox_max', 'geometry_msgs/msg/Point'),
        ('num_gaussians', 'uint32'),
        ('scene_time', 'float32'),
        ('scene_time_s', 'float64'),
        ('latency_total_ms', 'float32'),
        ('latency_text_ms', 'float32'),
        ('latency_where_ms', 'float32'),
        ('latency_when_ms', 'float32'),
        ('latency_render_ms', 'float32'),
    ],
    'st4r_ros/srv/Query_Request': [
        ('request_id', 'string'),
        ('query', 'string'),
        ('mode', 'uint8'),
        ('use_scene_time', 'bool'),
        ('scene_time', 'float32'),
        ('use_latest_camera', 'bool'),
        ('camera_pose', 'geometry_msgs/msg/PoseStamped'),
        ('camera_info', 'sensor_msgs/msg/CameraInfo'),
    ],
    'st4r_ros/srv/Query_Response': [
        ('result', 'st4r_ros/msg/ReferringResult'),
        ('mask', 'sensor_msgs/msg/Image'),
    ],
}
MODES = {'MODE_AUTO': 0, 'MODE_TIME_AGNOSTIC': 1, 'MODE_TIME_SENSITIVE': 2}
STATUSES = {
    'STATUS_UNSET': 0, 'STATUS_OK': 1, 'STATUS_NO_TARGET': 2, 'STATUS_INVALID': 3,
    'STATUS_DROPPED': 4, 'STATUS_NO_SCENE': 5, 'STATUS_NOT_READY': 6, 'STATUS_ERROR': 7,
    'STATUS_NOT_IN_STATE': 8, 'STATUS_NO_STATE_CACHE': 9,
}
CONSTANTS = {
    'st4r_ros/msg/TimeSpan': {},
    'st4r_ros/msg/ReferringResult': {**STATUSES, **MODES},
    'st4r_ros/srv/Query_Request': MODES,
    'st4r_ros/srv/Query_Response': {},
}

# Runs in the ROS tools' interpreter: parses IDL files (argv[1] = root, argv[2:] = relative paths)
# and prints {type: {"fields": [[name, type]], "constants": {name: [type, value]}}}.
_PARSE_IDL = r"""
import json, pathlib, sys
from rosidl_parser import definition as d
from rosidl_parser.parser import parse_idl_file

IDL_TO_MSG = {"boolean": "bool", "octet": "byte", "float": "float32", "double": "float64"}

def name(t):
    if isinstance(t, d.BasicType):
        return IDL_TO_MSG.get(t.typename, t.typename)
    if isinstance(t, d.NamespacedType):
        return "/".join(t.namespaced_name())
    if isinstance(t, d.UnboundedString):
        return "string"
    if isinstance(t, d.UnboundedWString):
        return "wstring"
    if isinstance(t, d.BoundedString):
        return f"string<={t.maximum_size}"
    if isinstance(t, d.BoundedWString):
        return f"wstring<={t.maximum_size}"
    if isinstance(t, d.Array):
        return f"{name(t.value_type)}[{t.size}]"
    if isinstance(t, d.BoundedSequence):
        return f"{name(t.value_type)}[<={t.maximum_size}]"
    if isinstance(t, d.UnboundedSequence):
        return f"{name(t.value_type)}[]"
    raise TypeError(repr(t))

out = {}
root = pathlib.Path(sys.argv[1])
for rel in sys.argv[2:]:
    idl = parse_idl_file(d.IdlLocator(root, pathlib.Path(rel)))
    for element in idl.content.elements:
        if isinstance(element, d.Message):
            messages = [element]
        elif isinstance(element, d.Service):
            messages = [element.request_message, element.response_message]
        else:
            continue
        for message in messages:
            out["/".join(message.structure.namespaced_type.namespaced_name())] = {
                "fields": [[m.name, name(m.type)] for m in message.structure.members],
                "constants": {c.name: [name(c.type), c.value] for c in message.constants},
            }
print(json.dumps(out))
"""


def _parse_idl(out_dir: Path) -> dict:
    idl_files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob('*.idl'))
    return run_ros_python_json(_PARSE_IDL, str(out_dir), *idl_files)


@pytest.fixture(scope='module')
def rosidl_layouts(tmp_path_factory) -> dict:
    """{type: {"fields", "constants"}} of every interface, via rosidl translate + parser."""
    out_dir = tmp_path_factory.mktemp('idl')
    proc = rosidl_translate(out_dir, INTERFACE_FILES)
    assert proc.returncode == 0, f'rosidl translate failed:\n{proc.stderr}'
    return _parse_idl(out_dir)


def test_every_interface_file_translates_to_idl_and_parses(rosidl_layouts):
    assert MSG_FILES and SRV_FILES
    expected = {f'st4r_ros/msg/{f.stem}' for f in MSG_FILES}
    expected |= {f'st4r_ros/srv/{f.stem}_{part}'
                 for f in SRV_FILES for part in ('Request', 'Response')}
    assert set(rosidl_layouts) == expected
    unlisted = expected - set(LAYOUTS)
    assert not unlisted, f'new interfaces {sorted(unlisted)}: add their layout to LAYOUTS here'
    assert set(LAYOUTS) == expected, f'LAYOUTS has no file for {set(LAYOUTS) - expected}'


@pytest.mark.parametrize('type_name', sorted(LAYOUTS))
def test_layout_matches_the_agreed_one(rosidl_layouts, type_name):
    found = [tuple(field) for field in rosidl_layouts[type_name]['fields']]
    assert found == LAYOUTS[type_name], (
        f'{type_name}: layout changed; update LAYOUTS (and every user of the message) on purpose'
    )


@pytest.mark.parametrize('type_name', sorted(CONSTANTS))
def test_constants_match_the_agreed_ones(rosidl_layouts, type_name):
    found = rosidl_layouts[type_name]['constants']
    assert {k: v for k, (_, v) in found.items()} == CONSTANTS[type_name]
    assert {t for t, _ in found.values()} <= {'uint8'}


def test_statuses_are_distinct_and_the_default_is_not_ok():
    assert len(set(STATUSES.values())) == len(STATUSES)
    # A default-constructed (forgotten) result must never read as OK.
    assert STATUSES['STATUS_UNSET'] == 0 != STATUSES['STATUS_OK']
    # A default request is an AUTO query.
    assert MODES['MODE_AUTO'] == 0


def _undocumented_fields(path: Path) -> list[str]:
    """Fields and constants of a .msg/.srv in a block of definitions that has no comment."""
    undocumented = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith('#') or text == '---':
            continue
        if '#' in text:
            continue  # trailing comment
        j = i - 1
        while j >= 0 and lines[j].strip() and not lines[j].strip().startswith('#') \
                and lines[j].strip() != '---':
            j -= 1  # a field of the same block: documented by the block's comment
        if j < 0 or not lines[j].strip().startswith('#'):
            undocumented.append(text)
    return undocumented


@pytest.mark.parametrize('path', INTERFACE_FILES, ids=lambda p: p.name)
def test_every_field_is_documented(path):
    assert not _undocumented_fields(path), f'{path.name}: add a comment (meaning, units, frame)'


BROKEN = {
    'bad_field_name.msg': 'float32 2start\n',
    'uppercase_field.msg': 'float32 Start\n',
    'duplicate_field.msg': 'float32 start\nfloat32 start\n',
    'unknown_primitive.msg': 'flaot32 start\n',
    'constant_out_of_range.msg': 'uint8 STATUS_OK=300\n',
    'lowercase_constant.msg': 'uint8 status_ok=1\n',
    'missing_name.msg': 'float32\n',
    'two_separators.srv': 'string query\n---\nbool ok\n---\nbool extra\n',
    'no_separator.srv': 'string query\n',
}


def _translate_one(tmp_path: Path, name: str, text: str):
    kind = 'msg' if name.endswith('.msg') else 'srv'
    stem = ''.join(part.capitalize() for part in Path(name).stem.split('_'))
    path = tmp_path / 'src' / kind / f'{stem}.{kind}'
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return rosidl_translate(tmp_path / 'out', [path], root=tmp_path / 'src')


def test_a_valid_interface_in_a_temporary_folder_translates(tmp_path):
    """The control of the test below: its failures come from the broken files, not the setup."""
    proc = _translate_one(tmp_path, 'control.srv', 'string query\n---\nbool ok\n')
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / 'out').rglob('*.idl'))) == 1


@pytest.mark.parametrize('name', sorted(BROKEN))
def test_broken_interface_fails_translation(tmp_path, name):
    proc = _translate_one(tmp_path, name, BROKEN[name])
    assert proc.returncode != 0, f'rosidl accepted a broken {name}'
    assert not list((tmp_path / 'out').rglob('*.idl'))


# ----- rosbags: the typestores the offline replay registers our messages into -----

def _rosbags():
    try:
        from rosbags import typesys
    except ImportError as exc:
        pytest.fail(f'rosbags is not installed ({exc}): it belongs in setup.py install_requires',
                    pytrace=False)
    return typesys


def _typestore(store_name: str):
    typesys = _rosbags()
    store = typesys.get_typestore(getattr(typesys.Stores, store_name))
    types = {}
    for path in MSG_FILES:
        types.update(typesys.get_types_from_msg(path.read_text(), f'st4r_ros/msg/{path.stem}'))
    for path in SRV_FILES:
        request, response = re.split(r'^---\s*$', path.read_text(), maxsplit=1, flags=re.M)
        # rosbags knows messages only: the halves go in as st4r_ros/msg/Query_Request, ...
        for part, text in (('Request', request), ('Response', response)):
            types.update(typesys.get_types_from_msg(text, f'st4r_ros/msg/{path.stem}_{part}'))
    store.register(types)
    return store


def _rosbags_name(type_name: str) -> str:
    """Return the name _typestore registered `type_name` under (service halves as messages)."""
    return type_name.replace('/srv/', '/msg/')


def _default(store, type_name: str):
    """Make a message of `type_name` with every field at its ROS default (zeros, empty)."""
    _rosbags()
    from rosbags.interfaces import Nodetype as nodetype
    _, fields = store.fielddefs[type_name]

    def value(desc):
        kind, detail = desc
        if kind == nodetype.BASE:
            return '' if detail[0] == 'string' else (False if detail[0] == 'bool' else 0)
        if kind == nodetype.NAME:
            return _default(store, detail)
        (sub_kind, sub_detail), size = detail
        length = size if kind == nodetype.ARRAY else 0  # sequences start empty
        if sub_kind == nodetype.BASE and sub_detail[0] not in ('string', 'bool'):
            return np.zeros(length, dtype=sub_detail[0])
        return [value((sub_kind, sub_detail)) for _ in range(length)]

    return store.types[type_name](**{name: value(desc) for name, desc in fields})


def _assert_same(a, b, where='msg'):
    if dataclasses.is_dataclass(a):
        assert type(a).__name__ == type(b).__name__, where
        for field in dataclasses.fields(a):
            _assert_same(getattr(a, field.name), getattr(b, field.name), f'{where}.{field.name}')
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


def _sample_result(store):
    """Make a filled, time-sensitive OK result as the node would publish it."""
    types = store.types
    Time, Header, Point = (types[t] for t in (
        'builtin_interfaces/msg/Time', 'std_msgs/msg/Header', 'geometry_msgs/msg/Point'))
    Result, Span = types['st4r_ros/msg/ReferringResult'], types['st4r_ros/msg/TimeSpan']
    return dataclasses.replace(
        _default(store, 'st4r_ros/msg/ReferringResult'),
        header=Header(stamp=Time(sec=1_732_180_000, nanosec=123_456_789), frame_id='st4r_scene'),
        request_id='planner-42',
        query="the cookie being broken in half in someone's hand",
        status=Result.STATUS_OK,
        status_message='ok',
        mode=Result.MODE_AUTO,
        time_sensitive=True,
        time_sensitivity_reason="router: state phrase 'being broken' (0.91)",
        target_instance_id=7,
        score=0.875,
        no_target_threshold=0.5,
        active_spans=[Span(start=0.25, end=0.5, start_s=1.0, end_s=2.0, score=0.75),
                      Span(start=0.75, end=0.75, start_s=3.0, end_s=3.0, score=0.625)],
        frame_scores=np.linspace(0.0, 1.0, 5, dtype=np.float32),
        frame_times=np.linspace(0.0, 1.0, 5, dtype=np.float32),
        span_threshold=0.5,
        centroid=Point(x=0.1, y=-0.2, z=0.75),
        bbox_min=Point(x=0.0, y=-0.3, z=0.7),
        bbox_max=Point(x=0.2, y=-0.1, z=0.8),
        num_gaussians=1234,
        scene_time=0.5,
        scene_time_s=math.nan,
        latency_total_ms=12.5,
        latency_text_ms=3.0,
        latency_where_ms=2.0,
        latency_when_ms=0.5,
        latency_render_ms=math.nan,
    )


@pytest.mark.parametrize('store_name', ['ROS2_JAZZY', 'ROS2_HUMBLE'])
def test_rosbags_registers_the_messages_with_the_rosidl_layout(rosidl_layouts, store_name):
    store = _typestore(store_name)
    for type_name in LAYOUTS:
        consts, fields = store.fielddefs[_rosbags_name(type_name)]
        assert [f for f, _ in fields] == [f for f, _ in rosidl_layouts[type_name]['fields']]
        assert {name: value for name, _, value in consts} == CONSTANTS[type_name]


@pytest.mark.parametrize('store_name', ['ROS2_JAZZY', 'ROS2_HUMBLE'])
def test_rosbags_cdr_round_trip_of_a_result(store_name):
    store = _typestore(store_name)
    result = _sample_result(store)
    data = store.serialize_cdr(result, 'st4r_ros/msg/ReferringResult')
    back = store.deserialize_cdr(data, 'st4r_ros/msg/ReferringResult')
    _assert_same(result, back)
    assert back.frame_scores.dtype == np.float32 and back.active_spans[1].end_s == 3.0


@pytest.mark.parametrize('store_name', ['ROS2_JAZZY', 'ROS2_HUMBLE'])
def test_rosbags_cdr_round_trip_of_the_service_halves(store_name):
    store = _typestore(store_name)
    request_type, response_type = (_rosbags_name(f'st4r_ros/srv/Query_{part}')
                                   for part in ('Request', 'Response'))
    request = dataclasses.replace(
        _default(store, request_type),
        request_id='r1', query='the red cube', use_latest_camera=True,
        mode=store.types[request_type].MODE_TIME_SENSITIVE,
    )
    response = dataclasses.replace(_default(store, response_type), result=_sample_result(store))
    for msg, type_name in ((request, request_type), (response, response_type)):
        data = store.serialize_cdr(msg, type_name)
        _assert_same(msg, store.deserialize_cdr(data, type_name))


def test_rosbags_writes_the_definitions_a_jazzy_bag_needs():
    """rosbag2 (Jazzy) stores each topic's full definition and RIHS01 type hash."""
    store = _typestore('ROS2_JAZZY')
    msgdef, _ = store.generate_msgdef('st4r_ros/msg/ReferringResult')
    assert 'MSG: st4r_ros/TimeSpan' in msgdef and 'MSG: std_msgs/Header' in msgdef
    assert re.fullmatch(r'RIHS01_[0-9a-f]{64}', store.hash_rihs01('st4r_ros/msg/ReferringResult'))
