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
QueryEngine: exactly one result with an explicit status for every request.

The field and encoder are the test doubles of doubles.py, with a known answer ("object k" is
relevant exactly on instance k's Gaussians), so the engine's own logic is what is checked:
thresholds, target cloud, mask, statuses. The trained field itself is tested in
test_field/test_training.
"""

from dataclasses import replace
import math
from types import SimpleNamespace

from doubles import InstanceField, KeywordEncoder, SMALL, temporal_layer
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import pytest
from st4r_ros import engine as engine_module
from st4r_ros.engine import QueryEngine, QueryMode, QueryRequest, QueryStatus
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.scene.keyframes import KeyframedScene
from st4r_ros.synthetic.scene import generate_synthetic
from st4r_ros.temporal import IntervalParams, Router, StateCache, TemporalLayer
from st4r_ros.text import EncoderSpec
import torch


@pytest.fixture(scope='module')
def synthetic():
    return generate_synthetic(seed=1, config=SMALL)


@pytest.fixture()
def engine(synthetic):
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    ids = synthetic.keyframes[0][1].instance_ids
    return QueryEngine(scene, InstanceField(ids), KeywordEncoder(), threshold=0.4,
                       duration_s=2.0)


def camera_on(synthetic) -> Camera:
    return synthetic.views[0].camera


def test_ok_answer_has_target_cloud_box_and_mask(engine, synthetic):
    camera = camera_on(synthetic)
    result = engine.query(QueryRequest('object 3', time=0.5, camera=camera, request_id='r1'))
    assert result.status == QueryStatus.OK, result.message
    gaussians = engine.scene.at(0.5)
    members = gaussians.instance_ids == 3
    assert result.request_id == 'r1' and result.target_instance_id == 3
    assert result.num_gaussians == int(members.sum()) == len(result.cloud.xyz)
    assert torch.equal(result.cloud.xyz, gaussians.means[members])
    assert result.bbox_min == pytest.approx(tuple(gaussians.means[members].min(0).values.tolist()))
    assert all(lo <= c <= hi for lo, c, hi in zip(result.bbox_min, result.centroid,
                                                  result.bbox_max))
    assert result.scene_time == 0.5 and result.scene_time_s == pytest.approx(1.0)
    assert [(s.start, s.end) for s in result.active_spans] == [(0.0, 1.0)]
    assert result.score == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item())
    # The mask is where instance 3 is seen: compare with a render of its one-hot channel.
    one_hot = members.float()[:, None]
    expected = render(gaussians, camera, one_hot).image[..., 0] >= 0.5
    assert result.mask.shape == (camera.height, camera.width)
    assert bool(expected.any()) and torch.equal(result.mask, expected)
    assert set(result.latency_ms) >= {'text', 'where', 'render', 'total'}


def test_views_follow_a_new_camera_from_one_rasterisation(engine, synthetic, monkeypatch):
    result = engine.query(QueryRequest('object 3', time=0.5))
    calls, renders = [], []
    encode = engine.encoder.encode
    engine.encoder.encode = lambda texts: calls.append(texts) or encode(texts)
    rasterise = engine_module.render
    monkeypatch.setattr(engine_module, 'render',
                        lambda *args, **kw: renders.append(1) or rasterise(*args, **kw))
    other = synthetic.views[-1].camera
    mask, image = engine.render_views(result, other)
    assert calls == [] and len(renders) == 1  # the cached relevance; mask and colour at once
    again = engine.query(QueryRequest('object 3', time=0.5, camera=other), colour=True)
    assert mask.dtype == torch.bool and torch.equal(mask, again.mask)
    # The colour is the plain RGB render of the scene, composited in the same pass.
    plain = rasterise(engine.scene.at(0.5), other).image
    assert image.shape == (other.height, other.width, 3)
    assert torch.allclose(image, plain.clamp(0, 1), atol=1e-5)
    assert torch.allclose(again.image, image)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA (gsplat renders there)')
def test_one_rasterisation_on_cuda_gives_the_plain_render_and_the_mask(synthetic):
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    ids = synthetic.keyframes[0][1].instance_ids
    engine = QueryEngine(scene, InstanceField(ids), KeywordEncoder(), threshold=0.4,
                         device='cuda', duration_s=2.0)
    camera = camera_on(synthetic)
    result = engine.query(QueryRequest('object 3', time=0.5, camera=camera), colour=True)
    gaussians = scene.at(0.5, 'cuda')
    plain = render(gaussians, camera).image.clamp(0, 1)
    assert torch.allclose(result.image, plain, atol=1e-4)
    one_hot = (gaussians.instance_ids == 3).float()[:, None]
    expected = (render(gaussians, camera, one_hot).image[..., 0] >= 0.5).cpu()
    assert (result.mask != expected).float().mean() < 1e-3  # pixels at exactly 0.5 may flip


def test_views_of_an_answer_without_a_target_show_no_target(engine, synthetic):
    camera = camera_on(synthetic)
    for result in (engine.query(QueryRequest('object 99', time=0.5)),
                   engine.query(QueryRequest(''))):
        mask, image = engine.render_views(result, camera)
        assert mask.shape == (camera.height, camera.width) and not bool(mask.any())
        assert image is not None and image.shape == (camera.height, camera.width, 3)


def test_a_batch_answers_each_request_as_alone(engine, synthetic):
    camera = synthetic.views[0].camera
    requests = [QueryRequest('object 3', time=0.5, camera=camera, request_id='a'),
                QueryRequest('object 99', time=0.5, camera=camera, request_id='b'),
                QueryRequest('', request_id='c'),
                QueryRequest('object 2', time=0.0, camera=camera, request_id='d'),
                QueryRequest('object 3', time=2.0, request_id='e')]
    batch = engine.query_batch(requests, colour=True)
    assert [r.request_id for r in batch] == ['a', 'b', 'c', 'd', 'e']
    for request, answer in zip(requests, batch):
        alone = engine.query(request, colour=True)
        assert (answer.status, answer.target_instance_id, answer.message) == \
            (alone.status, alone.target_instance_id, alone.message)
        for got, expected in ((answer.mask, alone.mask), (answer.image, alone.image)):
            assert (got is None) == (expected is None)
            assert got is None or torch.allclose(got.float(), expected.float(), atol=1e-5)
    assert [r.status for r in batch] == [QueryStatus.OK, QueryStatus.NO_TARGET,
                                         QueryStatus.INVALID, QueryStatus.OK,
                                         QueryStatus.INVALID]
    assert batch[1].mask is None and batch[1].image is not None  # no target: colour only


class _SeenTexts(KeywordEncoder):
    """KeywordEncoder that also reads "the object k" and records every text it encodes."""

    def __init__(self):
        self.seen = []

    def encode(self, texts, prompt=''):
        self.seen.extend(texts)
        return super().encode([t.removeprefix('the ') for t in texts], prompt)


def test_a_command_is_answered_by_its_referring_part_and_quoted_whole(synthetic):
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    encoder = _SeenTexts()
    engine = QueryEngine(scene, InstanceField(synthetic.keyframes[0][1].instance_ids), encoder,
                         threshold=0.4, duration_s=2.0)
    command, bare = (engine.query(QueryRequest(text, time=0.5)) for text in
                     ('could you please fetch the object 3 for me?', 'the object 3'))
    assert command.ok and command.query == 'could you please fetch the object 3 for me?'
    assert (command.target_instance_id, command.score) == (bare.target_instance_id, bare.score)
    assert encoder.seen[:2] == ['could you please fetch the object 3 for me?', 'the object 3']
    assert encoder.seen[2:] == ['the object 3']  # a text without a frame is encoded once
    engine.whole_commands = True  # the ablation: the field reads the frame too
    whole = engine.query(QueryRequest('could you please fetch the object 3 for me?', time=0.5))
    assert whole.status == QueryStatus.NO_TARGET and encoder.seen[3:] == [whole.query]


def test_no_target_reports_the_best_score(engine):
    result = engine.query(QueryRequest('object 99'))
    assert result.status == QueryStatus.NO_TARGET
    assert result.score == pytest.approx(torch.sigmoid(torch.tensor(-10.0)).item())
    assert result.target_instance_id == -1 and result.num_gaussians == 0
    assert result.cloud is None and math.isnan(result.centroid[0])


@pytest.mark.parametrize(
    'request_, status, words',
    [
        (QueryRequest(''), QueryStatus.INVALID, 'empty'),
        (QueryRequest('   \n\t'), QueryStatus.INVALID, 'empty'),
        (QueryRequest('x' * 5000), QueryStatus.INVALID, 'at most'),
        (QueryRequest(None), QueryStatus.INVALID, 'at most'),
        (QueryRequest('object 3', mode=7), QueryStatus.INVALID, 'mode'),
        (QueryRequest('object 3', mode=1.7), QueryStatus.INVALID, 'mode'),
        (QueryRequest('object 3', mode=True), QueryStatus.INVALID, 'mode'),
        (QueryRequest('object 3', mode='1'), QueryStatus.INVALID, 'mode'),
        (QueryRequest('object 3', time='0.5'), QueryStatus.INVALID, 'time'),
        (QueryRequest('object 3', time=True), QueryStatus.INVALID, 'time'),
        (QueryRequest('object 3', time=10 ** 400), QueryStatus.INVALID, 'time'),
        (QueryRequest('object \ud800 3'), QueryStatus.INVALID, 'not valid Unicode'),
        (QueryRequest('object 3', time=1.5), QueryStatus.INVALID, 'time'),
        (QueryRequest('object 3', time=float('nan')), QueryStatus.INVALID, 'time'),
        (QueryRequest('object 3', mode=QueryMode.TIME_SENSITIVE), QueryStatus.NO_STATE_CACHE,
         'temporal layer'),
    ],
)
def test_bad_requests_get_an_explicit_status(engine, request_, status, words):
    result = engine.query(request_)
    assert result.status == status and words in result.message
    assert result.request_id  # made up when not given


def test_auto_mode_says_why_it_is_time_agnostic(engine):
    result = engine.query(QueryRequest('object 3'))
    assert not result.time_sensitive and 'temporal layer' in result.time_sensitivity_reason
    forced = engine.query(QueryRequest('object 3', mode=QueryMode.TIME_AGNOSTIC))
    assert forced.time_sensitivity_reason == 'requested'


def test_scene_without_layer_and_internal_failures(engine, synthetic, caplog):
    bare = QueryEngine(engine.scene)
    assert bare.query(QueryRequest('object 3')).status == QueryStatus.NO_SCENE

    class Broken(InstanceField):

        def forward(self, *args):
            raise RuntimeError('out of memory')

    broken = QueryEngine(engine.scene, Broken(engine.field.assignment), KeywordEncoder())
    result = broken.query(QueryRequest('object 3', request_id='r7'))
    assert result.status == QueryStatus.ERROR and 'out of memory' in result.message
    # The log keeps the traceback of an unexpected failure; bad input logs nothing.
    (record,) = [r for r in caplog.records if r.name == 'st4r_ros.engine']
    assert 'r7' in record.getMessage() and record.exc_info[0] is RuntimeError
    caplog.clear()
    assert engine.query(QueryRequest('')).status == QueryStatus.INVALID
    assert not [r for r in caplog.records if r.name == 'st4r_ros.engine']


def test_scene_time_setting(engine):
    engine.set_scene_time(0.25)
    assert engine.query(QueryRequest('object 3')).scene_time == 0.25
    with pytest.raises(Exception, match='time'):
        engine.set_scene_time(-1)


# The engine keeps no state a query changes, so one engine serves every example.
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=50).map(repr)),
       t=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       mode=st.integers(min_value=-3, max_value=5))
def test_fuzzed_requests_always_get_one_result(engine, text, t, mode):
    result = engine.query(QueryRequest(text, mode=mode, time=t))
    assert result.status in set(QueryStatus) - {QueryStatus.UNSET}
    assert isinstance(result.message, str) and result.request_id


def test_engine_runs_the_real_field_and_encoder(synthetic):
    """
    The engine's call of the real ReferringField and TextEncoder (the doubles above only mimic).

    An untrained field answers OK or NO_TARGET, never INVALID or ERROR.
    """
    from st4r_ros.field.model import FieldConfig, ReferringField
    from st4r_ros.text import TextEncoder

    scene = KeyframedScene(synthetic.keyframes)
    gaussians = scene.at(0.0)
    encoder = TextEncoder.default()
    field = ReferringField(len(gaussians), gaussians.means, FieldConfig(text_dim=encoder.dim),
                           gaussians.instance_ids)
    engine = QueryEngine(scene, field, encoder, threshold=0.0)
    camera = camera_on(synthetic)
    result = engine.query(QueryRequest('the red cube left of the white sphere', camera=camera))
    assert result.status in (QueryStatus.OK, QueryStatus.NO_TARGET), result.message
    assert engine.render_views(result, camera)[0].shape == (camera.height, camera.width)
    assert not result.truncated and 'cut' not in result.message
    long = engine.query(QueryRequest('the red cube ' * 100))  # beyond MiniLM's 256 tokens
    assert long.truncated and "cut at the encoder's maximum length" in long.message


def test_time_sensitive_answers_spans_or_an_explicit_status(engine):
    timed = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        duration_s=2.0, temporal=temporal_layer(-5.0))
    sensitive = QueryMode.TIME_SENSITIVE
    found = timed.query(QueryRequest('object 3', mode=sensitive))
    assert found.ok and found.time_sensitive and found.time_sensitivity_reason == 'requested'
    assert [(s.start, s.end, s.end_s) for s in found.active_spans] == [(0.0, 0.0, 0.0),
                                                                       (1.0, 1.0, 2.0)]
    assert found.frame_times == (0.0, 0.5, 1.0) and found.frame_scores == (1.0, -1.0, 1.0)
    never = timed.query(QueryRequest('object 2', mode=sensitive))
    assert never.status == QueryStatus.NOT_IN_STATE and never.active_spans == ()
    assert 'never in the asked state' in never.message and never.target_instance_id == 2
    uncached = timed.query(QueryRequest('object 4', mode=sensitive))
    assert uncached.status == QueryStatus.NO_STATE_CACHE and 'instance 4' in uncached.message
    agnostic = timed.query(QueryRequest('object 3'))  # the router says p = sigmoid(-5)
    assert agnostic.ok and not agnostic.time_sensitive
    assert 'router' in agnostic.time_sensitivity_reason
    assert [(s.start, s.end) for s in agnostic.active_spans] == [(0.0, 1.0)]


def test_the_state_cache_names_the_instance_of_a_time_sensitive_query(engine, synthetic):
    timed = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        temporal=temporal_layer(5.0, locate_floor=0.5))
    camera = camera_on(synthetic)
    # The field would answer instance 2; the cache's best match is instance 3's.
    result = timed.query(QueryRequest('object 2', time=0.5, camera=camera,
                                      mode=QueryMode.TIME_SENSITIVE))
    assert result.ok and result.target_instance_id == 3, result.message
    assert 'located by the state cache (match 1.000)' in result.message
    assert result.score == pytest.approx(1.0) and len(result.active_spans) == 2
    members = engine.scene.at(0.5).instance_ids == 3
    assert result.num_gaussians == int(members.sum())
    assert torch.equal(timed.render_views(result, camera)[0], result.mask)
    agnostic = timed.query(QueryRequest('object 2', time=0.5, mode=QueryMode.TIME_AGNOSTIC))
    assert agnostic.target_instance_id == 2  # time-agnostic queries stay with the field
    # The same words at the same time asked the other way keep their own target's mask.
    assert torch.equal(timed.render_views(result, camera)[0], result.mask)
    below = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        temporal=temporal_layer(5.0, locate_floor=1.5))
    assert below.query(QueryRequest('object 2', mode=QueryMode.TIME_SENSITIVE)
                       ).target_instance_id == 2  # no match reaches the floor: the field


def test_time_sensitive_queries_are_encoded_with_the_layers_query_prompt(engine):
    layer = temporal_layer(5.0, locate_floor=0.5)
    prompted = replace(layer, text_encoder=replace(layer.text_encoder, query_prompt='object '))
    timed = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        temporal=prompted)
    # The field reads '2' as nothing; the layer reads 'object 2', which its cache places.
    result = timed.query(QueryRequest('2', mode=QueryMode.TIME_SENSITIVE))
    assert result.ok and result.target_instance_id == 3, result.message
    assert 'located by the state cache' in result.message
    unprompted = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                             temporal=layer)
    assert unprompted.query(QueryRequest('2', mode=QueryMode.TIME_SENSITIVE)).status \
        == QueryStatus.NO_TARGET


def test_the_router_decides_auto_queries(engine):
    timed = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        temporal=temporal_layer(5.0))
    routed = timed.query(QueryRequest('object 3'))
    assert routed.time_sensitive and 'p(time-sensitive) = 0.99' in routed.time_sensitivity_reason
    assert "most time-sensitive word: 'object'" in routed.time_sensitivity_reason
    assert len(routed.active_spans) == 2


class SpillField(InstanceField):
    """Instance 3 at relevance +10, and the Gaussians of instance 2 listed in ``spill`` at +3."""

    def __init__(self, instance_ids, spill):
        super().__init__(instance_ids)
        self.register_buffer('spill', spill)

    def forward(self, means, words, word_mask, sentence):
        relevance = torch.where(self.assignment == 3, 10.0, -10.0)
        relevance = torch.where(self.spill, 3.0, relevance)
        return SimpleNamespace(relevance=relevance[None].expand(len(words), -1))


def test_a_target_is_the_one_instance_it_names_not_what_spills_over(synthetic):
    # A look-alike lit up by the same words must not join the cloud, box or mask.
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    ids = synthetic.keyframes[0][1].instance_ids
    spill = (ids == 2) & (torch.arange(len(ids)) % 3 == 0)  # fewer than instance 3's
    engine = QueryEngine(scene, SpillField(ids, spill), KeywordEncoder(), threshold=0.4)
    camera = camera_on(synthetic)
    result = engine.query(QueryRequest('object 3', time=0.5, camera=camera))
    assert result.ok and result.target_instance_id == 3
    gaussians = scene.at(0.5)
    members = gaussians.instance_ids == 3
    assert result.num_gaussians == int(members.sum()) and torch.equal(result.cloud.xyz,
                                                                      gaussians.means[members])
    expected = render(gaussians, camera, members.float()[:, None]).image[..., 0] >= 0.5
    assert torch.equal(result.mask, expected)
    moved, _ = engine.render_views(result, synthetic.views[1].camera)  # a later pose, too
    again = render(gaussians, synthetic.views[1].camera, members.float()[:, None]).image
    assert torch.equal(moved, again[..., 0] >= 0.5)


class FlatField(InstanceField):
    """The same relevance everywhere: a best score of sigmoid(logit)."""

    def __init__(self, instance_ids, logit):
        super().__init__(instance_ids)
        self.logit = logit

    def forward(self, means, words, word_mask, sentence):
        return SimpleNamespace(relevance=torch.full((len(words), len(means)), self.logit))


@pytest.mark.parametrize('calibrated, applied', [(0.3, 0.5), (0.7, 0.7)])
def test_the_no_target_threshold_in_the_message_is_the_one_in_the_field(synthetic, calibrated,
                                                                        applied):
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    ids = synthetic.keyframes[0][1].instance_ids
    engine = QueryEngine(scene, FlatField(ids, -0.2), KeywordEncoder(), threshold=calibrated)
    result = engine.query(QueryRequest('object 3'))  # best score sigmoid(-0.2) = 0.45
    assert result.status == QueryStatus.NO_TARGET
    assert result.no_target_threshold == pytest.approx(applied)
    assert f'below the threshold {applied:.3f}' in result.message
    assert result.score < result.no_target_threshold


def test_frames_without_a_state_caption_are_counted_as_the_scores_show_them(engine):
    # Instance 3 has state captions at frames 0 and 4 only: with a window of 3, frames 1 and 3
    # borrow a neighbour's score and frame 2 has none to borrow.
    valid = torch.tensor([[True, False, False, False, True]])
    cache = StateCache(torch.tensor([3]), torch.linspace(0.0, 1.0, 5),
                       torch.tensor([[[1.0], [0.0], [0.0], [0.0], [1.0]]]), valid)
    layer = TemporalLayer(cache, Router(torch.tensor([1.0]), 0.0), cache,
                          IntervalParams(window=3, level=0.5), EncoderSpec('keywords'))
    timed = QueryEngine(engine.scene, engine.field, engine.encoder, threshold=0.4,
                        temporal=layer)
    answer = timed.query(QueryRequest('object 3', mode=QueryMode.TIME_SENSITIVE))
    assert sum(math.isnan(s) for s in answer.frame_scores) == 1
    assert ('3 of 5 frames have no state caption (2 scored from their neighbours, '
            '1 unknown (NaN))') in answer.message


def test_gaussians_of_no_object_are_no_target(synthetic):
    # Stray Gaussians the instance assignment left out (background, floaters) are not a target.
    scene = KeyframedScene(synthetic.keyframes, duration_s=2.0)
    ids = synthetic.keyframes[0][1].instance_ids.clone()
    stray = torch.zeros(len(ids), dtype=torch.bool)
    stray[torch.nonzero(ids == 3)[:2, 0]] = True  # two of instance 3's, unassigned
    assignment = torch.where(stray, -1, ids)
    engine = QueryEngine(scene, SpillField(assignment, stray), KeywordEncoder(), threshold=0.4)
    engine.field.assignment[assignment == 3] = -1  # and nothing else lit belongs to an object
    answer = engine.query(QueryRequest('object 3'))
    assert answer.status == QueryStatus.NO_TARGET and answer.target_instance_id == -1
    assert 'belong to no object' in answer.message and answer.score > 0.5
