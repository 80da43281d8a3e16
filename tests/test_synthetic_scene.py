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
Synthetic scenes: determinism, look-alike twins, motions, ground-truth masks, written files.

Also the temporal ground truth: an event that happens twice, an object that changes two things.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image
import pytest
from st4r_ros.errors import SceneFormatError
from st4r_ros.render.camera import Camera
from st4r_ros.scene.bundle import load_bundle
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.synthetic.scene import (generate_synthetic, instance_labels, MAX_SPLIT_GAP, SHAPES,
                                      SLOT_SPACING, synth_main, SyntheticConfig, write_synthetic)
import torch

SMALL = SyntheticConfig(gaussians_per_object=150, table_gaussians=200, num_frames=8,
                        train_cameras_per_frame=1, novel_cameras_per_frame=1, width=48, height=36)
TINY = SyntheticConfig(gaussians_per_object=60, table_gaussians=50, num_frames=3,
                       train_cameras_per_frame=1, novel_cameras_per_frame=0, width=32, height=24)
SEED = 3


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    return out, write_synthetic(out, SEED, SMALL)


def by_role(scene) -> Dict[str, Dict]:
    return {entry['role']: entry for entry in scene.objects if entry['role'] != 'twin'}


def of(gaussians: Gaussians, instance: int) -> Gaussians:
    return gaussians.select(gaussians.instance_ids == instance)


def frames_with(entry: Dict, event: str):
    return [f['frame'] for f in entry['frames'] if event in f['events']]


