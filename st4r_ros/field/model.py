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
ReferringField: per-Gaussian referring embeddings with position-aware cross-modal attention.

Every Gaussian i carries a learnable, time-invariant embedding e_i in R^d (ST4R-Splat's
"instance-aware 4D Gaussian referring field"). A query's tokens interact with the Gaussians
through ReferSplat's position-aware cross-modal interaction (PCMI), fed with the Gaussians'
positions at time t, mu_i(t), so that an embedding that never changes can still follow an
object that moves:

    f_i  = F(e_i)                                  feature MLP, d -> h
    p_i  = P(fourier(normalise(mu_i(t))))          position MLP, 3 + 6 F -> h
    w_j  = W(LayerNorm(E_j))                       token MLP, D_text -> h
    pw_j = sum_i softmax_i(<f_i, w_j> / sqrt h) p_i    token position, inferred from Gaussians
    a_ij = softmax_j(<Q(f_i + p_i), K(w_j + pw_j)> / sqrt h)   over the valid tokens only
    e'_i(t) = f_i + O(sum_j a_ij V(w_j))           one head, residual
    m_i(t)  = mean_j <e'_i(t), w_j>                relevance, over the valid tokens only

With word weights (``word_weights``), the plain mean becomes a weighted one the field learns,
pi_j = softmax_j(<u, w_j>) over the valid tokens, m_i(t) = sum_j pi_j <e'_i(t), w_j>: a
request's frame ("could you pass me ...") need not weigh as much as the words that name the
object. u starts at zero, so training starts from the plain mean.

Tokens: the sentence embedding, then the words (E_1..E_L, the encoder's special tokens left
out, as ReferSplat). The sentence embedding is what a sentence encoder such as MiniLM is
trained to make robust to paraphrase; its token costs nothing and was the best of the
variants tried on the synthetic benchmark (within that benchmark's noise, see the report).
LayerNorm puts it and the words (norms ~1 and ~8 for MiniLM) on one scale.

Sizes. d = 16 as ReferSplat: an identity code per Gaussian only has to tell a few dozen
instances apart, and N x d is the field's whole per-Gaussian memory (300k Gaussians: 19 MB).
h = 128 as ReferSplat. Nothing of size [E, N, h] is ever formed (FieldOutput): the largest
activations are [E, N, L] (8 expressions x 300k Gaussians x 16 tokens: 150 MB). F = 6 Fourier
frequencies over positions normalised to [-1, 1] by robust scene bounds: the finest period is
1/32 of the scene's extent, below the spacing of neighbouring objects on a table (4 m scene:
12 cm) yet coarse enough not to memorise single Gaussians. Every MLP has two layers
(Linear-ReLU-Linear): one hidden non-linearity is what mapping positions to "left of / behind"
regions needs; more only adds to the per-step cost, which scales with N.

Ablations (FieldConfig):
    attention=False: e'_i = f_i, no positions at all (the "w/o cross-modal attention" row).
    static=True: positions are the scene's canonical means (a static reconstruction, as
        ReferSplat sees the world) instead of mu_i(t).
    word_weights=False: the plain mean over tokens (the papers' formulation).

Every relevance is computed for E expressions at once: m [E, N].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
import math
from typing import Dict, Optional

from st4r_ros.errors import QueryError, SceneFormatError
from st4r_ros.render import torch_backend as tb
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.scene.gaussians import Gaussians
import torch
from torch import nn, Tensor
import torch.nn.functional as F

# Robust scene bounds: positions between these quantiles map to [-1, 1]; floaters beyond are
# clamped, so a few stray Gaussians of a real reconstruction cannot squash the whole scene.
BOUND_QUANTILES = (0.01, 0.99)


@dataclass(frozen=True)
class FieldConfig:
    """Architecture of a ReferringField (stored with the layer; see the module docstring)."""

    text_dim: int = 384
    embed_dim: int = 16
    hidden_dim: int = 128
    pos_frequencies: int = 6
    sentence_token: bool = True
    attention: bool = True
    static: bool = False
    init_std: float = 0.1
    word_weights: bool = False

    def to_json(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict, source: str = 'field config') -> 'FieldConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SceneFormatError(f'{source}: unknown field(s) {unknown}; '
                                   f'expected {sorted(known)}')
        return cls(**data)


