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
The state space: sentence embeddings with what names and places the object taken out.

A state caption ("the ruby cube is sliding across the table") and a time-sensitive query
("when is the crimson box moving?") both name the object, and a sentence encoder's embedding is
dominated by those words: the object part can outweigh the state part, and a caption that
happens to use the query's colour word scores higher at its frame than one that does not. The
description captions span that object content (colours, shapes, sizes, relations), so the
principal directions that hold most of their variance are removed from every embedding before
states are compared. Then each instance's state features are centred over its frames (what
stays the same over time says nothing about when) and renormalised.

Nothing here looks at benchmark queries: the basis comes from the training descriptions.
"""

from __future__ import annotations

import torch
from torch import Tensor
import torch.nn.functional as F

# Share of the description captions' variance whose directions are removed.
OBJECT_VARIANCE = 0.98


def object_basis(descriptions: Tensor, variance: float = OBJECT_VARIANCE) -> Tensor:
    """
    Return the principal directions of description embeddings [Q, D], as rows [r, D].

    r is the fewest directions holding ``variance`` of the centred embeddings' variance
    (0 rows for fewer than two descriptions: nothing to learn object content from).
    """
    if len(descriptions) < 2:
        return descriptions.new_zeros(0, descriptions.shape[-1])
    centred = descriptions.float() - descriptions.float().mean(dim=0)
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    share = torch.cumsum(singular.square(), dim=0) / singular.square().sum().clamp_min(1e-12)
    rank = int((share < variance).sum()) + 1
    return directions[:rank].contiguous()


def remove_object(x: Tensor, basis: Tensor) -> Tensor:
    """Project embeddings x [..., D] off the object directions basis [r, D]; [..., D]."""
    return x - (x @ basis.T) @ basis


def state_features(features: Tensor, valid: Tensor, basis: Tensor) -> Tensor:
    """
    Turn a state cache into the features queries are compared with.

    :param features: c_{k,t}, [K, T, D] (zero where missing).
    :param valid: [K, T] bool.
    :param basis: object directions, [r, D].
    :return: [K, T, D]: off the object directions, centred over each instance's known frames,
        unit length; zero where missing or where a frame equals its instance's mean.
    """
    projected = remove_object(features.float(), basis)
    weights = valid.to(projected.dtype)[..., None]
    mean = (projected * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1,
                                                                        keepdim=True).clamp_min(1)
    centred = F.normalize(projected - mean, dim=-1, eps=1e-6)
    return torch.where(valid[..., None], centred, torch.zeros_like(centred))
