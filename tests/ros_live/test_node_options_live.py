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
st4r_node live with other parameters than config/st4r.yaml's.

A node that waits for a lifecycle manager (autostart false), takes best-effort inputs and gives
a service call almost no time; and nodes that must refuse to start on bad parameter values.
"""

from __future__ import annotations

import time

from lifecycle_msgs.msg import Transition
from planner import NodeProcess, Planner
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from st4r_ros.msg import ReferringResult
from st4r_ros.srv import Query
from std_msgs.msg import String

OK, DROPPED, NO_SCENE = (ReferringResult.STATUS_OK, ReferringResult.STATUS_DROPPED,
                         ReferringResult.STATUS_NO_SCENE)


@pytest.fixture(scope='module')
def managed(domain_id, demo_scene, tmp_path_factory):
    """Start a node that waits for configure, takes best-effort inputs, times out in 1 ms."""
    process = NodeProcess(domain_id, tmp_path_factory.mktemp('managed') / 'node.log',
                          {'scene': demo_scene[1], 'device': 'cpu', 'autostart': False,
                           'input_reliability': 'best_effort',
                           'service_timeout_s': 0.001})
    planner = Planner(domain_id, name='manager')
    planner.wait_for_node()
    yield process, planner
    planner.close()
    process.stop()


def answer_of(planner: Planner, text: str, publisher) -> ReferringResult:
    planner.clear()
    publisher.publish(String(data=text))
    assert planner.wait_for(lambda: planner.results(text), 60.0), text
    time.sleep(0.3)
    (result,) = planner.results(text)
    return result


def test_without_autostart_the_node_waits_for_a_lifecycle_manager(managed):
    _, planner = managed
    best_effort = planner.node.create_publisher(
        String, 'command', QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    while best_effort.get_subscription_count() < 1:
        time.sleep(0.05)
    assert planner.lifecycle_state() == 'unconfigured'
    result = answer_of(planner, 'the pink torus', best_effort)
    assert result.status == NO_SCENE and 'unconfigured' in result.status_message
    assert planner.transition(Transition.TRANSITION_CONFIGURE)
    assert planner.transition(Transition.TRANSITION_ACTIVATE)
    assert planner.lifecycle_state() == 'active'
    # Best-effort inputs are answered like reliable ones.
    assert answer_of(planner, 'the pink torus', best_effort).status == OK


def test_a_service_call_that_times_out_gets_one_answer(managed):
    _, planner = managed
    planner.clear()
    response = planner.ask(Query.Request(request_id='late', query='the red cube'))
    assert response.result.status == DROPPED
    assert 'service_timeout_s' in response.result.status_message
    time.sleep(2.0)  # the worker is done with it by now: it must not answer it again
    published = [r for r in planner.results() if r.request_id == 'late']
    assert [r.status for r in published] == [DROPPED]


@pytest.mark.parametrize('name, value, expected', [
    ('queue_size', '0', 'queue_size: expected an integer >= 1'),
    ('queue_size', '8.0', 'queue_size: expected an integer'),
    ('input_reliability', 'sometimes', "expected one of ['reliable', 'best_effort']"),
    ('scene_frame', "''", 'scene_frame: expected a non-empty frame id'),
])
def test_bad_parameters_stop_the_node_with_one_clear_line(domain_id, tmp_path, name, value,
                                                          expected):
    process = NodeProcess(domain_id, tmp_path / 'node.log', {name: value})
    try:
        code = process.process.wait(60)
    finally:
        process.stop()
    output = process.output()
    assert code == 2, output
    assert expected in output and 'Traceback' not in output, output
