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
Planner language for the synthetic scenes: what a task planner asks of the robot (family C).

The captions (family A) and the benchmark (family B, language.py) are descriptions. A task
planner does not describe: it asks for an object to act on, names it by as little as tells it
apart, and puts the noun where its sentence puts it. This third template family is a test set of
such requests, written beside bench.json in the same benchmark format, so that `st4r eval SCENE
planner.json` scores what a robot is asked, per kind, beside the benchmark.

Kinds (``Expression.kind``) and why a planner sends them:

- "request": a request verb or polite frame around a description by colour and shape (maybe
  size), the look that names one object of the scene: "pick up the red cube", "could you hand
  me the small blue sphere?", "go to the white cylinder". The planner's commonest message: an
  action on an object it has named fully.
- "attribute-only": one attribute, said only where it is unique among the objects visible at
  those frames: "the orange one", "the large one", "the only cube", "the round one", bare or in
  a request. A planner that has seen one orange object says no more than "orange".
- "head-first": the noun first, its attributes after: "the cube, the large one", "the sphere
  that is blue". A planner that decided the category before the look phrases it this way.
- "relative": no noun, the look in a relative clause: "the one that is orange", "the object
  which is small and round". A planner that knows attributes, not names.
- "question": "which object is the red cube?", "where is the large sphere?". A planner that
  asks before it acts (to check the target is there, or to plan a reach).
- "twin": a request for one of two look-alikes, which colour and shape alone cannot tell apart,
  so it always carries a relation: "pick up the white torus on the left of the other white
  torus", "go to the white torus on the far right". What a planner must say when the look is
  not enough.

Every expression is a true, unambiguous reference at each of its frames, checked against the
generator's ground truth through language.py's own truth (``holding_referents``,
``frames_where``): the descriptions of the first five kinds name one object of the scene (the
attribute-only ones one object among those visible at their frames), the twins' relations are
evaluated frame by frame as family A and B's are (language.py, "Spatial convention"). Each
expression holds at the frames where its referent does and is asked on the novel views.

Two variants per scene, the same expressions (same ids, instances, kinds, frames, sentence
shapes and relation words) apart from the look words: ``'training'`` (planner.json) in family
A's colour, shape, size and property words, so that a miss is the sentence's shape, not the
text encoder's vocabulary; ``'held-out'`` (planner_held_out.json) in family B's synonyms that
training never uses (crimson, box, little, ball-shaped ...; ``HELD_OUT_WORDS``). The sentence
shapes and relation phrases are this family's own: no expression is a caption of family A nor
an expression of family B. Everything is drawn from the scene's ground truth and a random
stream of the seed (never from benchmark text), every look word by one uniform draw whatever
the number of words to choose from, so that the two variants make the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from st4r_ros.supervision.format import Benchmark, Expression, load_benchmark, save_benchmark
from st4r_ros.synthetic.language import (BEHIND, BETWEEN, EVALUATION_WORDS, frames_where,
                                         FRONTMOST, Head, HELD_OUT_WORDS, holding_referents,
                                         IN_FRONT_OF, LEFT_OF, LEFTMOST, load_scene_truth,
                                         NEAREST_TO, NEXT_TO, novel_views, ObjectTruth,
                                         REARMOST, Referent, RIGHT_OF, RIGHTMOST, SceneTruth,
                                         SPATIAL_FRAME, TRAINING_WORDS, Words)

PLANNER_KINDS = ('request', 'attribute-only', 'head-first', 'relative', 'question', 'twin')
REQUEST, ATTRIBUTE_ONLY, HEAD_FIRST, RELATIVE, QUESTION, TWIN = PLANNER_KINDS
# Expressions of each kind per instance, at most (fewer when fewer referents hold).
PLANNER_QUOTA = {REQUEST: 2, ATTRIBUTE_ONLY: 2, HEAD_FIRST: 1, RELATIVE: 1, QUESTION: 1,
                 TWIN: 2}
GENERATOR = 'st4r_ros.synthetic.planner'
TEMPLATE_FAMILY = 'planner (C)'
# Request verbs and polite frames around "the <description>".
REQUESTS = ('pick up {0}', 'could you hand me {0}?', 'go to {0}', 'please fetch {0}',
            'grab {0} for me', 'bring me {0}, please', 'would you pass me {0}?',
            'move over to {0}')
