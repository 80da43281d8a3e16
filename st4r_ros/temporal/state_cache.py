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
State caches: c_{k,t}, the state feature of instance k at each frame time t.

ST4R-Splat's instance-level temporal state mapping, c_{k,t} = F(e_k, t), evaluated where it is
known: at the scene's frame times, from the per-frame state captions of the supervision
(state_captions), encoded by a sentence encoder. A frame with several captions gets their
mean, renormalised; a frame where an instance has none is marked missing, never filled in, so
a query can say how much of the timeline it could not see. Rows are bound to instance ids, the
identities the referring field assigns to its Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from st4r_ros.errors import SupervisionFormatError
from st4r_ros.supervision.format import Supervision
from st4r_ros.text import SentenceEncoder
import torch
from torch import Tensor
import torch.nn.functional as F


@dataclass(frozen=True)
class StateCache:
    """
    State features of K instances at T frame times.

    :ivar instance_ids: [K] int64, ascending.
    :ivar frame_times: [T] float32, normalised scene times, ascending.
    :ivar features: [K, T, D] float32, unit length where valid, zero where missing.
    :ivar valid: [K, T] bool, False where the instance had no state caption at that frame.
    """

    instance_ids: Tensor
    frame_times: Tensor
    features: Tensor
    valid: Tensor

    def __post_init__(self) -> None:
        k, t = len(self.instance_ids), len(self.frame_times)
        if self.features.dim() != 3 or tuple(self.features.shape[:2]) != (k, t):
            raise SupervisionFormatError(
                f'state cache: features must be [K={k}, T={t}, D], got '
                f'{tuple(self.features.shape)}')
        if tuple(self.valid.shape) != (k, t):
            raise SupervisionFormatError(
                f'state cache: valid must be [K={k}, T={t}], got {tuple(self.valid.shape)}')
        if t and bool((self.frame_times[1:] <= self.frame_times[:-1]).any()):
            raise SupervisionFormatError('state cache: frame times must be strictly ascending')

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    def row(self, instance_id: int) -> Optional[int]:
        """Return the row of instance_id, None when the cache has no entry for it."""
        hits = (self.instance_ids == int(instance_id)).nonzero()
        return int(hits[0, 0]) if len(hits) else None

    def to(self, device: torch.device | str) -> 'StateCache':
        return StateCache(*(x.to(device) for x in (self.instance_ids, self.frame_times,
                                                   self.features, self.valid)))


# Why a supervision without state captions makes no state cache (nor temporal layer).
NO_STATE_CAPTIONS = ('supervision: no state_captions; the temporal branch needs per-frame state '
                     'captions of the instances')


def state_caption_table(supervision: Supervision) -> Tuple[List[float], Dict[Tuple[int, int],
                                                                             List[str]]]:
    """
    Collect the state captions of a supervision by (instance, frame index).

    :return: the frame times (ascending, from every state caption) and, per (instance id,
        index into those times), the caption texts.
    """
    times = sorted({round(c.time, 9) for inst in supervision.instances
                    for c in inst.state_captions})
    index = {t: i for i, t in enumerate(times)}
    table: Dict[Tuple[int, int], List[str]] = {}
    for inst in supervision.instances:
        for caption in inst.state_captions:
            table.setdefault((inst.id, index[round(caption.time, 9)]), []).append(caption.text)
    return times, table


def build_state_cache(supervision: Supervision, encoder: SentenceEncoder,
                      instance_ids: Optional[Sequence[int]] = None) -> StateCache:
    """
    Encode the supervision's state captions into a cache.

    :param supervision: training supervision with ``state_captions``.
    :param encoder: a sentence encoder (``encode(texts).sentence`` [E, D]).
    :param instance_ids: the rows to build (default: every instance with state captions);
        an id without captions gets a row of missing frames.
    :raises SupervisionFormatError: the supervision has no state caption at all.
    """
    times, table = state_caption_table(supervision)
    if not times:
        raise SupervisionFormatError(NO_STATE_CAPTIONS)
    texts = sorted({text for captions in table.values() for text in captions})
    return cache_from_table(times, table, dict(zip(texts, unit_sentences(encoder, texts))),
                            instance_ids)


def unit_sentences(encoder: SentenceEncoder, texts: List[str], prompt: str = '') -> Tensor:
    """Return the unit sentence embeddings [E, D] of texts, the prompt in front, on the CPU."""
    return F.normalize(encoder.encode(texts, prompt=prompt).sentence.float().cpu(), dim=-1)


def cache_from_table(times: List[float], table: Dict[Tuple[int, int], List[str]],
                     embedding: Dict[str, Tensor],
                     instance_ids: Optional[Sequence[int]] = None) -> StateCache:
    """
    Assemble a cache from ``state_caption_table``'s output and unit caption embeddings.

    :param embedding: every caption text's unit sentence embedding, [D] each.
    """
    ids = sorted({k for k, _ in table} if instance_ids is None else set(map(int, instance_ids)))
    dim = len(next(iter(embedding.values())))
    features = torch.zeros(len(ids), len(times), dim)
    valid = torch.zeros(len(ids), len(times), dtype=torch.bool)
    for row, instance_id in enumerate(ids):
        for frame in range(len(times)):
            captions = table.get((instance_id, frame))
            if captions:
                mean = torch.stack([embedding[c] for c in captions]).mean(dim=0)
                features[row, frame] = F.normalize(mean, dim=0)
                valid[row, frame] = True
    return StateCache(torch.tensor(ids, dtype=torch.long),
                      torch.tensor(times, dtype=torch.float32), features, valid)
