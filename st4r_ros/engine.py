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
QueryEngine: the one place that strings scene, text encoder and referring field together.

A query goes in as a `QueryRequest` (text, optional mode, scene time and camera) and exactly one
`QueryResult` comes out, whatever happens: bad input, a scene without a semantic layer and
internal failures are answered with an explicit status, never raised. The statuses and modes
carry the values of msg/ReferringResult.msg, so the ROS face converts without translation.

Where (time-agnostic): the field scores every Gaussian at the scene time, p_i = sigmoid(m_i(t)).
The query's score is max_i p_i, the same score the layer's no-target threshold was calibrated on
(st4r_ros.field.train.calibrate_threshold); below it, or with no Gaussian at p >= 0.5, the answer
is NO_TARGET with that best score. Otherwise the target's Gaussians are those at p >= 0.5 (the
ones that also make the rendered mask), the target instance is their majority instance, and the
mask for a camera is the rendered p thresholded at 0.5 over an explicit background of 0.

When (time-sensitive): the scene's temporal layer routes AUTO queries (and names the deciding
word), names the target instance from its state cache and finds the active spans from the query's
state words; a scene without one answers AUTO queries time-agnostically and says why, and an
explicit TIME_SENSITIVE request NO_STATE_CACHE.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import enum
import logging
import math
from pathlib import Path
import time
from typing import Dict, Optional, Tuple
import uuid

from st4r_ros.errors import St4rError
from st4r_ros.field.model import (majority_instance, member_logits, ReferringField,
                                  render_relevance)
from st4r_ros.render.camera import Camera
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import check_time, Scene4D
from st4r_ros.temporal.intervals import Verdict
from st4r_ros.temporal.layer import TemporalLayer
import torch
from torch import Tensor

log = logging.getLogger(__name__)

MASK_THRESHOLD = 0.5
MAX_QUERY_CHARS = 2000  # longer texts are refused before tokenising: no encoder reads that far


class QueryStatus(enum.IntEnum):
    """ReferringResult.STATUS_*: what happened (see msg/ReferringResult.msg)."""

    UNSET = 0
    OK = 1
    NO_TARGET = 2
    INVALID = 3
    DROPPED = 4
    NO_SCENE = 5
    NOT_READY = 6
    ERROR = 7
    NOT_IN_STATE = 8
    NO_STATE_CACHE = 9


class QueryMode(enum.IntEnum):
    """ReferringResult.MODE_*: what the caller asked for."""

    AUTO = 0
    TIME_AGNOSTIC = 1
    TIME_SENSITIVE = 2


@dataclass(frozen=True)
class QueryRequest:
    """
    One referring query.

    :ivar text: the referring expression.
    :ivar mode: AUTO lets the engine decide whether the query is time-sensitive.
    :ivar time: normalised scene time in [0, 1]; None uses the engine's current scene time.
    :ivar camera: render the target's mask from this camera; None renders nothing.
    :ivar request_id: echoed in the result; empty: the engine makes one up.
    """

    text: str
    mode: QueryMode = QueryMode.AUTO
    time: Optional[float] = None
    camera: Optional[Camera] = None
    request_id: str = ''


@dataclass(frozen=True)
class TimeSpan:
    """A closed interval [start, end] of normalised scene time, and in seconds (NaN: unknown)."""

    start: float
    end: float
    start_s: float = math.nan
    end_s: float = math.nan
    score: float = math.nan


@dataclass(frozen=True)
class TargetCloud:
    """
    The target's Gaussians at the scene time.

    Centres xyz [M, 3], colours rgb [M, 3] in [0, 1], relevance p [M] in [0, 1].
    """

    xyz: Tensor
    rgb: Tensor
    score: Tensor


