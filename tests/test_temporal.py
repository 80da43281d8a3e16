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
The 'when' branch, tested.

Intervals from constructed caches; the router and the state cache on real MiniLM embeddings;
the layer's files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError, SupervisionFormatError
from st4r_ros.supervision.format import Caption, InstanceCaptions, Supervision
from st4r_ros.temporal import (build_state_cache, build_temporal_layer, find_intervals,
                               IntervalParams, load_temporal_layer, Router, save_temporal_layer,
                               StateCache)
from st4r_ros.temporal.intervals import smooth, Verdict
from st4r_ros.temporal.routing import deciding_words
from st4r_ros.text import EncoderSpec, FUNCTION_WORDS, TextEncoder
from tiny_decoder import QUERY_PROMPT, write_tiny_decoder
import torch

FRAMES = 12
A, B, C = torch.eye(3)


def cache_of(states):
    """[T, 3] features: A at the frames listed in states, B elsewhere."""
    return torch.stack([A if t in states else B for t in range(FRAMES)])


def test_intervals_follow_an_event_that_happens_twice():
    found = find_intervals(cache_of({3, 4, 5, 8, 9}), torch.ones(FRAMES, dtype=torch.bool), A,
                           IntervalParams(window=1))
    assert found.verdict == Verdict.SOME and found.runs == [(3, 5), (8, 9)]
    assert found.missing == 0 and 0.0 < found.threshold <= 1.0


def test_smoothing_bridges_a_missing_frame_but_counts_it():
    valid = torch.ones(FRAMES, dtype=torch.bool)
    valid[4] = False
    unsmoothed = find_intervals(cache_of({3, 4, 5}), valid, A, IntervalParams(window=1))
    assert unsmoothed.runs == [(3, 3), (5, 5)]
    smoothed = find_intervals(cache_of({3, 4, 5}), valid, A, IntervalParams(window=3))
    assert smoothed.runs == [(3, 5)] and smoothed.missing == 1
    assert math.isnan(float(smoothed.raw[4])) and not math.isnan(float(smoothed.scores[4]))


def test_a_missing_frame_never_starts_an_interval_of_its_own():
    # Frames 5 and 6 unseen; frame 7 is in another state the query half matches: frame 6 borrows
    # that score. Frame 7 smoothed with frame 8 falls below, so only the borrowed score was left.
    features = torch.stack([A if t in {2, 3} else B for t in range(FRAMES)])
    features[7] = torch.nn.functional.normalize(A + 1.2 * B, dim=0)
    valid = torch.ones(FRAMES, dtype=torch.bool)
    valid[5:7] = False
    found = find_intervals(features, valid, A, IntervalParams(window=3, level=0.4))
    assert float(found.scores[6]) >= found.threshold > float(found.scores[7])
    assert found.runs == [(2, 4)]  # frame 4 borrows from the active frame 3: it extends


def test_smooth_is_a_centred_mean_that_skips_gaps():
    scores = torch.tensor([0.0, 3.0, float('nan'), 6.0])
    assert torch.allclose(smooth(scores, 3), torch.tensor([1.5, 1.5, 4.5, 6.0]))
    assert torch.isnan(smooth(torch.full((3,), float('nan')), 3)).all()


def test_a_state_never_taken_and_one_always_held():
    every = torch.ones(FRAMES, dtype=torch.bool)
    never = find_intervals(cache_of({2, 3}), every, C)
    assert never.verdict == Verdict.NEVER and never.runs == [] and not never.active.any()
    always = find_intervals(cache_of(set(range(FRAMES))), every, A)
    assert always.verdict == Verdict.ALWAYS and always.runs == [(0, FRAMES - 1)]


def test_no_known_frame_is_never_and_says_so():
    found = find_intervals(cache_of({1}), torch.zeros(FRAMES, dtype=torch.bool), A)
    assert found.verdict == Verdict.NEVER and found.missing == FRAMES and found.runs == []


# ---- on real sentence embeddings ----------------------------------------------------------