@dataclass(frozen=True)
class FieldOutput:
    """
    What the field says about E expressions at one instant.

    e'_i(t) = f_i + sum_j a_ij v_j is linear in the attention weights, so it is never formed
    for all Gaussians at once ([E, N, h]: 1.2 GB for 8 expressions over 300k Gaussians):
    relevance goes through [E, N, L] only, and `refined` builds e' for the rows asked for.

    :ivar relevance: m_i(t) per expression and Gaussian, logits, [E, N].
    :ivar words: projected tokens w_j, [E, L, h].
    :ivar features: f_i = F(e_i), [N, h].
    :ivar attention: a_ij, [E, N, L]; None when attention is off (e' = f).
    :ivar word_weights: pi_j, each token's share of the relevance, [E, L] (rows sum to 1).
    :ivar attention: a_ij, [E, N, L]; None when attention is off.
    :ivar values: O(V(w_j)), the attended values already through the output projection,
        [E, L, h]; None when attention is off.
    """

    relevance: Tensor
    words: Tensor
    features: Tensor
    word_weights: Tensor
    attention: Optional[Tensor] = None
    values: Optional[Tensor] = None

    def refined(self, index: Tensor) -> Tensor:
        """e'_i(t) of the Gaussians index [E, k] (per expression), [E, k, h]."""
        refined = self.features[index]  # [E, k, h]
        if self.attention is None or self.values is None:  # both or neither (attention off)
            return refined
        rows = torch.gather(self.attention, 1,
                            index[..., None].expand(-1, -1, self.attention.shape[-1]))
        return refined + rows @ self.values


def mlp(inputs: int, hidden: int) -> nn.Sequential:
    """Linear-ReLU-Linear, inputs -> hidden -> hidden."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


def robust_bounds(means: Tensor) -> Tensor:
    """Per-axis [low; high] quantiles of means [N, 3] -> [2, 3], never degenerate."""
    low, high = torch.quantile(means.float(), torch.tensor(BOUND_QUANTILES, device=means.device),
                               dim=0)
    span = (high - low).clamp_min(1e-3)
    centre = (high + low) / 2
    return torch.stack([centre - span / 2, centre + span / 2])


def fourier_features(unit: Tensor, frequencies: int) -> Tensor:
    """[..., 3] in [-1, 1] -> [..., 3 + 6 F]: the coordinates and sin, cos(2^k pi x), k < F."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=unit.device, dtype=unit.dtype)
    angles = (unit[..., None] * scales).flatten(-2)  # [..., 3F]
    return torch.cat([unit, angles.sin(), angles.cos()], dim=-1)


