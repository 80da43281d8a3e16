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
Synthetic captions and benchmark.

Truth against the generator's ground truth, disjoint template families, twins told apart by
relations only, per-frame relations, state captions and time-sensitive queries against the
per-frame events, determinism.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
import shutil
from typing import Dict, List, Set

import pytest
from st4r_ros.errors import SupervisionFormatError
from st4r_ros.supervision import load_benchmark, load_supervision
from st4r_ros.synthetic.language import (EVALUATION_STATES, EVALUATION_WORDS, EXTREME,
                                         HELD_OUT_WORDS, KINDS, TIME_AGNOSTIC_KINDS,
                                         TIME_SENSITIVE, TRAINING_STATES,
                                         TRAINING_VOCABULARY_WORDS, TRAINING_WORDS, unseen_words,
                                         write_synthetic_benchmark, write_synthetic_supervision)
from st4r_ros.synthetic.scene import PALETTE, SHAPES, SIZES, SyntheticConfig, write_synthetic
from st4r_ros.synthetic.task import build_synthetic_task

SMALL = SyntheticConfig(num_frames=4, train_cameras_per_frame=1, novel_cameras_per_frame=1,
                        gaussians_per_object=200, table_gaussians=300)
# The default 24 frames (the squasher's pause shows), small clouds and images.
TIMED = SyntheticConfig(train_cameras_per_frame=1, novel_cameras_per_frame=1,
                        gaussians_per_object=40, table_gaussians=50, width=32, height=24)
SEED = 3
# The stated side as a strict world-frame inequality (convention: viewer at -y looking +y).
SIDES = {'left_of': (0, -1), 'right_of': (0, 1), 'in_front_of': (1, -1), 'behind': (1, 1)}
EXTREMES = {'leftmost': (0, -1), 'rightmost': (0, 1), 'frontmost': (1, -1), 'rearmost': (1, 1)}
TRAIN_SIDES = {'to the left of': 'left_of', 'left of': 'left_of', 'to the right of': 'right_of',
               'right of': 'right_of', 'in front of': 'in_front_of', 'ahead of': 'in_front_of',
               'behind': 'behind', 'in back of': 'behind'}


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp('task')
    write_synthetic(root, SEED, SMALL)
    supervision_dir, bench_path = build_synthetic_task(root, seed=0)
    objects = json.loads((root / 'objects.json').read_text())['objects']
    return root, load_supervision(supervision_dir), load_benchmark(bench_path), objects


@pytest.fixture(scope='module')
def timed(tmp_path_factory):
    root = tmp_path_factory.mktemp('timed')
    write_synthetic(root, 0, TIMED)
    supervision_dir, bench_path = build_synthetic_task(root, seed=0)
    objects = json.loads((root / 'objects.json').read_text())['objects']
    return root, load_supervision(supervision_dir), load_benchmark(bench_path), objects


def words(texts) -> Set[str]:
    return {w for text in texts for w in re.findall(r'[a-z]+(?:-[a-z]+)*', text.lower())}


def train_texts(supervision) -> List[str]:
    return [c.text for inst in supervision.instances for c in inst.captions]


def state_texts(supervision) -> List[str]:
    return [c.text for inst in supervision.instances for c in inst.state_captions]


def frames_with(entry: Dict, event: str) -> List[int]:
    return [f['frame'] for f in entry['frames'] if event in f['events']]


def contiguous(frames: List[int]) -> bool:
    return frames == list(range(frames[0], frames[-1] + 1))


def entry_of(objects: List[Dict], key: int) -> Dict:
    return next(o for o in objects if o['id'] == key)


def xy(objects: List[Dict], key: int, frame: int):
    entry = next(o for o in objects if o['id'] == key)
    return entry['frames'][frame]['position'][:2]


def on_side(objects, target: int, anchor: int, relation: str, frame: int) -> bool:
    axis, sign = SIDES[relation]
    return sign * (xy(objects, target, frame)[axis] - xy(objects, anchor, frame)[axis]) > 0


def visible_frames(objects, key: int) -> List[int]:
    entry = next(o for o in objects if o['id'] == key)
    return [f['frame'] for f in entry['frames'] if f['visible']]


def training_names(entry: Dict) -> Set[str]:
    """Every "<colour> <shape>" that training captions may call an object of objects.json."""
    return {f'{colour} {shape}' for colour in TRAINING_WORDS.colours[entry['colour']]
            for shape in TRAINING_WORDS.shapes[entry['shape']]}


