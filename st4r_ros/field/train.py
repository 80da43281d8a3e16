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
Training the referring field on a frozen 4DGS scene from 2D masks and captions.

One step: draw a training view (seeded generator), take the Gaussians at the view's time
(cached per distinct time: keyframes repeat across views), draw up to ``captions_per_view``
captions of the instances visible in the view and up to ``negatives_per_view`` captions of
instances captioned at that frame but absent from the view (they must render empty), each
trained with probability ``augment_rate`` as one of its planner-style variants instead
(augment.py: a request, an attribute-only or noun-first reference), plus one out-of-scene
"null" sentence (also empty), run the field on all of them at once, render the relevance as
mask probabilities and take

    L = lambda_ref BCE(render, mask == id) + L_inst + lambda_con L_con.

Defaults and why (measurements on the default synthetic scene, seed 0, unless said):

- Adam, lr 2.5e-3 for the embeddings (ReferSplat), 5e-4 for the networks. ReferSplat's 1e-4
  serves 45k iterations; this field gets 1.5k steps, and 5e-4 fits the training views to
  0.97 mIoU within 1000. (2e-3 fits the two-ball test scene faster; not tuned further here.)
- Plain BCE over all pixels. A class-balanced BCE (mean over target pixels + mean over the
  rest) starts faster but over-segments: 0.82 training-view and 0.28 novel-view mIoU after
  1000 steps, against 0.97 and 0.32.
- lambda_ref 1, lambda_con 0.1, temperature 0.1, tau 0.1 decaying geometrically to 0.005:
  ReferSplat's values (losses.tau_at says why the decay).
- lambda_comp 0.1, lambda_dist 0.01, eps 0.1: L_inst starts at ~0.07 beside L_ref ~0.1-0.2
  and has fallen ~30-fold after 1000 steps (mean instance distance ~2 in embedding space),
  when L_ref is ~0.005: it organises the embeddings early and then stays out of the way of
  the masks.
- Captions are encoded once up front (the text encoder is frozen); frames and masks are kept
  once computed, up to ``cache_bytes`` (a real scene's hundreds of frames of 300k Gaussians
  and thousands of full-HD masks do not fit: those beyond are recomputed when drawn).

Checkpoints (``LAYER_DIR/referring_training/checkpoint.safetensors`` + ``checkpoint.json``)
hold the field, Adam's state, the step, the sampling generator's state and the loss history;
only safetensors and JSON are written, never pickle. A run started again with the same
configuration continues from the last checkpoint and ends with the same result as one that
was never interrupted.

At the end a no-target threshold is calibrated (see `calibrate_threshold`), the vocabulary of
the captions and their variants is gathered (vocabulary.py) and the layer is saved (layer.py).
The temporal layer is no business of this module: `st4r train` (st4r_ros/training.py) builds
it after the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import asdict, dataclass, fields, replace
import json
from pathlib import Path
import time
from typing import (Callable, Dict, Generic, Hashable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, TYPE_CHECKING, TypeVar)

from safetensors.torch import load_file, save_file
from st4r_ros.errors import SceneFormatError, SupervisionFormatError
from st4r_ros.field.augment import frame_variants
from st4r_ros.field.instances import (assign_instances, DEPTH_TOLERANCE, InstanceAssignment,
                                      MIN_FRACTION, MIN_VOTES)
from st4r_ros.field.layer import save_referring_layer
from st4r_ros.field.losses import (contrastive_loss, instance_loss, LossWeights, referring_bce,
                                   tau_at, top_tau_mean)
from st4r_ros.field.model import (best_scores, BlendWeights, FieldConfig, ReferringField,
                                  render_relevance)
from st4r_ros.field.vocabulary import build_vocabulary, Vocabulary
from st4r_ros.files import atomic_write
from st4r_ros.progress import StepProgress
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import Scene4D
from st4r_ros.supervision.format import Supervision, SupervisionView
import torch
from torch import Tensor

if TYPE_CHECKING:  # the text encoder is imported when one is loaded
    from st4r_ros.text import NamedEncoder, SentenceEncoder, TextEncoder

