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
Training objectives of the referring field (ST4R-Splat section 3.2, ReferSplat's GTCL).

    L = lambda_ref L_ref + L_inst + lambda_con L_con
    L_inst = lambda_comp L_comp + lambda_dist L_dist

- L_ref: binary cross-entropy between rendered mask probabilities and the pseudo-GT masks.
- L_con: the top-tau responding Gaussians of each expression, averaged and projected into the
  sentence space, must pick their own sentence among the view's expressions (InfoNCE).
- L_comp: every embedding near its instance's mean; L_dist: instance means apart,
  1 / (squared distance + eps) per pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math

from st4r_ros.field.model import FieldOutput, instance_means, instance_slots
import torch
from torch import Tensor
import torch.nn.functional as F

# Rendered probabilities are clamped away from 0 and 1 before the log: a pixel whose
# Gaussians all say exactly 0 (or 1) must not produce an infinite loss.
PROB_EPS = 1e-6


@dataclass(frozen=True)
class LossWeights:
    """Weights and schedules of the objective (defaults justified in train.py's docstring)."""

    ref: float = 1.0
    con: float = 0.1
    comp: float = 0.1
    dist: float = 0.01
    dist_eps: float = 0.1
    temperature: float = 0.1
    tau_start: float = 0.1
    tau_end: float = 0.005

    def to_json(self) -> dict:
        return asdict(self)


def referring_bce(probabilities: Tensor, targets: Tensor) -> Tensor:
    """
    L_ref: mean BCE over pixels and expressions.

    :param probabilities: rendered mask probabilities, [H, W, E] in [0, 1].
    :param targets: pseudo-GT masks, [H, W, E] (1 = the expression's target).
    """
    p = probabilities.clamp(PROB_EPS, 1.0 - PROB_EPS)
    return F.binary_cross_entropy(p, targets.to(p.dtype))


def tau_at(step: int, total_steps: int, start: float = 0.1, end: float = 0.005) -> float:
    """
    Top-tau fraction at ``step``: geometric from ``start`` to ``end`` over the run.

    Early relevance is noise, so a wide set averages many Gaussians and gives a stable
    direction; late in training the set must shrink inside the target (a synthetic object is
    ~10% of the Gaussians, a real one 0.5-5%). Geometric, so each halving of tau takes as
    long as the next.
    """
    progress = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
    return start * (end / start) ** progress


def top_tau_mean(output: FieldOutput, tau: float) -> Tensor:
    """
    Mean refined feature e'_i(t) of each expression's top-tau responding Gaussians.

    :param output: the field's answer for E expressions over N Gaussians.
    :param tau: fraction of the Gaussians to average (at least one).
    :return: [E, h].
    """
    k = max(1, math.ceil(tau * output.relevance.shape[1]))
    top = output.relevance.topk(k, dim=1).indices  # [E, k]
    return output.refined(top).mean(dim=1)


def contrastive_loss(grounded: Tensor, sentences: Tensor, positives: Tensor,
                     temperature: float = 0.1) -> Tensor:
    """
    L_con: InfoNCE of grounded Gaussian features against the view's sentence embeddings.

    :param grounded: projected top-tau features, [E, D] (normalised here).
    :param sentences: L2-normalised sentence embeddings of the same E expressions, [E, D].
    :param positives: [E, E] bool, True where expression b describes expression a's target (the
        diagonal, plus other captions of the same instance: they must not be pushed away).
    :return: Cross-entropy of the softmax over sentences against the uniform distribution on the
        positives, averaged over expressions.
    """
    logits = F.normalize(grounded, dim=-1) @ sentences.T / temperature  # [E, E]
    target = positives.float() / positives.float().sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def compactness_loss(embeddings: Tensor, assignment: Tensor, instance_ids: Tensor) -> Tensor:
    """
    Compute L_comp: mean squared distance of each assigned embedding to its instance's mean.

    Embeddings e_i [N, d]; assignment [N], -1 = none; instance_ids [K] sorted.
    """
    slot = instance_slots(assignment, instance_ids)
    member = slot >= 0
    if not bool(member.any()):
        return embeddings.sum() * 0.0
    means = instance_means(embeddings, assignment, instance_ids)  # [K, d]
    return (embeddings[member] - means[slot[member]]).pow(2).sum(dim=1).mean()


def distinctiveness_loss(instance_embeddings: Tensor, eps: float = 0.1) -> Tensor:
    """
    L_dist: mean over instance pairs of 1 / (squared distance + eps), [K, d] -> scalar.

    eps bounds the loss (1 / eps) and its gradient for coinciding means, and its size sets
    where the push fades: pairs well beyond sqrt(eps) apart are left alone.
    """
    k = instance_embeddings.shape[0]
    if k < 2:
        return instance_embeddings.sum() * 0.0
    squared = torch.cdist(instance_embeddings, instance_embeddings).pow(2)
    pairs = ~torch.eye(k, dtype=torch.bool, device=squared.device)
    return (1.0 / (squared[pairs] + eps)).mean()


def instance_loss(embeddings: Tensor, assignment: Tensor, instance_ids: Tensor,
                  weights: LossWeights) -> tuple[Tensor, Tensor, Tensor]:
    """(L_inst = lambda_comp L_comp + lambda_dist L_dist, L_comp, L_dist) for e [N, d]."""
    comp = compactness_loss(embeddings, assignment, instance_ids)
    dist = distinctiveness_loss(instance_means(embeddings, assignment, instance_ids),
                                weights.dist_eps)
    return weights.comp * comp + weights.dist * dist, comp, dist
