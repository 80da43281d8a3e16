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
Expressions as a planner sends them, made from the captions of one frame.

Captions describe ("the pink torus", "a large fuchsia torus"); a task planner asks ("locate the
pink torus"), names an object by the one attribute that tells it apart ("the fuchsia one") or
puts its noun first ("the torus, large and fuchsia"). A field trained on descriptions alone
reads the request's words as part of the description: on the demo scene "the cube" lit the red
cube and "locate the cube" one stray Gaussian. ReferSplat and ST4R-Splat train on varied
referring expressions; these variants are what an annotation pipeline would also write, and
they are made from the supervision alone (a frame's captions, never benchmark text):

- a request: one of ``REQUEST_FRAMES`` around the caption, every caption;
- an attribute-only reference, "the <attribute> one", for each attribute of a plain
  description (an article, then content words only: attributes, and the noun last) that no
  caption of another instance at that frame describes it by (in its leading phrase);
- the noun first: "the <noun>, <attributes>", and without the noun: "the object that looks
  <attributes>", for plain descriptions with attributes.

Training draws a caption and, with probability ``TrainConfig.augment_rate``, trains one of its
variants in its place (field/train.py), so each instance's captions keep their share.
"""

from __future__ import annotations

import zlib
from typing import Dict, List, Mapping, Sequence, Set, Tuple, TYPE_CHECKING

from st4r_ros.text import content_words, FUNCTION_WORDS

if TYPE_CHECKING:
    from st4r_ros.supervision.format import Supervision

# Request frames of this module's own, none of the planner test family's (synthetic/planner.py).
REQUEST_FRAMES = ('locate {}', 'find {}', 'show me {}', 'point at {}', 'look at {}', 'take {}',
                  'reach for {}', 'i need {}', 'get {}', 'can you see {}?', 'navigate to {}',
                  'give me {}', 'select {}', 'approach {}', 'hold {}', 'push {}')
ARTICLES = ('the', 'a', 'an')


def frame_variants(captions: Mapping[int, Sequence[str]]) -> Dict[str, Tuple[str, ...]]:
    """
    Return the variants of every caption of one frame (instance id -> its captions).

    Deterministic: the request frame is chosen by the caption's text.
    """
    words = {instance: {w for text in texts for w in _leading_words(text)}
             for instance, texts in captions.items()}
    variants: Dict[str, Tuple[str, ...]] = {}
    for instance, texts in captions.items():
        others: Set[str] = set().union(*(w for k, w in words.items() if k != instance))
        for text in texts:
            variants[text] = (_request(text), *_reworded(text, others))
    return variants


def supervision_variants(supervision: 'Supervision') -> List[str]:
    """Return every variant training can draw from the supervision's captions, once each."""
    frames = sorted({c.frame for inst in supervision.instances for c in inst.captions})
    made: Dict[str, None] = {}
    for frame in frames:
        for variants in frame_variants(supervision.captions_at(frame=frame)).values():
            made.update(dict.fromkeys(variants))
    return list(made)


def _leading_words(text: str) -> List[str]:
    """
    Return the content words of a caption's leading phrase: those that describe its instance.

    The phrase ends at the first function word after the first word: "the torus left of the
    red cube" describes the torus by "torus left", not by "red".
    """
    tokens = text.lower().split()
    end = next((i for i, t in enumerate(tokens[1:], 1) if t in FUNCTION_WORDS), len(tokens))
    return content_words(' '.join(tokens[:end]))


def _request(text: str) -> str:
    """Return the caption inside a request frame chosen by its text."""
    return REQUEST_FRAMES[zlib.crc32(text.encode()) % len(REQUEST_FRAMES)].format(text)


def _reworded(text: str, others: Set[str]) -> List[str]:
    """Return attribute-only and noun-first variants of a plain description (else none)."""
    tokens = text.lower().split()
    if len(tokens) < 3 or tokens[0] not in ARTICLES or content_words(text) != tokens[1:]:
        return []
    *attributes, noun = tokens[1:]
    said = _listed(attributes)
    return ([f'the {a} one' for a in attributes if a not in others]
            + [f'the {noun}, {said}', f'the object that looks {said}'])


def _listed(words: Sequence[str]) -> str:
    """Return "a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