CHECKPOINT_DIR = 'referring_training'
CHECKPOINT_FILE = 'checkpoint.safetensors'
CHECKPOINT_META = 'checkpoint.json'
# The no-target threshold never exceeds this (calibrate_threshold says why).
MAX_THRESHOLD = 0.5
# Out-of-scene sentences: trained to render empty (the first half) and used to calibrate the
# no-target threshold (the second half, never trained on). Chosen to be absent from indoor and
# tabletop scenes; set TrainConfig.null_expressions for scenes where they are not.
NULL_EXPRESSIONS = (
    'an elephant walking across the savanna', 'the moon in the night sky',
    'a sailing boat on the open sea', 'a traffic light at a street crossing',
    'a snowy mountain peak', 'a rocket launching into space', 'zxq vrpl mnt kk',
    'blorf snarg wibble',
    'a giraffe eating leaves from a tree', 'an airplane flying above the clouds',
    'a fire truck with its ladder raised', 'a palm tree on a sandy beach',
    'a herd of cows grazing in a field', 'a lighthouse on a rocky coast', 'qwertyuiop asdf',
    'xyzzy plugh frotz',
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored with the layer and checkpoints)."""

    steps: int = 1500
    lr_embeddings: float = 2.5e-3
    lr_networks: float = 5e-4
    captions_per_view: int = 4
    negatives_per_view: int = 2
    null_per_step: int = 1
    # Share of a caption's words hidden at each step (at least one word stays), so that an
    # expression whose words the captions never used still leans on the words it shares.
    word_dropout: float = 0.0
    # Share of drawn captions trained as one of their planner-style variants instead (a request,
    # an attribute-only or noun-first reference: augment.py); 0 trains the captions alone, as
    # the paper does. The value is BENCHMARKS.md's.
    augment_rate: float = 0.5
    checkpoint_every: int = 250
    min_pixels: int = 16
    device: str = 'cpu'
    backend: str = 'auto'
    # Precompute each view's blending weights (BlendWeights); None: on the CPU only, where
    # rasterizing dominates a step. Memory ~ 15 x pixels x views x 16 bytes.
    cache_weights: Optional[bool] = None
    cache_bytes: int = 4 << 30
    text_model: Optional[str] = None
    depth_tolerance: float = DEPTH_TOLERANCE
    min_votes: int = MIN_VOTES
    min_fraction: float = MIN_FRACTION
    null_expressions: Tuple[str, ...] = NULL_EXPRESSIONS
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if not 0.0 <= self.word_dropout < 1.0:
            raise SupervisionFormatError(f'training config: word_dropout must be in [0, 1), '
                                         f'got {self.word_dropout!r}')
        if not 0.0 <= self.augment_rate <= 1.0:
            raise SupervisionFormatError(f'training config: augment_rate must be in [0, 1], '
                                         f'got {self.augment_rate!r}')

    def to_json(self) -> Dict:
        data = asdict(self)
        data['null_expressions'] = list(self.null_expressions)
        return data

    @classmethod
    def from_json(cls, data: Dict) -> 'TrainConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SupervisionFormatError(f'training config: unknown option(s) {unknown}; '
                                         f'expected some of {sorted(known)}')
        data = dict(data)
        if 'field' in data:
            data['field'] = FieldConfig.from_json(data['field'])
        if 'loss' in data:
            data['loss'] = LossWeights(**data['loss'])
        if 'null_expressions' in data:
            data['null_expressions'] = tuple(data['null_expressions'])
        return cls(**data)


@dataclass
class TrainResult:
    """
    What a training run produced.

    :ivar field: the trained field (eval mode).
    :ivar assignment: Gaussian -> instance votes from the training masks.
    :ivar threshold: no-target threshold on an expression's best score (max_i sigmoid m_i).
    :ivar calibration: statistics behind the threshold.
    :ivar vocabulary: the words of the supervision's captions (vocabulary.py).
    :ivar history: one dict of loss terms per step.
    :ivar layer_path: the saved referring.safetensors (None when not saved).
    :ivar resumed_from: the checkpoint step the run continued from (0: a fresh run).
    :ivar seconds: wall time of this call.
    """

    field: ReferringField
    assignment: InstanceAssignment
    threshold: float
    calibration: Dict
    vocabulary: Vocabulary
    history: List[Dict[str, float]]
    layer_path: Optional[Path]
    resumed_from: int
    seconds: float


@dataclass(frozen=True)
class ViewCaptions:
    """
    Caption rows (into TrainingData.texts) usable with one view, and their instance ids.

    The instance id is -1 for the null sentences. ``variants`` maps a caption's row to the
    rows of its variants at this view's frame (augment.py).
    """

    positives: Tuple[Tuple[int, int], ...]
    negatives: Tuple[Tuple[int, int], ...]
    variants: Mapping[int, Tuple[int, ...]] = dataclasses.field(default_factory=dict)


@dataclass
class TrainingData:
    """
    Everything a step reads, prepared once.

    :ivar views: the training views.
    :ivar frames: time -> Gaussians at that time, on the training device.
    :ivar times: the distinct view times, sorted.
    :ivar masks: view index -> instance ids [H, W] int32, on the training device.
    :ivar weights: per view, its BlendWeights, or None to render through render().
    :ivar captions: per view, the captions it can train.
    :ivar texts: every distinct caption, then the training null sentences.
    :ivar words: their word encodings, [U, L, D].
    :ivar word_mask: valid words, [U, L].
    :ivar sentences: their sentence encodings, [U, D].
    :ivar null_rows: rows of the training null sentences.
    """

    views: List[SupervisionView]
    frames: 'BoundedCache[float, Gaussians]'
    times: List[float]
    masks: 'BoundedCache[int, Tensor]'
    weights: Optional[List[BlendWeights]]
    captions: List[ViewCaptions]
    texts: List[str]
    words: Tensor
    word_mask: Tensor
    sentences: Tensor
    null_rows: Tuple[int, ...]


def train_field(scene: Scene4D, supervision: Supervision, config: Optional[TrainConfig] = None,
                out: Optional[str | Path] = None, progress: bool = True, seed: int = 0,
                resume: bool = True, text_encoder: Optional[NamedEncoder] = None) -> TrainResult:
    """
    Train a referring field for ``scene`` from ``supervision``.

    The field is saved as a layer in ``out`` (None: keep it in memory only, no checkpoints);
    the temporal layer is not built here (st4r_ros.training.train_layers builds both).

    :param config: hyper-parameters; TrainConfig() by default.
    :param progress: show a progress bar with the loss terms.
    :param seed: seeds the field's initialisation and the sampling generator.
    :param resume: continue from ``out``'s checkpoint when it was written with the same config
        and seed.
    :param text_encoder: an object with ``encode(texts) -> TextFeatures``, ``name`` and ``dim``;
        default ``TextEncoder(config.text_model)`` on the training device.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    device = torch.device(config.device)
    encoder = text_encoder or _load_encoder(config.text_model, device)
    config = replace(config, field=replace(config.field, text_dim=int(encoder.dim)))
    assignment = assign_instances(scene, supervision.views, device=device,
                                  depth_tolerance=config.depth_tolerance,
                                  min_votes=config.min_votes, min_fraction=config.min_fraction)
    data = prepare_data(scene, supervision, encoder, config, device)
    torch.manual_seed(seed)
    canonical = static_picture(scene, data) if config.field.static else canonical_means(data)
    model = ReferringField(len(canonical), canonical, config.field,
                           assignment.assignment).to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    history: List[Dict[str, float]] = []
    run_dir = None if out is None else Path(out) / CHECKPOINT_DIR
    signature = _signature(config, seed, encoder)
    start = 0
    if run_dir is not None and resume:
        start = load_checkpoint(run_dir, signature, model, optimizer, generator, history)
    with _reproducible(device):
        _run_steps(model, optimizer, generator, data, config, start, history, run_dir,
                   signature, progress)
    model.eval()
    threshold, calibration = calibrate_threshold(model, data, encoder, config)
    trained = data.texts[:len(data.texts) - len(data.null_rows)]  # captions and variants
    vocabulary = build_vocabulary(supervision.caption_texts() + trained, encoder)
    layer_path = None
    if out is not None:
        layer_path = save_referring_layer(out, model, {
            'text_encoder': {'name': str(encoder.name), 'dim': int(encoder.dim)},
            'threshold': threshold, 'calibration': calibration,
            'training': config.to_json(), 'seed': seed, 'steps': config.steps,
            'vocabulary': vocabulary.to_json(),
            'instances': {'ids': model.instance_ids.tolist(),
                          'assigned_gaussians': int((model.assignment >= 0).sum())},
        })
    return TrainResult(model, assignment, threshold, calibration, vocabulary, history,
                       layer_path, start, time.perf_counter() - started)