NAN3 = (math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class QueryResult:
    """
    The answer to one query.

    The fields of msg/ReferringResult.msg plus the payloads (target cloud, mask) that the ROS
    face publishes beside it. Target fields hold their "none" values (-1, 0, NaN) unless status
    is OK.
    """

    request_id: str
    query: str
    status: QueryStatus
    message: str
    mode: QueryMode = QueryMode.AUTO
    time_sensitive: bool = False
    time_sensitivity_reason: str = ''
    target_instance_id: int = -1
    score: float = math.nan
    no_target_threshold: float = math.nan
    active_spans: Tuple[TimeSpan, ...] = ()
    frame_times: Tuple[float, ...] = ()  # time-sensitive answers: the state cache's frames
    frame_scores: Tuple[float, ...] = ()  # and the smoothed score at each (NaN: unknown)
    span_threshold: float = math.nan
    scene_time: float = math.nan
    scene_time_s: float = math.nan
    centroid: Tuple[float, float, float] = NAN3
    bbox_min: Tuple[float, float, float] = NAN3
    bbox_max: Tuple[float, float, float] = NAN3
    num_gaussians: int = 0
    latency_ms: Dict[str, float] = field(default_factory=dict)
    cloud: Optional[TargetCloud] = None
    mask: Optional[Tensor] = None  # [H, W] bool, for `camera`
    camera: Optional[Camera] = None

    @property
    def ok(self) -> bool:
        return self.status == QueryStatus.OK


class QueryEngine:
    """
    Answers referring queries over one scene.

    :param scene: the 4D scene.
    :param field: its trained referring field, or None (queries are then answered NO_SCENE).
    :param encoder: the text encoder the field was trained with (``encode(texts)``).
    :param threshold: the layer's calibrated no-target threshold on max_i sigmoid(m_i).
    :param device: where the scene is deformed, the field runs and masks are rendered.
    :param duration_s: the scene's duration, for times in seconds (None: unknown).
    :param temporal: the scene's temporal layer (state cache and router), or None: queries are
        then answered time-agnostically, and forced time-sensitive ones NO_STATE_CACHE.
    :param temporal_encoder: the sentence encoder the temporal layer was built with, when it is
        not ``encoder`` (``encode(texts)``); None: ``encoder``.
    """

    def __init__(self, scene: Scene4D, field: Optional[ReferringField] = None, encoder=None,
                 threshold: float = 0.0, device: torch.device | str = 'cpu',
                 duration_s: Optional[float] = None,
                 temporal: Optional[TemporalLayer] = None, temporal_encoder=None) -> None:
        self.scene = scene
        self.device = torch.device(device)
        self.field = field.to(self.device).eval() if field is not None else None
        self.encoder = encoder
        self.threshold = float(threshold)
        self.duration_s = duration_s
        self.temporal = temporal.to(self.device) if temporal is not None else None
        self.temporal_encoder = temporal_encoder
        self.scene_time = 0.0
        # The last answered query's (text, time, time-sensitive, relevance [1, N]): a moving
        # camera re-renders the mask without encoding the text or running the field again.
        self._last_relevance: Optional[Tuple[str, float, bool, Tensor]] = None

    # A003: `open` is the public constructor's name (QueryEngine.open(path)); as a class
    # attribute it shadows the builtin nowhere.
    @classmethod
    def open(cls, scene_path: str | Path, layer_dir: str | Path | None = None,  # noqa: A003
             device: str = 'auto', compile_text: bool = False) -> 'QueryEngine':
        """
        Open the engine for the scene at ``scene_path`` with its referring layer.

        The layer is the one in the bundle, or in ``layer_dir``; without a layer the engine
        answers every query NO_SCENE. The temporal layer is read from the same folder when
        there is one, with the sentence encoder it records.

        :param compile_text: on CUDA, replay the text encoders this engine loads for itself as
            CUDA graphs (``TextEncoder.compile_for_queries``: tens of seconds now, a 7B
            encoder's query about 6x faster); the process-wide default MiniLM stays eager.
            Ignored, with a warning, on the CPU.
        :raises TextEncoderError: the temporal layer's encoder cannot be found.
        """
        from st4r_ros.field.layer import default_layer_dir, load_referring
        from st4r_ros.scene.loading import load_scene
        from st4r_ros.temporal.layer import load_temporal_layer, temporal_encoder_for

        chosen = torch.device('cuda' if device == 'auto' and torch.cuda.is_available()
                              else 'cpu' if device == 'auto' else device)
        scene = load_scene(scene_path)
        referring = load_referring(scene_path, layer_dir, chosen)
        info = scene.info()
        if referring is None:
            return cls(scene, device=chosen, duration_s=info.duration_s)
        field_, encoder, threshold = referring
        temporal = load_temporal_layer(default_layer_dir(scene_path, layer_dir), chosen)
        own = temporal_encoder_for(temporal, encoder, chosen)
        if compile_text:
            _compile_own_encoders((encoder, own), chosen)
        return cls(scene, field_, encoder, threshold, chosen, info.duration_s, temporal, own)

    def set_scene_time(self, t: float) -> None:
        """Set the time of queries and mask updates that give none (raises TimeRangeError)."""
        self.scene_time = check_time(t)

    def query(self, request: QueryRequest) -> QueryResult:
        """Answer one request; never raises for anything the request or the scene holds."""
        started = time.perf_counter()
        request_id = request.request_id or uuid.uuid4().hex[:12]
        mode = _mode(request.mode)
        base = QueryResult(request_id=request_id, query=_printable(request.text),
                           status=QueryStatus.UNSET, message='',
                           mode=QueryMode.AUTO if mode is None else mode,
                           no_target_threshold=self.threshold)
        try:
            if mode is None:
                result = replace(base, status=QueryStatus.INVALID,
                                 message=f'mode: expected one of {[m.name for m in QueryMode]}'
                                         f', got {request.mode!r}')
            else:
                result = self._answer(request, base)
        except St4rError as err:  # bad input found deeper down (time, camera, text)
            result = replace(base, status=QueryStatus.INVALID, message=str(err))
        except Exception as err:  # noqa: BLE001 - every query gets an answer, failures too
            # Unexpected: the answer says what failed, the log keeps where.
            log.exception('query %s (%r) failed', request_id, _printable(request.text)[:80])
            result = replace(base, status=QueryStatus.ERROR,
                             message=f'{type(err).__name__}: {err}')
        latency = dict(result.latency_ms, total=1000 * (time.perf_counter() - started))
        return replace(result, latency_ms=latency)

    def _answer(self, request: QueryRequest, base: QueryResult) -> QueryResult:
        from st4r_ros.text import normalise_expression

        if not isinstance(request.text, str) or len(request.text) > MAX_QUERY_CHARS:
            return replace(base, status=QueryStatus.INVALID,
                           message=f'query: expected a text of at most {MAX_QUERY_CHARS} '
                                   'characters')
        text = normalise_expression(request.text)
        if self.field is None or self.encoder is None:
            return replace(base, status=QueryStatus.NO_SCENE,
                           message='this scene has no referring layer; train one with '
                                   '`st4r train SCENE SUPERVISION`')
        t = self.scene_time if request.time is None else check_time(request.time)
        clock = _Stopwatch()
        encoded = self.encoder.encode([text])
        said = self._temporal_encoding(text, encoded)
        stated = said.sentence[0]  # [D] in the temporal layer's space
        clock.lap('text')
        sensitive, reason = self._route(base.mode, said)
        if sensitive and self.temporal is None:
            return replace(base, query=text, status=QueryStatus.NO_STATE_CACHE,
                           time_sensitive=True, time_sensitivity_reason=reason,
                           message='time-sensitive query: this scene has no temporal layer '
                                   '(state cache); ask time-agnostically or train with state '
                                   'captions', latency_ms=clock.laps)
        gaussians = self.scene.at(t, self.device)
        located = self.temporal.locate(stated.to(self.device)) if sensitive else None
        if located is None:
            relevance = self._relevance(gaussians, encoded)  # [1, N]
        else:  # the state cache named the instance: its Gaussians are the target
            relevance = member_logits(self.field.assignment, located[0])
        probabilities = torch.sigmoid(relevance[0])
        self._last_relevance = (text, t, sensitive, relevance)
        clock.lap('where')
        base = replace(base, query=text, scene_time=t, scene_time_s=self._seconds(t),
                       time_sensitive=sensitive, time_sensitivity_reason=reason,
                       active_spans=(TimeSpan(0.0, 1.0, 0.0, self._seconds(1.0)),),
                       latency_ms=clock.laps)
        result = self._where(base, gaussians, probabilities, relevance, request.camera, clock)
        if located is not None and result.ok:
            result = replace(result, score=located[1],
                             message=f'{result.message}, located by the state cache (match '
                                     f'{located[1]:.3f})')
        if not sensitive or not result.ok:
            return result
        return self._when(result, self.temporal.state_of(said)[0], clock)

    def _temporal_encoding(self, text: str, encoded):
        """Return the query's ``TextFeatures`` as the temporal layer routes and compares it."""
        if self.temporal is None:
            return encoded
        own = self.temporal_encoder
        return self.temporal.encode_queries(own or self.encoder, [text], None if own else encoded)

    def _route(self, mode: QueryMode, said) -> Tuple[bool, str]:
        """Decide whether a query is time-sensitive, and say why (the deciding word too)."""
        if mode != QueryMode.AUTO:
            return mode == QueryMode.TIME_SENSITIVE, 'requested'
        if self.temporal is None:
            return False, 'no temporal layer: answered time-agnostically'
        p, index = self.temporal.router.evidence(said)
        p = float(p[0])
        kind = 'time-sensitive' if p >= 0.5 else 'time-agnostic'
        word = (self.temporal_encoder or self.encoder).word_at(said.texts[0], int(index[0]))
        evidence = f' (most time-sensitive word: {word!r})' if word else ''
        return p >= 0.5, f'router: p(time-sensitive) = {p:.2f}{evidence}, so {kind}'

    def _when(self, result: QueryResult, state: Tensor, clock: '_Stopwatch') -> QueryResult:
        """Add the target's active spans for the query's state feature [D] (no rendering)."""
        target = result.target_instance_id
        intervals = self.temporal.intervals(target, state.to(self.device))
        clock.lap('when')
        if intervals is None:
            return replace(result, status=QueryStatus.NO_STATE_CACHE, active_spans=(),
                           latency_ms=clock.laps,
                           message=f'time-sensitive query: instance {target} has no state '
                                   'cache (no state captions were given for it)')
        times = self.temporal.cache.frame_times.tolist()
        spans = tuple(TimeSpan(times[a], times[b], self._seconds(times[a]),
                               self._seconds(times[b]), float(intervals.raw[a:b + 1].nanmean()))
                      for a, b in intervals.runs)
        answer = replace(result, frame_times=tuple(times),
                         frame_scores=tuple(intervals.scores.tolist()),
                         span_threshold=intervals.threshold, latency_ms=clock.laps)
        gap = f'; {intervals.missing} of {len(times)} frames have no state' \
            if intervals.missing else ''
        if intervals.verdict == Verdict.NEVER:
            best = float(intervals.scores.nan_to_num(nan=-math.inf, neginf=-math.inf).max())
            return replace(answer, status=QueryStatus.NOT_IN_STATE, active_spans=(),
                           message=f'instance {target} is never in the asked state (best '
                                   f'frame {best:.3f} below {intervals.threshold:.3f}){gap}')
        return replace(answer, active_spans=spans,
                       message=f'{result.message}; {len(spans)} active span(s), '
                               f'{intervals.verdict.value}{gap}')

    def _where(self, base: QueryResult, gaussians: Gaussians, probabilities: Tensor,
               relevance: Tensor, camera: Optional[Camera], clock: '_Stopwatch') -> QueryResult:
        score = float(probabilities.max())
        selected = probabilities >= MASK_THRESHOLD
        if score < self.threshold or not bool(selected.any()):
            return replace(base, status=QueryStatus.NO_TARGET, score=score,
                           active_spans=(),
                           message=f'no target: best score {score:.3f} below the threshold '
                                   f'{max(self.threshold, MASK_THRESHOLD):.3f}')
        xyz = gaussians.means[selected]
        weights = gaussians.opacities[selected].clamp_min(1e-6)
        centroid = (xyz * weights[:, None]).sum(0) / weights.sum()
        instance = majority_instance(self.field.assignment, selected)
        result = replace(
            base, status=QueryStatus.OK, score=score,
            message=f'target instance {instance}, {int(selected.sum())} Gaussians',
            target_instance_id=instance,
            centroid=_triple(centroid), bbox_min=_triple(xyz.min(0).values),
            bbox_max=_triple(xyz.max(0).values), num_gaussians=int(selected.sum()),
            cloud=TargetCloud(xyz, gaussians.rgb[selected], probabilities[selected]))
        if camera is None:
            return result
        mask = self._render_mask(gaussians, relevance, camera)
        clock.lap('render')
        return replace(result, mask=mask, camera=camera, latency_ms=clock.laps)

    def render_mask(self, result: QueryResult, camera: Camera) -> Tensor:
        """
        Render the mask [H, W] bool of an answered query from another camera.

        The mask is at the query's scene time (a new camera pose re-renders the current
        target); a time-sensitive answer's target is its instance's Gaussians.
        """
        if not result.ok:
            return torch.zeros(camera.height, camera.width, dtype=torch.bool)
        gaussians = self.scene.at(result.scene_time, self.device)
        asked = (result.query, result.scene_time, result.time_sensitive)
        if self._last_relevance is not None and self._last_relevance[:3] == asked:
            relevance = self._last_relevance[3]
        elif result.time_sensitive:
            relevance = member_logits(self.field.assignment, result.target_instance_id)
        else:
            relevance = self._relevance(gaussians, self.encoder.encode([result.query]))
        return self._render_mask(gaussians, relevance, camera)

    def _relevance(self, gaussians: Gaussians, encoded) -> Tensor:
        """Compute m [E, N] of the encoded expressions (words, mask, sentence) at ``gaussians``."""
        with torch.no_grad():
            return self.field(gaussians.means, encoded.words.to(self.device),
                              encoded.word_mask.to(self.device),
                              encoded.sentence.to(self.device)).relevance

    def _render_mask(self, gaussians: Gaussians, relevance: Tensor, camera: Camera) -> Tensor:
        with torch.no_grad():
            rendered = render_relevance(gaussians, camera, relevance)  # [H, W, 1]
        return (rendered[..., 0] >= MASK_THRESHOLD).cpu()

    def _seconds(self, t: float) -> float:
        return t * self.duration_s if self.duration_s else math.nan


class _Stopwatch:
    """Milliseconds between successive laps, by name."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps: Dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = 1000 * (now - self._last)
        self._last = now


def _compile_own_encoders(encoders, device: torch.device) -> None:
    """Compile the given text encoders for single queries, but the shared default MiniLM."""
    if device.type != 'cuda':
        log.warning('compile_text ignored on %s: CUDA graphs need a CUDA device', device)
        return
    for encoder in {id(e): e for e in encoders if e is not None}.values():
        if not encoder.shared:  # the default is fast eager, and other users hold that object
            encoder.compile_for_queries()


def _mode(mode) -> Optional[QueryMode]:
    """Return the QueryMode of ``mode`` (a QueryMode or its int value), None when it is none."""
    try:
        return QueryMode(int(mode))
    except (TypeError, ValueError):
        return None


def _printable(text) -> str:
    """Return the query as echoed in results: any input, as a bounded string."""
    shown = text if isinstance(text, str) else repr(text)
    return shown[:MAX_QUERY_CHARS]


def _triple(values: Tensor) -> Tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)
