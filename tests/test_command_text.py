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

"""The referring part of a robot's command: what is set aside and what never is."""

from hypothesis import given, strategies as st
import pytest
from st4r_ros.command_text import ASKING_WORDS, referring_part


@pytest.mark.parametrize('command, described', [
    ('please fetch the small black drum', 'the small black drum'),
    ('bring me the pink one, please', 'the pink one'),
    ('could you hand me the pillar-like one?', 'the pillar-like one'),
    ('move over to the fuchsia globe', 'the fuchsia globe'),
    ('pick up the navy torus just in front of the other navy torus',
     'the navy torus just in front of the other navy torus'),
    ('grab the orange drum for me', 'the orange drum'),
    ('Point at a red cube.', 'a red cube'),
    ('the red cube, please', 'the red cube'),
    ('locate the cube', 'the cube'),
    ('find the red block when it gets flattened', 'the red block when it gets flattened'),
])
def test_a_request_frame_and_a_courtesy_are_set_aside(command, described):
    assert referring_part(command) == described


@pytest.mark.parametrize('text', [
    'the red cube', 'the red cube?', 'the cup in front of me', 'the one that is orange',
    'which object is the thermos?', 'where is the red cube?', 'when does the cube spin?',
    'show me where the cube is', 'find it', 'pick up one of the cubes', 'please',
    'a purple elephant playing chess',
])
def test_descriptions_questions_and_frames_without_an_object_stay_whole(text):
    assert referring_part(text) == text


SAMPLED = sorted(ASKING_WORDS | {'you', 'me', 'could', 'the', 'red', 'cube', 'which', 'of', '?',
                                 ','})


@given(st.lists(st.sampled_from(SAMPLED), min_size=1, max_size=8))
def test_the_referring_part_is_a_run_of_the_commands_words_never_empty(words):
    def bare(text):
        return [w.strip(',.;:!?') for w in text.split() if w.strip(',.;:!?')]

    command = ' '.join(words)
    described = bare(referring_part(command))
    said = bare(command)
    assert described or not said
    assert any(said[i:i + len(described)] == described for i in range(len(said) + 1))