STATES = {
    1: {0: ['the red cube is at rest'], 1: ['the red cube is standing still'],
        2: ['the red cube is sliding across the table'], 3: ['the red cube is moving'],
        4: ['the red cube is at rest']},
    2: {0: ['the blue sphere is spinning'], 1: ['the blue sphere is spinning round'],
        2: ['the blue sphere is at rest'], 4: ['the blue sphere is standing still']},
}
DESCRIPTIONS = {1: ['the red cube', 'a red cube left of the blue sphere', 'the small cube'],
                2: ['the blue sphere', 'a blue sphere right of the red cube', 'the round object']}


def supervision() -> Supervision:
    times = [f / 4 for f in range(5)]
    instances = [
        InstanceCaptions(k, None, [Caption(f, times[f], text) for f in range(5)
                                   for text in DESCRIPTIONS[k]],
                         [Caption(f, times[f], text) for f, texts in STATES[k].items()
                          for text in texts])
        for k in STATES]
    return Supervision([], instances, Path('.'))


@pytest.fixture(scope='module')
def encoder():
    return TextEncoder.default('cpu')


@pytest.fixture(scope='module')
def layer(encoder):
    return build_temporal_layer(supervision(), encoder, window=1)


def test_state_cache_rows_frames_and_a_missing_frame(encoder):
    cache = build_state_cache(supervision(), encoder)
    assert cache.instance_ids.tolist() == [1, 2]
    assert torch.allclose(cache.frame_times, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert cache.valid.tolist() == [[True] * 5, [True, True, True, False, True]]
    norms = cache.features.norm(dim=-1)
    assert torch.allclose(norms[cache.valid], torch.ones(9), atol=1e-5)
    assert float(norms[1, 3]) == 0.0 and cache.row(7) is None


def test_no_state_captions_is_an_error(encoder):
    empty = Supervision([], [InstanceCaptions(1, None, [Caption(0, 0.0, 'the cube')])], Path('.'))
    with pytest.raises(SupervisionFormatError, match='state_captions'):
        build_state_cache(empty, encoder)


def test_the_router_tells_states_from_descriptions_in_other_words(layer, encoder):
    queries = ['when is the red box moving?', 'the cube while it slides',
               'find the crimson block', 'the ball to the right of the box']
    p = layer.router.probability(encoder.encode(queries)).tolist()
    assert p[0] > 0.5 and p[1] > 0.5 and p[3] < 0.5, p
    # 'crimson block' shares no word with these five captions: with 'find' no longer allowed
    # to decide, the toy router is unsure of it (about 0.5), yet surer of both states.
    assert p[2] < min(p[0], p[1]), p
    assert layer.calibration['router_training_accuracy'] == 1.0


def test_a_state_query_finds_its_frames_in_the_state_space(layer, encoder):
    """
    A caption finds the frames of its state, in its words or others; each instance has its row.

    The cube slides at frame 2 and 'is moving' at frame 3: one state in two wordings.
    """
    sliding, spinning = layer.state_of(encoder.encode(['the red cube is sliding across the table',
                                                       'the blue sphere is spinning round']))
    found = layer.intervals(1, sliding)
    assert found.verdict == Verdict.SOME and found.runs == [(2, 3)], found.raw
    assert layer.intervals(2, spinning).runs == [(0, 1)]
    assert layer.intervals(99, sliding) is None
    calibration = layer.calibration
    assert calibration['description_state_median'] == layer.params.level
    assert layer.params.level < calibration['positive_median']


def test_state_features_follow_the_routers_state_words(layer, encoder):
    """The object's words hardly move a text's state feature; its state words do."""
    said = layer.state_of(encoder.encode(['the red cube is sliding across the table',
                                          'the large blue sphere is sliding across the table',
                                          'the red cube is at rest']))
    assert float(said[0] @ said[1]) > float(said[0] @ said[2]) + 0.2, said @ said.T
    torch.testing.assert_close(said.norm(dim=-1), torch.ones(3))


def test_a_state_below_the_level_is_never(layer, encoder):
    query = layer.state_of(encoder.encode(['the blue sphere is spinning round']))[0]
    best = float(layer.intervals(1, query).scores.max())
    params = dataclasses.replace(layer.params, level=best + 0.01)
    strict = dataclasses.replace(layer, params=params)
    assert strict.intervals(1, query).verdict == Verdict.NEVER
    assert strict.intervals(1, query).active.sum() == 0


def test_layer_files_round_trip_and_refuse_damage(layer, tmp_path):
    save_temporal_layer(tmp_path, layer)
    loaded = load_temporal_layer(tmp_path)
    assert torch.equal(loaded.cache.features, layer.cache.features)
    assert torch.equal(loaded.cache.valid, layer.cache.valid)
    assert loaded.params == layer.params and loaded.text_encoder == layer.text_encoder
    assert torch.equal(loaded.states.features, layer.states.features)
    assert torch.equal(loaded.router.weight, layer.router.weight)
    assert load_temporal_layer(tmp_path / 'elsewhere') is None
    tensors = load_file(str(tmp_path / 'temporal.safetensors'))
    tensors['cache/valid'] = tensors['cache/valid'][:1]
    save_file(tensors, str(tmp_path / 'temporal.safetensors'))
    with pytest.raises(SceneFormatError, match='valid'):
        load_temporal_layer(tmp_path)
    save_temporal_layer(tmp_path, layer)
    tensors = load_file(str(tmp_path / 'temporal.safetensors'))
    del tensors['states/features']
    save_file(tensors, str(tmp_path / 'temporal.safetensors'))
    with pytest.raises(SceneFormatError, match='states/features'):
        load_temporal_layer(tmp_path)
    save_temporal_layer(tmp_path, layer)
    meta = json.loads((tmp_path / 'temporal.json').read_text())
    meta['locate_floor'] = 'high'
    (tmp_path / 'temporal.json').write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match='mistypes'):
        load_temporal_layer(tmp_path)
    # A layer written before prompts and weight types were recorded: name and dim only.
    meta['locate_floor'], meta['text_encoder'] = 0.3, {'name': 'minilm', 'dim': 384}
    (tmp_path / 'temporal.json').write_text(json.dumps(meta))
    assert load_temporal_layer(tmp_path).text_encoder == EncoderSpec('minilm')
    for damaged in ({'name': 3}, 'minilm', {'name': 'x', 'pooling': 'mean'},
                    {'name': 'x', 'dtype': 'float64'}):
        meta['locate_floor'], meta['text_encoder'] = 0.3, damaged
        (tmp_path / 'temporal.json').write_text(json.dumps(meta))
        with pytest.raises(SceneFormatError, match='text_encoder'):
            load_temporal_layer(tmp_path)
    (tmp_path / 'temporal.json').write_text('[1, 2]')
    with pytest.raises(SceneFormatError, match='expected a JSON object'):
        load_temporal_layer(tmp_path)
    save_temporal_layer(tmp_path, layer)
    (tmp_path / 'temporal.safetensors').write_bytes(b'not safetensors')
    with pytest.raises(SceneFormatError, match='safetensors'):
        load_temporal_layer(tmp_path)
    (tmp_path / 'temporal.json').write_text('{"format": "something else"}')
    with pytest.raises(SceneFormatError, match='format'):
        load_temporal_layer(tmp_path)


