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

A logistic regression on the sentence embedding, fitted on the training captions themselves:
state captions are the time-sensitive examples, description captions the time-agnostic ones.
It learns the direction in sentence space that separates talking about what an object is doing
from talking about what it is and where, not object names (both kinds name the same objects).
Captions are statements while queries are requests and questions, so each caption is also
seen wrapped the way a query says it (``router_examples``): both kinds as requests ("find
..."), so that asking does not pass for time-sensitivity, and states as temporal clauses
("while ..."). The probability is the decision's evidence and goes into the result; a caller
may still force a mode.
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
    p(time-sensitive | s) = sigmoid(<w, s> + b) on unit sentence embeddings.

    :ivar weight: w, [D].
    :ivar bias: b.
    """

    weight: Tensor
    bias: float

    def probability(self, sentences: Tensor) -> Tensor:
        """Return p(time-sensitive) of sentence embeddings [E, D] as [E]."""
        unit = F.normalize(sentences.float(), dim=-1).to(self.weight.device)
        return torch.sigmoid(unit @ self.weight + self.bias)


def fit_router(state: Tensor, description: Tensor, l2: float = 1e-2,
               steps: int = 100) -> Router:
    """
    Fit the router on state [S, D] (time-sensitive) and description [Q, D] embeddings.

    Classes are weighted to count equally (captioners write more descriptions than states);
    L-BFGS on the L2-regularised log loss, deterministic.
    """
    x = F.normalize(torch.cat([state, description]).float().cpu(), dim=-1)
    y = torch.cat([torch.ones(len(state)), torch.zeros(len(description))])
    sample_weight = torch.where(y > 0, 0.5 / max(len(state), 1), 0.5 / max(len(description), 1))
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn='strong_wolfe')

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = x @ weight + bias
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
