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
The vocabulary guard: a query mostly in words no caption is like is NO_TARGET, named.

The real MiniLM places the threshold and judges (the guard is about what that encoder
knows); the engine's use of it is checked with the keyword doubles and a one-hot word encoder.
"""

from doubles import InstanceField, KeywordEncoder, SMALL, temporal_layer
import pytest
from st4r_ros.engine import QueryEngine, QueryMode, QueryRequest, QueryStatus
from st4r_ros.errors import SceneFormatError
from st4r_ros.field.vocabulary import (build_vocabulary, caption_words, CALIBRATION_WORDS,
                                       FAMILIAR_SHARE, Familiarity, Vocabulary,
                                       VocabularyGuard)
from st4r_ros.scene.keyframes import KeyframedScene
from st4r_ros.synthetic.scene import generate_synthetic
from st4r_ros.text import content_words, TextEncoder, TextFeatures
import torch

CAPTIONS = ('the red cube', 'a large white sphere', 'the cube left of the white sphere',
            'the pink torus is spinning', 'the small green cylinder behind the torus')


@pytest.fixture(scope='module')
def minilm():
    return TextEncoder.default()


@pytest.fixture(scope='module')
def guard(minilm):
    return VocabularyGuard(build_vocabulary(CAPTIONS, minilm), minilm)


def test_content_words_leave_out_function_words_and_punctuation():
    assert content_words('Could you hand me the RED cube, please?') == ['hand', 'red', 'cube']
    assert content_words('which one is it?') == []
    assert caption_words(CAPTIONS) == tuple(sorted(
        {'red', 'cube', 'large', 'white', 'sphere', 'left', 'pink', 'torus', 'spinning',
         'small', 'green', 'cylinder', 'behind'}))


def test_the_threshold_lets_few_unrelated_words_pass(guard, minilm):
    unrelated = [w for w in CALIBRATION_WORDS if w not in guard.vocabulary.words]
    judged = guard.judge(unrelated)
    passed = sum(f.about_scene for f in judged) / len(judged)
    assert passed <= FAMILIAR_SHARE + 1 / len(judged)
    assert all(f.about_scene for f in guard.judge(list(CAPTIONS)))  # its own words: familiar


@pytest.mark.parametrize('text', ['a purple elephant playing chess',
                                  'the coffee mug on the kitchen shelf', 'bring me the banana',
                                  'which object is the teapot?',
                                  'the lampshade near the fireplace'])
def test_queries_about_something_else_are_not_about_the_scene(guard, text):
    familiarity = guard.judge([text])[0]
    assert not familiarity.about_scene
    for word in familiarity.unfamiliar:
        assert repr(word) in familiarity.message()
    assert f'{familiarity.threshold:.2f}' in familiarity.message()


@pytest.mark.parametrize('text', ['the red cube', 'locate the white sphere, please',
                                  'which one is it?', 'the torus while it spins'])
def test_queries_in_the_captions_words_are_about_the_scene(guard, text):
    assert guard.judge([text])[0].about_scene


def test_words_are_encoded_once(guard, minilm, monkeypatch):
    guard.judge(['the red cube near the teapot'])
    calls = []
    monkeypatch.setattr(minilm, 'encode', lambda texts, **kw: calls.append(texts))
    guard.judge(['the teapot', 'the red cube'])
    assert calls == []


def test_familiarity_needs_more_than_half_of_the_words():
    def judged(scores):
        return Familiarity(tuple(f'w{i}' for i in range(len(scores))), tuple(scores), 0.5)

    assert judged([0.9, 0.9, 0.1]).about_scene and not judged([0.9, 0.1]).about_scene
    assert judged([]).about_scene and judged([0.1, 0.1]).unfamiliar == ('w0', 'w1')


def test_relations_verbs_and_generic_nouns_are_not_judged(guard):
    familiarity = guard.judge(['could you bring me the object next to the teapot?'])[0]
    assert familiarity.words == ('teapot',) and not familiarity.about_scene
    assert guard.judge(['which one is furthest to the left?'])[0].words == ()


@pytest.mark.parametrize('document, words', [
    ([], 'must be an object'), ({'threshold': 0.5}, "lacks field 'words'"),
    ({'words': [], 'threshold': 0.5}, 'non-empty strings'),
    ({'words': ['cube', 3], 'threshold': 0.5}, 'non-empty strings'),
    ({'words': ['cube'], 'threshold': 'high'}, "mistypes field 'threshold'"),
    ({'words': ['cube'], 'threshold': float('nan')}, "mistypes field 'threshold'"),
    ({'words': ['cube'], 'threshold': 2.0}, 'in [-1, 1]'),
])
def test_a_bad_vocabulary_document_is_refused_by_name(document, words):
    with pytest.raises(SceneFormatError, match='referring.json: vocabulary') as err:
        Vocabulary.from_json(document, 'referring.json: vocabulary')
    assert words in str(err.value)


def test_the_document_round_trips():
    vocabulary = Vocabulary(('cube', 'red'), 0.42, {'median': 0.3})
    assert Vocabulary.from_json(vocabulary.to_json(), 'x').words == ('cube', 'red')
    assert Vocabulary.from_json(vocabulary.to_json(), 'x').threshold == 0.42


class OneHotWords:
    """Each known word its own axis; every other word one shared axis no known word has."""

    def __init__(self, known):
        self.known = list(known)

    def encode(self, texts, prompt=''):
        rows = torch.zeros(len(texts), len(self.known) + 1)
        for i, text in enumerate(texts):
            rows[i, self.known.index(text) if text in self.known else -1] = 1.0
        return TextFeatures(rows[:, None], torch.ones(len(texts), 1, dtype=torch.bool), rows,
                            (False,) * len(texts), tuple(texts))


def test_the_engine_answers_an_unfamiliar_query_no_target_and_names_its_words():
    synthetic = generate_synthetic(seed=1, config=SMALL)
    scene = KeyframedScene(synthetic.keyframes)
    ids = synthetic.keyframes[0][1].instance_ids
    engine = QueryEngine(scene, InstanceField(ids), KeywordEncoder(), threshold=0.4)
    assert engine.query(QueryRequest('object 3')).status == QueryStatus.OK
    known = ('1', '2')  # 'object' is a generic noun, never judged: '3' alone decides
    engine.guard = VocabularyGuard(Vocabulary(known, 0.5), OneHotWords(known))
    answer = engine.query(QueryRequest('object 3'))
    assert answer.status == QueryStatus.NO_TARGET and answer.target_instance_id == -1
    assert "1 of 1 content words" in answer.message and "'3'" in answer.message
    assert answer.cloud is None and answer.score > 0.5  # the field's score, kept
    assert engine.query(QueryRequest('object 2')).status == QueryStatus.OK


def test_a_query_the_state_cache_locates_is_not_judged_by_its_words():
    synthetic = generate_synthetic(seed=1, config=SMALL)
    scene = KeyframedScene(synthetic.keyframes)
    ids = synthetic.keyframes[0][1].instance_ids
    known = ('1', '2')
    guard = VocabularyGuard(Vocabulary(known, 0.5), OneHotWords(known))
    for floor, located in ((0.5, True), (1.5, False)):
        engine = QueryEngine(scene, InstanceField(ids), KeywordEncoder(), threshold=0.4,
                             temporal=temporal_layer(5.0, locate_floor=floor))
        engine.guard = guard
        answer = engine.query(QueryRequest('object 3', mode=QueryMode.TIME_SENSITIVE))
        assert answer.ok == located, answer.message
        assert ('located by the state cache' in answer.message) == located