class ReferringField(nn.Module):
    """
    Per-Gaussian referring embeddings + position-aware cross-modal attention.

    :param num_gaussians: N, fixed for the scene (Gaussian i is the same particle at every t).
    :param canonical_means: a static picture of the scene, [N, 3]: sets the position bounds and
        is what ``static=True`` uses as positions.
    :param config: architecture; see FieldConfig.
    :param assignment: instance id of every Gaussian (-1: none), [N] int64; defaults to none.
        Defines the instance embeddings e_k (`instance_embeddings`).
    """

    canonical: Tensor  # buffers
    bounds: Tensor
    assignment: Tensor

    def __init__(self, num_gaussians: int, canonical_means: Tensor,
                 config: Optional[FieldConfig] = None,
                 assignment: Optional[Tensor] = None) -> None:
        super().__init__()
        config = config or FieldConfig()
        if tuple(canonical_means.shape) != (num_gaussians, 3):
            raise SceneFormatError(
                f'canonical_means: expected shape ({num_gaussians}, 3), '
                f'got {tuple(canonical_means.shape)}'
            )
        if assignment is None:
            assignment = torch.full((num_gaussians,), -1, dtype=torch.long)
        if tuple(assignment.shape) != (num_gaussians,):
            raise SceneFormatError(f'assignment: expected shape ({num_gaussians},), '
                                   f'got {tuple(assignment.shape)}')
        self.config = config
        d, h = config.embed_dim, config.hidden_dim
        self.embeddings = nn.Parameter(torch.randn(num_gaussians, d) * config.init_std)
        self.register_buffer('canonical', canonical_means.detach().float().clone())
        self.register_buffer('bounds', robust_bounds(canonical_means.detach()))
        self.register_buffer('assignment', assignment.detach().long().clone())
        self.feature_mlp = mlp(d, h)
        self.word_mlp = mlp(config.text_dim, h)
        # Projects the top responding Gaussians' refined features into the sentence space for
        # L_con; part of the field so that training and inference share one set of weights.
        self.sentence_head = nn.Linear(h, config.text_dim)
        if config.attention:
            self.position_mlp = mlp(3 + 6 * config.pos_frequencies, h)
            self.query = nn.Linear(h, h)
            self.key = nn.Linear(h, h)
            self.value = nn.Linear(h, h)
            self.out = nn.Linear(h, h)
        if config.word_weights:  # last: the other weights start as without it
            self.word_score = nn.Linear(h, 1)
            nn.init.zeros_(self.word_score.weight)
            nn.init.zeros_(self.word_score.bias)

    @property
    def num_gaussians(self) -> int:
        return self.embeddings.shape[0]

    def positions(self, means: Optional[Tensor]) -> Tensor:
        """Position embeddings p_i, [N, h], of means [N, 3] (canonical when static or None)."""
        if self.config.static or means is None:
            means = self.canonical
        if tuple(means.shape) != (self.num_gaussians, 3):
            raise SceneFormatError(
                f'means: expected shape ({self.num_gaussians}, 3), got {tuple(means.shape)}; '
                'the referring field needs the same Gaussians at every time'
            )
        low, high = self.bounds
        unit = ((means.detach().float() - low) / (high - low) * 2 - 1).clamp(-1.0, 1.0)
        return self.position_mlp(fourier_features(unit, self.config.pos_frequencies))

    def forward(self, means: Optional[Tensor], words: Tensor, word_mask: Tensor,
                sentence: Optional[Tensor] = None) -> FieldOutput:
        """
        Relevance of every Gaussian to E expressions.

        :param means: Gaussian centres at the query time, mu(t) [N, 3]; detached (geometry is
            frozen); None or ignored when static.
        :param words: word features E [E, L, D_text] (zero padded).
        :param word_mask: valid words, [E, L] bool; every expression needs at least one.
        :param sentence: sentence embeddings [E, D_text]; used (as a first token) only when the
            config says sentence_token.
        :return: FieldOutput with relevance [E, N], words [E, L(+1), h] and what `refined` needs.
        """
        mask = word_mask.to(device=words.device, dtype=torch.bool)
        if words.dim() != 3 or tuple(mask.shape) != tuple(words.shape[:2]):
            raise QueryError(f'words [E, L, D] and word_mask [E, L] expected, got '
                             f'{tuple(words.shape)} and {tuple(word_mask.shape)}')
        if not bool(mask.any(dim=1).all()):
            raise QueryError('expression without any word: expected at least one valid word')
        if self.config.sentence_token:
            if sentence is None:
                raise QueryError('this field reads the sentence embedding: pass sentence [E, D]')
            words = torch.cat([sentence[:, None, :].to(words), words], dim=1)
            mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        features = self.feature_mlp(self.embeddings)  # [N, h]
        w = self.word_mlp(F.layer_norm(words.float(), words.shape[-1:]))  # [E, L, h]
        weights = self._word_weights(w, mask)  # [E, L]
        mean_word = torch.einsum('elh,el->eh', w, weights)  # [E, h]
        # m is the plain mean of dot products (ST4R-Splat), without the attention's 1/sqrt(h):
        # with it the logits start sqrt(h) times smaller and the training views fit worse in
        # the same steps. m = <e', w_mean> with e' = f + a O(V w).
        relevance = mean_word @ features.T  # [E, N]
        if not self.config.attention:
            return FieldOutput(relevance, w, features, weights)
        attention = self._attention(features, self.positions(means), w, mask)  # [E, N, L]
        # O is linear and each row of a sums to 1, so O(sum_j a_ij V w_j) = sum_j a_ij O(V w_j).
        values = self.out(self.value(w))  # [E, L, h]
        relevance = relevance + torch.einsum('enl,el->en', attention,
                                             torch.einsum('elh,eh->el', values, mean_word))
        return FieldOutput(relevance, w, features, weights, attention, values)

    def _word_weights(self, w: Tensor, mask: Tensor) -> Tensor:
        """Each valid token's share pi [E, L] of words w [E, L, h] (plain mean without weights)."""
        if not self.config.word_weights:
            return mask.float() / mask.float().sum(dim=1, keepdim=True)
        scores = self.word_score(w)[..., 0].masked_fill(~mask, float('-inf'))
        return torch.softmax(scores, dim=-1)

    def _attention(self, features: Tensor, positions: Tensor, w: Tensor, mask: Tensor) -> Tensor:
        """Compute a [E, N, L] from features f [N, h], positions p [N, h], words w [E, L, h]."""
        scale = 1.0 / math.sqrt(w.shape[-1])
        # PCMI: a word's position is where the Gaussians that match it are (softmax over N).
        affinity = torch.einsum('elh,nh->eln', w, features) * scale
        word_positions = torch.softmax(affinity, dim=-1) @ positions  # [E, L, h]
        queries = self.query(features + positions)  # [N, h]
        keys = self.key(w + word_positions)  # [E, L, h]
        scores = torch.einsum('nh,elh->enl', queries, keys) * scale
        scores = scores.masked_fill(~mask[:, None, :], float('-inf'))
        return torch.softmax(scores, dim=-1)

    @property
    def instance_ids(self) -> Tensor:
        """Ids of the instances with at least one assigned Gaussian, sorted, [K] int64."""
        return torch.unique(self.assignment[self.assignment >= 0])

    def instance_embeddings(self) -> Tensor:
        """
        Compute e_k: mean embedding of the Gaussians assigned to each of `instance_ids`, [K, d].

        It is the identity the temporal branch binds state captions to.
        """
        return instance_means(self.embeddings, self.assignment, self.instance_ids)


