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
A bounded request queue between the node's callbacks and its worker thread.

Callbacks must return at once (rclpy executors serve every subscription and service from the
same threads), while a query holds the GPU for milliseconds to seconds. Callbacks ``put``
requests; one worker ``get``s and answers them. Nothing is lost and nothing blocks: a request
that finds the queue full, or arrives after ``close``, is answered at once with a DROPPED
result (msg/ReferringResult.msg: "accepted but not processed; send it again later"), and
``close`` answers every request still waiting. So every request gets exactly one result, and
the memory held is at most ``maxsize`` requests.
"""

from __future__ import annotations

import collections
import threading
from typing import Deque, List, Optional

from st4r_ros.engine import QueryRequest, QueryResult, QueryStatus, refusal


def dropped(request: QueryRequest, reason: str) -> QueryResult:
    """Make the DROPPED result of ``request`` (its id, or a new one when it has none)."""
    return refusal(request.request_id, request.text, QueryStatus.DROPPED, reason, request.mode)


class RequestQueue:
    """
    First-in first-out, at most ``maxsize`` requests waiting; thread-safe.

    Requests should carry their id (commands.request_from_string and request_from_service set
    one), so that a DROPPED answer and the worker's answer name the same request.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f'maxsize: expected at least 1, got {maxsize}')
        self.maxsize = maxsize
        self._items: Deque[QueryRequest] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, request: QueryRequest) -> Optional[QueryResult]:
        """
        Queue ``request``.

        Returns None when queued, else its DROPPED result (queue full or closed), for the
        caller to publish. Never blocks beyond the lock.
        """
        with self._ready:
            if self._closed:
                return dropped(request, 'node shutting down: request not processed')
            if len(self._items) >= self.maxsize:
                return dropped(request, f'request queue full ({self.maxsize} waiting): '
                                        'not processed, send it again later')
            self._items.append(request)
            self._ready.notify()
            return None

    def get(self, timeout: Optional[float] = None) -> Optional[QueryRequest]:
        """
        Take the oldest request.

        Waits up to ``timeout`` seconds (None: until one comes or the queue closes). Returns
        None on timeout or once closed.
        """
        with self._ready:
            self._ready.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None  # close() empties it

    def close(self) -> List[QueryResult]:
        """
        Stop accepting requests, wake every waiting ``get`` and drop the waiting requests.

        Returns the DROPPED results of the requests still waiting (in queue order), for the
        caller to publish.
        """
        with self._ready:
            self._closed = True
            waiting, self._items = list(self._items), collections.deque()
            self._ready.notify_all()
        return [dropped(request, 'node shutting down: request not processed')
                for request in waiting]