def rebuilt_copy(root: Path, tmp_path: Path) -> Path:
    """Rebuild the task of seed 0 in a copy of ``root``; assert it is byte-identical."""
    copy = tmp_path / 'copy'
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns('supervision', 'bench.json'))
    build_synthetic_task(copy, seed=0)
    for name in ('supervision/supervision.json', 'bench.json'):
        assert (copy / name).read_bytes() == (root / name).read_bytes(), name
    return copy


def twins(objects) -> List[Dict]:
    return [o for o in objects if o['role'] == 'twin']


# ---- files --------------------------------------------------------------------------------


def test_files_views_and_masks(task):
    root, supervision, bench, objects = task
    assert (root / 'supervision' / 'supervision.json').is_file()
    assert (root / 'bench.json').is_file()
    cameras = json.loads((root / 'cameras.json').read_text())
    assert [v.name for v in supervision.views] == [c['name'] for c in cameras['train']]
    assert [v.name for v in bench.views] == [c['name'] for c in cameras['novel']]
    assert json.loads((root / 'bench.json').read_text())['views'][0]['mask'].startswith(
        'masks/novel/')
    for view in supervision.views + bench.views:
        mask = view.load_mask()
        assert view.mask_path.is_file() and mask.shape == (view.camera.height, view.camera.width)
        assert set(mask.unique().tolist()) <= {0} | {o['id'] for o in objects}
    assert set(bench.instances) == {o['id'] for o in objects}
    assert supervision.metadata['spatial_frame']['left'] == [-1, 0, 0]


def test_every_visible_instance_is_captioned_at_every_training_view(task):
    _, supervision, _, objects = task
    for view in supervision.views:
        captioned = supervision.captions_at(time=view.time)
        expected = {o['id'] for o in objects if o['frames'][view.frame]['visible']}
        assert set(captioned) == expected, view.name
    invisible = [(o['id'], f['frame']) for o in objects for f in o['frames'] if not f['visible']]
    assert invisible  # the vanisher: no caption while it is gone
    for key, frame in invisible:
        assert key not in supervision.captions_at(frame=frame)


def test_no_sentence_is_said_of_two_instances_at_one_frame(task):
    _, supervision, _, _ = task
    said: Dict[tuple, int] = {}
    for inst in supervision.instances:
        for caption in inst.captions:
            assert said.setdefault((caption.frame, caption.text), inst.id) == inst.id


# ---- two template families ----------------------------------------------------------------


@pytest.mark.parametrize('scene', ['task', 'timed'])
def test_training_and_evaluation_share_no_sentence_and_no_held_out_word(scene, request):
    _, supervision, bench, _ = request.getfixturevalue(scene)
    train = train_texts(supervision) + state_texts(supervision)
    evaluation = [e.text for e in bench.expressions]
    assert not set(train) & set(evaluation)
    assert not words(train) & HELD_OUT_WORDS
    assert 'crimson' in HELD_OUT_WORDS and 'red' not in HELD_OUT_WORDS
    held_out = [text for text in evaluation if unseen_words(text)]
    assert 0 < len(held_out) < len(evaluation)  # both kinds of expression are asked
    assert not words(evaluation) & set(TRAINING_WORDS.generic)
    assert words(evaluation) - words(train)  # and other words besides


def test_training_captions_vary_their_wording(task):
    _, supervision, _, _ = task
    said = words(train_texts(supervision))
    assert {'red', 'ruby'} <= said or {'blue', 'navy'} <= said or {'white', 'pearl'} <= said
    assert {'left', 'to'} <= said and {'behind', 'back'} & said


def test_both_vocabularies_cover_every_look():
    for family in (TRAINING_WORDS, EVALUATION_WORDS):
        assert set(family.colours) == set(PALETTE) and set(family.shapes) == set(SHAPES)
        assert set(family.sizes) == set(SIZES) and set(family.properties) == set(SHAPES)
    assert set(EVALUATION_WORDS.plurals) == {n for ns in EVALUATION_WORDS.shapes.values()
                                             for n in ns}


