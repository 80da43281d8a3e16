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
A robot's command is a request frame around a referring expression: the part the scene answers.

"could you pick up the red cube for me?" asks for "the red cube"; the frame ("could you pick
up", "for me") says what to do with it, which is the planner's business, not the scene's. The
referring field was trained on descriptions, so its relevance is a mean over every word it
reads: a frame of four words it never saw pulls the answer away or below the no-target
threshold (BENCHMARKS.md: per-word shares of the planner requests that missed). The engine
therefore answers ``referring_part`` of a command; the answer still quotes the command.

A leading frame is set aside only when every word of it is a function word or a verb or
particle of asking (``ASKING_WORDS``) and a determiner follows ("the", "a", "this"...); a
question ("which one is red?", "when does the cube spin?") and anything else keep all their
words. A trailing courtesy (", please", "for me") goes too.
"""

from __future__ import annotations

from typing import List

from st4r_ros.text import FUNCTION_WORDS

# Verbs and particles a command uses to ask for an object: what to do with it, not which one.
ASKING_WORDS = frozenset("""
pick put place set hand give pass bring fetch grab take get hold carry lift drop reach go
move navigate drive approach head come walk look point locate find show select touch push
pull open close need want please up down over toward towards
""".split())
# Words that begin the referring expression itself: where a frame ends.
DETERMINERS = frozenset('the a an this that these those'.split())
# Words that make the text a question or a pronoun reference: never part of a frame.
_KEPT = DETERMINERS | frozenset('one ones it its which what where who whom whose how'.split())
FRAME_WORDS = (FUNCTION_WORDS | ASKING_WORDS) - _KEPT
COURTESIES = (('please',), ('for', 'me'))


def referring_part(text: str) -> str:
    """
    Return the referring expression of a command: ``text`` without its request frame.

    "please fetch the small black drum" -> "the small black drum"; "bring me the pink one,
    please" -> "the pink one"; a text without a frame comes back unchanged.
    """
    words = text.split()
    start = _frame_length(words)
    kept = words[start:] if start < len(words) and _bare(words[start]) in DETERMINERS else words
    kept = _without_courtesy(kept)
    # The question mark of "could you hand me ...?" is the request's, not the description's.
    described = ' '.join(kept).rstrip(',.;:!?')
    return text if kept == words or not any(c.isalnum() for c in described) else described


def _bare(word: str) -> str:
    """Return a word lowercased, without the punctuation around it."""
    return word.lower().strip(',.;:!?')


def _frame_length(words: List[str]) -> int:
    """Return how many leading words could belong to a request frame."""
    length = 0
    while length < len(words) and _bare(words[length]) in FRAME_WORDS:
        length += 1
    return length


def _without_courtesy(words: List[str]) -> List[str]:
    """Return words without a trailing courtesy (", please", "for me?")."""
    for courtesy in COURTESIES:
        tail = tuple(_bare(w) for w in words[-len(courtesy):])
        if len(words) > len(courtesy) and tail == courtesy:
            return words[:-len(courtesy)]
    return words