# ---- with an instruction-prompted, last-token sentence encoder (e5-mistral's shape) ----------

def test_a_prompted_encoder_keeps_documents_and_queries_apart(tmp_path):
    decoder = TextEncoder(write_tiny_decoder(tmp_path / 'decoder'))
    layer = build_temporal_layer(supervision(), decoder, window=1)
    assert layer.text_encoder == EncoderSpec(str(decoder.name), 'float32', QUERY_PROMPT, '')
    caption = 'the red cube is at rest'  # instance 1's caption at frame 0
    as_document = decoder.encode([caption]).sentence[0]
    torch.testing.assert_close(layer.cache.features[0, 0], as_document)
    query = layer.encode_queries(decoder, [caption]).sentence[0]
    torch.testing.assert_close(query, decoder.encode([caption], prompt=QUERY_PROMPT).sentence[0])
    assert not torch.allclose(query, as_document)
    # The router was fitted on query-side encodings: it sees the prompt at training and query.
    assert layer.calibration['router_training_accuracy'] > 0.5
    save_temporal_layer(tmp_path / 'layer', layer)
    loaded = load_temporal_layer(tmp_path / 'layer')
    assert loaded.text_encoder == layer.text_encoder
    reloaded = loaded.text_encoder.load('cpu')
    torch.testing.assert_close(loaded.encode_queries(reloaded, [caption]).sentence[0], query)


