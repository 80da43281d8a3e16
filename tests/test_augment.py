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

"""Planner-style variants of the captions (field/augment.py) and how training draws them."""

from types import SimpleNamespace

import pytest
from st4r_ros.field.augment import frame_variants, REQUEST_FRAMES
from st4r_ros.field.train import sample_batch, TrainConfig, ViewCaptions
from st4r_ros.synthetic.planner import QUESTIONS, REQUESTS
import torch

FRAME = {1: ['the pink torus', 'a large fuchsia torus', 'the torus left of the red cube'],
         2: ['the red cube', 'a small red cube'],
         3: ['the large white cylinder']}


def test_every_caption_gets_a_request_around_it():
    variants = frame_variants(FRAME)
    assert set(variants) == {t for texts in FRAME.values() for t in texts}
    for caption, made in variants.items():
        request = made[0]
        assert caption in request and request != caption
        assert any(request == frame.format(caption) for frame in REQUEST_FRAMES)


def test_attribute_only_references_name_attributes_no_other_instance_uses():
    variants = frame_variants(FRAME)
    assert 'the pink one' in variants['the pink torus']
    assert {'the fuchsia one'} <= set(variants['a large fuchsia torus'])
    # "large" also describes the cylinder at this frame; "red" is the cube's own (the torus's
    # caption names it of its anchor, not of the torus)
    assert 'the large one' not in variants['a large fuchsia torus']
    assert 'the large one' not in variants['the large white cylinder']
    assert 'the red one' in variants['the red cube']
    assert 'the white one' in variants['the large white cylinder']


def test_plain_descriptions_are_also_said_noun_first_and_without_the_noun():
    made = frame_variants(FRAME)['a large fuchsia torus']
    assert 'the torus, large and fuchsia' in made
    assert 'the object that looks large and fuchsia' in made


def test_captions_with_relations_or_one_word_only_get_just_the_request():
    variants = frame_variants({1: ['the torus left of the red cube', 'the torus'],
                               2: ['the cube']})
    assert len(variants['the torus left of the red cube']) == 1
    assert len(variants['the torus']) == 1


def test_variants_are_deterministic_and_not_the_planner_test_sets_frames():
    assert frame_variants(FRAME) == frame_variants(dict(reversed(list(FRAME.items()))))
    planner = {frame.split('{0}')[0].strip() for frame in REQUESTS + QUESTIONS}
    mine = {frame.split('{}')[0].strip() for frame in REQUEST_FRAMES}
    assert not planner & mine


def _data(variants):
    captions = ViewCaptions(((0, 1), (1, 2)), (), variants)
    return SimpleNamespace(captions=[captions], null_rows=(9,))


@pytest.mark.parametrize('rate', [0.0, 1.0])
def test_training_draws_a_variant_in_a_captions_place_at_the_rate(rate):
    data = _data({0: (5, 6), 1: (7,)})
    config = TrainConfig(captions_per_view=2, negatives_per_view=0, augment_rate=rate)
    drawn = [sample_batch(data, config, torch.Generator().manual_seed(s)) for s in range(20)]
    for _, rows, instances in drawn:
        assert rows[-1] == 9 and instances[-1] == -1  # the null sentence stays
        for row, instance in zip(rows[:-1], instances[:-1]):
            assert row in ((0, 1) if rate == 0 else (5, 6, 7))
            assert instance == {0: 1, 5: 1, 6: 1, 1: 2, 7: 2}[row]


def test_without_variants_a_run_draws_as_the_captions_only_run_does():
    plain, augmented = _data({}), _data({0: (5,), 1: (7,)})
    for seed in range(5):
        a = sample_batch(plain, TrainConfig(augment_rate=0.0), torch.Generator().manual_seed(seed))
        b = sample_batch(augmented, TrainConfig(augment_rate=0.0),
                         torch.Generator().manual_seed(seed))
        assert a == b


def test_a_bad_rate_is_refused():
    with pytest.raises(Exception, match='augment_rate'):
        TrainConfig(augment_rate=1.5)
