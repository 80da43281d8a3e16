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
`st4r query` end to end on a small trained scene.

The demo's seed, on a tiny synthetic scene (4 frames, 150 Gaussians per object, 64 x 48 views)
with its referring and temporal layers trained for 300 steps, as test_demo trains it. The
command is asked once for the module, with a camera and --json, the first training caption of
every object that has no look-alike (objects.json) and a text about nothing in the scene;
answers are checked against the scene's ground truth (the captions' instances, the Gaussians'
instance ids), the written files against the printed JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from types import SimpleNamespace

import numpy as np
from PIL import Image
from plyfile import PlyData
import pytest
from st4r_ros.cli import main
from st4r_ros.field.train import TrainConfig
from st4r_ros.answer_files import slug
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import highlight, to_uint8
from st4r_ros.scene.loading import load_scene
from st4r_ros.supervision.format import load_supervision
from st4r_ros.synthetic.task import build_synthetic_task
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.training import train_layers
import torch

SYNTHETIC = SyntheticConfig(num_frames=4, train_cameras_per_frame=1, novel_cameras_per_frame=1,
                            gaussians_per_object=150, table_gaussians=200, width=64, height=48)
SEED = 7  # the demo's (models/demo/demo.json), fixed here: a new demo seed leaves this be
STEPS = 300  # fewer leave most training captions below the no-target threshold
NONSENSE = 'a purple [elephant] playing chess [/]'  # brackets: rich markup, if not kept out
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """
    Make and train the scene; return its folders, the texts asked and their instances.

    Torch runs on one thread meanwhile, as in test_demo: small tensors on two busy cores.
    """
    root = tmp_path_factory.mktemp('query_cli')
    write_synthetic(root, SEED, SYNTHETIC)
    supervision_dir, _ = build_synthetic_task(root, SEED)
    supervision = load_supervision(supervision_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_layers(load_scene(root / 'scene'), supervision, TrainConfig(steps=STEPS),
                     root / 'scene', seed=SEED, progress=False)
    finally:
        torch.set_num_threads(threads)
    objects = json.loads((root / 'objects.json').read_text())['objects']
    unique = {o['id'] for o in objects if not o['look_alikes']}  # a caption names one thing
    captions = {k: texts[0] for k, texts in supervision.captions_at(time=0.0).items()
                if k in unique}
    state_caption = next(c.text for i in supervision.instances if i.id in unique
                         for c in i.state_captions)
    scene = load_scene(root / 'scene')
    centre = scene.at(0.0).means.mean(0).tolist()
    camera = Camera.look_at([centre[0], centre[1] - 2.5, centre[2] + 1.8], centre,
                            width=WIDTH, height=HEIGHT)
    camera.save(root / 'cam.json')
    return SimpleNamespace(root=root, scene_dir=root / 'scene', scene=scene, captions=captions,
                           state_caption=state_caption, camera=root / 'cam.json')


@pytest.fixture(scope='module')
def asked(trained):
    """Ask every unique caption and NONSENSE in one call with the camera; (status, answers)."""
    texts = list(trained.captions.values()) + [NONSENSE]
    out = trained.root / 'answers'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(['query', str(trained.scene_dir), *texts, '--camera', str(trained.camera),
                       '--out', str(out), '--json', '--device', 'cpu'])
    return SimpleNamespace(status=status, answers=json.loads(printed.getvalue()), out=out,
                           texts=texts)


def test_one_call_answers_every_text_in_order_and_exits_0(asked):
    assert asked.status == 0
    assert [a['text'] for a in asked.answers] == asked.texts
    assert [a['index'] for a in asked.answers] == list(range(len(asked.texts)))


def test_training_captions_name_their_ground_truth_instance(trained, asked):
    answers = dict(zip(trained.captions, asked.answers))  # instance -> its caption's answer
    ok = {k: a for k, a in answers.items() if a['status'] == 'OK'}
    assert len(ok) >= len(answers) / 2, [a['message'] for a in answers.values()]
    for instance, answer in ok.items():
        assert answer['target_instance_id'] == instance, answer
        assert answer['score'] >= answer['no_target_threshold']
        assert answer['num_gaussians'] > 0 and answer['scene_time'] == 0.0


def test_the_target_cloud_is_the_instance_in_the_scene(trained, asked):
    """Each cloud point is a Gaussian of the scene at t = 0; most are the caption's instance."""
    gaussians = trained.scene.at(0.0)
    for answer in asked.answers:
        if answer['status'] != 'OK':
            assert 'cloud' not in answer['files']
            continue
        vertex = PlyData.read(answer['files']['cloud'])['vertex']
        xyz = torch.from_numpy(np.stack([vertex[c] for c in 'xyz'], axis=1))
        assert len(xyz) == answer['num_gaussians']
        exact = 'donot_use_mm_for_euclid_dist'  # the matrix-product form is off by ~1e-3
        nearest = torch.cdist(xyz, gaussians.means, compute_mode=exact).min(dim=1)
        assert float(nearest.values.max()) < 1e-5  # centres, as they are at that time
        ids = gaussians.instance_ids[nearest.indices]
        assert float((ids == answer['target_instance_id']).float().mean()) > 0.5
        assert np.all((vertex['score'] >= 0.5) & (vertex['score'] <= 1.0))
        assert {'red', 'green', 'blue'} <= {p.name for p in vertex.properties}


def test_nonsense_is_no_target_with_an_empty_mask_and_no_cloud(asked):
    answer = asked.answers[-1]
    assert answer['text'] == NONSENSE and answer['status'] == 'NO_TARGET', answer
    assert answer['target_instance_id'] == -1 and answer['num_gaussians'] == 0
    assert set(answer['files']) == {'mask', 'overlay'}
    assert not np.asarray(Image.open(answer['files']['mask'])).any()


def test_files_are_named_by_index_and_slug_and_the_index_agrees(trained, asked):
    index = json.loads((asked.out / 'index.json').read_text())
    plain = render(trained.scene.at(0.0), Camera.load(trained.camera)).image.clamp(0.0, 1.0)
    assert index == asked.answers  # the index is what --json printed
    written, seen = set(), []
    for answer in asked.answers:
        stem = f"{answer['index']:02d}_{slug(answer['text'])}"
        for kind, path in answer['files'].items():
            assert path == str(asked.out / f'{stem}_{kind}.{"ply" if kind == "cloud" else "png"}')
            written.add(path)
        mask = np.asarray(Image.open(answer['files']['mask']))
        assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) <= {0, 255}
        assert answer['status'] == 'OK' or not mask.any()
        seen.append(bool(mask.any()))
        # The overlay is the view's colour (the plain render) with the mask highlighted.
        overlay = np.asarray(Image.open(answer['files']['overlay'])).astype(int)
        expected = to_uint8(highlight(plain, torch.from_numpy(mask > 0))).astype(int)
        assert np.abs(overlay - expected).max() <= 1  # rounding of one rasterisation or two
    assert any(seen)  # a target in view (a weak one of a few Gaussians may cover no pixel)
    on_disk = {str(p) for p in asked.out.iterdir()} - {str(asked.out / 'index.json')}
    assert on_disk == written
    assert re.fullmatch(r'a-purple-elephant-playing-chess', slug(NONSENSE))