def instance_slots(assignment: Tensor, instance_ids: Tensor) -> Tensor:
    """
    Return the row of each Gaussian's instance in instance_ids [K] (sorted ascending).

    The result is [N] int64, -1 where the Gaussian has no instance or one not listed.
    """
    if len(instance_ids) == 0:
        return torch.full_like(assignment, -1)
    slot = torch.searchsorted(instance_ids, assignment).clamp_max(len(instance_ids) - 1)
    return torch.where(instance_ids[slot] == assignment, slot, -1)


def instance_means(values: Tensor, assignment: Tensor, instance_ids: Tensor) -> Tensor:
    """
    Average values [N, C] over the rows assigned to each id of instance_ids [K] -> [K, C].

    instance_ids is sorted ascending; an instance without rows gets zeros.
    """
    slot = instance_slots(assignment, instance_ids)
    member = slot >= 0
    k = len(instance_ids)
    sums = values.new_zeros(k, values.shape[1]).index_add(0, slot[member], values[member])
    counts = torch.bincount(slot[member], minlength=k).clamp_min(1)
    return sums / counts[:, None].to(values.dtype)


def frozen(gaussians: Gaussians) -> Gaussians:
    """Return the same Gaussians cut from any autograd graph: the 4DGS geometry is only read."""
    return replace(gaussians, **{k: v.detach() for k, v in gaussians.tensors().items()})


def render_relevance(gaussians: Gaussians, camera: Camera, relevance: Tensor,
                     backend: str = 'auto') -> Tensor:
    """
    Mask probabilities of E expressions seen from ``camera``, [H, W, E].

    sigmoid(m) [N, E] is composited as feature channels over the frozen geometry with an
    explicit background of 0 ("not the target"): an empty pixel is 0, never 0.5, so a
    prediction ``>= 0.5`` needs Gaussians that are both opaque and relevant there.

    :param gaussians: the scene at the view's time (N Gaussians).
    :param relevance: m [E, N] logits; gradients flow into it, none into the geometry.
    """
    probabilities = torch.sigmoid(relevance).T  # [N, E]
    return render(frozen(gaussians), camera, probabilities, background=0.0,
                  backend=backend).image