# An attribute-only reference is said bare or in a request.
ATTRIBUTE_FRAMES = ('{0}',) + REQUESTS
QUESTIONS = ('which object is {0}?', 'where is {0}?', 'which one is {0}?',
             'where would I find {0}?')
RELATIVES = ('the one that is {0}', 'the object which is {0}', 'the one which is {0}')
# The twins' relations in this family's words (neither family A's nor B's), after the head.
PLANNER_RELATIONS = {
    LEFT_OF: ('on the left of {0}', 'to the left side of {0}'),
    RIGHT_OF: ('on the right of {0}', 'to the right side of {0}'),
    IN_FRONT_OF: ('on the near side of {0}', 'just in front of {0}'),
    BEHIND: ('on the far side of {0}', 'just behind {0}'),
    NEXT_TO: ('close to {0}', 'alongside {0}'), NEAREST_TO: ('nearest {0}',),
    BETWEEN: ('in between {0} and {1}',),
    LEFTMOST: ('on the far left',), RIGHTMOST: ('on the far right',),
    FRONTMOST: ('at the very front',), REARMOST: ('at the very back',),
}
# A fresh stream of the seed: language.py's sentences draw from [seed, 0..3].
STREAM = 4


def _held_out(options: Dict[str, Tuple[str, ...]]) -> Dict[str, Tuple[str, ...]]:
    """Keep each concept's words that training never uses (every concept has one)."""
    return {concept: tuple(w for w in words if w in HELD_OUT_WORDS)
            for concept, words in options.items()}


# The look words of each variant; the planner takes only colours, shapes, sizes and
# properties of a Words, its sentence shapes and relation phrases being its own.
PLANNER_VOCABULARIES: Dict[str, Words] = {
    'training': TRAINING_WORDS,
    'held-out': replace(EVALUATION_WORDS, colours=_held_out(EVALUATION_WORDS.colours),
                        shapes=_held_out(EVALUATION_WORDS.shapes),
                        sizes=_held_out(EVALUATION_WORDS.sizes),
                        properties=_held_out(EVALUATION_WORDS.properties)),
}
PLANNER_FILES = {'training': 'planner.json', 'held-out': 'planner_held_out.json'}


# Things and places no synthetic scene holds, for requests about nothing in it (the no-target
# false-answer rate); none is a calibration word of field/vocabulary.py (tests check).
UNRELATED_THINGS = ('teapot', 'stapler', 'skateboard', 'microwave', 'toothpaste', 'saucepan',
                    'hairbrush', 'lampshade', 'doorknob', 'houseplant', 'notebook', 'headphones',
                    'thermos', 'corkscrew', 'flashlight', 'calculator', 'paperclip',
                    'sunglasses', 'wheelbarrow', 'trombone', 'cactus', 'kitten', 'parrot',
                    'hamster', 'tortoise')
UNRELATED_PLACES = ('next to the sink', 'under the bed', 'in the hallway', 'on the windowsill',
                    'near the fireplace', 'behind the couch', 'on the counter',
                    'by the staircase')


# ---- public API ---------------------------------------------------------------------------


def unrelated_requests(seed: int, count: int = 40) -> List[str]:
    """
    Return ``count`` requests in this family's frames about things no synthetic scene holds.

    A request or question around "the <thing>", half of them with a place ("the teapot next to
    the sink"); drawn from the seed's own stream, distinct texts.
    """
    rng = np.random.default_rng([seed, STREAM, 1])
    texts: Dict[str, None] = {}
    while len(texts) < count:
        thing = f'the {_pick(rng, UNRELATED_THINGS)}'
        if rng.random() < 0.5:
            thing = f'{thing} {_pick(rng, UNRELATED_PLACES)}'
        texts[_pick(rng, REQUESTS + QUESTIONS).format(thing)] = None
    return list(texts)


def write_planner_requests(synthetic_dir: str | Path, out_path: str | Path, seed: int = 0,
                           words: str = 'training') -> Benchmark:
    """
    Write a synthetic scene's planner requests (module doc) as a benchmark file.

    :param words: 'training' (family A's look words) or 'held-out' (family B's synonyms that
        training never uses); the same expressions otherwise.
    """
    if words not in PLANNER_VOCABULARIES:
        raise ValueError(f'words: expected one of {list(PLANNER_VOCABULARIES)}, got {words!r}')
    scene = load_scene_truth(synthetic_dir)
    return _write(scene, holding_referents(scene), Path(out_path), seed, words)


