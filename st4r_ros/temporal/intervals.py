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
Active intervals: where along the timeline an instance is in the state a query asks about.

The query's state feature q (``state_space``) is compared with the instance's per-frame state
features frame by frame, s_t = <q, c_{k,t}>; the scores are smoothed over time (a centred
moving average that skips missing frames) and thresholded adaptively, halfway between the
instance's best and worst frame for this query, but never below an absolute level calibrated
on the training captions.
A missing frame takes its neighbours' mean, so a one-frame gap does not split an interval;
it only extends or bridges a run of seen frames, never starts one: a borrowed score is as much
the other side's as its own (a gap before a different state would otherwise be an interval
of its own made from that state's score).
A query whose scores barely vary holds either throughout (best frame above the level) or
never. Runs of active frames become intervals [first frame time, last frame time].
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
from typing import List, Tuple

import torch
from torch import Tensor
import torch.nn.functional as F


class Verdict(str, enum.Enum):
    """What the scores say about the asked state over the timeline."""

    SOME = 'some'  # active in some frames: the intervals
    ALWAYS = 'always'  # holds in every known frame
    NEVER = 'never'  # the instance is never in the asked state


@dataclass(frozen=True)
class IntervalParams:
    """
    How per-frame scores become active frames.

    :ivar window: frames of the centred moving average (odd; 1: no smoothing).
    :ivar level: the smoothed score a frame needs to be active at all.
    :ivar min_contrast: below this spread between best and worst frame the state is taken to
        hold everywhere (best frame >= level) or nowhere.
    """

    window: int = 3
    level: float = 0.5
    min_contrast: float = 0.05


@dataclass(frozen=True)
class Intervals:
    """
    One query's answer over T frames.

    :ivar raw: s_t, [T]; NaN at missing frames.
    :ivar scores: smoothed s_t, [T]; NaN at missing frames.
    :ivar threshold: the adaptive threshold used (NaN when no frame is known).
    :ivar active: [T] bool.
    :ivar runs: (first, last) frame indices of each run of active frames.
    :ivar verdict: SOME, ALWAYS or NEVER.
    :ivar missing: frames without a state feature.
    """

    raw: Tensor
    scores: Tensor
    threshold: float
    active: Tensor
    runs: List[Tuple[int, int]]
    verdict: Verdict
    missing: int


def frame_scores(features: Tensor, valid: Tensor, query: Tensor) -> Tensor:
    """Return s_t = <q, c_t> of features [T, D] and query [D] as [T], NaN where not valid."""
    scores = features @ F.normalize(query.to(features), dim=0)
    return torch.where(valid, scores, torch.full_like(scores, float('nan')))


def smooth(scores: Tensor, window: int) -> Tensor:
    """Centred moving average of scores [T] over window frames, ignoring NaN; [T]."""
    known = ~torch.isnan(scores)
    if window <= 1:
        return scores.clone()
    kernel = torch.ones(1, 1, window, dtype=scores.dtype, device=scores.device)
    pad = window // 2
    sums = F.conv1d(torch.where(known, scores, 0.0)[None, None], kernel, padding=pad)[0, 0]
    counts = F.conv1d(known.to(scores.dtype)[None, None], kernel, padding=pad)[0, 0]
    return torch.where(counts > 0, sums / counts.clamp_min(1),
                       torch.full_like(scores, float('nan')))


def runs_of(active: Tensor) -> List[Tuple[int, int]]:
    """(first, last) indices of each run of True in active [T]."""
    flags = active.to(torch.int8).cpu()
    edges = torch.diff(F.pad(flags, (1, 1))).nonzero()[:, 0].tolist()
    return [(start, stop - 1) for start, stop in zip(edges[::2], edges[1::2])]


def _next_to(flags: Tensor) -> Tensor:
    """[T] bool: True where a neighbouring frame of flags [T] is True."""
    padded = F.pad(flags.to(torch.int8), (1, 1))
    return (padded[:-2] + padded[2:]) > 0


def find_intervals(features: Tensor, valid: Tensor, query: Tensor,
                   params: IntervalParams = IntervalParams()) -> Intervals:
    """
    Find the frames in which one instance is in the state a query describes.

    :param features: the instance's state cache c_t, [T, D], unit rows.
    :param valid: [T] bool, False at missing frames.
    :param query: the query's feature, [D] (its state feature in the temporal layer).
    """
    raw = frame_scores(features, valid, query)
    scores = smooth(raw, params.window)
    missing = int((~valid).sum())
    known = scores[valid]  # the level and contrast come from frames actually seen
    if len(known) == 0:
        nothing = torch.zeros_like(valid)
        return Intervals(raw, scores, float('nan'), nothing, [], Verdict.NEVER, missing)
    low, high = float(known.min()), float(known.max())
    if high < params.level:
        verdict, threshold = Verdict.NEVER, params.level
    elif high - low < params.min_contrast:
        verdict, threshold = Verdict.ALWAYS, low
    else:
        verdict, threshold = Verdict.SOME, max(params.level, (low + high) / 2)
    active = ((scores >= threshold) if verdict != Verdict.NEVER  # NaN compares False
              else torch.zeros_like(valid))
    active = active & (valid | _next_to(active & valid))
    if verdict == Verdict.SOME and bool(active[valid].all()):
        verdict = Verdict.ALWAYS
    return Intervals(raw, scores, threshold, active, runs_of(active), verdict, missing)
