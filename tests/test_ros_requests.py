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
RequestQueue: every request gets exactly one result, nothing blocks, memory stays bounded.

No assertion depends on how fast the threads run: they hand over through events, and a wait is
observed where the queue makes it rather than timed.
"""

from __future__ import annotations

from collections import Counter
import gc
import threading
import tracemalloc

import pytest
from st4r_ros.engine import QueryMode, QueryRequest, QueryResult, QueryStatus
from st4r_ros.ros.requests import RequestQueue


# Only a guard against a hung thread: every wait below ends as soon as its event is set.
WAIT_S = 30.0


def _answer(request: QueryRequest) -> QueryResult:
    return QueryResult(request.request_id, request.text, QueryStatus.OK, 'answered')


def burst(count: int, maxsize: int):
    """
    Put ``count`` requests while one worker holds the first; then let it answer the rest.

    The worker takes the first request and waits (the GPU at work) until the whole burst is
    in, so the burst finds exactly ``maxsize`` free places whatever the threads' speeds. Once
    every request has its result, close; returns (results, the largest queue length seen by
    either side).
    """
    queue = RequestQueue(maxsize)
    results, peak = [], [0]
    answered = threading.Condition()  # guards results and peak; notified on every result
    taken, release = threading.Event(), threading.Event()

    def look():
        with answered:
            peak[0] = max(peak[0], len(queue))

    def keep(result):
        with answered:
            results.append(result)
            look()
            answered.notify_all()

    def worker():
        while (request := queue.get()) is not None:  # close() ends the loop
            taken.set()
            release.wait(WAIT_S)
            keep(_answer(request))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    for i in range(count):
        dropped = queue.put(QueryRequest(f'object {i}', request_id=f'r{i}'))
        look()
        if dropped is not None:
            keep(dropped)
        if i == 0:  # the rest of the burst only once the worker holds this one
            assert taken.wait(WAIT_S)
    release.set()
    with answered:
        assert answered.wait_for(lambda: len(results) == count, WAIT_S)
    assert queue.close() == []  # the worker took every queued request: none left to drop
    thread.join(WAIT_S)
    assert not thread.is_alive()
    return results, peak[0]


def test_a_burst_gets_exactly_one_result_per_request():
    results, peak = burst(500, maxsize=8)
    ids = Counter(r.request_id for r in results)
    assert len(results) == 500 and set(ids) == {f'r{i}' for i in range(500)}
    assert max(ids.values()) == 1
    statuses = Counter(r.status for r in results)
    # The request in work and the maxsize queued behind it were answered; the rest of the
    # burst found the queue full.
    assert statuses == {QueryStatus.OK: 1 + 8, QueryStatus.DROPPED: 500 - 1 - 8}
    assert peak <= 8
    for result in results:
        assert result.query == f'object {result.request_id[1:]}'
        if result.status == QueryStatus.DROPPED:
            assert 'queue full' in result.message
            assert result.target_instance_id == -1 and result.cloud is None


def test_memory_does_not_grow_over_repeated_bursts():
    burst(200, maxsize=8)  # warm-up: imports, caches, thread machinery
    gc.collect()
    tracemalloc.start()
    try:
        sizes = []
        for _ in range(5):
            burst(200, maxsize=8)
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert sizes[-1] - sizes[0] < 64 * 1024, sizes


def test_overflow_answers_the_newest_request_with_its_id_and_mode():
    queue = RequestQueue(2)
    assert queue.put(QueryRequest('a', request_id='1')) is None
    assert queue.put(QueryRequest('b', request_id='2')) is None
    dropped = queue.put(QueryRequest('c', mode=QueryMode.TIME_AGNOSTIC, request_id='3'))
    assert (dropped.status, dropped.request_id, dropped.query, dropped.mode) == (
        QueryStatus.DROPPED, '3', 'c', QueryMode.TIME_AGNOSTIC)
    assert 'queue full (2 waiting)' in dropped.message and len(queue) == 2
    assert queue.get(timeout=0).request_id == '1'  # first in, first out


def test_requests_without_id_or_with_odd_fields_still_get_a_dropped_result():
    queue = RequestQueue(1)
    queue.put(QueryRequest('a', request_id='1'))
    dropped = queue.put(QueryRequest(None, mode=42))
    assert dropped.status == QueryStatus.DROPPED and len(dropped.request_id) == 12
    assert dropped.mode == QueryMode.AUTO and dropped.query == 'None'


def test_close_answers_the_waiting_requests_and_refuses_new_ones():
    queue = RequestQueue(4)
    for i in range(3):
        queue.put(QueryRequest(f'q{i}', request_id=str(i)))
    waiting = queue.close()
    assert [r.request_id for r in waiting] == ['0', '1', '2'] and queue.closed
    assert all(r.status == QueryStatus.DROPPED and 'shutting down' in r.message
               for r in waiting)
    late = queue.put(QueryRequest('late', request_id='9'))
    assert late.status == QueryStatus.DROPPED and 'shutting down' in late.message
    assert queue.get(timeout=0) is None and len(queue) == 0 and queue.close() == []


def watch_waits(queue: RequestQueue):
    """
    Record the timeout of every wait ``get`` makes, and set an event as one begins.

    The worker still holds the queue's lock when the event is set and releases it only inside
    the wait, so a ``close`` that comes after the event finds the worker waiting.
    """
    timeouts, waiting = [], threading.Event()
    condition = queue._ready  # the condition that get waits on and close notifies
    wait = condition.wait

    def recorded(timeout=None):
        timeouts.append(timeout)
        waiting.set()
        return wait(timeout)

    condition.wait = recorded
    return timeouts, waiting


def test_get_waits_its_timeout_and_returns_none():
    queue = RequestQueue(1)
    timeouts, _ = watch_waits(queue)
    assert queue.get(timeout=0.05) is None
    assert timeouts and timeouts[0] == 0.05  # it waited for a request, with the timeout given
    assert queue.get(timeout=0) is None and not queue.closed


def test_close_wakes_a_waiting_worker():
    queue = RequestQueue(1)
    _, waiting = watch_waits(queue)
    got = []
    thread = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    thread.start()
    assert waiting.wait(WAIT_S)
    queue.close()
    thread.join(WAIT_S)
    assert not thread.is_alive() and got == [None]


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError, match='maxsize'):
        RequestQueue(0)