def write_planner_sets(scene: SceneTruth, holding: Dict[Referent, Tuple[int, ...]],
                       seed: int) -> None:
    """Write both variants (PLANNER_FILES) into the scene's folder (``build_synthetic_task``)."""
    for words, name in PLANNER_FILES.items():
        _write(scene, holding, scene.root / name, seed, words)


def _write(scene: SceneTruth, holding: Dict[Referent, Tuple[int, ...]], out: Path, seed: int,
           words: str) -> Benchmark:
    views = novel_views(scene)
    seen = {view.frame for view in views if view.frame is not None}
    # The same stream for both variants: they differ in the look words only.
    rng = np.random.default_rng([seed, STREAM])
    expressions: List[Expression] = []
    for thing in scene.things:
        for kind, ref, frames in _chosen(scene, thing, holding, seen, rng):
            text = _text(scene, kind, ref, PLANNER_VOCABULARIES[words], rng)
            expressions.append(Expression(f'p{len(expressions) + 1:04d}', text, thing.id, kind,
                                          list(frames), None, ref.metadata()))
    metadata = {'generator': GENERATOR, 'seed': seed, 'template_family': TEMPLATE_FAMILY,
                'words': words, 'spatial_frame': SPATIAL_FRAME, 'kinds': list(PLANNER_KINDS)}
    instances: Dict[int, Optional[str]] = {thing.id: thing.name for thing in scene.things}
    save_benchmark(out, Benchmark(views, expressions, instances, out.parent, metadata))
    return load_benchmark(out)


# ---- choosing what to ask -----------------------------------------------------------------


def _chosen(scene: SceneTruth, thing: ObjectTruth, holding: Dict[Referent, Tuple[int, ...]],
            seen: Set[int], rng: np.random.Generator
            ) -> List[Tuple[str, Referent, Tuple[int, ...]]]:
    """
    Choose (kind, referent, frames) for ``thing``: up to PLANNER_QUOTA of each kind.

    Only referents that hold at some frame with a novel view; a twin's relation to the other
    twin first, then at random.
    """
    sayable = _kind_options(scene, thing, holding)
    twin = set(scene.namesakes[thing.id])
    chosen = []
    for kind in PLANNER_KINDS:
        frames = sayable[kind]
        options = [ref for ref in frames if set(frames[ref]) & seen]
        tie_break = rng.random(len(options))
        order = sorted(range(len(options)),
                       key=lambda i: (-bool(twin & set(options[i].anchors)), tie_break[i]))
        chosen += [(kind, options[i], frames[options[i]]) for i in order[:PLANNER_QUOTA[kind]]]
    return chosen


def _kind_options(scene: SceneTruth, thing: ObjectTruth,
                  holding: Dict[Referent, Tuple[int, ...]]
                  ) -> Dict[str, Dict[Referent, Tuple[int, ...]]]:
    """
    Map each kind to what may be said of ``thing`` in it, each with the frames where it holds.

    The descriptions are language.py's relation-free referents (they name one object of the
    scene); the twins', its referents naming colour and shape with a relation; the single
    attributes are tried at every frame (``frames_where``).
    """
    mine = {ref: frames for ref, frames in holding.items() if ref.target == thing.id}
    plain = {ref: frames for ref, frames in mine.items() if ref.relation is None}
    look = Head(thing.colour, thing.shape)
    named = {ref: frames for ref, frames in plain.items() if _names_shape(ref.head)}
    return {
        REQUEST: {ref: f for ref, f in named.items() if ref.head.colour},
        ATTRIBUTE_ONLY: _single_attributes(scene, thing),
        HEAD_FIRST: {ref: f for ref, f in named.items() if ref.head.colour or ref.head.size},
        RELATIVE: plain,
        QUESTION: named,
        TWIN: {ref: f for ref, f in mine.items()
               if scene.namesakes[thing.id] and ref.head == look and ref.relation},
    }


def _names_shape(head: Head) -> bool:
    """Tell whether ``head`` names its shape by a noun ("the cube", not "the square one")."""
    return head.shape is not None and not head.shape_as_property