def test_the_training_vocabulary_benchmark_asks_the_same_in_training_words(timed, tmp_path):
    root, supervision, bench, _ = timed
    seen = write_synthetic_benchmark(root, tmp_path / 'bench.json', seed=0, vocabulary='training')
    assert [(e.id, e.instance_id, e.kind, e.frames) for e in seen.expressions] == \
        [(e.id, e.instance_id, e.kind, e.frames) for e in bench.expressions]
    assert not any(unseen_words(e.text) for e in seen.expressions)
    changed = [(a.text, b.text) for a, b in zip(bench.expressions, seen.expressions)
               if a.text != b.text]
    assert len(changed) == sum(bool(unseen_words(e.text)) for e in bench.expressions)
    training = words(train_texts(supervision)) | set(EVALUATION_WORDS.generic)
    for held_out, said in changed:  # only the look words moved, into training's
        assert len(held_out.split()) == len(said.split()) or '-' in held_out + said
        assert words([said]) - words([held_out]) <= training | set(
            TRAINING_VOCABULARY_WORDS.plurals.values())
    assert set(TRAINING_VOCABULARY_WORDS.plurals) == {n for ns in TRAINING_WORDS.shapes.values()
                                                      for n in ns}
    with pytest.raises(ValueError, match='vocabulary'):
        write_synthetic_benchmark(root, tmp_path / 'other.json', vocabulary='mixed')


def test_the_all_training_vocabulary_changes_relation_words_too(timed, tmp_path):
    root, supervision, bench, _ = timed
    look = write_synthetic_benchmark(root, tmp_path / 'look.json', seed=0, vocabulary='training')
    every = write_synthetic_benchmark(root, tmp_path / 'all.json', seed=0,
                                      vocabulary='training-all')
    assert [(e.id, e.instance_id, e.kind, e.frames) for e in every.expressions] == \
        [(e.id, e.instance_id, e.kind, e.frames) for e in bench.expressions]
    # The twins' comparatives ("of the two ..., the one further left") stay family B's.
    compared = {e.id for e in every.expressions if e.text.startswith('of the two')}
    related = [(a.text, b.text) for a, b in zip(look.expressions, every.expressions)
               if a.metadata.get('relation') not in (None, *EXTREME) and a.id not in compared]
    assert related and all(a != b for a, b in related)
    evaluation_phrases = {p.split(' {')[0] for ps in EVALUATION_WORDS.relations.values()
                          for p in ps if '{' in p}
    for _, said in related:
        assert not any(phrase in said for phrase in evaluation_phrases), said
    assert not set(EVALUATION_WORDS.generic) & words([e.text for e in every.expressions
                                                      if e.id not in compared])


@pytest.mark.parametrize('scene', ['task', 'timed'])
def test_every_kind_is_in_the_benchmark_with_its_frames(scene, request):
    _, _, bench, objects = request.getfixturevalue(scene)
    kinds = {e.kind for e in bench.expressions}
    assert set(TIME_AGNOSTIC_KINDS) <= kinds <= set(KINDS)
    assert KINDS == TIME_AGNOSTIC_KINDS + (TIME_SENSITIVE,)
    assert bench.metadata['time_agnostic_kinds'] == list(TIME_AGNOSTIC_KINDS)
    for expression in bench.expressions:
        frames = visible_frames(objects, expression.instance_id)
        assert expression.frames and set(expression.frames) <= set(frames)
        if expression.kind in ('appearance', 'attribute'):  # time-agnostic: wherever visible
            assert expression.frames == frames, expression.text


# ---- time: state captions and time-sensitive queries -------------------------------------


STATE_PHRASES = {phrase: event for event, phrases in TRAINING_STATES.items()
                 for phrase in phrases}


def test_state_captions_are_true_at_their_frame(timed):
    """Every visible frame of every object gets one caption per event then, named in words A."""
    _, supervision, _, objects = timed
    pattern = re.compile(r'^the ([\w-]+ [\w-]+) (.+)$')
    pairs = set()
    for inst in supervision.instances:
        entry = entry_of(objects, inst.id)
        assert inst.state_captions, entry['role']  # static objects too
        said: Dict[int, List[str]] = {}
        for caption in inst.state_captions:
            name, phrase = pattern.match(caption.text).groups()
            assert name in training_names(entry), caption
            state = entry['frames'][caption.frame]
            event = STATE_PHRASES[phrase]
            assert state['visible'] and event in state['events'], caption
            assert caption.time == state['time']
            said.setdefault(caption.frame, []).append(event)
        for state in entry['frames']:
            if state['visible']:
                expected = [e for e in state['events'] if e != 'invisible']
                assert said.get(state['frame']) == expected and 1 <= len(expected) <= 2
            else:
                assert state['frame'] not in said
        pairs |= {(entry['role'], tuple(events)) for events in said.values()}
    assert ('twin', ('static',)) in pairs
    assert ('rotator', ('rotating', 'squashed')) in pairs  # two changes at once: two captions
    assert ('squasher', ('squashed',)) in pairs and ('squasher', ('static',)) in pairs
    assert not words(state_texts(supervision)) & HELD_OUT_WORDS