def test_an_explicit_query_prompt_wins_over_the_encoders(tmp_path):
    decoder = TextEncoder(write_tiny_decoder(tmp_path / 'decoder'))
    layer = build_temporal_layer(supervision(), decoder, window=1, query_prompt='')
    assert layer.text_encoder.query_prompt == ''
    torch.testing.assert_close(layer.encode_queries(decoder, ['the red cube']).sentence[0],
                               decoder.encode(['the red cube']).sentence[0])


def test_the_router_names_the_word_that_decided(layer, encoder):
    queries = ['the cube while it slides', 'find the crimson block']
    said = encoder.encode(queries)
    p, index = layer.router.evidence(said)
    torch.testing.assert_close(p, layer.router.probability(said))
    words = [encoder.word_at(text, int(i)) for text, i in zip(queries, index)]
    assert words[0] in ('while', 'slides'), words
    assert words[1] in ('crimson', 'block'), words  # never 'find' nor 'the'
    assert encoder.word_at(queries[0], len(queries[0].split()) + 5) is None


@pytest.mark.parametrize('query', [
    'find the cube', 'show me the blue sphere, please', 'where is the thing that is on it?',
    'could you tell me which one is the red cube', 'the small cube while it slides'])
def test_a_function_word_never_decides_the_route(layer, encoder, query):
    # Contextual features of 'the' or 'find' carry the sentence around them, so without the
    # content mask they can win the router's max and be named as the reason.
    said = encoder.encode([query])
    _, index = layer.router.evidence(said)
    word = encoder.word_at(query, int(index[0]))
    assert word is not None and word.lower() not in FUNCTION_WORDS, (query, word)


def test_deciding_words_keep_every_word_of_a_text_of_function_words_only(encoder):
    said = encoder.encode(['the one', 'the red cube'])
    mask = deciding_words(said)
    assert torch.equal(mask[0], said.word_mask[0])  # nothing else to decide with
    words = [encoder.word_at('the red cube', j) for j in range(int(mask[1].sum()) + 1)
             if bool(mask[1, j])]
    assert words == ['red', 'cube']
    stand_in = dataclasses.replace(said, content_mask=None)  # an encoder that cannot tell
    assert torch.equal(deciding_words(stand_in), said.word_mask)


def test_a_layer_of_version_1_is_refused_with_how_to_rebuild(layer, tmp_path):
    save_temporal_layer(tmp_path, layer)
    meta = json.loads((tmp_path / 'temporal.json').read_text())
    meta['version'] = 1
    (tmp_path / 'temporal.json').write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match='version 1.*st4r train'):
        load_temporal_layer(tmp_path)


def test_state_features_must_match_the_cache(layer):
    fewer = StateCache(layer.states.instance_ids[:1], layer.states.frame_times,
                       layer.states.features[:1], layer.states.valid[:1])
    with pytest.raises(SupervisionFormatError, match="cache's instances"):
        dataclasses.replace(layer, states=fewer)
    with pytest.raises(SupervisionFormatError, match='one dimension'):
        dataclasses.replace(layer, router=Router(layer.router.weight[:5], 0.0))