def test_the_table_shows_each_answer_verbatim_and_the_spans_of_when(trained, capsys):
    out = trained.root / 'no_camera'
    assert main(['query', str(trained.scene_dir), trained.state_caption, NONSENSE,
                 '--mode', 'when', '--time', '0.5', '--out', str(out), '--device', 'cpu']) == 0
    printed = capsys.readouterr().out
    assert f'0: {trained.state_caption}' in printed and f'1: {NONSENSE}' in printed
    assert printed.count('no-target threshold') == 2 and printed.count('time-sensitive') >= 2
    assert printed.count('active spans') == 2 and 't = 0.50 (2.00 s)' in printed
    assert not out.exists()  # no camera: nothing written


def test_a_command_says_what_it_was_read_as(trained, capsys):
    caption = next(iter(trained.captions.values()))
    command = f'could you please pick up {caption} for me?'
    assert main(['query', str(trained.scene_dir), command, caption, '--device', 'cpu']) == 0
    printed = capsys.readouterr().out
    assert printed.count('read as') == 1 and caption in printed.split('read as')[1]
    assert main(['query', str(trained.scene_dir), command, '--json', '--device', 'cpu']) == 0
    answer, = json.loads(capsys.readouterr().out)
    assert (answer['text'], answer['referring']) == (command, caption)


def test_when_answers_carry_spans_in_normalised_time_and_seconds(trained, capsys):
    assert main(['query', str(trained.scene_dir), trained.state_caption, '--mode', 'when',
                 '--json', '--device', 'cpu']) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer['mode'] == 'TIME_SENSITIVE' and answer['time_sensitive']
    assert answer['time_sensitivity_reason'] == 'requested'
    duration = trained.scene.info().duration_s
    for span in answer['active_spans']:
        assert 0.0 <= span['start'] <= span['end'] <= 1.0
        assert span['start_s'] == pytest.approx(span['start'] * duration)
        assert span['end_s'] == pytest.approx(span['end'] * duration)


def test_a_refused_text_fails_the_call_after_the_answers(trained, capsys):
    caption = next(iter(trained.captions.values()))
    assert main(['query', str(trained.scene_dir), caption, ' ', '--json', '--device',
                 'cpu']) == 2
    captured = capsys.readouterr()
    answers = json.loads(captured.out)
    assert [a['status'] for a in answers][1] == 'INVALID' and answers[0]['status'] != 'INVALID'
    (line,) = [x for x in captured.err.splitlines() if x.startswith('st4r: error:')]
    assert "query 1 (' '): INVALID" in line