def runs(frames: List[int]) -> List[List[int]]:
    """Maximal runs [first, last] of consecutive frames."""
    out: List[List[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def test_same_seed_same_scene_other_seed_differs():
    a, b = generate_synthetic(SEED, SMALL), generate_synthetic(SEED, SMALL)
    c = generate_synthetic(SEED + 1, SMALL)
    for (ta, ga), (tb, gb) in zip(a.keyframes, b.keyframes):
        assert ta == tb
        assert all(torch.equal(ga.tensors()[k], gb.tensors()[k]) for k in ga.tensors())
    assert a.objects == b.objects
    assert [v.camera.to_json() for v in a.views] == [v.camera.to_json() for v in b.views]
    assert not torch.equal(a.keyframes[0][1].means, c.keyframes[0][1].means)
    assert a.objects != c.objects


def test_written_files_are_byte_identical_for_one_seed(tmp_path):
    write_synthetic(tmp_path / 'a', SEED, TINY)
    write_synthetic(tmp_path / 'b', SEED, TINY)
    files = sorted(p.relative_to(tmp_path / 'a')
                   for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert len(files) == 2 + 2 + 2 * TINY.num_frames  # bundle, json docs, a mask + image per view
    for name in files:
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes(), name


def test_every_role_shape_and_one_pair_of_twins():
    scene = generate_synthetic(SEED, SMALL)
    assert sorted(e['role'] for e in scene.objects) == sorted(
        ['twin', 'twin', 'mover', 'rotator', 'squasher', 'splitter', 'vanisher'])
    assert {e['shape'] for e in scene.objects} == set(SHAPES)
    assert sorted(e['id'] for e in scene.objects) == list(range(1, 8))
    assert by_role(scene)['rotator']['shape'] == 'cube'
    looks = [(e['shape'], e['colour'], e['size']) for e in scene.objects if e['role'] != 'twin']
    assert len(set(looks)) == len(looks)
    assert all(not e['look_alikes'] for e in scene.objects if e['role'] != 'twin')


def test_twins_look_the_same_and_differ_only_in_position():
    scene = generate_synthetic(SEED, SMALL)
    one, two = [e for e in scene.objects if e['role'] == 'twin']
    assert (one['shape'], one['colour'], one['size']) == (two['shape'], two['colour'], two['size'])
    assert one['look_alikes'] == [two['id']] and two['look_alikes'] == [one['id']]
    frame = scene.keyframes[0][1]
    a, b = of(frame, one['id']), of(frame, two['id'])
    offset = b.means.mean(dim=0) - a.means.mean(dim=0)
    assert float(offset.norm()) >= SLOT_SPACING - 1e-4
    torch.testing.assert_close(b.means - offset, a.means, atol=1e-5, rtol=0)
    assert torch.equal(a.sh, b.sh) and torch.equal(a.scales, b.scales)
    assert torch.equal(a.opacities, b.opacities)


def test_motions_happen():
    scene = generate_synthetic(SEED, SMALL)
    roles, first, last = by_role(scene), scene.keyframes[0][1], scene.keyframes[-1][1]

    mover = roles['mover']['id']
    travel = of(last, mover).means.mean(0) - of(first, mover).means.mean(0)
    assert math.isclose(float(travel[:2].norm()), SLOT_SPACING, rel_tol=1e-4)
    assert frames_with(roles['mover'], 'moving')

    rotator = roles['rotator']
    centre = torch.tensor(rotator['frames'][0]['position'])
    assert rotator['frames'][-1]['position'] == rotator['frames'][0]['position']
    yaw = math.radians(rotator['frames'][-1]['yaw_deg'])
    turn = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0],
                         [0.0, 0.0, 1.0]])
    expected = (of(first, rotator['id']).means - centre) @ turn.T + centre
    assert abs(yaw) > math.radians(30)
    torch.testing.assert_close(of(last, rotator['id']).means, expected, atol=1e-5, rtol=0)

    squasher = roles['squasher']
    squashed = scene.keyframes[frames_with(squasher, 'squashed')[0]][1]
    height = lambda g: float(g.means[:, 2].max() - g.means[:, 2].min())  # noqa: E731
    assert height(of(squashed, squasher['id'])) < 0.95 * height(of(first, squasher['id']))

    splitter = roles['splitter']['id']
    width = lambda g: float(g.means[:, 0].max() - g.means[:, 0].min())  # noqa: E731
    growth = width(of(last, splitter)) - width(of(first, splitter))
    assert math.isclose(growth, MAX_SPLIT_GAP, rel_tol=1e-3)
    assert frames_with(roles['splitter'], 'split')[-1] == SMALL.num_frames - 1

    vanisher = roles['vanisher']
    invisible = frames_with(vanisher, 'invisible')
    assert invisible and float(of(first, vanisher['id']).opacities.min()) > 0
    for f in invisible:
        assert float(of(scene.keyframes[f][1], vanisher['id']).opacities.max()) == 0.0
        assert vanisher['frames'][f]['visible'] is False

    for twin in (e for e in scene.objects if e['role'] == 'twin'):
        assert torch.equal(of(first, twin['id']).means, of(last, twin['id']).means)
        assert frames_with(twin, 'static') == list(range(SMALL.num_frames))


def test_spans_match_per_frame_events():
    scene = generate_synthetic(SEED, SMALL)
    for entry in scene.objects:
        for span in entry['spans']:
            frames = frames_with(entry, span['event'])
            assert set(range(span['start_frame'], span['end_frame'] + 1)) <= set(frames)


