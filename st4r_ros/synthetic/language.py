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
Language for the synthetic scenes: training captions and a held-out benchmark.

Their answers are known exactly from the generator's ground truth (objects.json, cameras.json,
masks).

What is said
------------

Every sentence, caption or expression, is made from one *referent*: a head (some of the
target's colour, shape, size, or a shape property such as "round") and optionally a spatial
relation to other objects, e.g. (head = red cube, relation = left of, anchor = blue torus).
A referent *holds* at a frame when, among the objects visible at that frame, exactly the
target fits it: heads without a relation are kept only when they name one object of the
scene; anchors are named by colour and shape, words that must fit one object ("the blue
torus") or two, the twins ("the other white torus", said of one twin). So
every training caption and every evaluation expression is a true, unambiguous referring
expression at each frame it is attached to, and relations are evaluated frame by frame from
the objects' positions at that time (a moving object's relations change).

Kinds: "appearance" (colour and shape, maybe size), "attribute" (part of the look: colour
alone, shape alone, size, shape property), "spatial" (a unique look plus a true relation),
"relation-only" (the head fits several objects, e.g. the twins, and only the relation tells
which one is meant). These four are *time-agnostic* (``TIME_AGNOSTIC_KINDS``): what they name
is the target wherever it holds, whatever the target is doing.

The fifth kind, "time-sensitive" (``TIME_SENSITIVE``), asks *when*: a head that fits one object
of the scene and one of its events in objects.json ("when is the crimson box moving?"). Its
frames are exactly the frames whose ``events`` hold that event, in all frames of the scene
(not only those with a novel view), so they may be several runs (the squasher squashes twice).
Only the changes are asked about (not "static", nor "invisible", whose target cannot be seen),
and only where they hold at some frames but not at all: every query holds at some frames and
not at others, and its target is visible at all of its frames.

Temporal state captions
-----------------------

The generator's per-frame ``events`` are the instantaneous states that the temporal branch
learns (``state_captions`` of supervision.json, apart from the description ``captions``): at
every frame where an object is visible, one caption per event holding then, so one or two
("the ruby cuboid is spinning", "the ruby cuboid is being squashed flat"), static objects
included ("the pearl drum is at rest"). They name the object by colour and shape only, in
family A's words, even the twins: a state caption is bound to its instance, not resolved
against the others, and the description captions keep the spatial part.

Spatial convention (world frame, independent of the camera)
-----------------------------------------------------------

Relations are read as seen by a viewer standing at the table's front edge, on the -y side,
looking along +y with z up: *left* = -x, *right* = +x, *in front of* = -y (nearer the viewer),
*behind* = +y. The synthetic cameras orbit the table at every azimuth (the training ring turns
by a golden-ratio step per frame, novel cameras are random), so a camera-relative "left" would
flip between training views and could not be learnt; a world-frame relation is a fixed
direction in the very coordinates the referring field conditions on (its position-aware
attention sees the Gaussians' world positions mu_i(t)). -y was picked so that a plot of the
xy plane (x to the right, y up the page) reads like the sentences.

Geometry (centres on the table plane, metres; SLOT_SPACING = 0.7 in the generator):
A is *left of* B when B.x - A.x >= SIDE_MARGIN and that offset is at least half the offset
across (y) - so a diagonal neighbour is both left of and behind; likewise for the other sides.
*next to*: centres within NEXT_TO_DISTANCE. *between* B and C: A projects into the middle
half of the segment BC and lies within a quarter of its length from it. Superlatives (*nearest to*,
*leftmost*, ...) pick a clear winner (by NEAREST_MARGIN or SIDE_MARGIN) among the objects the
head fits, or among all visible objects when the head fits one only (so "the red cube nearest
to the blue torus" is then also the nearest object to it).

Two template families
---------------------

Training captions (family A, ``TRAINING_WORDS``), noun phrases whose words vary as a captioning
model's would (red or ruby, sphere or globe, to the left of or left of): "a large red sphere",
"the flat-faced object", "the ruby globe left of the navy cube", "the white torus in front of
the other white torus", "the shape between the green cylinder and the pink cube", "the
leftmost object".

State captions (family A, ``TRAINING_STATES``) are declarative: "the <colour> <shape>
<state>", the state in words of its own ("is sliding across the table", "is spinning", "is
being squashed flat", "is splitting in two", "lies in two halves", "is fading away", "is
standing still").

Evaluation expressions (family B, ``EVALUATION_WORDS``), imperative, relative-clause and question
sentences with other relation words and generic nouns, and content words drawn from the plain
word and synonyms that training never uses (crimson, cobalt, ball, box, can, ring, little, big,
ball-shaped...): "find the crimson box", "point to the ball-shaped thing", "the one that is
further left than the cobalt ring", "of the two ivory donuts, the one closer to the front",
"find the item flanked by the emerald can and the rose block", "which one is furthest back?".
Time-sensitive queries (family B, ``EVALUATION_STATES``) are questions and clauses about a
moment, which name the state in other words than the state captions do: "when is the crimson
box moving?", "the ball while it spins", "find the ring when it gets flattened", "the can as
it splits apart", "when does the golden orb fade out?".
No evaluation sentence is a training sentence and no held-out synonym occurs in training, so
the benchmark scores generalisation, not template matching; ``unseen_words`` says which
expressions carry a held-out synonym, whose recognition rests on the text encoder alone.

A third family, what a task planner sends (family C: requests, attribute-only references,
questions), is planner.py's; it reads the same truth through this module's public helpers
(``load_scene_truth``, ``holding_referents``, ``frames_where``, ``novel_views``).

Outputs: ``write_synthetic_supervision`` (training views = the synthetic train views, masks
copied into the supervision folder; description and state captions), ``write_synthetic_benchmark``
(held-out novel views, masks referenced relative to the benchmark file; the time-agnostic
expressions, then the time-sensitive queries; with ``vocabulary='training'`` the same
expressions with family A's look words in place of the held-out synonyms, to measure what the
text encoder's vocabulary costs, and with ``'training-all'`` family A's relation phrases and
generic nouns too), ``write_captions_and_benchmark`` (both, inside the synthetic folder; task.py's
``build_synthetic_task`` adds planner.py's request sets).
Deterministic for a seed; state captions and time-sensitive queries draw from random streams of
their own, so the other sentences are those of a scene without them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations
import json
import math
from pathlib import Path
import re
import shutil
from typing import Any, Callable, cast, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from st4r_ros.errors import CameraError, SupervisionFormatError
from st4r_ros.render.camera import Camera
from st4r_ros.supervision.format import (Benchmark, Caption, Expression, InstanceCaptions,
                                         load_benchmark, load_supervision, save_benchmark,
                                         save_supervision, Supervision, SupervisionView,
                                         TIME_SENSITIVE)
from st4r_ros.synthetic.scene import PALETTE, SHAPES, SIZES, SLOT_SPACING

TIME_AGNOSTIC_KINDS = ('appearance', 'attribute', 'spatial', 'relation-only')
APPEARANCE, ATTRIBUTE, SPATIAL, RELATION_ONLY = TIME_AGNOSTIC_KINDS
KINDS = TIME_AGNOSTIC_KINDS + (TIME_SENSITIVE,)
LEFT_OF, RIGHT_OF, IN_FRONT_OF, BEHIND = 'left_of', 'right_of', 'in_front_of', 'behind'
NEXT_TO, NEAREST_TO, BETWEEN = 'next_to', 'nearest_to', 'between'
LEFTMOST, RIGHTMOST, FRONTMOST, REARMOST = 'leftmost', 'rightmost', 'frontmost', 'rearmost'
# (axis, sign): the side's direction in the world frame (module doc, "Spatial convention").
SIDE_OF = {LEFT_OF: (0, -1.0), RIGHT_OF: (0, 1.0), IN_FRONT_OF: (1, -1.0), BEHIND: (1, 1.0)}
EXTREME = {LEFTMOST: (0, -1.0), RIGHTMOST: (0, 1.0), FRONTMOST: (1, -1.0), REARMOST: (1, 1.0)}
SPATIAL_FRAME = {
    'viewer': "at the table's front edge (-y side), looking along +y, z up",
    'left': [-1, 0, 0], 'right': [1, 0, 0], 'front': [0, -1, 0], 'behind': [0, 1, 0],
    'up': [0, 0, 1],
}
# Margins in metres, tied to the generator's slot grid: static objects sit 0 or >= one slot
# apart, so only an object in transit can come near a margin (and then no relation is said).
SIDE_MARGIN = 0.4 * SLOT_SPACING
NEXT_TO_DISTANCE = 1.15 * SLOT_SPACING  # 4-neighbours, not diagonals
NEAREST_MARGIN = 0.2 * SLOT_SPACING
# How many referents of each kind are said per instance: per frame in training, in all in
# the benchmark.
TRAINING_QUOTA = {APPEARANCE: 1, ATTRIBUTE: 1, SPATIAL: 2, RELATION_ONLY: 2}
EVALUATION_QUOTA = {APPEARANCE: 1, ATTRIBUTE: 2, SPATIAL: 2, RELATION_ONLY: 2}
GENERATOR = 'st4r_ros.synthetic.language'


@dataclass(frozen=True)
class Words:
    """
    One template family's vocabulary.

    Words per concept (a seeded choice among them), and relation phrases as format strings
    over the anchors' noun phrases.
    """

    colours: Dict[str, Tuple[str, ...]]
    shapes: Dict[str, Tuple[str, ...]]
    plurals: Dict[str, str]  # shape noun -> plural
    sizes: Dict[str, Tuple[str, ...]]
    properties: Dict[str, Tuple[str, ...]]  # shape -> adjective
    generic: Tuple[str, ...]  # the noun of a head that names no shape
    relations: Dict[str, Tuple[str, ...]]


TRAINING_WORDS = Words(
    # Several words per concept, as a captioning model varies its wording from frame to frame;
    # none of them is an evaluation word (tests/test_synthetic_language.py checks).
    colours={
        'red': ('red', 'ruby'), 'green': ('green', 'lime'), 'blue': ('blue', 'navy'),
        'yellow': ('yellow', 'canary'), 'orange': ('orange', 'apricot'),
        'purple': ('purple', 'lilac'), 'cyan': ('cyan', 'teal'), 'pink': ('pink', 'fuchsia'),
        'white': ('white', 'pearl'), 'black': ('black', 'charcoal'),
    },
    shapes={'sphere': ('sphere', 'globe'), 'cube': ('cube', 'cuboid'),
            'cylinder': ('cylinder', 'drum'), 'torus': ('torus', 'hoop')},
    plurals={},
    sizes={'small': ('small', 'tiny'), 'medium': ('medium',), 'large': ('large', 'huge')},
    properties={'sphere': ('round', 'spherical'), 'cube': ('flat-faced', 'square'),
                'cylinder': ('pillar-like',), 'torus': ('hollow-centred', 'annular')},
    generic=('object', 'shape'),
    relations={
        LEFT_OF: ('to the left of {0}', 'left of {0}'),
        RIGHT_OF: ('to the right of {0}', 'right of {0}'),
        IN_FRONT_OF: ('in front of {0}', 'ahead of {0}'),
        BEHIND: ('behind {0}', 'in back of {0}'), NEXT_TO: ('next to {0}', 'by {0}'),
        NEAREST_TO: ('nearest to {0}',), BETWEEN: ('between {0} and {1}',),
        LEFTMOST: ('leftmost',), RIGHTMOST: ('rightmost',), FRONTMOST: ('frontmost',),
        REARMOST: ('rearmost',),
    },
)

EVALUATION_WORDS = Words(
    colours={
        'red': ('red', 'crimson', 'scarlet'), 'green': ('green', 'emerald', 'grass-green'),
        'blue': ('blue', 'cobalt', 'royal-blue'), 'yellow': ('yellow', 'golden', 'lemon'),
        'orange': ('orange', 'tangerine', 'amber'), 'purple': ('purple', 'violet', 'amethyst'),
        'cyan': ('cyan', 'turquoise', 'aqua'), 'pink': ('pink', 'rose', 'blush'),
        'white': ('white', 'ivory', 'snow-white'), 'black': ('black', 'jet-black', 'ebony'),
    },
    shapes={'sphere': ('sphere', 'ball', 'orb'), 'cube': ('cube', 'box', 'block'),
            'cylinder': ('cylinder', 'can', 'tube'), 'torus': ('torus', 'ring', 'donut')},
    plurals={'sphere': 'spheres', 'ball': 'balls', 'orb': 'orbs', 'cube': 'cubes',
             'box': 'boxes', 'block': 'blocks', 'cylinder': 'cylinders', 'can': 'cans',
             'tube': 'tubes', 'torus': 'tori', 'ring': 'rings', 'donut': 'donuts'},
    sizes={'small': ('small', 'little'), 'medium': ('medium', 'mid-sized'),
           'large': ('large', 'big')},
    properties={'sphere': ('ball-shaped',), 'cube': ('box-shaped',), 'cylinder': ('can-shaped',),
                'torus': ('ring-shaped', 'donut-shaped')},
    generic=('thing', 'item', 'one'),
    relations={
        LEFT_OF: ('further left than {0}', 'on the left-hand side of {0}'),
        RIGHT_OF: ('further right than {0}', 'on the right-hand side of {0}'),
        IN_FRONT_OF: ('closer to the front than {0}', 'nearer the front than {0}'),
        BEHIND: ('further back than {0}', 'farther from the front than {0}'),
        NEXT_TO: ('beside {0}', 'adjacent to {0}'), NEAREST_TO: ('closest to {0}',),
        BETWEEN: ('flanked by {0} and {1}', 'in the middle of {0} and {1}'),
        LEFTMOST: ('furthest to the left',), RIGHTMOST: ('furthest to the right',),
        FRONTMOST: ('closest to the front',), REARMOST: ('furthest back',),
    },
)


def _cycled(training: Dict[str, Tuple[str, ...]],
            evaluation: Dict[str, Tuple[str, ...]]) -> Dict[str, Tuple[str, ...]]:
    """Training's words per concept, repeated to as many options as evaluation has."""
    return {concept: tuple(training[concept][i % len(training[concept])]
                           for i in range(len(options)))
            for concept, options in evaluation.items()}


# Family B's sentences and relation words with family A's colour, shape, size and property
# words: the same benchmark with no held-out synonym, so that comparing the two tells what the
# text encoder's vocabulary costs (``write_synthetic_benchmark(vocabulary='training')``). As
# many options per concept as family B, so the seeded draws, hence the expressions, stay the
# same; the plain word keeps its place (first).
TRAINING_VOCABULARY_WORDS = replace(
    EVALUATION_WORDS,
    colours=_cycled(TRAINING_WORDS.colours, EVALUATION_WORDS.colours),
    shapes=_cycled(TRAINING_WORDS.shapes, EVALUATION_WORDS.shapes),
    sizes=_cycled(TRAINING_WORDS.sizes, EVALUATION_WORDS.sizes),
    properties=_cycled(TRAINING_WORDS.properties, EVALUATION_WORDS.properties),
    plurals={'sphere': 'spheres', 'globe': 'globes', 'cube': 'cubes', 'cuboid': 'cuboids',
             'cylinder': 'cylinders', 'drum': 'drums', 'torus': 'tori', 'hoop': 'hoops'})
# ... and with family A's relation phrases and generic nouns too: only family B's sentence
# shapes (and the twins' comparatives) are left of it, so that what remains of the gap to
# the training views is not the encoder's vocabulary.
TRAINING_VOCABULARY_ALL = replace(
    TRAINING_VOCABULARY_WORDS,
    relations=_cycled(TRAINING_WORDS.relations, EVALUATION_WORDS.relations),
    generic=tuple(TRAINING_WORDS.generic[i % len(TRAINING_WORDS.generic)]
                  for i in range(len(EVALUATION_WORDS.generic))))
BENCHMARK_VOCABULARIES = {'held-out': EVALUATION_WORDS, 'training': TRAINING_VOCABULARY_WORDS,
                          'training-all': TRAINING_VOCABULARY_ALL}
# Family B's comparison of a twin with the other one: "of the two ..., the one further left".
EVALUATION_COMPARATIVES = {LEFT_OF: 'further left', RIGHT_OF: 'further right',
                           IN_FRONT_OF: 'closer to the front', BEHIND: 'further back'}

# State captions, family A: "the <colour> <shape> <phrase>", for every event of objects.json
# that a visible object can be in ("invisible" never is).
TRAINING_STATES = {
    'moving': ('is sliding across the table', 'is gliding over the table'),
    'rotating': ('is spinning', 'is turning around'),
    'squashed': ('is being squashed flat', 'is being squished'),
    'splitting': ('is splitting in two', 'is breaking in half'),
    'split': ('lies in two halves', 'is broken in two'),
    'disappearing': ('is fading away', 'is vanishing'),
    'appearing': ('is fading back in', 'is reappearing'),
    'static': ('is standing still', 'is at rest'),
}
# Time-sensitive queries, family B, over "the <head>": the events asked about, in this order.
EVALUATION_STATES = {
    'moving': ('when is {0} moving?', '{0} while it moves', 'find {0} when it is in motion',
               'show me {0} as it travels'),
    'rotating': ('{0} while it spins', 'when does {0} rotate?', 'find {0} as it revolves',
                 '{0} during its turn'),
    'squashed': ('find {0} when it gets flattened', '{0} while it is compressed',
                 'when is {0} squeezed down?', '{0} as it gets crushed'),
    'splitting': ('{0} as it splits apart', 'when does {0} come apart?',
                  'find {0} while it breaks up'),
    'split': ('{0} after it has split', 'find {0} once it is in pieces',
              'when is {0} in separate parts?'),
    'disappearing': ('{0} as it disappears', 'when does {0} fade out?',
                     'find {0} while it turns transparent'),
    'appearing': ('{0} as it becomes visible again', 'when does {0} show up again?',
                  'find {0} while it materialises'),
}
# The events objects.json may list (its document's "events").
KNOWN_EVENTS = frozenset(TRAINING_STATES) | {'invisible'}
# Time-sensitive queries per object and event, each in other words (and maybe another head).
TIME_SENSITIVE_PER_EVENT = 2


def _content_words(words: Words) -> Set[str]:
    """Collect every colour, shape, size and property word of a family."""
    lists = [*words.colours.values(), *words.shapes.values(), *words.sizes.values(),
             *words.properties.values()]
    return {word for options in lists for word in options}


def _held_out_words() -> frozenset:
    """Collect the evaluation family's synonyms that training never uses, with their plurals."""
    held_out = _content_words(EVALUATION_WORDS) - _content_words(TRAINING_WORDS)
    plurals = {EVALUATION_WORDS.plurals[noun] for noun in held_out & set(EVALUATION_WORDS.plurals)}
    return frozenset(held_out | plurals)


HELD_OUT_WORDS = _held_out_words()


def unseen_words(text: str) -> Set[str]:
    """Return the held-out synonyms (HELD_OUT_WORDS) that an expression uses."""
    return set(re.findall(r'[a-z]+(?:-[a-z]+)*', text.lower())) & HELD_OUT_WORDS


@dataclass(frozen=True)
class Head:
    """The part of an object's look a sentence names; None = not named."""

    colour: Optional[str] = None
    shape: Optional[str] = None
    size: Optional[str] = None
    shape_as_property: bool = False  # "the round object" rather than "the sphere"

    def fits(self, thing: 'ObjectTruth') -> bool:
        return ((self.colour is None or self.colour == thing.colour)
                and (self.shape is None or self.shape == thing.shape)
                and (self.size is None or self.size == thing.size))


@dataclass(frozen=True)
class Referent:
    """What a sentence says about its target: a head and optionally a relation to anchors."""

    target: int
    head: Head
    relation: Optional[str] = None
    anchors: Tuple[int, ...] = ()

    def metadata(self) -> Dict[str, Any]:
        head: Dict[str, Any] = {k: v for k, v in (('colour', self.head.colour),
                                                  ('shape', self.head.shape),
                                                  ('size', self.head.size)) if v is not None}
        if self.head.shape_as_property:
            head['shape_as_property'] = True
        return {'head': head, 'relation': self.relation, 'anchors': list(self.anchors)}


@dataclass(frozen=True)
class ObjectTruth:
    """An object of objects.json: look and, per frame, table-plane centre and visibility."""

    # A003: objects.json's `id` (the instance id); a dataclass field shadows the builtin
    # nowhere.
    id: int  # noqa: A003
    name: str
    shape: str
    colour: str
    size: str
    xy: Tuple[Tuple[float, float], ...]
    visible: Tuple[bool, ...]
    events: Tuple[Tuple[str, ...], ...]  # per frame: objects.json's frames[].events


@dataclass(frozen=True)
class SceneTruth:
    """A synthetic scene's ground truth: its objects, frame times and cameras, as written."""

    root: Path
    things: Tuple[ObjectTruth, ...]
    times: Tuple[float, ...]
    views: Dict[str, List[Dict]]  # cameras.json's "train" and "novel" entries
    by_id: Dict[int, ObjectTruth]
    namesakes: Dict[int, Tuple[int, ...]]  # id -> the other objects of its colour and shape

    def thing(self, key: int) -> ObjectTruth:
        return self.by_id[key]


# ---- public API ---------------------------------------------------------------------------


def write_synthetic_supervision(synthetic_dir: str | Path, out_supervision_dir: str | Path,
                                seed: int = 0) -> Supervision:
    """
    Write the training supervision of a synthetic scene.

    That is its train views (masks copied into ``out_supervision_dir/masks``) and family-A
    captions per instance and frame: description captions and state captions.
    """
    scene = _load_scene(Path(synthetic_dir))
    return _write_supervision(scene, _holding_frames(scene), Path(out_supervision_dir), seed)


def write_synthetic_benchmark(synthetic_dir: str | Path, out_bench_path: str | Path,
                              seed: int = 0, vocabulary: str = 'held-out') -> Benchmark:
    """
    Write the benchmark of a synthetic scene.

    That is its novel views and family-B expressions, each with its instance, kind and the
    frames where it holds: the time-agnostic ones, then the time-sensitive queries.

    :param vocabulary: 'held-out' (the benchmark: colour, shape, size and property words drawn
        from the plain word and synonyms training never uses) or 'training' (the same
        expressions, same ids, sentence shapes and relation words, those words drawn from the
        training captions' instead: what the text encoder's vocabulary costs) or
        'training-all' (relation phrases and generic nouns from training's too).
    """
    if vocabulary not in BENCHMARK_VOCABULARIES:
        raise ValueError(f'vocabulary: expected one of {list(BENCHMARK_VOCABULARIES)}, got '
                         f'{vocabulary!r}')
    scene = _load_scene(Path(synthetic_dir))
    return _write_benchmark(scene, _holding_frames(scene), Path(out_bench_path), seed,
                            BENCHMARK_VOCABULARIES[vocabulary])


def write_captions_and_benchmark(scene: SceneTruth, holding: Dict[Referent, Tuple[int, ...]],
                                 seed: int = 0) -> Tuple[Path, Path]:
    """
    Write the scene's family-A supervision and family-B benchmark; their paths.

    ``supervision/`` and ``bench.json`` inside the scene's folder, from ``holding``
    (``holding_referents``, the costly part, which the task computes once for every family).
    """
    _write_benchmark(scene, holding, scene.root / 'bench.json', seed)
    _write_supervision(scene, holding, scene.root / 'supervision', seed)
    return scene.root / 'supervision', scene.root / 'bench.json'


def load_scene_truth(synthetic_dir: str | Path) -> SceneTruth:
    """Read a synthetic folder's objects.json and cameras.json."""
    return _load_scene(Path(synthetic_dir))


def holding_referents(scene: SceneTruth) -> Dict[Referent, Tuple[int, ...]]:
    """Map every referent of family A and B that holds somewhere to the frames where it holds."""
    return _holding_frames(scene)


def frames_where(scene: SceneTruth, ref: Referent) -> Tuple[int, ...]:
    """
    List the frames where ``ref`` picks out exactly its target among the visible objects.

    Any head, not only those the families here say: one that fits several objects of the
    scene holds where the others are invisible.
    """
    return tuple(f for f in range(len(scene.times)) if _holds(scene, ref, f))


def novel_views(scene: SceneTruth) -> List[SupervisionView]:
    """Read the held-out novel views of cameras.json, the views a benchmark is scored on."""
    if not scene.views['novel']:
        raise SupervisionFormatError(f"{scene.root / 'cameras.json'}: novel: expected at least "
                                     'one held-out view for a benchmark, got none')
    return [_view(scene, entry, f'novel[{i}]') for i, entry in enumerate(scene.views['novel'])]


def _write_supervision(scene: SceneTruth, holding: Dict[Referent, Tuple[int, ...]], out: Path,
                       seed: int) -> Supervision:
    rng = np.random.default_rng([seed, 0])
    views = [_copy_mask(_view(scene, entry, f'train[{i}]'), out / 'masks')
             for i, entry in enumerate(scene.views['train'])]
    instances = [_training_captions(scene, thing, holding, rng) for thing in scene.things]
    state_rng = np.random.default_rng([seed, 2])
    instances = [replace(instance, state_captions=_state_captions(scene, thing, state_rng))
                 for instance, thing in zip(instances, scene.things)]
    metadata = {'generator': GENERATOR, 'seed': seed, 'template_family': 'training (A)',
                'spatial_frame': SPATIAL_FRAME}
    save_supervision(out, Supervision(views, instances, out, metadata))
    return load_supervision(out)


def _write_benchmark(scene: SceneTruth, holding: Dict[Referent, Tuple[int, ...]], out: Path,
                     seed: int, words: Words = EVALUATION_WORDS) -> Benchmark:
    views = novel_views(scene)
    rng = np.random.default_rng([seed, 1])
    seen_frames = {view.frame for view in views if view.frame is not None}  # all have one
    expressions: List[Expression] = []
    for thing in scene.things:
        for ref in _evaluation_referents(scene, thing, holding, seen_frames, rng):
            expressions.append(Expression(
                f'e{len(expressions) + 1:04d}', _evaluation_text(scene, ref, words, rng), thing.id,
                _kind(scene, ref), list(holding[ref]), None, ref.metadata()))
    query_rng = np.random.default_rng([seed, 3])
    for thing in scene.things:
        for text, ref, event, frames in _time_sensitive_queries(scene, thing, words, query_rng):
            expressions.append(Expression(
                f'e{len(expressions) + 1:04d}', text, thing.id, TIME_SENSITIVE, list(frames),
                None, {'event': event, **ref.metadata(), 'spans': _runs(frames)}))
    metadata = {'generator': GENERATOR, 'seed': seed, 'template_family': 'evaluation (B)',
                'spatial_frame': SPATIAL_FRAME, 'kinds': list(KINDS),
                'time_agnostic_kinds': list(TIME_AGNOSTIC_KINDS)}
    instances: Dict[int, Optional[str]] = {thing.id: thing.name for thing in scene.things}
    save_benchmark(out, Benchmark(views, expressions, instances, out.parent, metadata))
    return load_benchmark(out)


# ---- reading the synthetic folder ---------------------------------------------------------


def _load_scene(root: Path) -> SceneTruth:
    objects = _read_document(root / 'objects.json', 'st4r-synthetic-objects')
    cameras = _read_document(root / 'cameras.json', 'st4r-synthetic-cameras')
    try:
        times = tuple(float(u) for u in objects['frame_times'])
        things = tuple(_thing(entry, len(times)) for entry in objects['objects'])
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise SupervisionFormatError(f"{root / 'objects.json'}: expected st4r synthetic "
                                     f'objects, missing or malformed field ({err!r})') from None
    for i, thing in enumerate(things):
        for key, known in (('shape', SHAPES), ('colour', PALETTE), ('size', SIZES)):
            if getattr(thing, key) not in known:
                raise SupervisionFormatError(
                    f"{root / 'objects.json'}: objects[{i}].{key}: expected one of "
                    f'{sorted(known)}, got {getattr(thing, key)!r}')
    views = {}
    for split in ('train', 'novel'):
        if not isinstance(cameras.get(split), list):
            raise SupervisionFormatError(f"{root / 'cameras.json'}: {split}: expected a list "
                                         'of views')
        views[split] = cameras[split]
    namesakes = {t.id: tuple(o.id for o in things if o.id != t.id and o.colour == t.colour
                             and o.shape == t.shape) for t in things}
    return SceneTruth(root, things, times, views, {t.id: t for t in things}, namesakes)


def _read_document(file: Path, expected_format: str) -> Dict:
    try:
        document = json.loads(file.read_text())
    except FileNotFoundError:
        raise SupervisionFormatError(f'{file}: file not found (expected the output of '
                                     '`st4r synth`)') from None
    except (OSError, ValueError) as err:
        raise SupervisionFormatError(f'{file}: not a readable JSON file ({err})') from None
    if not isinstance(document, dict) or document.get('format') != expected_format:
        raise SupervisionFormatError(f'{file}: format: expected {expected_format!r}')
    return document


def _thing(entry: Dict, num_frames: int) -> ObjectTruth:
    frames = entry['frames']
    if len(frames) != num_frames:
        raise ValueError(f"object {entry['id']}: {len(frames)} frames, not {num_frames}")
    xy = tuple((float(f['position'][0]), float(f['position'][1])) for f in frames)
    events = tuple(tuple(f['events']) for f in frames)
    unknown = sorted({str(e) for now in events for e in now} - KNOWN_EVENTS)
    if unknown:
        raise ValueError(f"object {entry['id']}: unknown events {unknown}, expected some of "
                         f'{sorted(KNOWN_EVENTS)}')
    return ObjectTruth(int(entry['id']), str(entry['name']), entry['shape'], entry['colour'],
                       entry['size'], xy, tuple(bool(f['visible']) for f in frames), events)


def _view(scene: SceneTruth, entry: Any, where: str) -> SupervisionView:
    """Read a view of cameras.json; its mask path points into the synthetic folder."""
    source = scene.root / 'cameras.json'
    try:
        camera = Camera.from_json(entry['camera'], source=f'{source}: {where}.camera')
        return SupervisionView(str(entry['name']), float(entry['time']), int(entry['frame']),
                               camera, scene.root / entry['mask'])
    except CameraError as err:
        raise SupervisionFormatError(str(err)) from None
    except (KeyError, TypeError, ValueError) as err:
        raise SupervisionFormatError(f'{source}: {where}: expected name, time, frame, camera '
                                     f'and mask ({err!r})') from None


def _copy_mask(view: SupervisionView, folder: Path) -> SupervisionView:
    """Return the view, its mask copied into ``folder`` (a self-contained supervision folder)."""
    if not view.mask_path.is_file():
        raise SupervisionFormatError(f'{view.mask_path}: mask of view {view.name!r} not found '
                                     '(expected the masks written by `st4r synth`)')
    copy = folder / f'{view.name}.png'
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(view.mask_path, copy)
    return replace(view, mask_path=copy)


# ---- truth --------------------------------------------------------------------------------


def _referents(scene: SceneTruth, target: ObjectTruth) -> List[Referent]:
    """Everything that could be said of ``target``, true or not: the caller keeps what holds."""
    look = Head(target.colour, target.shape)
    plain = [look, Head(target.colour, target.shape, target.size), Head(colour=target.colour),
             Head(shape=target.shape), Head(shape=target.shape, size=target.size),
             Head(size=target.size), Head(shape=target.shape, shape_as_property=True),
             Head(target.colour, target.shape, shape_as_property=True)]
    # A head without a relation must name one object of the scene: then it holds whenever the
    # target is visible, as a time-agnostic description should.
    refs = [Referent(target.id, head) for head in plain
            if sum(head.fits(t) for t in scene.things) == 1]
    # Anchors are named by colour and shape: "the blue torus", or "the other white torus"
    # after the same words when exactly two objects share them (the twins).
    nameable = [t.id for t in scene.things if t.id != target.id and not scene.namesakes[t.id]]
    twin = list(scene.namesakes[target.id]) if len(scene.namesakes[target.id]) == 1 else []
    for head in (look, Head(shape=target.shape), Head()):
        anchors = nameable + (twin if head == look else [])
        refs += [Referent(target.id, head, rel, (a,))
                 for rel in (*SIDE_OF, NEXT_TO, NEAREST_TO) for a in anchors]
        refs += [Referent(target.id, head, BETWEEN, pair) for pair in combinations(nameable, 2)]
        refs += [Referent(target.id, head, rel) for rel in EXTREME]
    return refs


def _holding_frames(scene: SceneTruth) -> Dict[Referent, Tuple[int, ...]]:
    """Each referent that holds somewhere -> the frames where it picks out exactly its target."""
    holding = {}
    for target in scene.things:
        for ref in _referents(scene, target):
            frames = frames_where(scene, ref)
            if frames:
                holding[ref] = frames
    return holding


def _holds(scene: SceneTruth, ref: Referent, frame: int) -> bool:
    """``ref`` describes its target and nothing else at ``frame``."""
    target = scene.thing(ref.target)
    if not all(scene.thing(k).visible[frame] for k in (ref.target, *ref.anchors)):
        return False
    if ref.relation in EXTREME or ref.relation == NEAREST_TO:
        return _superlative(scene, ref, frame) is target
    # Most referents already fail on the target itself: test that before any rival.
    if ref.relation is not None and not _satisfies(scene, ref, target, frame):
        return False
    rivals = (t for t in _candidates(scene, ref, frame) if t is not target)
    return not any(ref.relation is None or _satisfies(scene, ref, t, frame) for t in rivals)


def _candidates(scene: SceneTruth, ref: Referent, frame: int) -> List[ObjectTruth]:
    """List the objects visible at ``frame`` that ``ref``'s head fits, anchors excluded."""
    return [t for t in scene.things
            if t.visible[frame] and t.id not in ref.anchors and ref.head.fits(t)]


def _superlative(scene: SceneTruth, ref: Referent, frame: int) -> Optional[ObjectTruth]:
    """
    Find the clear winner of ``ref``'s superlative.

    The winner is picked among the head's objects, or among all visible objects when the head
    fits one (module doc); None without a clear winner.
    """
    candidates = _candidates(scene, ref, frame)
    pool = candidates
    if len(candidates) == 1:
        pool = _candidates(scene, Referent(ref.target, Head(), ref.relation, ref.anchors), frame)
    if ref.relation == NEAREST_TO:
        anchor = scene.thing(ref.anchors[0]).xy[frame]
        winner = _clear_winner(pool, lambda t: -math.dist(t.xy[frame], anchor), NEAREST_MARGIN)
    else:  # one of EXTREME's, the other superlatives (_holds)
        axis, sign = EXTREME[cast(str, ref.relation)]
        winner = _clear_winner(pool, lambda t: sign * t.xy[frame][axis], SIDE_MARGIN)
    return winner if winner in candidates else None


def _satisfies(scene: SceneTruth, ref: Referent, thing: ObjectTruth, frame: int) -> bool:
    """``thing`` stands in ``ref``'s side, next-to or between relation at ``frame``."""
    here = thing.xy[frame]
    anchors = [scene.thing(a).xy[frame] for a in ref.anchors]
    if ref.relation in SIDE_OF:
        return _on_side(here, anchors[0], *SIDE_OF[ref.relation])
    if ref.relation == NEXT_TO:
        return math.dist(here, anchors[0]) <= NEXT_TO_DISTANCE
    return _between(here, *anchors)


def _on_side(a: Sequence[float], b: Sequence[float], axis: int, sign: float) -> bool:
    """
    Tell whether ``a`` lies on the ``sign`` side of ``b`` along ``axis``.

    It must lie there clearly, and more along that axis than half its offset across.
    """
    along = sign * (a[axis] - b[axis])
    return along >= SIDE_MARGIN and along >= abs(a[1 - axis] - b[1 - axis]) / 2


def _between(a: Sequence[float], b: Sequence[float], c: Sequence[float]) -> bool:
    """Tell whether ``a`` projects into the middle half of segment bc, within 1/4 of its length."""
    bx, by = c[0] - b[0], c[1] - b[1]
    ax, ay = a[0] - b[0], a[1] - b[1]
    length = math.hypot(bx, by)
    if length == 0.0:
        return False
    along = (ax * bx + ay * by) / length ** 2
    across = abs(bx * ay - by * ax) / length
    return 0.25 <= along <= 0.75 and across <= 0.25 * length


def _clear_winner(pool: List[ObjectTruth], score: Callable[[ObjectTruth], float],
                  margin: float) -> Optional[ObjectTruth]:
    """Return the best of at least two objects, if it beats the runner-up by ``margin``."""
    if len(pool) < 2:
        return None
    ranked = sorted(pool, key=score, reverse=True)
    return ranked[0] if score(ranked[0]) - score(ranked[1]) >= margin else None


def _kind(scene: SceneTruth, ref: Referent) -> str:
    if ref.relation is None:
        named = ref.head.colour and ref.head.shape and not ref.head.shape_as_property
        return APPEARANCE if named else ATTRIBUTE
    unique = sum(ref.head.fits(t) for t in scene.things) == 1
    return SPATIAL if unique else RELATION_ONLY


def _is_twin_comparison(scene: SceneTruth, ref: Referent) -> bool:
    """Tell whether ``ref`` is a side relation to the target's namesake (tells twins apart)."""
    return (ref.relation in SIDE_OF and len(ref.anchors) == 1
            and ref.anchors[0] in scene.namesakes[ref.target])


# ---- choosing what to say -----------------------------------------------------------------


def _select(scene: SceneTruth, refs: List[Referent], quota: Dict[str, int],
            priority: Callable[[Referent], int], rng: np.random.Generator) -> List[Referent]:
    """Up to ``quota[kind]`` referents of each kind: highest priority first, then at random."""
    chosen = []
    for kind in TIME_AGNOSTIC_KINDS:
        options = [ref for ref in refs if _kind(scene, ref) == kind]
        tie_break = rng.random(len(options))
        order = sorted(range(len(options)), key=lambda i: (-priority(options[i]), tie_break[i]))
        chosen += [options[i] for i in order[:quota[kind]]]
    return chosen


def _training_captions(scene: SceneTruth, thing: ObjectTruth,
                       holding: Dict[Referent, Tuple[int, ...]],
                       rng: np.random.Generator) -> InstanceCaptions:
    """
    Caption ``thing`` in family A at each frame, from what holds at that frame.

    A twin always gets the relation that tells it from the other.
    """
    mine = [ref for ref in holding if ref.target == thing.id]
    captions = []
    for frame, time in enumerate(scene.times):
        now = [ref for ref in mine if frame in holding[ref]]
        for ref in _select(scene, now, TRAINING_QUOTA,
                           lambda r: int(_is_twin_comparison(scene, r)), rng):
            captions.append(Caption(frame, time, _training_text(scene, ref, rng)))
    return InstanceCaptions(thing.id, thing.name, captions, [])


def _evaluation_referents(scene: SceneTruth, thing: ObjectTruth,
                          holding: Dict[Referent, Tuple[int, ...]], seen_frames: Set[int],
                          rng: np.random.Generator) -> List[Referent]:
    """
    Choose what the benchmark asks about ``thing``: referents holding at some evaluated frame.

    The twin comparison comes first, then relations that change over time (they test that the
    field reads positions at the queried time).
    """
    visible = tuple(f for f, shown in enumerate(thing.visible) if shown)
    mine = [ref for ref in holding if ref.target == thing.id and set(holding[ref]) & seen_frames]

    def priority(ref: Referent) -> int:
        return 2 * _is_twin_comparison(scene, ref) + (holding[ref] != visible)

    return _select(scene, mine, EVALUATION_QUOTA, priority, rng)


# ---- time ---------------------------------------------------------------------------------


def _event_frames(scene: SceneTruth, thing: ObjectTruth, event: str) -> Tuple[int, ...]:
    """List the frames where objects.json says ``thing`` is in ``event``."""
    return tuple(f for f in range(len(scene.times)) if event in thing.events[f])


def _runs(frames: Sequence[int]) -> List[List[int]]:
    """Group sorted frames into maximal runs [first, last] of consecutive frames."""
    runs: List[List[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return runs


def _state_captions(scene: SceneTruth, thing: ObjectTruth,
                    rng: np.random.Generator) -> List[Caption]:
    """
    Caption ``thing``'s state in family A at every frame where it is visible.

    One caption per event holding at that frame (objects.json's frames[].events), in that
    order: one or two.
    """
    captions = []
    for frame, time in enumerate(scene.times):
        if not thing.visible[frame]:
            continue
        for event in thing.events[frame]:
            if event in TRAINING_STATES:
                chosen = _choose(TRAINING_WORDS, thing, rng)
                text = f'the {chosen.colour} {chosen.noun} {_one(rng, TRAINING_STATES[event])}'
                captions.append(Caption(frame, time, text))
    return captions


def _time_sensitive_queries(scene: SceneTruth, thing: ObjectTruth, words: Words,
                            rng: np.random.Generator
                            ) -> List[Tuple[str, Referent, str, Tuple[int, ...]]]:
    """
    Ask when ``thing`` is in each of its events: (text, referent, event, frames) each.

    The head is one fitting no other object of the scene (none for the twins, which are not
    asked about): colour and shape (maybe size) in the first sentence, any such head in the
    others. An event is asked when it holds at some frames but not at all, in up to
    TIME_SENSITIVE_PER_EVENT sentences of different shapes.
    """
    heads = [ref for ref in _referents(scene, thing) if ref.relation is None]
    looks = [ref for ref in heads if _kind(scene, ref) == APPEARANCE]
    queries = []
    for event, templates in EVALUATION_STATES.items():
        frames = _event_frames(scene, thing, event)
        if not looks or not frames or len(frames) == len(scene.times):
            continue
        for n, i in enumerate(rng.permutation(len(templates))[:TIME_SENSITIVE_PER_EVENT]):
            options = heads if n else looks
            ref = options[int(rng.integers(len(options)))]
            head = _head_phrase(ref.head, _choose(words, thing, rng))
            queries.append((templates[int(i)].format(f'the {head}'), ref, event, frames))
    return queries


# ---- saying it ----------------------------------------------------------------------------


def _one(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class _Chosen:
    """The words picked for one object in one sentence (kept for "the other ...")."""

    colour: str
    noun: str
    size: str
    prop: str
    generic: str


def _choose(words: Words, thing: ObjectTruth, rng: np.random.Generator) -> _Chosen:
    return _Chosen(_one(rng, words.colours[thing.colour]), _one(rng, words.shapes[thing.shape]),
                   _one(rng, words.sizes[thing.size]), _one(rng, words.properties[thing.shape]),
                   _one(rng, words.generic))


def _head_phrase(head: Head, chosen: _Chosen) -> str:
    """[size] [property] [colour] noun, the noun generic unless the shape is named as one."""
    parts = [chosen.size if head.size else '', chosen.prop if head.shape_as_property else '',
             chosen.colour if head.colour else '']
    noun = chosen.noun if head.shape and not head.shape_as_property else chosen.generic
    return ' '.join([p for p in parts if p] + [noun])


def _anchor_phrases(scene: SceneTruth, ref: Referent, words: Words, target_words: _Chosen,
                    rng: np.random.Generator) -> List[str]:
    """Name each anchor "the <colour> <shape>"; "the other ..." (same words) for a namesake."""
    phrases = []
    for key in ref.anchors:
        if key in scene.namesakes[ref.target]:
            phrases.append(f'the other {target_words.colour} {target_words.noun}')
        else:
            chosen = _choose(words, scene.thing(key), rng)
            phrases.append(f'the {chosen.colour} {chosen.noun}')
    return phrases


def _article(phrase: str) -> str:
    return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def _training_text(scene: SceneTruth, ref: Referent, rng: np.random.Generator) -> str:
    """Family A: a noun phrase, "the/a <head> [<relation> <anchors>]" or "the <extreme> <head>"."""
    chosen = _choose(TRAINING_WORDS, scene.thing(ref.target), rng)
    head = _head_phrase(ref.head, chosen)
    if ref.relation is None:
        return _one(rng, (f'the {head}', _article(head)))
    phrase = _one(rng, TRAINING_WORDS.relations[ref.relation])
    if ref.relation in EXTREME:
        return f'the {phrase} {head}'
    anchors = _anchor_phrases(scene, ref, TRAINING_WORDS, chosen, rng)
    return f'the {head} {phrase.format(*anchors)}'


def _evaluation_text(scene: SceneTruth, ref: Referent, words: Words,
                     rng: np.random.Generator) -> str:
    """Family B: imperative, relative-clause or question sentences in other words."""
    chosen = _choose(words, scene.thing(ref.target), rng)
    head = _head_phrase(ref.head, chosen)
    if ref.relation is None:
        return _one(rng, (f'find the {head}', f'locate the {head}', f'point to the {head}',
                          f'show me the {head}'))
    if _is_twin_comparison(scene, ref) and rng.random() < 0.5:
        return (f'of the two {chosen.colour} {words.plurals[chosen.noun]}, the one '
                f'{EVALUATION_COMPARATIVES[ref.relation]}')
    anchors = _anchor_phrases(scene, ref, words, chosen, rng)
    clause = _one(rng, words.relations[ref.relation]).format(*anchors)
    return _one(rng, (f'the {head} that is {clause}', f'find the {head} {clause}',
                      f'which {head} is {clause}?', f'the {head} sitting {clause}'))
