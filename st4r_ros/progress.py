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
Progress of a long loop, for whoever watches: a live bar on a terminal, lines in a log.

A rich bar redraws itself in place, which a log file (a CI job, ``make demo > log``, a robot's
launch log) never shows until the loop ends. Off a terminal the same progress is a plain line
every few seconds: the step, a note (loss terms, say) and the time left.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Callable, Optional, Type

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeRemainingColumn)

# Seconds between two lines off a terminal.
LINE_EVERY_S = 5.0


class StepProgress:
    """
    Report ``total`` steps of work under ``label``; a context manager.

    :param start: steps already done (a resumed run).
    :param enabled: False reports nothing.
    :param console: where to report (default: a console on stdout).
    :param clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, label: str, total: int, start: int = 0, enabled: bool = True,
                 console: Optional[Console] = None, every_s: float = LINE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.done = label, total, start
        self.enabled, self.every_s, self.clock = enabled, every_s, clock
        self.console = console or Console()
        self.bar: Optional[Progress] = None
        self.note = ''

    def __enter__(self) -> 'StepProgress':
        self.started = self.last_line = self.clock()
        self.first = self.done
        if self.enabled and self.console.is_terminal:
            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn('{task.description}'),
                                console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task('', total=self.total, completed=self.done)
        return self

    def advance(self, steps: int = 1, note: str = '') -> None:
        """Count ``steps`` more as done; ``note`` replaces the text shown beside the count."""
        self.done += steps
        self.note = note or self.note
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=steps, description=self.note)
        elif self.clock() - self.last_line >= self.every_s:
            self._line()

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, error, trace)
        elif self.enabled and kind is None and self.done > self.first:
            self._line()

    def _line(self) -> None:
        now = self.clock()
        self.last_line = now
        rate = (self.done - self.first) / max(now - self.started, 1e-9)  # steps per second
        left = (self.total - self.done) / rate if rate > 0 else float('nan')
        percent = 100.0 * self.done / max(self.total, 1)
        text = f'{self.label}: {self.done}/{self.total} ({percent:.0f}%)'
        text += f', {self.note}' if self.note else ''
        text += f', {now - self.started:.0f} s, {left:.0f} s left' if self.done < self.total \
            else f', done in {now - self.started:.0f} s'
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