def test_time_sensitive_queries_hold_exactly_when_their_event_does(timed):
    _, _, bench, objects = timed
    queries = [e for e in bench.expressions if e.kind == TIME_SENSITIVE]
    num_frames = TIMED.num_frames
    asked = set()
    for query in queries:
        entry = entry_of(objects, query.instance_id)
        event = query.metadata['event']
        assert query.frames == frames_with(entry, event), query.text
        assert 0 < len(query.frames) < num_frames  # never every frame: routing needs the time
        assert set(query.frames) <= set(visible_frames(objects, query.instance_id))
        head = {k: v for k, v in query.metadata['head'].items() if k != 'shape_as_property'}
        fits = [o['id'] for o in objects if all(o[k] == v for k, v in head.items())]
        assert fits == [entry['id']], query.text  # the head names one object of the scene
        assert query.metadata['relation'] is None and query.metadata['anchors'] == []
        assert sum(last - first + 1 for first, last in query.metadata['spans']) == len(
            query.frames)
        shapes = [re.escape(template).replace(re.escape('{0}'), 'the .+')
                  for template in EVALUATION_STATES[event]]
        assert any(re.fullmatch(shape, query.text) for shape in shapes), query.text
        asked.add((entry['role'], event))
    dynamic = {(o['role'], e) for o in objects for e in EVALUATION_STATES
               if 0 < len(frames_with(o, e)) < num_frames}
    assert asked == dynamic
    assert {e for _, e in asked} == set(EVALUATION_STATES)  # every event is asked about
    assert {('rotator', 'rotating'), ('rotator', 'squashed')} <= asked  # one per change
    repeated = [q for q in queries if not contiguous(q.frames)]
    assert repeated and all(q.metadata['event'] == 'squashed' for q in repeated)
    assert all(len(q.metadata['spans']) == 2 for q in repeated)
    time_agnostic = [e for e in bench.expressions if e.kind != TIME_SENSITIVE]
    assert bench.expressions[:len(time_agnostic)] == time_agnostic  # asked after the others


def test_state_words_differ_between_the_families():
    train = words(p for phrases in TRAINING_STATES.values() for p in phrases)
    evaluation = words(t.format('') for ts in EVALUATION_STATES.values() for t in ts)
    assert train & evaluation <= {'is', 'in'}
    assert set(EVALUATION_STATES) < set(TRAINING_STATES)


def test_same_seed_same_bytes_with_time(timed, tmp_path):
    root, supervision, _, _ = timed
    copy = rebuilt_copy(root, tmp_path)
    other = write_synthetic_supervision(copy, copy / 'other', seed=1)
    assert state_texts(other) != state_texts(supervision)


def test_unknown_events_are_refused(task, tmp_path):
    root, _, _, _ = task
    broken = tmp_path / 'broken'
    shutil.copytree(root, broken)
    objects = json.loads((broken / 'objects.json').read_text())
    objects['objects'][2]['frames'][1]['events'] = ['dancing']
    (broken / 'objects.json').write_text(json.dumps(objects))
    with pytest.raises(SupervisionFormatError, match='objects.json: .*unknown events.*dancing'):
        write_synthetic_supervision(broken, broken / 'sup')


# ---- twins and relations ------------------------------------------------------------------


def test_each_twin_has_a_true_relation_only_expression(task):
    _, _, bench, objects = task
    pair = twins(objects)
    assert len(pair) == 2
    for twin in pair:
        other = twin['look_alikes'][0]
        mine = [e for e in bench.expressions
                if e.instance_id == twin['id'] and e.kind == 'relation-only']
        comparisons = [e for e in mine if e.metadata['anchors'] == [other]]
        assert comparisons, twin
        for expression in mine:
            relation, anchors = expression.metadata['relation'], expression.metadata['anchors']
            for frame in expression.frames:
                if relation in SIDES:
                    assert on_side(objects, twin['id'], anchors[0], relation, frame), \
                        expression.text
                if relation in EXTREMES:  # among the pair at least
                    axis, sign = EXTREMES[relation]
                    assert sign * (xy(objects, twin['id'], frame)[axis]
                                   - xy(objects, other, frame)[axis]) > 0


def test_twins_are_captioned_by_relations_only(task):
    _, supervision, _, objects = task
    for twin in twins(objects):
        captions = next(i for i in supervision.instances if i.id == twin['id']).captions
        names = training_names(twin)
        for frame in range(SMALL.num_frames):
            texts = [c.text for c in captions if c.frame == frame]
            assert any(f'the other {name}' in text for text in texts for name in names), \
                (frame, texts)
            # No caption is the bare look: it would name both twins.
            sizes = TRAINING_WORDS.sizes[twin['size']]
            bare = {f'{article} {size}{name}' for article in ('the', 'a') for name in names
                    for size in ('', *(f'{s} ' for s in sizes))}
            assert not bare & set(texts)


