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
A query mostly in words that none of the layer's captions is like ("a purple elephant playing
chess") is NO_TARGET, naming those words (field/vocabulary.py): the field lights something for
any text. A time-sensitive query the state cache locates is exempt: that match, above its
calibrated floor, already says the query is about one of the scene's objects.

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
import numbers
from pathlib import Path
import time
from typing import (Callable, Dict, Hashable, Iterable, List, Literal, Optional, overload,
                    Sequence, Tuple, TypeVar, Union)
import uuid

from st4r_ros.command_text import referring_part
from st4r_ros.errors import St4rError
from st4r_ros.field.model import (FieldOutput, frozen, majority_instance, MEMBER_LOGIT,
                                  member_logits, ReferringField)
from st4r_ros.field.vocabulary import Familiarity, Vocabulary, VocabularyGuard
from st4r_ros.render.api import render, view_colours
from st4r_ros.render.camera import Camera
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import check_time, Scene4D
from st4r_ros.temporal.intervals import Verdict
from st4r_ros.temporal.layer import TemporalLayer
from st4r_ros.text import QueryEncoder, TextEncoder, TextFeatures
import torch
from torch import Tensor

log = logging.getLogger(__name__)

MASK_THRESHOLD = 0.5
# The device kinds the engine runs on; torch knows more, none of which renders here.
DEVICE_TYPES = ('cpu', 'cuda')
MAX_QUERY_CHARS = 2000  # longer texts are refused before tokenising: no encoder reads that far
# Expressions through the field in one pass: bounds its [E, N, h] activations.
EXPRESSIONS_PER_PASS = 8


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
    image: Optional[Tensor] = None  # [H, W, 3] colour for `camera`, when asked for
    camera: Optional[Camera] = None
    truncated: bool = False  # the encoder cut the text at its maximum length

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
    :param vocabulary: the words of the layer's captions: a query mostly in other words is
        NO_TARGET (field/vocabulary.py). None: every query goes to the field; so does one with
        ``vocabulary_guard`` False (an ablation's switch).
    """

    def __init__(self, scene: Scene4D, field: Optional[ReferringField] = None,
                 encoder: Optional[QueryEncoder] = None, threshold: float = 0.0,
                 device: torch.device | str = 'cpu', duration_s: Optional[float] = None,
                 temporal: Optional[TemporalLayer] = None,
                 temporal_encoder: Optional[QueryEncoder] = None,
                 vocabulary: Optional[Vocabulary] = None, vocabulary_guard: bool = True) -> None:
        self.scene = scene
        self.device = torch.device(device)
        self.field = field.to(self.device).eval() if field is not None else None
        self.encoder = encoder
        self.threshold = float(threshold)
        self.duration_s = duration_s
        self.temporal = temporal.to(self.device) if temporal is not None else None
        self.temporal_encoder = temporal_encoder
        self.guard = (VocabularyGuard(vocabulary, encoder)
                      if vocabulary is not None and encoder is not None and vocabulary_guard
                      else None)
        # An ablation's switch (`st4r eval --whole-commands`): the field reads whole commands,
        # request frames included, as before command_text.py.
        self.whole_commands = False
        self.scene_time = 0.0
        # The last answered query's (text, time, time-sensitive, relevance [1, N]): a moving
        # camera re-renders the mask without encoding the text or running the field again.
        self._last_relevance: Optional[Tuple[str, float, bool, Tensor]] = None

    # A003: `open` is the public constructor's name (QueryEngine.open(path)); as a class
    # attribute it shadows the builtin nowhere.
    @property
    def no_target_threshold(self) -> float:
        """
        Return the score below which an answer is NO_TARGET: the calibrated threshold.

        Never below MASK_THRESHOLD: a target is the Gaussians at p >= MASK_THRESHOLD, so a best
        score under it has nothing to show whatever the calibration says.
        """
        return max(self.threshold, MASK_THRESHOLD)

    @classmethod
    def open(cls, scene_path: str | Path, layer_dir: str | Path | None = None,  # noqa: A003
             device: str = 'auto', compile_text: bool = False,
             vocabulary_guard: bool = True) -> 'QueryEngine':
        """
        Open the engine for the scene at ``scene_path`` with its referring layer.

        The layer is the one in the bundle, or in ``layer_dir``; without a layer the engine
        answers every query NO_SCENE. The temporal layer is read from the same folder when
        there is one, with the sentence encoder it records.

        :param compile_text: on CUDA, replay the text encoders this engine loads for itself as
            CUDA graphs (``TextEncoder.compile_for_queries``: a slower open, faster single
            queries); the process-wide default MiniLM stays eager.
            Ignored, with a warning, on the CPU.
        :param vocabulary_guard: False answers queries in words foreign to the layer's
            captions from the field alone (for ablations).
        :raises TextEncoderError: the temporal layer's encoder cannot be found.
        """
        from st4r_ros.field.layer import load_referring
        from st4r_ros.scene.layers import default_layer_dir
        from st4r_ros.scene.loading import load_scene
        from st4r_ros.temporal.layer import load_temporal_layer, temporal_encoder_for

        chosen = resolve_device(device)
        scene = load_scene(scene_path)
        referring = load_referring(scene_path, layer_dir, chosen)
        info = scene.info()
        if referring is None:
            return cls(scene, device=chosen, duration_s=info.duration_s)
        temporal = load_temporal_layer(default_layer_dir(scene_path, layer_dir), chosen)
        own = temporal_encoder_for(temporal, referring.encoder, chosen)
        if compile_text:
            _compile_own_encoders((referring.encoder, own), chosen)
        return cls(scene, referring.field, referring.encoder, referring.threshold, chosen,
                   info.duration_s, temporal, own, referring.vocabulary, vocabulary_guard)

    def set_scene_time(self, t: float) -> None:
        """Set the time of queries and mask updates that give none (raises TimeRangeError)."""
        self.scene_time = check_time(t)

    def query(self, request: QueryRequest, colour: bool = False) -> QueryResult:
        """
        Answer one request; never raises for anything the request or the scene holds.

        :param colour: with a camera, also return the view's colour (``QueryResult.image``),
            from the same rasterisation as the mask.
        """
        return self.query_batch([request], colour)[0]

    def query_batch(self, requests: Sequence[QueryRequest],
                    colour: bool = False) -> List[QueryResult]:
        """
        Answer several requests, each exactly as ``query`` answers it alone.

        They share what they have in common: one text encoding, one pass of the field per scene
        time (a few expressions at a time) and one rasterisation per camera (every mask of that
        camera, and its colour). Evaluation asks this, so its figures are what a robot gets.
        """
        started = time.perf_counter()
        answers: Dict[int, QueryResult] = {}
        asked: List[_Asked] = []
        for index, request in enumerate(requests):
            asked_or_refused = self._admit(index, request)
            if isinstance(asked_or_refused, QueryResult):
                answers[index] = asked_or_refused
            else:
                asked.append(asked_or_refused)
        if asked:
            answers.update(self._answer_guarded(asked, colour))
        waited = 1000 * (time.perf_counter() - started)
        return [replace(answers[i], latency_ms=dict(answers[i].latency_ms, total=waited))
                for i in range(len(requests))]

    def _admit(self, index: int, request: QueryRequest) -> Union[_Asked, QueryResult]:
        """Return the request ready to answer (``_Asked``), or its refusal (``QueryResult``)."""
        from st4r_ros.text import normalise_expression

        mode = as_mode(request.mode)
        base = QueryResult(request_id=request.request_id or new_request_id(),
                           query=echoed_text(request.text), status=QueryStatus.UNSET, message='',
                           mode=QueryMode.AUTO if mode is None else mode,
                           no_target_threshold=self.no_target_threshold)
        if mode is None:
            return replace(base, status=QueryStatus.INVALID,
                           message=f'mode: expected one of {[m.name for m in QueryMode]}, '
                                   f'got {request.mode!r}')
        if not isinstance(request.text, str) or len(request.text) > MAX_QUERY_CHARS:
            return replace(base, status=QueryStatus.INVALID,
                           message=f'query: expected a text of at most {MAX_QUERY_CHARS} '
                                   'characters')
        try:
            text = normalise_expression(request.text)
            t = self.scene_time if request.time is None else check_time(request.time)
        except St4rError as err:  # an empty text, a time outside [0, 1]
            return replace(base, status=QueryStatus.INVALID, message=str(err))
        if self.field is None or self.encoder is None:
            return replace(base, status=QueryStatus.NO_SCENE,
                           message='this scene has no referring layer; train one with '
                                   '`st4r train SCENE SUPERVISION`')
        return _Asked(index, request, replace(base, query=text, scene_time=t,
                                              scene_time_s=self._seconds(t)))

    def _answer_guarded(self, asked: List['_Asked'], colour: bool) -> Dict[int, QueryResult]:
        """``_answer`` every admitted request; a failure answers each of them, never raises."""
        try:
            return self._answer(asked, colour)
        except St4rError as err:  # bad input found deeper down (a camera, a scene time)
            failed = QueryStatus.INVALID, str(err)
        except Exception as err:  # noqa: BLE001 - every query gets an answer, failures too
            # Unexpected: the answer says what failed, the log keeps where.
            log.exception('queries %s failed', [a.base.request_id for a in asked])
            failed = QueryStatus.ERROR, f'{type(err).__name__}: {err}'
        return {a.index: replace(a.base, query=echoed_text(a.request.text), status=failed[0],
                                 message=failed[1], scene_time=math.nan,
                                 scene_time_s=math.nan) for a in asked}

    def _answer(self, asked: List['_Asked'], colour: bool) -> Dict[int, QueryResult]:
        clock = _Stopwatch()
        _, encoder = self._layer()
        commands = [a.base.query for a in asked]
        encoded = encoder.encode(commands)  # the whole command: routing and the when branch
        described = commands if self.whole_commands else [referring_part(t) for t in commands]
        # The field and the guard read the referring part (command_text.py); encoded again
        # only when some command had a request frame around it.
        referring = encoded if described == commands else encoder.encode(described)
        familiarity = self.guard.judge(referring.texts) if self.guard is not None else None
        said = self._temporal_encoding(encoded)
        evidence = self.temporal.router.evidence(said) if self.temporal is not None else None
        states = self.temporal.state_of(said) if self.temporal is not None else None  # [E, D]
        clock.lap('text')
        routes = [self._route(a.base.mode, evidence, said.texts[k], k)
                  for k, a in enumerate(asked)]
        answers: Dict[int, QueryResult] = {}
        for t, members in _grouped(range(len(asked)), lambda k: asked[k].base.scene_time):
            gaussians = self.scene.at(t, self.device)
            relevance, located = self._relevance_of(gaussians, referring, said, members, routes)
            for k in members:
                answers[k] = self._where_of(asked[k], routes[k], gaussians, relevance[k],
                                            located.get(k),
                                            familiarity[k] if familiarity else None)
                relevance[k] = self._confined(relevance[k], answers[k])
            clock.lap('where')
            asked_when = [k for k in members if answers[k].time_sensitive and answers[k].ok]
            if self.temporal is not None and states is not None:  # else asked_when is empty
                for k in asked_when:
                    answers[k] = self._when(self.temporal, answers[k], states[k])
            if asked_when:
                clock.lap('when')
            if self._render_answers({k: answers[k] for k in members}, gaussians, relevance,
                                    colour, answers):
                clock.lap('render')
            last = len(asked) - 1
            if last in members:  # a moving camera re-renders it without the field
                self._last_relevance = (answers[last].query, answers[last].scene_time,
                                        answers[last].time_sensitive, relevance[last])
        return {asked[k].index: _cut(replace(answer, latency_ms=dict(clock.laps)),
                                     encoded.truncated[k])
                for k, answer in answers.items()}

    def _relevance_of(self, gaussians: Gaussians, encoded: TextFeatures, said: TextFeatures,
                      members: List[int], routes: List[Tuple[bool, str]]
                      ) -> Tuple[Dict[int, Tensor], Dict[int, Tuple[int, float]]]:
        """
        Return each member's relevance m [1, N] at ``gaussians`` and the instances located.

        A time-sensitive query whose instance the state cache names takes that instance's
        Gaussians; every other one runs through the field, a few expressions a pass.
        """
        located: Dict[int, Tuple[int, float]] = {}
        relevance: Dict[int, Tensor] = {}
        for k in members:
            found = None
            if routes[k][0] and self.temporal is not None:
                found = self.temporal.locate(said.sentence[k].to(self.device))
            if found is not None:
                located[k] = found
                relevance[k] = member_logits(self._layer()[0].assignment, found[0])
        rest = [k for k in members if k not in located]
        for start in range(0, len(rest), EXPRESSIONS_PER_PASS):
            part = rest[start:start + EXPRESSIONS_PER_PASS]
            rows = self._field_relevance(gaussians, encoded, part)  # [E, N]
            relevance.update({k: rows[j:j + 1] for j, k in enumerate(part)})
        return relevance, located

    def _confined(self, relevance: Tensor, answer: QueryResult) -> Tensor:
        """
        Return relevance m [1, N] outside the answer's instance pushed to "not the target".

        The mask, cloud and extent then show the one object the answer names, not every
        Gaussian the expression also lit up (a look-alike, a neighbour).
        """
        if answer.target_instance_id < 0:
            return relevance
        outside = self._layer()[0].assignment != answer.target_instance_id
        return relevance.masked_fill(outside[None], -MEMBER_LOGIT)

    def _field_relevance(self, gaussians: Gaussians, encoded: TextFeatures,
                         rows: List[int]) -> Tensor:
        """Compute m [E, N] of the encoded expressions ``rows`` at ``gaussians``."""
        field, _ = self._layer()
        words, mask = encoded.words[rows], encoded.word_mask[rows]
        length = max(int(mask.sum(dim=1).max()), 1)  # padding no expression of these uses
        with torch.no_grad():
            output: FieldOutput = field(gaussians.means, words[:, :length].to(self.device),
                                        mask[:, :length].to(self.device),
                                        encoded.sentence[rows].to(self.device))
        return output.relevance

    def _where_of(self, asked: '_Asked', route: Tuple[bool, str], gaussians: Gaussians,
                  relevance: Tensor, located: Optional[Tuple[int, float]],
                  familiarity: Optional[Familiarity]) -> QueryResult:
        """Answer where for one query from its relevance [1, N] (``_when`` adds when)."""
        sensitive, reason = route
        base = replace(asked.base, time_sensitive=sensitive, time_sensitivity_reason=reason,
                       active_spans=(TimeSpan(0.0, 1.0, 0.0, self._seconds(1.0)),))
        if sensitive and self.temporal is None:
            return replace(base, status=QueryStatus.NO_STATE_CACHE, active_spans=(),
                           message='time-sensitive query: this scene has no temporal layer '
                                   '(state cache); ask time-agnostically or train with state '
                                   'captions')
        probabilities = torch.sigmoid(relevance[0])
        # A query the state cache matched to one object's captions (above its calibrated
        # floor) is about this scene whatever its words: only the field's answers are judged.
        if familiarity is not None and not familiarity.about_scene and located is None:
            return replace(base, status=QueryStatus.NO_TARGET, score=float(probabilities.max()),
                           active_spans=(), camera=asked.request.camera,
                           message=familiarity.message())
        result = self._where(base, gaussians, probabilities, asked.request.camera)
        if located is not None and result.ok:
            result = replace(result, score=located[1],
                             message=f'{result.message}, located by the state cache (match '
                                     f'{located[1]:.3f})')
        return result

    def _temporal_encoding(self, encoded: TextFeatures) -> TextFeatures:
        """Return the queries' ``TextFeatures`` as the temporal layer routes and compares them."""
        if self.temporal is None:
            return encoded
        own = self.temporal_encoder
        return self.temporal.encode_queries(own or self._layer()[1], list(encoded.texts),
                                            None if own else encoded)

    def _route(self, mode: QueryMode, evidence: Optional[Tuple[Tensor, Tensor]], text: str,
               k: int) -> Tuple[bool, str]:
        """
        Decide whether query ``k`` is time-sensitive, and say why (the deciding word too).

        :param evidence: the router's p(time-sensitive) [E] and deciding words [E] of the
            queries (None: no temporal layer).
        """
        if mode != QueryMode.AUTO:
            return mode == QueryMode.TIME_SENSITIVE, 'requested'
        if evidence is None:
            return False, 'no temporal layer: answered time-agnostically'
        p = float(evidence[0][k])
        kind = 'time-sensitive' if p >= 0.5 else 'time-agnostic'
        word = (self.temporal_encoder or self._layer()[1]).word_at(text, int(evidence[1][k]))
        named = f' (most time-sensitive word: {word!r})' if word else ''
        return p >= 0.5, f'router: p(time-sensitive) = {p:.2f}{named}, so {kind}'

    def _when(self, temporal: TemporalLayer, result: QueryResult, state: Tensor) -> QueryResult:
        """Add the target's active spans for the query's state feature [D] (no rendering)."""
        target = result.target_instance_id
        intervals = temporal.intervals(target, state.to(self.device))
        if intervals is None:
            return replace(result, status=QueryStatus.NO_STATE_CACHE, active_spans=(),
                           message=f'time-sensitive query: instance {target} has no state '
                                   'cache (no state captions were given for it)')
        times = temporal.cache.frame_times.tolist()
        spans = tuple(TimeSpan(times[a], times[b], self._seconds(times[a]),
                               self._seconds(times[b]), float(intervals.raw[a:b + 1].nanmean()))
                      for a, b in intervals.runs)
        answer = replace(result, frame_times=tuple(times),
                         frame_scores=tuple(intervals.scores.tolist()),
                         span_threshold=intervals.threshold)
        gap = _missing_frames(intervals.missing, int(intervals.scores.isnan().sum()), len(times))
        if intervals.verdict == Verdict.NEVER:
            best = float(intervals.scores.nan_to_num(nan=-math.inf, neginf=-math.inf).max())
            return replace(answer, status=QueryStatus.NOT_IN_STATE, active_spans=(),
                           message=f'instance {target} is never in the asked state (best '
                                   f'frame {best:.3f} below {intervals.threshold:.3f}){gap}')
        return replace(answer, active_spans=spans,
                       message=f'{result.message}; {len(spans)} active span(s), '
                               f'{intervals.verdict.value}{gap}')

    def _where(self, base: QueryResult, gaussians: Gaussians, probabilities: Tensor,
               camera: Optional[Camera]) -> QueryResult:
        """Find the target of probabilities p [N]: its instance, extent and cloud (no render)."""
        score = float(probabilities.max())
        selected = probabilities >= MASK_THRESHOLD
        if not score >= self.no_target_threshold:  # NaN too: nothing to show
            return replace(base, status=QueryStatus.NO_TARGET, score=score, active_spans=(),
                           camera=camera,
                           message=f'no target: best score {score:.3f} below the threshold '
                                   f'{self.no_target_threshold:.3f}')
        assignment = self._layer()[0].assignment
        instance = majority_instance(assignment, selected)
        if instance < 0 and bool((assignment >= 0).any()):
            # A scene of objects, and what the expression lights is none of them (stray or
            # background Gaussians): there is nothing to hand a robot.
            return replace(base, status=QueryStatus.NO_TARGET, score=score, active_spans=(),
                           camera=camera,
                           message=f'no target: the {int(selected.sum())} Gaussian(s) at p >= '
                                   f'{MASK_THRESHOLD} (best score {score:.3f}) belong to no '
                                   'object of the scene')
        if instance >= 0:  # one object: relevance that spills onto a look-alike is not its
            selected &= assignment == instance
        xyz = gaussians.means[selected]
        weights = gaussians.opacities[selected].clamp_min(1e-6)
        centroid = (xyz * weights[:, None]).sum(0) / weights.sum()
        return replace(
            base, status=QueryStatus.OK, score=score, camera=camera,
            message=f'target instance {instance}, {int(selected.sum())} Gaussians',
            target_instance_id=instance,
            centroid=_triple(centroid), bbox_min=_triple(xyz.min(0).values),
            bbox_max=_triple(xyz.max(0).values), num_gaussians=int(selected.sum()),
            cloud=TargetCloud(xyz, gaussians.rgb[selected], probabilities[selected]))

    def _render_answers(self, group: Dict[int, QueryResult], gaussians: Gaussians,
                        relevance: Dict[int, Tensor], colour: bool,
                        answers: Dict[int, QueryResult]) -> bool:
        """
        Render, once per camera, the masks of the answers with a target (and the colour).

        Returns whether anything was rendered.
        """
        rendered = False
        with_camera = [(k, answer.camera) for k, answer in group.items()
                       if answer.camera is not None]
        for _, pairs in _grouped(with_camera, lambda pair: id(pair[1])):
            camera = pairs[0][1]
            members = [k for k, _ in pairs]
            targets = [k for k in members if group[k].cloud is not None]  # a target found
            if not targets and not colour:
                continue
            masks, image = self._render_views(gaussians, [relevance[k] for k in targets],
                                              camera, colour)
            for k in members:
                mask = masks[targets.index(k)] if k in targets else None
                answers[k] = replace(answers[k], mask=mask, image=image)
            rendered = True
        return rendered

    @overload
    def render_views(self, result: QueryResult, camera: Camera,
                     colour: Literal[True] = True) -> Tuple[Tensor, Tensor]: ...

    @overload
    def render_views(self, result: QueryResult, camera: Camera,
                     colour: bool) -> Tuple[Tensor, Optional[Tensor]]: ...

    def render_views(self, result: QueryResult, camera: Camera,
                     colour: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """
        Render an answered query's mask [H, W] bool (and colour [H, W, 3]) from another camera.

        One rasterisation, at the query's scene time (a new camera pose re-renders the current
        target); a time-sensitive answer's target is its instance's Gaussians. A result without
        a target gives an all-zero mask.
        """
        t = result.scene_time if math.isfinite(result.scene_time) else self.scene_time
        gaussians = self.scene.at(t, self.device)
        relevance: List[Tensor] = []
        if result.cloud is not None:  # a target was found (OK, or the when part failed)
            asked = (result.query, result.scene_time, result.time_sensitive)
            if self._last_relevance is not None and self._last_relevance[:3] == asked:
                relevance = [self._last_relevance[3]]
            elif result.time_sensitive:
                relevance = [member_logits(self._layer()[0].assignment,
                                           result.target_instance_id)]
            else:
                relevance = [self._confined(self._field_relevance(
                    gaussians, self._layer()[1].encode([result.query]), [0]), result)]
        masks, image = self._render_views(gaussians, relevance, camera, colour)
        mask = masks[0] if masks else torch.zeros(camera.height, camera.width, dtype=torch.bool)
        return mask, image

    def _render_views(self, gaussians: Gaussians, relevance: List[Tensor], camera: Camera,
                      colour: bool) -> Tuple[List[Tensor], Optional[Tensor]]:
        """
        Masks [H, W] bool of relevances m [1, N] each, and the colour [H, W, 3] when asked.

        One rasterisation: the view-dependent colour and sigmoid(m) stacked as channels over an
        explicit background of 0 (an empty pixel is black and "not the target").
        """
        channels = [view_colours(gaussians, camera)] if colour else []
        channels += [torch.sigmoid(m).T for m in relevance]  # [N, 1] each
        with torch.no_grad():
            image = render(frozen(gaussians), camera, torch.cat(channels, dim=1),
                           background=0.0).image  # [H, W, 3 * colour + E]
        first = 3 if colour else 0
        masks = [(image[..., first + e] >= MASK_THRESHOLD).cpu() for e in range(len(relevance))]
        return masks, (image[..., :3].clamp(0.0, 1.0) if colour else None)

    def _seconds(self, t: float) -> float:
        return t * self.duration_s if self.duration_s else math.nan

    def _layer(self) -> Tuple[ReferringField, QueryEncoder]:
        """Return the field and its encoder, which every query admitted for answering has."""
        if self.field is None or self.encoder is None:  # _admit answers NO_SCENE before this
            raise RuntimeError('this engine has no referring layer')
        return self.field, self.encoder


class _Stopwatch:
    """Milliseconds between successive laps, by name."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps: Dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = 1000 * (now - self._last)
        self._last = now


def _compile_own_encoders(encoders: Iterable[Optional[TextEncoder]],
                          device: torch.device) -> None:
    """Compile the given text encoders for single queries, but the shared default MiniLM."""
    if device.type != 'cuda':
        log.warning('compile_text ignored on %s: CUDA graphs need a CUDA device', device)
        return
    for encoder in {id(e): e for e in encoders if e is not None}.values():
        if not encoder.shared:  # the default is fast eager, and other users hold that object
            encoder.compile_for_queries()


def resolve_device(device: str) -> torch.device:
    """
    Return the device ``device`` names: auto (CUDA when there is one, else cpu), cpu, cuda:N.

    :raises St4rError: not a device name, or a CUDA device this machine does not have (found
        here, rather than as a traceback from deep inside the first CUDA call).
    """
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        chosen: Optional[torch.device] = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in DEVICE_TYPES:
        raise St4rError(f'device: expected auto, cpu, cuda or cuda:N, got {device!r}')
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if chosen.type == 'cuda' and count == 0:
        raise St4rError(f'device {device}: this machine has no CUDA device that torch can use; '
                        'expected auto or cpu')
    if chosen.type == 'cuda' and (chosen.index or 0) >= count:
        raise St4rError(f'device {device}: this machine has {count} CUDA device(s); expected '
                        f'cuda:0..cuda:{count - 1}')
    return chosen


def new_request_id() -> str:
    """Make a request id for a query that came without one (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def as_mode(mode: object) -> Optional[QueryMode]:
    """Return the QueryMode of ``mode`` (a QueryMode or its int value), None when it is none."""
    if isinstance(mode, bool) or not isinstance(mode, numbers.Integral):  # 1.7, '1', True
        return None
    try:
        return QueryMode(int(mode))
    except ValueError:  # 9
        return None


def echoed_text(text: object) -> str:
    """Return the query as echoed in results: any input, as a string of MAX_QUERY_CHARS at most."""
    shown = text if isinstance(text, str) else repr(text)
    return shown[:MAX_QUERY_CHARS]


def refusal(request_id: str, text: object, status: QueryStatus, message: str,
            mode: object = QueryMode.AUTO) -> QueryResult:
    """
    Make the result of a request answered without running it (INVALID, NOT_READY, DROPPED...).

    Target fields are at their "none" values; the id is ``request_id`` (a new one when it is
    empty), the text is echoed (``echoed_text``), the mode too if it is one (else AUTO, so that
    the result still converts to a message).
    """
    known = as_mode(mode)
    return QueryResult(request_id=request_id or new_request_id(), query=echoed_text(text),
                       status=status, message=message,
                       mode=QueryMode.AUTO if known is None else known)


@dataclass(frozen=True)
class _Asked:
    """A request admitted for answering: its place in the batch and its result so far."""

    index: int
    request: QueryRequest
    base: QueryResult  # normalised text and scene time set


Item = TypeVar('Item')
Key = TypeVar('Key', bound=Hashable)


def _grouped(items: Iterable[Item], key: Callable[[Item], Key]) -> List[Tuple[Key, List[Item]]]:
    """Group ``items`` by ``key``, groups and members in the order they first appear."""
    groups: Dict[Key, List[Item]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.items())


def _cut(answer: QueryResult, truncated: bool) -> QueryResult:
    """Mark an answer to a text the encoder cut at its maximum length, and say so."""
    if not truncated:
        return answer
    return replace(answer, truncated=True,
                   message=f"{answer.message}; the text was cut at the encoder's maximum length")


def _missing_frames(missing: int, unknown: int, frames: int) -> str:
    """Say how many frames lack a state caption and what their published scores are."""
    if not missing:
        return ''
    filled = missing - unknown
    how = [f'{filled} scored from their neighbours'] if filled else []
    how += [f'{unknown} unknown (NaN)'] if unknown else []
    return f"; {missing} of {frames} frames have no state caption ({', '.join(how)})"


def _triple(values: Tensor) -> Tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)
