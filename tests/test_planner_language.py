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
The planner's requests (family C) on synthetic scenes.

Every expression's words describe its instance and only it at its frames (objects.json),
attribute-only references name an attribute unique there, twins carry a true relation, the two
variants differ in look words only, no sentence is one of family A or B, determinism, and
`st4r eval`'s scoring reports the new kinds per kind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import re
from types import SimpleNamespace
from typing import Dict, List, Set, Tuple

import pytest
from st4r_ros.engine import QueryStatus
from st4r_ros.evaluation.referring import evaluate_referring
from st4r_ros.supervision import load_benchmark, load_supervision
from st4r_ros.synthetic.language import (EVALUATION_WORDS, HELD_OUT_WORDS, NEXT_TO_DISTANCE,
                                         TRAINING_WORDS, unseen_words, Words,
                                         write_synthetic_benchmark)
from st4r_ros.synthetic.planner import (ATTRIBUTE_FRAMES, PLANNER_FILES, PLANNER_KINDS,
                                        PLANNER_RELATIONS, QUESTIONS, RELATIVES, REQUESTS,
                                        write_planner_requests)
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.synthetic.task import build_synthetic_task

SMALL = SyntheticConfig(num_frames=4, train_cameras_per_frame=1, novel_cameras_per_frame=1,
                        gaussians_per_object=200, table_gaussians=300)
# More frames: the vanisher's absence makes some attributes unique for a while.
TIMED = SyntheticConfig(num_frames=12, train_cameras_per_frame=1, novel_cameras_per_frame=1,
                        gaussians_per_object=40, table_gaussians=50, width=32, height=24)
SCENES = {'small3': (3, SMALL), 'small8': (8, SMALL), 'timed0': (0, TIMED)}
SIDES = {'left_of': (0, -1), 'right_of': (0, 1), 'in_front_of': (1, -1), 'behind': (1, 1)}
EXTREMES = {'leftmost': (0, -1), 'rightmost': (0, 1), 'frontmost': (1, -1), 'rearmost': (1, 1)}


def look_words(words: Words) -> Dict[str, Tuple[str, str]]:
    """Map each look word of a family to (attribute, value); a property word to its shape."""
    tables = (('colour', words.colours), ('shape', words.shapes), ('size', words.sizes),
              ('shape', words.properties))
    return {word: (attribute, value) for attribute, table in tables
            for value, options in table.items() for word in options}


LOOK = {**look_words(TRAINING_WORDS), **look_words(EVALUATION_WORDS)}


def tokens(text: str) -> List[str]:
    return re.findall(r'[a-z]+(?:-[a-z]+)*', text.lower())


def named(text: str) -> Set[Tuple[str, str]]:
    """Return the (attribute, value) pairs that the look words of ``text`` name."""
    return {LOOK[word] for word in tokens(text) if word in LOOK}


@pytest.fixture(scope='module', params=sorted(SCENES))
def scene(request, tmp_path_factory):
    seed, config = SCENES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    write_synthetic(root, seed, config)
    build_synthetic_task(root, seed=0)
    objects = json.loads((root / 'objects.json').read_text())['objects']
    planners = {words: load_benchmark(root / name) for words, name in PLANNER_FILES.items()}
    return root, planners, {o['id']: o for o in objects}


def visible(entry: Dict, frame: int) -> bool:
    return bool(entry['frames'][frame]['visible'])


def fitting(objects: Dict[int, Dict], attributes: Set[Tuple[str, str]], frame: int) -> List[int]:
    """List the objects visible at ``frame`` that have every one of ``attributes``."""
    return [key for key, entry in objects.items()
            if visible(entry, frame) and all(entry[a] == v for a, v in attributes)]


def xy(entry: Dict, frame: int) -> Tuple[float, float]:
    return tuple(entry['frames'][frame]['position'][:2])


# ---- files --------------------------------------------------------------------------------


def test_both_variants_are_benchmarks_beside_bench_json(scene):
    root, planners, objects = scene
    bench = load_benchmark(root / 'bench.json')
    for words, planner in planners.items():
        assert planner.metadata['template_family'] == 'planner (C)'
        assert planner.metadata['words'] == words and planner.metadata['seed'] == 0
        assert [v.name for v in planner.views] == [v.name for v in bench.views]
        assert set(planner.instances) == set(objects)
        assert {e.kind for e in planner.expressions} == set(PLANNER_KINDS)
        assert len({e.id for e in planner.expressions}) == len(planner.expressions)
        novel = {v.frame for v in planner.views}
        assert all(set(e.frames) & novel for e in planner.expressions)  # each is asked


