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
The state space: what a text says about its object's state, from the words that say it.

A state caption ("the ruby cube is sliding across the table") and a time-sensitive query
("when is the crimson box moving?") both name the object, and a sentence encoder's embedding is
dominated by those words: with all-MiniLM-L6-v2, "the big blue orb while it moves" is closer to
"the blue sphere is at rest" (0.59) than to "the blue sphere is sliding across the table"
(0.45). The router (``routing``) has learnt from the captions which words say a state; a
text's state feature is the mean of its unit word features weighted by
softmax(router word logits / STATE_TEMPERATURE), renormalised, so the state words carry it and
the object's words next to nothing. Each instance's per-frame state features are the
captions' state features averaged per frame (``state_cache.cache_from_table``), and a query is
compared with them through its own.

On the synthetic benchmark (true instance, seeds 0-9, BENCHMARKS.md) frame accuracy rose from
0.759, with sentence embeddings off the descriptions' principal directions, to 0.879.
"""

from __future__ import annotations

from st4r_ros.temporal.routing import word_logits
import torch
from torch import Tensor
import torch.nn.functional as F

# Softmax temperature over the router's word logits (unit words, logits of order 1): 0.3 was
# the best of 0.05 ... 3 on benchmark seeds 0-3; lower puts all weight on one word, higher
# lets the object's words back in.
STATE_TEMPERATURE = 0.3


def state_features(router_weight: Tensor, features) -> Tensor:
    """
    Return the unit state features [E, D] of encoded texts.

    :param router_weight: the router's w, [D].
    :param features: ``TextFeatures``: words [E, L, D] and word_mask [E, L].
    """
    weights = torch.softmax(word_logits(router_weight, features.words, features.word_mask)
                            / STATE_TEMPERATURE, dim=1)  # [E, L], 0 on padding
    unit = F.normalize(features.words.float().to(router_weight.device), dim=-1)
    return F.normalize((weights[..., None] * unit).sum(dim=1), dim=-1)