@pytest.mark.parametrize('seed', range(5))
def test_default_scene_repeats_an_event_and_changes_an_object_in_two_ways(seed):
    scene = generate_synthetic(seed)  # the default config: the timing `st4r synth` writes
    frames = SyntheticConfig().num_frames
    roles = by_role(scene)

    squasher = roles['squasher']
    spans = [s for s in squasher['spans'] if s['event'] == 'squashed']
    assert len(spans) == 2  # squashed, at rest, squashed again
    pause = range(spans[0]['end_frame'] + 1, spans[1]['start_frame'])
    assert len(pause) >= 2
    for f in pause:
        state = squasher['frames'][f]
        assert state['events'] == ['static'] and state['height_scale'] == 1.0
    for span in spans:
        assert span['end_frame'] - span['start_frame'] >= 1
        depth = min(squasher['frames'][f]['height_scale']
                    for f in range(span['start_frame'], span['end_frame'] + 1))
        assert depth < 0.8  # a real squash each time, not the tail of one
    assert runs(frames_with(squasher, 'squashed')) == [[s['start_frame'], s['end_frame']]
                                                       for s in spans]

    rotator = roles['rotator']
    rotating = set(frames_with(rotator, 'rotating'))
    squashed = set(frames_with(rotator, 'squashed'))
    assert len(rotating - squashed) >= 2 and len(rotating & squashed) >= 2
    assert squashed - rotating and rotating | squashed != set(range(frames))
    for state in rotator['frames']:  # the state says what the events say
        f = state['frame']
        assert (state['height_scale'] < 1.0) == (f in squashed), f
        assert ('static' in state['events']) == (f not in rotating | squashed), f
    assert rotator['frames'][-1]['height_scale'] == 1.0
    yaws = [state['yaw_deg'] for state in rotator['frames']]
    assert all(yaws[f] != yaws[f - 1] for f in rotating)


@pytest.mark.parametrize('seed', range(3))
def test_spans_are_the_maximal_runs_of_each_event(seed):
    scene = generate_synthetic(seed)
    for entry in scene.objects:
        events = {e for state in entry['frames'] for e in state['events']}
        expected = sorted((first, last, event) for event in events
                          for first, last in runs(frames_with(entry, event)))
        got = sorted((s['start_frame'], s['end_frame'], s['event']) for s in entry['spans'])
        assert got == expected, entry['role']


@pytest.mark.parametrize('seed', range(8))
def test_objects_never_overlap(seed):
    """
    No two objects' Gaussian centres come near each other in the table plane.

    The squashed, turning cube is the widest object (ROTATOR_SQUASH_DEPTH), the split one the
    longest.
    """
    config = SyntheticConfig(gaussians_per_object=300, table_gaussians=0,
                             train_cameras_per_frame=0, novel_cameras_per_frame=0)
    scene = generate_synthetic(seed, config)
    for frame, (_, gaussians) in enumerate(scene.keyframes):
        centres, reaches = [], []
        for entry in scene.objects:
            centre = torch.tensor(entry['frames'][frame]['position'][:2])
            xy = of(gaussians, entry['id']).means[:, :2]
            centres.append(centre)
            reaches.append(float((xy - centre).norm(dim=1).max()))
        for i in range(len(centres)):
            for j in range(i):
                gap = float((centres[i] - centres[j]).norm()) - reaches[i] - reaches[j]
                assert gap > 0.0, (seed, frame, scene.objects[i]['role'],
                                   scene.objects[j]['role'])


