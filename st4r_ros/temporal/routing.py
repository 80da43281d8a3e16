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
Query routing: whether an expression is time-sensitive ("when is the cube moving") or not.

A logistic regression over the query's words, fitted on the training captions themselves:
state captions are the time-sensitive examples, description captions the time-agnostic ones.
Each word feature gets the score <w, x_j> + b and the query takes its most time-sensitive
word's, p = sigmoid(max_j <w, x_j> + b): a state is said by a few words ("spins", "while it
is compressed") in a sentence that is otherwise about which object is meant, and a sentence
embedding averages those few words away among the object's (on the synthetic benchmark the
sentence-level router of before routed 0.875 of the expressions right, this one 0.966:
BENCHMARKS.md). It learns what separates doing from being and where, not object names
(both kinds name the same objects). Captions are statements while queries are requests and
questions, so each caption is also seen wrapped the way a query says it
(``router_examples``): both kinds as requests ("find ..."), so that asking does not pass for
time-sensitivity, and states as temporal clauses ("while ..."). The probability and the word
that decided it are the decision's evidence and go into the result; a caller may still force
a mode. The same word scores say which words of a text tell its state (``state_space``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from torch import Tensor
import torch.nn.functional as F

# How a query wraps what it asks for; the i-th caption takes the (i mod n)-th wrapper.
REQUESTS = ('find {}', 'show me {}', 'where is {}', 'locate {}')
TEMPORAL_CLAUSES = ('when {}', 'while {}', 'at the moment {}', 'as long as {}')


@dataclass(frozen=True)
class Router:
    """
    p(time-sensitive) = sigmoid(max_j <w, x_j> + b) over unit word features x_j.

    :ivar weight: w, [D].
    :ivar bias: b.
    """

    weight: Tensor
    bias: float

    def probability(self, features) -> Tensor:
        """Return p(time-sensitive) [E] of encoded queries (``TextFeatures``, E texts)."""
        return self.evidence(features)[0]

    def evidence(self, features) -> Tuple[Tensor, Tensor]:
        """
        Return p(time-sensitive) [E] and the index of the deciding word [E].

        :param features: ``TextFeatures``: words [E, L, D] and word_mask [E, L].
        """
        usable = deciding_words(features)
        logits, word = word_logits(self.weight, features.words, usable).max(dim=1)
        return torch.sigmoid(logits + self.bias), word

    def to(self, device: torch.device | str) -> 'Router':
        return Router(self.weight.to(device), self.bias)


def deciding_words(features) -> Tensor:
    """
    Return the words [E, L] bool that may decide: the content words of each text.

    Articles, prepositions, auxiliaries and the words of asking (text.FUNCTION_WORDS) frame a
    request; in a contextual encoder their features still absorb the sentence around them, so
    left in they can win the max and be named as the reason. A text of function words only,
    or an encoder that cannot tell words apart, keeps all its words.
    """
    mask = features.word_mask
    if features.content_mask is None:
        return mask
    content = features.content_mask.to(mask.device) & mask
    return torch.where(content.any(dim=1, keepdim=True), content, mask)


def word_logits(weight: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
    """<w, x_j> of unit word features [E, L, D] as [E, L]; padding gets -inf."""
    unit = F.normalize(words.float().to(weight.device), dim=-1)
    return (unit @ weight).masked_fill(~word_mask.to(weight.device), -torch.inf)


def fit_router(said, time_sensitive: Tensor, l2: float = 1e-2, steps: int = 200) -> Router:
    """
    Fit a word router on encoded example texts and their labels.

    Only each example's content words (``deciding_words``) take part, as in ``evidence``.
    Classes are weighted to count equally (captioners write more descriptions than states);
    L-BFGS on the L2-regularised log loss of the max-pooled logits, deterministic. L2 = 1e-2
    was the best of 1e-3 ... 1e-1 on benchmark seeds 0-3 (BENCHMARKS.md). The examples' word
    features are held at once, [E, L, D] float32 on the CPU.

    :param said: ``TextFeatures`` of the examples (words [E, L, D], word_mask [E, L]).
    :param time_sensitive: [E] bool, each example's label.
    """
    unit = F.normalize(said.words.float(), dim=-1).cpu()  # normalised once, not every step
    padding = ~deciding_words(said).cpu()
    y = time_sensitive.float().cpu()
    count = float(y.sum()), float(len(y) - y.sum())
    sample_weight = torch.where(y > 0, 0.5 / max(count[0], 1.0), 0.5 / max(count[1], 1.0))
    weight = torch.zeros(unit.shape[-1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn='strong_wolfe')

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = (unit @ weight).masked_fill(padding, -torch.inf).amax(dim=1) + bias
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction='none')
                * sample_weight).sum() + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Router(weight.detach(), float(bias.detach()))


def router_examples(states: Sequence[str], descriptions: Sequence[str]
                    ) -> Tuple[List[str], List[str]]:
    """
    Return the router's time-sensitive and time-agnostic example texts.

    Each caption as given, each wrapped as a request, and each state caption also wrapped in
    a temporal clause; deterministic (the i-th caption takes the (i mod n)-th wrapper).
    """
    def wrapped(texts: Sequence[str], forms: Sequence[str]) -> List[str]:
        return [forms[i % len(forms)].format(text) for i, text in enumerate(texts)]

    return ([*states, *wrapped(states, REQUESTS), *wrapped(states, TEMPORAL_CLAUSES)],
            [*descriptions, *wrapped(descriptions, REQUESTS)])