@dataclass(frozen=True)
class BlendWeights:
    """
    The compositing weights of one view over frozen geometry.

    A render of features [N, E] is ``matrix @ features`` (background 0), exactly what the torch
    backend computes, since a render is linear in its features.

    Training on the CPU renders the same few views thousands of times; building this once
    per view turns each render into a sparse product. On CUDA gsplat renders as fast; there the
    field renders through render() directly.

    :ivar matrix: sparse COO [H * W, N], row = y * W + x.
    :ivar height: image height.
    :ivar width: image width.
    """

    matrix: Tensor
    height: int
    width: int

    @classmethod
    @torch.no_grad()
    def of(cls, gaussians: Gaussians, camera: Camera) -> 'BlendWeights':
        """
        Compute the weights of ``gaussians`` seen from ``camera``.

        This follows the torch backend's compositing loop (project, bin to tiles, depth chunks
        carrying transmittance).
        """
        tiles_x = (camera.width + tb.TILE_SIZE - 1) // tb.TILE_SIZE
        tiles_y = (camera.height + tb.TILE_SIZE - 1) // tb.TILE_SIZE
        splats = tb.project(gaussians, camera)
        splat_of_isect, tile_starts = tb.bin_to_tiles(splats, tiles_x, tiles_y)
        parts = [_tile_weights(tiles, tile_starts, splat_of_isect, splats, tiles_x)
                 for tiles in tb.tile_batches(tile_starts)]
        pixel = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
        column = torch.cat([p[1] for p in parts]) if parts else torch.zeros_like(pixel)
        value = torch.cat([p[2] for p in parts]) if parts else torch.zeros(0)
        row_width = tiles_x * tb.TILE_SIZE
        y, x = pixel // row_width, pixel % row_width
        keep = (y < camera.height) & (x < camera.width)
        index = torch.stack([y[keep] * camera.width + x[keep], column[keep]])
        shape = (camera.height * camera.width, len(gaussians))
        matrix = torch.sparse_coo_tensor(index, value[keep], shape, check_invariants=True)
        return cls(matrix.coalesce(), camera.height, camera.width)

    def render(self, features: Tensor) -> Tensor:
        """Composited features [N, E] -> [H, W, E] on a background of 0 (differentiable)."""
        return torch.sparse.mm(self.matrix, features).reshape(self.height, self.width, -1)


def _tile_weights(tiles: Tensor, tile_starts: Tensor, splat_of_isect: Tensor,
                  splats: tb.Splats, tiles_x: int) -> tuple[Tensor, Tensor, Tensor]:
    """
    Non-zero weights of a batch of tiles: padded-grid pixel index, Gaussian index, weight.

    composite_chunk overwrites its alpha argument with the blending weights (its documented
    contract); features are not needed, so a zero channel stands in for them.
    """
    starts = tile_starts[tiles]
    lengths = tile_starts[tiles + 1] - starts
    trans = torch.ones(len(tiles), tb.TILE_PIXELS, device=tiles.device)
    done = torch.zeros(len(tiles), tb.TILE_PIXELS, dtype=torch.bool, device=tiles.device)
    pixels, columns, values = [], [], []
    longest = int(lengths.max())
    for first in range(0, longest, tb.MAX_CHUNK_GAUSSIANS):
        position = torch.arange(first, min(first + tb.MAX_CHUNK_GAUSSIANS, longest),
                                device=tiles.device)
        isect = (starts[:, None] + position).clamp_max(len(splat_of_isect) - 1)
        slots = torch.where(position < lengths[:, None], splat_of_isect[isect], -1)
        weights = tb.tile_alphas(tiles, slots, splats, tiles_x)  # alpha, then weights
        no_features = weights.new_zeros(len(tiles), weights.shape[2], 1)
        _, trans, done = tb.composite_chunk(weights, no_features, trans, done)
        batch, pixel, slot = torch.nonzero(weights, as_tuple=True)
        tile = tiles[batch]
        y = (tile // tiles_x) * tb.TILE_SIZE + pixel // tb.TILE_SIZE
        x = (tile % tiles_x) * tb.TILE_SIZE + pixel % tb.TILE_SIZE
        pixels.append(y * tiles_x * tb.TILE_SIZE + x)
        columns.append(splats.index[slots[batch, slot]])
        values.append(weights[batch, pixel, slot])
        if bool(done.all()):
            break
    return torch.cat(pixels), torch.cat(columns), torch.cat(values)


MEMBER_LOGIT = 30.0


def best_scores(relevance: Tensor) -> Tensor:
    """
    Return each expression's best score: max over Gaussians of sigmoid(m_i), [E] from m [E, N].

    Below the layer's calibrated threshold the expression has no target.
    """
    return torch.sigmoid(relevance.max(dim=1).values)


def majority_instance(assignment: Tensor, selected: Tensor) -> int:
    """Return the instance most selected Gaussians belong to (selected [N] bool); -1: none."""
    ids = assignment[selected]
    ids = ids[ids >= 0]
    return int(torch.mode(ids).values) if len(ids) else -1


def member_logits(assignment: Tensor, instance_id: int) -> Tensor:
    """
    Relevance logits [1, N] that select exactly the Gaussians of one instance.

    For answers that name the instance outright rather than through the field: sigmoid is 1
    (or 0) to float precision, so masks and clouds are exactly its Gaussians.
    """
    members = assignment == instance_id
    return torch.where(members, MEMBER_LOGIT, -MEMBER_LOGIT)[None].float()