# ---- truth --------------------------------------------------------------------------------


def test_every_expression_describes_its_instance_and_no_other(scene):
    _, planners, objects = scene
    for planner in planners.values():
        for e in planner.expressions:
            entry = objects[e.instance_id]
            said = named(e.text)
            if e.kind == 'twin':  # its anchors' words follow its own: checked with the twins
                continue
            assert said and all(entry[a] == v for a, v in said), e.text
            for frame in e.frames:
                assert fitting(objects, said, frame) == [e.instance_id], (e.text, frame)
            if e.kind != 'attribute-only':  # named uniquely in the scene: wherever visible
                assert e.frames == [f for f in range(len(entry['frames']))
                                    if visible(entry, f)], e.text


def test_attribute_only_names_one_attribute_unique_at_exactly_its_frames(scene):
    _, planners, objects = scene
    for planner in planners.values():
        asked = [e for e in planner.expressions if e.kind == 'attribute-only']
        assert asked
        for e in asked:
            head = {k: v for k, v in e.metadata['head'].items() if k != 'shape_as_property'}
            assert len(head) == 1 and e.metadata['relation'] is None
            assert named(e.text) == set(head.items()), e.text
            unique = [f for f in range(len(objects[e.instance_id]['frames']))
                      if fitting(objects, set(head.items()), f) == [e.instance_id]]
            assert e.frames == unique, e.text


def true_relation(objects: Dict[int, Dict], e, frame: int) -> bool:
    """Tell whether a twin expression's relation holds at ``frame`` (objects.json geometry)."""
    relation, anchors = e.metadata['relation'], e.metadata['anchors']
    here = xy(objects[e.instance_id], frame)
    other = xy(objects[objects[e.instance_id]['look_alikes'][0]], frame)
    there = [xy(objects[a], frame) for a in anchors]
    if relation in SIDES:
        axis, sign = SIDES[relation]
        return sign * (here[axis] - there[0][axis]) > 0
    if relation in EXTREMES:  # among the pair at least
        axis, sign = EXTREMES[relation]
        return sign * (here[axis] - other[axis]) > 0
    if relation == 'nearest_to':
        return math.dist(here, there[0]) < math.dist(other, there[0])
    if relation == 'next_to':
        return math.dist(here, there[0]) <= NEXT_TO_DISTANCE
    (bx, by), (cx, cy) = there  # between
    along = ((here[0] - bx) * (cx - bx) + (here[1] - by) * (cy - by)) / math.dist(*there) ** 2
    return 0.0 < along < 1.0


def test_twins_are_asked_for_by_look_and_a_true_relation(scene):
    _, planners, objects = scene
    twins = {key for key, entry in objects.items() if entry['look_alikes']}
    assert len(twins) == 2
    for planner in planners.values():
        for e in planner.expressions:
            assert (e.kind == 'twin') == (e.instance_id in twins), e.text
            if e.kind != 'twin':
                continue
            entry, relation = objects[e.instance_id], e.metadata['relation']
            assert relation is not None, e.text
            assert e.metadata['head'] == {'colour': entry['colour'], 'shape': entry['shape']}
            phrases = [p.split('{')[0].strip() for p in PLANNER_RELATIONS[relation]]
            phrase = next(p for p in phrases if p in e.text)
            before, after = e.text.split(phrase)
            assert named(before) == {('colour', entry['colour']), ('shape', entry['shape'])}
            for anchor in e.metadata['anchors']:
                if anchor in entry['look_alikes']:
                    assert ' the other ' in after, e.text
                else:
                    assert {('colour', objects[anchor]['colour']),
                            ('shape', objects[anchor]['shape'])} <= named(after), e.text
            for frame in e.frames:
                assert true_relation(objects, e, frame), (e.text, frame)
        for twin in twins:  # each twin is compared with the other at least once
            assert any(e.instance_id == twin and objects[twin]['look_alikes'][0]
                       in e.metadata['anchors'] for e in planner.expressions)


# ---- words --------------------------------------------------------------------------------


def test_no_template_word_is_a_look_word():
    templates = [*ATTRIBUTE_FRAMES, *QUESTIONS, *RELATIVES, *REQUESTS,
                 *(p for ps in PLANNER_RELATIONS.values() for p in ps),
                 'the only the other one object']
    assert not {w for t in templates for w in tokens(t.format('', ''))} & set(LOOK)
    for family in (TRAINING_WORDS, EVALUATION_WORDS):  # a look word names one concept
        assert all(LOOK[word] == said for word, said in look_words(family).items())


