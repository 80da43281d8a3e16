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
The scene's vocabulary: the words its captions use, and whether a query speaks of them.

The referring field answers every text with the Gaussians it lights most, and a text in words
no caption used lights something too: on the demo scene "a purple elephant playing chess"
scored 0.78 on the red cube, above the calibrated no-target threshold, while out-of-scene
sentences reach the field's top scores often (BENCHMARKS.md). Whether a query talks about
this scene is a question about its words, so it is asked of its words: each content word
(``text.content_words``) is encoded on its own and compared, by cosine, with the content
words of every caption the layers were trained on; it is *familiar* when its best match
reaches the vocabulary's threshold. A query with half of its judged words unfamiliar, or more,
is NO_TARGET, and the answer names the unfamiliar words, so a planner or a person can
rephrase. The verbs a robot is asked with ("pick up", "bring"), generic nouns ("object",
"thing") and spatial relations ("near", "left") say nothing about which thing is meant
(``UNJUDGED_WORDS``) and are not judged. A query without judged words ("which one is furthest
to the left?") is left to the field.

The threshold comes from words known to be unrelated (``CALIBRATION_WORDS``, everyday words
that are not the vocabulary's own): the value that lets through at most ``FAMILIAR_SHARE`` of
them. Synonyms the encoder does not place near a caption's word fare like unrelated words
(all-MiniLM-L6-v2 puts "box" as far from "cube" as "door" is): "the red box" is refused,
naming 'box'. That is the encoder's limit and the price of the rule, both measured in
BENCHMARKS.md (over ten seeds the rule lets through 2.5 % of requests about nothing in the
scene, and refuses none in the captions' own words).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, TYPE_CHECKING

from st4r_ros.command_text import ASKING_WORDS
from st4r_ros.errors import SceneFormatError
from st4r_ros.limits import MAX_VOCABULARY_WORDS
from st4r_ros.scene.layers import json_value
from st4r_ros.text import content_words
import torch
from torch import Tensor
import torch.nn.functional as F

if TYPE_CHECKING:
    from st4r_ros.text import SentenceEncoder

# Share of calibration words allowed to pass as familiar: the threshold is their quantile.
FAMILIAR_SHARE = 0.05
# A query is about the scene when more than this share of its judged words is familiar.
QUERY_SHARE = 0.5
# Words of the query side kept encoded between queries (planners repeat their words).
WORD_CACHE_SIZE = 4096
# Words that say nothing about which thing is meant, so they neither count for a query nor
# against it: the verbs and frames a planner asks with (robots are asked to act), the generic
# nouns any reference may use ("which object is the teapot?") and the words of spatial
# relations, which say where against something else ("the teapot near the fireplace" is about
# a teapot and a fireplace, whatever the captions say about "near").
UNJUDGED_WORDS = ASKING_WORDS | frozenset("""
object objects thing things item items shape shapes
near nearer nearest next beside behind front left right leftmost rightmost frontmost rearmost
back top bottom above below between middle center centre side far close closest furthest
farthest
""".split())
# Everyday words of homes, streets and nature, used only to place the threshold; a scene whose
# captions use one of them keeps it out of the calibration.
CALIBRATION_WORDS = tuple("""
elephant giraffe savanna moon sky boat sea traffic street mountain rocket airplane cloud
truck ladder palm beach cow field lighthouse coast sofa television refrigerator oven toaster
kettle blender laptop keyboard monitor printer telephone guitar piano violin drum bicycle
motorcycle bus train tractor horse sheep goat chicken duck rabbit squirrel bear lion tiger
zebra monkey penguin dolphin shark whale spider butterfly flower tree grass forest river lake
desert volcano island bridge tower castle church school hospital library kitchen bathroom
bedroom garden garage balcony window door curtain carpet pillow blanket mattress shelf
drawer cupboard wardrobe mirror lamp candle clock calendar painting photograph poster
newspaper magazine envelope stamp coin wallet purse umbrella hat scarf glove sock shoe boot
jacket shirt trousers skirt dress belt necklace ring bracelet watch glasses toothbrush
towel soap shampoo sponge bucket broom vacuum hammer screwdriver wrench saw drill nail screw
rope chain padlock key banana apple orange grape lemon strawberry cherry pineapple carrot
potato tomato onion garlic bread cheese butter egg milk coffee tea juice wine beer soup pizza
sandwich cake cookie chocolate sugar salt pepper rice pasta noodle fork knife spoon plate
bowl cup mug glass bottle jar pan pot tray basket box bag suitcase backpack ticket passport
singing dancing sleeping eating drinking reading writing painting swimming running jumping
climbing flying cooking laughing crying shouting whispering playing chess football tennis
happy sad angry tired hungry thirsty famous ancient modern expensive cheap wooden plastic
metallic fluffy noisy quiet delicious frozen rainy sunny windy snowy cloudy foggy
""".split())


@dataclass(frozen=True)
class Vocabulary:
    """
    What a layer's captions talk about, stored with the referring layer.

    :ivar words: the distinct content words of the training captions, sorted.
    :ivar threshold: the cosine a query word needs with one of them to be familiar.
    :ivar calibration: how the threshold was placed (counts and quantiles), for the record.
    """

    words: Tuple[str, ...]
    threshold: float
    calibration: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict:
        return {'words': list(self.words), 'threshold': self.threshold,
                'calibration': dict(self.calibration)}

    @classmethod
    def from_json(cls, data: object, source: str) -> 'Vocabulary':
        """Read ``to_json``'s document, every value checked; raises SceneFormatError."""
        if not isinstance(data, dict):
            raise SceneFormatError(f"{source}: field 'vocabulary' must be an object")
        words = json_value(data, 'words', list, source)
        if not words or len(words) > MAX_VOCABULARY_WORDS \
                or not all(isinstance(w, str) and w for w in words):
            raise SceneFormatError(f"{source}: field 'words' must list 1 to "
                                   f'{MAX_VOCABULARY_WORDS} non-empty strings')
        threshold = json_value(data, 'threshold', float, source)
        if not -1.0 <= threshold <= 1.0:
            raise SceneFormatError(f"{source}: field 'threshold' is a cosine, in [-1, 1]; "
                                   f'got {threshold}')
        return cls(tuple(words), threshold)


@dataclass(frozen=True)
class Familiarity:
    """
    How one query's content words stand against the vocabulary.

    :ivar words: its content words, in order.
    :ivar scores: each word's best cosine with a vocabulary word, [W].
    :ivar threshold: the vocabulary's threshold.
    """

    words: Tuple[str, ...]
    scores: Tuple[float, ...]
    threshold: float

    @property
    def unfamiliar(self) -> Tuple[str, ...]:
        return tuple(w for w, s in zip(self.words, self.scores) if s < self.threshold)

    @property
    def about_scene(self) -> bool:
        """Whether more than QUERY_SHARE of the judged words are familiar (none: yes)."""
        familiar = len(self.words) - len(self.unfamiliar)
        return not self.words or familiar > QUERY_SHARE * len(self.words)

    def message(self) -> str:
        """Say why the query is not about the scene (for a NO_TARGET answer)."""
        named = ', '.join(repr(w) for w in dict.fromkeys(self.unfamiliar))
        best = max(s for w, s in zip(self.words, self.scores) if w in self.unfamiliar)
        return (f'no target: {len(self.unfamiliar)} of {len(self.words)} content words are like '
                f"no word of this scene's captions: {named} (best match {best:.2f}, familiar "
                f'from {self.threshold:.2f})')


def caption_words(texts: Iterable[str]) -> Tuple[str, ...]:
    """Return the distinct content words of texts, sorted."""
    return tuple(sorted({w for text in texts for w in content_words(text)}))


def build_vocabulary(texts: Iterable[str], encoder: 'SentenceEncoder') -> Vocabulary:
    """
    Build the vocabulary of the training texts and place its threshold (module docstring).

    :raises ValueError: the texts hold no content word.
    """
    words = caption_words(texts)
    if not words:
        raise ValueError('no content word in the training captions: nothing to compare with')
    own = set(words)
    unrelated = [w for w in CALIBRATION_WORDS if w not in own]
    scores = best_matches(encode_words(encoder, unrelated), encode_words(encoder, words))
    threshold = float(torch.quantile(scores, 1.0 - FAMILIAR_SHARE))
    return Vocabulary(words, threshold, {
        'calibration_words': len(unrelated), 'familiar_share': FAMILIAR_SHARE,
        'median': float(scores.median()), 'max': float(scores.max())})


def encode_words(encoder: 'SentenceEncoder', words: Sequence[str]) -> Tensor:
    """Encode each word on its own: unit features [W, D] on the CPU, float32."""
    if not words:
        return torch.zeros(0, 0)
    return F.normalize(encoder.encode(list(words)).sentence.float().cpu(), dim=-1)


def best_matches(words: Tensor, vocabulary: Tensor) -> Tensor:
    """Return each word's best cosine with a vocabulary word: unit [W, D] x [V, D] -> [W]."""
    if len(words) == 0:
        return torch.zeros(0)
    return (words @ vocabulary.T).max(dim=1).values


class VocabularyGuard:
    """
    Judges queries against a vocabulary with one encoder, keeping query words it has encoded.

    :param vocabulary: the layer's vocabulary.
    :param encoder: the encoder the threshold was placed with (the layer's).
    """

    def __init__(self, vocabulary: Vocabulary, encoder: 'SentenceEncoder') -> None:
        self.vocabulary = vocabulary
        self.encoder = encoder
        self._features = encode_words(encoder, vocabulary.words)  # [V, D]
        self._scores: 'OrderedDict[str, float]' = OrderedDict()

    def judge(self, texts: Sequence[str]) -> List[Familiarity]:
        """
        Return each text's ``Familiarity``; the texts' new words are encoded in one batch.

        Words that say nothing about which thing is meant (``UNJUDGED_WORDS``) are left out.
        """
        said = [[w for w in content_words(text) if w not in UNJUDGED_WORDS] for text in texts]
        self._score(list(dict.fromkeys(w for words in said for w in words
                                       if w not in self._scores)))
        return [Familiarity(tuple(words), tuple(self._scores[w] for w in words),
                            self.vocabulary.threshold) for words in said]

    def _score(self, words: List[str]) -> None:
        scores = best_matches(encode_words(self.encoder, words), self._features).tolist()
        for word, score in zip(words, scores):
            self._scores[word] = score
        while len(self._scores) > max(WORD_CACHE_SIZE, len(words)):
            self._scores.popitem(last=False)