# ---- data -----------------------------------------------------------------------------------


def _load_encoder(model: Optional[str], device: torch.device) -> TextEncoder:
    from st4r_ros.text import TextEncoder

    return TextEncoder.named(model, device)


def prepare_data(scene: Scene4D, supervision: Supervision, encoder: SentenceEncoder,
                 config: TrainConfig,
                 device: torch.device) -> TrainingData:
    """Frames, masks, per-view captions and their encodings (module docstring)."""
    views = list(supervision.views)
    budget = config.cache_bytes // 2
    frames: BoundedCache[float, Gaussians] = BoundedCache(
        lambda t: scene.at(t, device), _gaussian_bytes, budget)
    times = sorted({v.time for v in views})
    counts = {len(frames[t]) for t in times}
    if len(counts) != 1:
        raise SceneFormatError(f'scene: Gaussian counts {sorted(counts)} differ between the '
                               'training times; the referring field needs the same Gaussians '
                               'at every time')
    masks: BoundedCache[int, Tensor] = BoundedCache(
        lambda i: views[i].load_mask().to(device, torch.int32), lambda m: m.numel() * 4, budget)
    cache = device.type == 'cpu' if config.cache_weights is None else config.cache_weights
    weights = [BlendWeights.of(frames[v.time], v.camera) for v in views] if cache else None
    rows: Dict[str, int] = {}
    captions = [_view_captions(supervision, v, masks[i], rows, config.min_pixels)
                for i, v in enumerate(views)]
    if not any(c.positives for c in captions):
        raise SupervisionFormatError(f'{supervision.root}: no caption of an instance visible '
                                     'in its view; nothing to train on')
    texts = list(rows)
    train_nulls = list(config.null_expressions[: len(config.null_expressions) // 2])
    null_rows = tuple(range(len(texts), len(texts) + len(train_nulls)))
    encoded = encoder.encode(texts + train_nulls)
    return TrainingData(views, frames, times, masks, weights, captions, texts + train_nulls,
                        encoded.words.to(device), encoded.word_mask.to(device),
                        encoded.sentence.to(device), null_rows)


def _view_captions(supervision: Supervision, view: SupervisionView, mask: Tensor,
                   rows: Dict[str, int], min_pixels: int) -> ViewCaptions:
    """
    Collect the captions at the view's frame.

    Those of instances with >= min_pixels in the mask are positives; those of the others are
    negatives (absent from this view, so their render must be empty).
    """
    if view.frame is not None:
        at = supervision.captions_at(frame=view.frame)
    else:
        at = supervision.captions_at(time=view.time)
    ids, counts = torch.unique(mask, return_counts=True)
    visible = {int(i) for i, c in zip(ids.tolist(), counts.tolist()) if i > 0 and c >= min_pixels}
    positives: List[Tuple[int, int]] = []  # (text row, instance)
    negatives: List[Tuple[int, int]] = []
    variants: Dict[int, Tuple[int, ...]] = {}
    reworded = frame_variants(at)
    for instance, texts in sorted(at.items()):
        for text in texts:
            row = rows.setdefault(text, len(rows))
            (positives if instance in visible else negatives).append((row, instance))
            variants[row] = tuple(rows.setdefault(v, len(rows)) for v in reworded[text])
    return ViewCaptions(tuple(positives), tuple(negatives), variants)


def static_picture(scene: Scene4D, data: TrainingData) -> Tensor:
    """
    Return the positions the static (ReferSplat-style) baseline sees, [N, 3].

    The scene's own static picture where its format keeps one (``Scene4D.static_means``: a
    4DGaussians canonical cloud, a moving object smeared along its path, a split one a single
    blob); else the centres averaged over the training times (``canonical_means``).
    """
    kept = scene.static_means()
    if kept is None:
        return canonical_means(data)
    return kept.float().to(data.frames[data.times[0]].means)


def canonical_means(data: TrainingData) -> Tensor:
    """
    Average the centres over the training times, [N, 3].

    This is what the position bounds are taken from, and the static baseline's picture of a
    scene without a canonical cloud of its own (``static_picture``).
    """
    total = data.frames[data.times[0]].means.double()
    for t in data.times[1:]:
        total = total + data.frames[t].means.double()
    return (total / len(data.times)).float()


Key = TypeVar('Key', bound=Hashable)
Value = TypeVar('Value')


class BoundedCache(Generic[Key, Value]):
    """
    Values computed on first use, kept while their total size stays within ``max_bytes``.

    Values beyond that are recomputed on every use; deterministic either way.
    """

    def __init__(self, compute: Callable[[Key], Value], size: Callable[[Value], int],
                 max_bytes: int) -> None:
        self.compute, self.size, self.room = compute, size, max_bytes
        self.kept: Dict[Key, Value] = {}

    def __getitem__(self, key: Key) -> Value:
        if key in self.kept:
            return self.kept[key]
        value = self.compute(key)
        if self.size(value) <= self.room:
            self.kept[key] = value
            self.room -= self.size(value)
        return value


def _gaussian_bytes(gaussians: Gaussians) -> int:
    return sum(t.numel() * t.element_size() for t in gaussians.tensors().values())


# ---- steps ----------------------------------------------------------------------------------


def make_optimizer(model: ReferringField, config: TrainConfig) -> torch.optim.Adam:
    networks = [p for name, p in model.named_parameters() if name != 'embeddings']
    return torch.optim.Adam([
        {'params': [model.embeddings], 'lr': config.lr_embeddings},
        {'params': networks, 'lr': config.lr_networks},
    ])


def _choose(options: Sequence, count: int, generator: torch.Generator) -> List:
    """Up to ``count`` distinct items of ``options``, drawn with ``generator``."""
    if count <= 0 or not options:
        return []
    order = torch.randperm(len(options), generator=generator)[:count]
    return [options[i] for i in order.tolist()]


def sample_batch(data: TrainingData, config: TrainConfig,
                 generator: torch.Generator) -> Tuple[int, List[int], List[int]]:
    """(view index, caption rows [E], instance id of each, -1 for a null sentence)."""
    candidates = [i for i, c in enumerate(data.captions) if c.positives]
    view = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
    captions = data.captions[view]
    picked = (_choose(captions.positives, config.captions_per_view, generator)
              + _choose(captions.negatives, config.negatives_per_view, generator))
    if config.augment_rate > 0:  # no draws otherwise: a run without variants is the paper's
        picked = [(_variant(row, captions.variants.get(row, ()), config.augment_rate,
                            generator), instance) for row, instance in picked]
    picked += [(row, -1) for row in _choose(data.null_rows, config.null_per_step, generator)]
    return view, [row for row, _ in picked], [instance for _, instance in picked]


def _variant(row: int, variants: Sequence[int], rate: float, generator: torch.Generator) -> int:
    """Return one of ``variants`` with probability ``rate`` (uniformly), else ``row``."""
    if float(torch.rand(1, generator=generator)) >= rate or not variants:
        return row
    return variants[int(torch.randint(len(variants), (1,), generator=generator))]


def drop_words(word_mask: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """
    Hide each valid word of word_mask [E, L] with probability rate; [E, L] bool.

    A row keeps its first valid word when every draw would hide it (a caption never loses all
    its words). Draws come from ``generator`` on the CPU, so a resumed run draws the same.
    """
    kept = word_mask.cpu() & (torch.rand(word_mask.shape, generator=generator) >= rate)
    first = word_mask.cpu() & (word_mask.cpu().cumsum(dim=1) == 1)
    emptied = ~kept.any(dim=1, keepdim=True)
    return (kept | (first & emptied)).to(word_mask.device)


def step_losses(model: ReferringField, data: TrainingData, config: TrainConfig, step: int,
                view: int, rows: List[int], instances: List[int],
                word_mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """
    Every loss term of one step, and their weighted total under 'loss'.

    :param word_mask: the rows' words to use, [E, L] (default: all of them).
    """
    weights = config.loss
    gaussians = data.frames[data.views[view].time]
    index = torch.tensor(rows, device=data.words.device)
    mask = data.word_mask[index] if word_mask is None else word_mask
    length = int(data.word_mask[index].sum(dim=1).max())  # words are packed to the left
    output = model(gaussians.means, data.words[index, :length], mask[:, :length],
                   data.sentences[index])
    if data.weights is not None:
        probabilities = data.weights[view].render(torch.sigmoid(output.relevance).T)
    else:
        probabilities = render_relevance(gaussians, data.views[view].camera, output.relevance,
                                         config.backend)  # [H, W, E]
    ids = torch.tensor(instances, device=probabilities.device)
    targets = data.masks[view][..., None] == ids  # [H, W, E]; -1 never matches: empty
    terms = {'ref': referring_bce(probabilities, targets)}
    zero = probabilities.new_zeros(())
    terms['con'] = zero
    if weights.con > 0 and len(rows) > 1:
        tau = tau_at(step, config.steps, weights.tau_start, weights.tau_end)
        grounded = model.sentence_head(top_tau_mean(output, tau))
        positives = ids[:, None] == ids[None, :]
        terms['con'] = contrastive_loss(grounded, data.sentences[index], positives,
                                        weights.temperature)
    terms['inst'], terms['comp'], terms['dist'] = zero, zero, zero
    if weights.comp > 0 or weights.dist > 0:
        terms['inst'], terms['comp'], terms['dist'] = instance_loss(
            model.embeddings, model.assignment, model.instance_ids, weights)
    terms['loss'] = weights.ref * terms['ref'] + terms['inst'] + weights.con * terms['con']
    return terms


@contextlib.contextmanager
def _reproducible(device: torch.device) -> Iterator[None]:
    """
    Make a CPU run bit-for-bit repeatable: the same seed gives the same field.

    Accumulating gradients in threads otherwise sums in a varying order, and over a training
    run those last-bit differences grow into different fields (a twin found in one run, missed
    in the next). On CUDA the rasterizer's atomic adds vary anyway, so nothing is changed there.
    """
    if device.type != 'cpu':
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _run_steps(model: ReferringField, optimizer: torch.optim.Adam, generator: torch.Generator,
               data: TrainingData, config: TrainConfig, start: int, history: List[Dict],
               run_dir: Optional[Path], signature: Dict, progress: bool) -> None:
    model.train()
    recent: List[Dict[str, float]] = []
    with StepProgress('training', config.steps, start, enabled=progress) as bar:
        for step in range(start, config.steps):
            view, rows, instances = sample_batch(data, config, generator)
            words = (drop_words(data.word_mask[rows], config.word_dropout, generator)
                     if config.word_dropout > 0 else None)
            terms = step_losses(model, data, config, step, view, rows, instances, words)
            optimizer.zero_grad(set_to_none=True)
            terms['loss'].backward()
            optimizer.step()
            history.append({k: float(v.detach()) for k, v in terms.items()})
            recent = (recent + [history[-1]])[-50:]  # the loss terms' mean over 50 steps
            bar.advance(note=' '.join(f"{k} {sum(t[k] for t in recent) / len(recent):.3f}"
                                      for k in ('loss', 'ref', 'con', 'inst')))
            done = step + 1
            if run_dir is not None and (done % config.checkpoint_every == 0
                                        or done == config.steps):
                save_checkpoint(run_dir, signature, done, model, optimizer, generator, history)


# ---- checkpoints ----------------------------------------------------------------------------


def _signature(config: TrainConfig, seed: int, encoder: NamedEncoder) -> Dict:
    """Return what must match for a checkpoint to be resumed."""
    return {'config': config.to_json(), 'seed': seed, 'text_encoder': str(encoder.name)}


def save_checkpoint(run_dir: Path, signature: Dict, step: int, model: ReferringField,
                    optimizer: torch.optim.Adam, generator: torch.Generator,
                    history: List[Dict]) -> None:
    """
    Save field, Adam state and generator state as tensors; step, param groups and history as JSON.

    Written tensor file first, then JSON (atomically each): the JSON names the step.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f'field/{k}': v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, slots in state['state'].items():
        for key, value in slots.items():
            tensors[f'adam/{index}/{key}'] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors['generator'] = generator.get_state()
    groups = [{k: v for k, v in g.items() if k != 'params'} | {'params': g['params']}
              for g in state['param_groups']]
    meta = {'signature': signature, 'step': step, 'param_groups': groups, 'history': history}
    atomic_write(run_dir / CHECKPOINT_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(run_dir / CHECKPOINT_META, lambda tmp: tmp.write_text(json.dumps(meta)))


def load_checkpoint(run_dir: Path, signature: Dict, model: ReferringField,
                    optimizer: torch.optim.Adam, generator: torch.Generator,
                    history: List[Dict]) -> int:
    """
    Restore the latest checkpoint into model, optimizer, generator and history.

    Only a checkpoint written by a run with the same signature is used. Returns the step to
    continue from (0: none usable).
    """
    meta_path, tensor_path = run_dir / CHECKPOINT_META, run_dir / CHECKPOINT_FILE
    if not (meta_path.is_file() and tensor_path.is_file()):
        return 0
    meta = json.loads(meta_path.read_text())
    if meta.get('signature') != json.loads(json.dumps(signature)):
        return 0
    tensors = load_file(str(tensor_path))
    device = model.embeddings.device
    model.load_state_dict({k[len('field/'):]: v for k, v in tensors.items()
                           if k.startswith('field/')})
    slots: Dict[int, Dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith('adam/'):
            _, index, name = key.split('/')
            # Adam keeps 'step' on the CPU unless capturable; the moments live with the params.
            slots.setdefault(int(index), {})[name] = value if name == 'step' else value.to(device)
    optimizer.load_state_dict({'state': slots, 'param_groups': meta['param_groups']})
    generator.set_state(tensors['generator'])
    history[:] = meta['history']
    return int(meta['step'])


# ---- no-target threshold --------------------------------------------------------------------


def _best(model: ReferringField, means: Tensor, words: Tensor, word_mask: Tensor,
          sentences: Tensor) -> Tensor:
    """Best scores [E] of E encoded expressions at one time."""
    return best_scores(model(means, words, word_mask, sentences).relevance)


@torch.no_grad()
def calibrate_threshold(model: ReferringField, data: TrainingData, encoder: SentenceEncoder,
                        config: TrainConfig) -> Tuple[float, Dict]:
    """
    No-target threshold on the best score, from training data.

    Positives: every training caption at its own frames. Negatives: the held-out half of the
    null sentences (never trained on) at every training time. The separating value is the
    middle of the range of thresholds with the best balanced accuracy; the threshold applied
    is that value capped at 0.5. Why the cap: a rendered pixel is a weighted mean of
    sigmoid(m) <= the best score, so below 0.5 the mask is empty anyway and "no target" only
    names that answer; above 0.5 it would erase masks of expressions the field does ground,
    and paraphrases score lower than the training captions the value was fitted on (both
    values are stored: 'calibration.separating').
    """
    positives = []
    by_time: Dict[float, set] = {}
    for view, captions in zip(data.views, data.captions):
        by_time.setdefault(view.time, set()).update(row for row, _ in captions.positives)
    for t, rows in sorted(by_time.items()):
        index = torch.tensor(sorted(rows), device=data.words.device)
        positives.append(_best(model, data.frames[t].means, data.words[index],
                               data.word_mask[index], data.sentences[index]))
    held_out = list(config.null_expressions[len(config.null_expressions) // 2:])
    negatives = []
    if held_out:
        encoded = encoder.encode(held_out)
        words = encoded.words.to(data.words.device)
        mask = encoded.word_mask.to(data.words.device)
        sentences = encoded.sentence.to(data.words.device)
        negatives = [_best(model, data.frames[t].means, words, mask, sentences)
                     for t in data.times]
    pos = torch.cat(positives).cpu()
    neg = torch.cat(negatives).cpu() if negatives else torch.zeros(0)
    separating, accuracy = separating_threshold(pos, neg)
    threshold = min(separating, MAX_THRESHOLD)
    stats = {'positives': len(pos), 'negatives': len(neg), 'separating': separating,
             'balanced_accuracy': accuracy,
             'negatives_rejected': float((neg < threshold).float().mean()) if len(neg) else 1.0,
             'positive_quantiles': _quantiles(pos), 'negative_quantiles': _quantiles(neg)}
    return threshold, stats


def separating_threshold(positives: Tensor, negatives: Tensor) -> Tuple[float, float]:
    """
    Find the (threshold, balanced accuracy) best separating positive [P] from negative [Q] scores.

    A score >= threshold is positive. Without negatives: half the lowest positive.
    """
    if len(negatives) == 0:
        return float(positives.min()) * 0.5, 1.0
    values = torch.cat([positives, negatives]).sort().values
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2])
    tpr = (positives[None, :] >= candidates[:, None]).float().mean(dim=1)
    tnr = (negatives[None, :] < candidates[:, None]).float().mean(dim=1)
    balanced = (tpr + tnr) / 2
    best = balanced.max()
    # Among equally good thresholds, the middle one: the largest margin on both sides.
    ties = torch.nonzero(balanced == best).squeeze(1)
    middle = float((candidates[ties[0]] + candidates[ties[-1]]) / 2)
    return max(middle, 0.0), float(best)


def _quantiles(values: Tensor) -> Dict[str, float]:
    if len(values) == 0:
        return {}
    qs = torch.quantile(values.float(), torch.tensor([0.05, 0.5, 0.95]))
    return {'q05': float(qs[0]), 'q50': float(qs[1]), 'q95': float(qs[2])}