def project(camera: Camera, points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates [N, 2] of world points [N, 3] (all in front of the camera)."""
    cam = points @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
    assert float(cam[:, 2].min()) > 0
    return (cam @ camera.K.T)[:, :2] / cam[:, 2:3]


def test_masks_are_consistent_with_instance_ids(written):
    out, scene = written
    cameras = json.loads((out / 'cameras.json').read_text())
    seen = set()
    for entry in cameras['train'] + cameras['novel']:
        mask = np.asarray(Image.open(out / entry['mask']))
        assert mask.dtype == np.uint8 and mask.shape == (SMALL.height, SMALL.width)
        gaussians = scene.keyframes[entry['frame']][1]
        camera = Camera.from_json(entry['camera'])
        for k in map(int, np.unique(mask[mask > 0])):
            seen.add(k)
            instance = of(gaussians, k)
            pixels = project(camera, instance.means)
            # A Gaussian reaches at most 3.33 sigma (+ the 2D low-pass) from its projected centre.
            w2c = camera.world_to_cam
            depth = float((instance.means @ w2c[2, :3] + w2c[2, 3]).min())
            margin = 3.33 * float(instance.scales.max()) * float(camera.K[0, 0]) / depth + 2.0
            rows, cols = np.nonzero(mask == k)
            assert cols.min() + 0.5 >= float(pixels[:, 0].min()) - margin
            assert cols.max() + 0.5 <= float(pixels[:, 0].max()) + margin
            assert rows.min() + 0.5 >= float(pixels[:, 1].min()) - margin
            assert rows.max() + 0.5 <= float(pixels[:, 1].max()) + margin
    assert seen == set(range(1, 8))  # every object shows up somewhere


def test_invisible_object_has_empty_masks(written):
    out, scene = written
    vanisher = by_role(scene)['vanisher']
    invisible = set(frames_with(vanisher, 'invisible'))
    cameras = json.loads((out / 'cameras.json').read_text())
    views = [e for e in cameras['train'] + cameras['novel'] if e['frame'] in invisible]
    assert views
    for entry in views:
        assert not (np.asarray(Image.open(out / entry['mask'])) == vanisher['id']).any()


def test_written_scene_reads_back(written):
    out, scene = written
    loaded = load_bundle(out / 'scene')
    info = loaded.info()
    assert (info.format, info.num_frames) == ('bundle', SMALL.num_frames)
    assert info.duration_s == SMALL.duration_s
    assert info.details['interpolation'] == 'linear' and info.details['instance_ids']
    for t, expected in scene.keyframes:
        got = loaded.at(t)
        assert all(torch.equal(got.tensors()[k], v) for k, v in expected.tensors().items())
    objects = json.loads((out / 'objects.json').read_text())
    assert objects['objects'] == json.loads(json.dumps(scene.objects))
    assert objects['background'] == {'instance_id': -1, 'name': 'table', 'mask_value': 0}
    cameras = json.loads((out / 'cameras.json').read_text())
    assert len(cameras['train']) == len(cameras['novel']) == SMALL.num_frames
    for entry, view in zip(cameras['train'] + cameras['novel'], scene.views):
        assert (entry['name'], entry['frame'], entry['time']) == (view.name, view.frame, view.time)
        camera = Camera.from_json(entry['camera'])
        assert torch.equal(camera.world_to_cam, view.camera.world_to_cam)
        image = Image.open(out / entry['image'])
        assert (image.mode, image.size) == ('RGB', (SMALL.width, SMALL.height))


def test_novel_cameras_are_off_the_training_rings():
    scene = generate_synthetic(SEED, SMALL)

    def eye(view):
        return tuple(np.round(view.camera.cam_to_world[:3, 3].numpy(), 3))

    train = {eye(v) for v in scene.views if v.split == 'train'}
    novel = [eye(v) for v in scene.views if v.split == 'novel']
    assert novel and not train & set(novel)


def test_instance_labels_rule():
    weights = torch.tensor([[[0.6, 0.3], [0.2, 0.45], [0.5, 0.5]]])  # [1, 3, 2]
    assert instance_labels(weights).tolist() == [[1, 0, 1]]  # ties go to the lower id


def test_more_objects_add_static_extras():
    scene = generate_synthetic(0, SyntheticConfig(num_objects=12, gaussians_per_object=20,
                                                  table_gaussians=10, num_frames=2,
                                                  train_cameras_per_frame=0,
                                                  novel_cameras_per_frame=0))
    assert [e['role'] for e in scene.objects].count('static') == 5
    looks = [(e['shape'], e['colour'], e['size']) for e in scene.objects]
    assert len(set(looks)) == 11  # only the twins share a look


def test_bad_options(tmp_path: Path):
    with pytest.raises(SceneFormatError, match='num_objects'):
        SyntheticConfig(num_objects=3)
    with pytest.raises(SceneFormatError, match='num_frames'):
        SyntheticConfig(num_frames=1)
    with pytest.raises(SceneFormatError, match='unknown.*frames'):
        synth_main(tmp_path, 0, frames=3)
