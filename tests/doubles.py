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
Test doubles with known answers for the query engine's learned parts, shared by test files.

"object k" is relevant exactly on instance k's Gaussians: `KeywordEncoder` turns the query into
the number k, `InstanceField` scores the Gaussians of instance k, and `temporal_layer` builds a
state cache over those one-number sentences. `SMALL` is the synthetic scene they are used on.
"""

import math
from types import SimpleNamespace

from st4r_ros.synthetic.scene import SyntheticConfig
from st4r_ros.temporal import IntervalParams, Router, StateCache, TemporalLayer
from st4r_ros.text import EncoderSpec, TextFeatures
import torch

SMALL = SyntheticConfig(num_frames=3, gaussians_per_object=150, table_gaussians=200,
                        train_cameras_per_frame=1, novel_cameras_per_frame=0)


class KeywordEncoder:
    """'object k' -> one word whose feature is k; anything else -> k = 0 (matches nothing)."""

    def encode(self, texts, prompt=''):
        codes = []
        for text in texts:
            words = (prompt + text).split()
            codes.append(float(words[1]) if len(words) == 2 and words[0] == 'object'
                         and words[1].isdigit() else 0.0)
        words = torch.tensor(codes)[:, None, None]
        return TextFeatures(words, torch.ones(len(texts), 1, dtype=torch.bool), words[:, 0],
                            (False,) * len(texts), tuple(texts))

    def word_at(self, text, index):
        words = text.split()
        return words[index] if 0 <= index < len(words) else None


class InstanceField(torch.nn.Module):
    """Relevance +10 on the Gaussians of the instance the word names, -10 elsewhere."""

    def __init__(self, instance_ids):
        super().__init__()
        self.register_buffer('assignment', instance_ids.clone())

    def forward(self, means, words, word_mask, sentence):
        wanted = words[:, 0, 0].long()  # [E]
        hit = self.assignment[None, :] == wanted[:, None]
        return SimpleNamespace(relevance=torch.where(hit, 10.0, -10.0))


def temporal_layer(p_sensitive_weight: float, locate_floor: float = math.inf) -> TemporalLayer:
    """
    Build a state cache over the KeywordEncoder's one-dimensional sentences.

    Instance 3 is in the asked state (+1) at frames 0 and 2 of three, instance 2 never (-1);
    instance 4 has no row. Every 'object k' query matches instance 3's cache best; with the
    default floor the cache names no instance and the field locates.
    """
    cache = StateCache(torch.tensor([2, 3]), torch.tensor([0.0, 0.5, 1.0]),
                       torch.tensor([[[-1.0], [-1.0], [-1.0]], [[1.0], [-1.0], [1.0]]]),
                       torch.ones(2, 3, dtype=torch.bool))
    # One-word queries: a query's state feature is its one unit word, +1, as the cache rows.
    return TemporalLayer(cache, Router(torch.tensor([p_sensitive_weight]), 0.0),
                         cache, IntervalParams(window=1, level=0.5),
                         EncoderSpec('keywords'),
                         locate_floor=locate_floor)