def test_the_variants_differ_in_look_words_only(scene):
    _, planners, _ = scene
    training, held_out = planners['training'], planners['held-out']
    assert len(training.expressions) == len(held_out.expressions)
    training_looks = set(look_words(TRAINING_WORDS))
    for a, b in zip(training.expressions, held_out.expressions):
        assert (a.id, a.instance_id, a.kind, a.frames, a.metadata) == \
            (b.id, b.instance_id, b.kind, b.frames, b.metadata)
        assert not unseen_words(a.text) and a.text != b.text
        pairs = list(zip(a.text.split(), b.text.split()))
        assert len(pairs) == len(a.text.split()) == len(b.text.split())
        for x, y in pairs:
            x, y = x.strip(',?'), y.strip(',?')
            if x != y:  # a training look word for a held-out synonym of the same concept
                assert x in training_looks and y in HELD_OUT_WORDS and LOOK[x] == LOOK[y], (x, y)
        assert all(w in HELD_OUT_WORDS for w in tokens(b.text) if w in LOOK), b.text


def test_no_sentence_is_a_caption_or_a_benchmark_expression(scene, tmp_path):
    root, planners, _ = scene
    supervision = load_supervision(root / 'supervision')
    said = {c.text for inst in supervision.instances
            for c in [*inst.captions, *inst.state_captions]}
    said |= {e.text for e in load_benchmark(root / 'bench.json').expressions}
    for vocabulary in ('training', 'training-all'):
        bench = write_synthetic_benchmark(root, tmp_path / f'{vocabulary}.json', seed=0,
                                          vocabulary=vocabulary)
        said |= {e.text for e in bench.expressions}
    for planner in planners.values():
        assert not {e.text for e in planner.expressions} & said


# ---- determinism --------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_requests(scene):
    root, planners, _ = scene
    for words, name in PLANNER_FILES.items():
        again = write_planner_requests(root, root / f'again_{name}', seed=0, words=words)
        assert (root / f'again_{name}').read_bytes() == (root / name).read_bytes()
        other = write_planner_requests(root, root / f'other_{name}', seed=1, words=words)
        assert [e.text for e in other.expressions] != [e.text for e in again.expressions]
    with pytest.raises(ValueError, match='words'):
        write_planner_requests(root, root / 'bad.json', words='mixed')


# ---- evaluation ---------------------------------------------------------------------------


class OracleEngine:
    """Answers every expression with its instance's ground-truth mask in the asked view."""

    threshold = 0.5

    def __init__(self, benchmark) -> None:
        self.views = benchmark.views
        self.instances = {e.text: e.instance_id for e in benchmark.expressions}
        self.encoder = SimpleNamespace()

    def query_batch(self, requests):
        view = next(v for v in self.views if v.camera is requests[0].camera)
        mask = view.load_mask()
        return [SimpleNamespace(status=QueryStatus.OK, time_sensitive=False, truncated=False,
                                mask=mask == self.instances[r.text]) for r in requests]


def test_evaluation_scores_a_planner_file_per_kind(scene):
    root, _, _ = scene
    for name in PLANNER_FILES.values():
        planner = load_benchmark(Path(root) / name)
        report = evaluate_referring(OracleEngine(planner), planner)
        assert set(report.per_kind) == set(PLANNER_KINDS)
        assert report.miou == 1.0 and all(v == 1.0 for v in report.per_kind.values())
        assert sum(report.per_kind_pairs.values()) == report.pairs > 0


def test_unrelated_requests_name_nothing_a_scene_or_the_guards_calibration_holds():
    from st4r_ros.field.vocabulary import CALIBRATION_WORDS
    from st4r_ros.synthetic.planner import UNRELATED_PLACES, UNRELATED_THINGS, unrelated_requests
    from st4r_ros.text import content_words

    requests = unrelated_requests(seed=3)
    assert len(requests) == len(set(requests)) == 40
    assert requests == unrelated_requests(seed=3) and requests != unrelated_requests(seed=4)
    scene_words = set(look_words(TRAINING_WORDS)) | set(look_words(EVALUATION_WORDS))
    said = {w for place in UNRELATED_PLACES for w in content_words(place)} | set(UNRELATED_THINGS)
    assert not said & set(CALIBRATION_WORDS) and not said & scene_words
    for text in requests:
        assert any(thing in text for thing in UNRELATED_THINGS)
        assert any(text == frame.format(text[len(frame.split('{0}')[0]):][
            :len(text) - len(frame.split('{0}')[0]) - len(frame.split('{0}')[1])])
            for frame in REQUESTS + QUESTIONS)
