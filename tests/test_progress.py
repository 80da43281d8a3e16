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

"""StepProgress: a line every few seconds in a log, a bar on a terminal, nothing when off."""

import io

from rich.console import Console
from st4r_ros.progress import StepProgress


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log_console() -> Console:
    return Console(file=io.StringIO(), width=200)  # a file: not a terminal


def test_a_log_gets_a_line_every_few_seconds_with_the_time_left():
    console, clock = log_console(), FakeClock()
    with StepProgress('training', 100, console=console, every_s=5.0, clock=clock) as bar:
        for step in range(100):
            clock.now += 0.125  # 8 steps a second (a binary fraction: exact sums)
            bar.advance(note=f'loss {1.0 / (step + 1):.3f}')
    lines = console.file.getvalue().splitlines()
    # 12.5 s of work: a line at 5 s and 10 s, and the closing one.
    assert lines == ['training: 40/100 (40%), loss 0.025, 5 s, 8 s left',
                     'training: 80/100 (80%), loss 0.013, 10 s, 2 s left',
                     'training: 100/100 (100%), loss 0.010, done in 12 s']


def test_a_resumed_run_counts_its_rate_from_where_it_started():
    console, clock = log_console(), FakeClock()
    with StepProgress('training', 100, start=80, console=console, every_s=1.0,
                      clock=clock) as bar:
        clock.now += 1.0
        bar.advance(10)
    first = console.file.getvalue().splitlines()[0]
    assert first == 'training: 90/100 (90%), 1 s, 1 s left'


def test_a_terminal_gets_a_bar_and_a_disabled_progress_says_nothing():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with StepProgress('training', 3, console=terminal) as bar:
        assert bar.bar is not None
        for _ in range(3):
            bar.advance(note='loss 0.5')
    assert '3/3' in terminal.file.getvalue()
    quiet, clock = log_console(), FakeClock()
    with StepProgress('training', 3, enabled=False, console=quiet, clock=clock) as bar:
        clock.now += 60.0
        bar.advance(3)
    assert quiet.file.getvalue() == ''