def _single_attributes(scene: SceneTruth,
                       thing: ObjectTruth) -> Dict[Referent, Tuple[int, ...]]:
    """Map each one-attribute referent of ``thing`` to the frames where no visible rival has it."""
    heads = (Head(colour=thing.colour), Head(size=thing.size), Head(shape=thing.shape),
             Head(shape=thing.shape, shape_as_property=True))
    refs = [Referent(thing.id, head) for head in heads]
    held = {ref: frames_where(scene, ref) for ref in refs}
    return {ref: frames for ref, frames in held.items() if frames}


# ---- saying it ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    """The look words picked for one object in one sentence."""

    colour: str
    noun: str
    size: str
    prop: str


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """Pick one option by one uniform draw, however many there are (module doc)."""
    return options[int(rng.random() * len(options))]


def _look(words: Words, thing: ObjectTruth, rng: np.random.Generator) -> _Look:
    return _Look(_pick(rng, words.colours[thing.colour]), _pick(rng, words.shapes[thing.shape]),
                 _pick(rng, words.sizes[thing.size]), _pick(rng, words.properties[thing.shape]))


def _noun_phrase(head: Head, look: _Look) -> str:
    """Return "the [size] [colour] <shape noun>" (a head naming its shape by a noun)."""
    adjectives = [look.size if head.size else '', look.colour if head.colour else '']
    return ' '.join(['the', *[a for a in adjectives if a], look.noun])


def _predicate(adjectives: List[str]) -> str:
    """Join adjectives as a predicate: "red", "small and red", "small, red and round"."""
    return ' and '.join([', '.join(adjectives[:-1]), adjectives[-1]] if adjectives[:-1]
                        else adjectives)


def _text(scene: SceneTruth, kind: str, ref: Referent, words: Words,
          rng: np.random.Generator) -> str:
    """Say ``ref`` as a sentence of ``kind`` (module doc)."""
    look = _look(words, scene.thing(ref.target), rng)
    if kind == TWIN:
        return _twin(scene, ref, look, words, rng)
    if kind == ATTRIBUTE_ONLY:
        return _pick(rng, ATTRIBUTE_FRAMES).format(_attribute_reference(ref.head, look))
    if kind == HEAD_FIRST:
        return _pick(rng, _head_first(ref.head, look))
    if kind == RELATIVE:
        return _pick(rng, _relative(ref.head, look))
    return _pick(rng, REQUESTS if kind == REQUEST else QUESTIONS).format(
        _noun_phrase(ref.head, look))


def _attribute_reference(head: Head, look: _Look) -> str:
    """Return "the <attribute> one", or "the only <shape noun>" for the shape by its noun."""
    if not _names_shape(head):
        word = look.colour if head.colour else look.size if head.size else look.prop
        return f'the {word} one'
    # "only" says the uniqueness that a bare "the cube" (a family-A caption) leaves implicit.
    return f'the only {look.noun}'


def _head_first(head: Head, look: _Look) -> Tuple[str, ...]:
    """Return the noun-first sentences: "the cube, the large one", "the cube that is large"."""
    adjectives = [a for a, named in ((look.size, head.size), (look.colour, head.colour)) if named]
    return (f"the {look.noun}, the {' '.join(adjectives)} one",
            f'the {look.noun} that is {_predicate(adjectives)}',
            f'the {look.noun} which is {_predicate(adjectives)}')


def _relative(head: Head, look: _Look) -> Tuple[str, ...]:
    """Return the relative-clause sentences: "the one that is small, red and round"."""
    adjectives = [a for a, named in ((look.size, head.size), (look.colour, head.colour),
                                     (look.prop, head.shape)) if named]
    return tuple(template.format(_predicate(adjectives)) for template in RELATIVES)


def _twin(scene: SceneTruth, ref: Referent, look: _Look, words: Words,
          rng: np.random.Generator) -> str:
    """Ask for a look-alike by its colour and shape and the relation that tells it apart."""
    anchors = []
    for key in ref.anchors:
        if key in scene.namesakes[ref.target]:
            anchors.append(f'the other {look.colour} {look.noun}')
        else:
            other = _look(words, scene.thing(key), rng)
            anchors.append(f'the {other.colour} {other.noun}')
    relation = _pick(rng, PLANNER_RELATIONS[cast(str, ref.relation)]).format(*anchors)
    return _pick(rng, REQUESTS).format(f'{_noun_phrase(ref.head, look)} {relation}')