def test_training_side_relations_are_true_at_their_frame(task):
    _, supervision, _, objects = task
    by_name = {name: o['id'] for o in objects if not o['look_alikes']
               for name in training_names(o)}
    sides = '|'.join(sorted(TRAIN_SIDES, key=len, reverse=True))
    pattern = re.compile(rf'^the (?:[\w-]+ )*?[\w-]+ ({sides}) the (other )?([\w-]+ [\w-]+)$')
    checked = 0
    for inst in supervision.instances:
        for caption in inst.captions:
            match = pattern.match(caption.text)
            if not match:
                continue
            words_, other, anchor_name = match.groups()
            entry = next(o for o in objects if o['id'] == inst.id)
            anchor = entry['look_alikes'][0] if other else by_name[anchor_name]
            assert on_side(objects, inst.id, anchor, TRAIN_SIDES[words_], caption.frame), \
                (caption, inst.id)
            checked += 1
    assert checked >= 10


def test_relations_follow_the_moving_object(task):
    """
    Relations are computed per frame.

    An expression about the mover holds only while the geometry says so, and its stated side
    is false at some frame it leaves out.
    """
    _, supervision, bench, objects = task
    mover = next(o['id'] for o in objects if o['role'] == 'mover')
    changing = []
    for e in bench.expressions:
        relation, anchors = e.metadata['relation'], e.metadata['anchors']
        if relation not in SIDES or mover not in [e.instance_id] + anchors:
            continue
        everywhere = [f for f in range(SMALL.num_frames)
                      if on_side(objects, e.instance_id, anchors[0], relation, f)]
        assert set(e.frames) <= set(everywhere), e.text
        if set(everywhere) != set(range(SMALL.num_frames)):
            changing.append(e)
    assert changing
    first, last = (set(supervision.captions_at(frame=f)[mover]) for f in (0, SMALL.num_frames - 1))
    assert first != last


# ---- determinism and bad inputs -----------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_words(task, tmp_path):
    root, _, _, _ = task
    copy = rebuilt_copy(root, tmp_path)
    other = write_synthetic_benchmark(copy, copy / 'other.json', seed=1)
    assert [e.text for e in other.expressions] != [e.text for e in load_benchmark(
        root / 'bench.json').expressions]


def test_bad_synthetic_folders(task, tmp_path):
    root, _, _, _ = task
    with pytest.raises(SupervisionFormatError, match='objects.json: file not found'):
        write_synthetic_supervision(tmp_path / 'none', tmp_path / 'sup')
    broken = tmp_path / 'broken'
    shutil.copytree(root, broken)
    objects = json.loads((broken / 'objects.json').read_text())
    objects['objects'][0]['shape'] = 'pyramid'
    (broken / 'objects.json').write_text(json.dumps(objects))
    with pytest.raises(SupervisionFormatError, match=r'objects\[0\]\.shape: expected one of'):
        write_synthetic_benchmark(broken, broken / 'b.json')
    del objects['frame_times']
    (broken / 'objects.json').write_text(json.dumps(objects))
    with pytest.raises(SupervisionFormatError, match='objects.json: expected st4r synthetic'):
        write_synthetic_benchmark(broken, broken / 'b.json')
    (broken / 'cameras.json').write_text('{}')
    with pytest.raises(SupervisionFormatError, match='cameras.json: format'):
        build_synthetic_task(broken)


def test_missing_masks_and_no_novel_views(task, tmp_path):
    root, _, _, _ = task
    gone = tmp_path / 'gone'
    shutil.copytree(root, gone)
    shutil.rmtree(gone / 'masks')
    with pytest.raises(SupervisionFormatError, match='train_f000_c0.png: mask of view'):
        write_synthetic_supervision(gone, gone / 'sup')
    with pytest.raises(SupervisionFormatError, match=r'bench.json: views\[0\]\.mask'):
        write_synthetic_benchmark(gone, gone / 'bench.json')
    cameras = json.loads((root / 'cameras.json').read_text())
    cameras['novel'] = []
    (gone / 'cameras.json').write_text(json.dumps(cameras))
    with pytest.raises(SupervisionFormatError, match='novel: expected at least one held-out'):
        write_synthetic_benchmark(gone, gone / 'bench.json')
