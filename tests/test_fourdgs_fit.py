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
Synthetic scenes as the 4DGaussians trainer leaves them (synthetic/fourdgs_fit.py).

A tiny scene is fitted on the CPU through the torch renderer, written in the trainer's layout,
read back by the loader and rendered; the referring layer trains and answers on it from masks
alone (its PLY has no instance ids).
"""

from dataclasses import replace
from pathlib import Path
import subprocess
import sys

import pytest
from st4r_ros.engine import QueryEngine, QueryRequest, QueryStatus
from st4r_ros.errors import SceneFormatError
from st4r_ros.evaluation.referring import evaluate_referring
from st4r_ros.field.train import TrainConfig, train_field
from st4r_ros.render.api import render
from st4r_ros.scene.fourdgs import FourDGaussiansScene, save_fourdgaussians
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.ply import RawGaussians
from st4r_ros.supervision.format import load_benchmark, load_supervision
from st4r_ros.synthetic.fourdgs_fit import (BACKGROUND, canonical_offsets, FitConfig,
                                            FitDivergedError, FOURDGS_DIR, psnr,
                                            write_fitted_scene)
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.synthetic.task import build_synthetic_task
from st4r_ros.training import train_layers
import torch

TINY = SyntheticConfig(num_frames=4, gaussians_per_object=40, table_gaussians=60,
                       train_cameras_per_frame=2, novel_cameras_per_frame=1, width=48, height=36)
STEPS = FitConfig(coarse_steps=80, fine_steps=120)


@pytest.fixture(scope='module')
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp('fit')
    scene = write_synthetic(root, 0, TINY)
    build_synthetic_task(root, 0)
    report = write_fitted_scene(root, scene, STEPS, seed=0, progress=False)
    return root, scene, report


def _truth(scene, view):
    return render(scene.keyframes[view.frame][1], view.camera, background=BACKGROUND).image


def test_the_fitted_scene_reads_back_in_the_trainers_layout_and_renders_close(fitted):
    root, scene, report = fitted
    folder = root / FOURDGS_DIR
    steps = STEPS.coarse_steps + STEPS.fine_steps
    assert (folder / 'cfg_args').is_file()
    assert (folder / 'point_cloud' / f'iteration_{steps}' / 'deformation.pth').is_file()
    loaded = load_scene(folder)
    assert isinstance(loaded, FourDGaussiansScene) and loaded.iteration == steps
    assert loaded.info().details['deformed'] == ['means', 'scales', 'rotations', 'opacities']
    novel = [v for v in scene.views if v.split == 'novel']
    values = [psnr(render(loaded.at(v.time), v.camera, background=BACKGROUND).image,
                   _truth(scene, v)) for v in novel]
    assert sum(values) / len(values) == pytest.approx(report['psnr_novel'], abs=1e-3)
    assert report['psnr_novel'] > 18.0 and report['psnr_train'] > 18.0
    # The fit is what makes it close: the canonical cloud as first placed is much further off.
    assert report['losses']['fine'][-1] < report['losses']['coarse'][0]


def test_moving_objects_canonical_clouds_are_no_frame_of_the_video(fitted):
    root, scene, report = fitted
    offsets = {int(k): v for k, v in report['canonical_offsets_m'].items()}
    assert offsets and all(v > 0.02 for v in offsets.values())
    first = RawGaussians.from_gaussians(scene.keyframes[0][1])
    assert all(v == 0.0 for v in canonical_offsets(scene, first).values())  # a keyframed space


def test_the_referring_layer_trains_and_answers_from_masks_alone(fitted, tmp_path):
    root, _, _ = fitted
    folder = root / FOURDGS_DIR
    scene = load_scene(folder)
    assert scene.at(0.0).instance_ids is None  # a trainer's PLY names no instance
    train_layers(scene, load_supervision(root / 'supervision'),
                 TrainConfig(steps=5, min_pixels=4), tmp_path / 'layer', progress=False)
    engine = QueryEngine.open(str(folder), str(tmp_path / 'layer'), device='cpu')
    assert int((engine.field.assignment >= 0).sum()) > 0  # instances voted from the masks
    answer = engine.query(QueryRequest('the red cube', time=0.5))
    assert answer.status in (QueryStatus.OK, QueryStatus.NO_TARGET), answer.message
    if answer.ok:
        assert answer.cloud is not None and answer.num_gaussians == len(answer.cloud.xyz)
    report = evaluate_referring(engine, load_benchmark(root / 'bench.json'))
    assert report.pairs > 0


def test_the_static_baseline_sees_the_trainers_canonical_cloud(fitted):
    root, _, _ = fitted
    scene = load_scene(root / FOURDGS_DIR)
    supervision = load_supervision(root / 'supervision')
    config = TrainConfig(steps=1, min_pixels=4)
    static = train_field(scene, supervision, replace(
        config, field=replace(config.field, static=True)), progress=False)
    assert torch.equal(static.field.canonical, scene.canonical.means.float())
    # The full model's picture (bounds only) stays the centres averaged over time.
    full = train_field(scene, supervision, config, progress=False)
    assert not torch.allclose(full.field.canonical, static.field.canonical, atol=1e-3)


def test_a_diverging_fit_stops_by_step_and_writes_nothing(fitted, tmp_path):
    _, scene, _ = fitted
    config = replace(STEPS, coarse_steps=20, fine_steps=0, lr_means=1e30)
    with pytest.raises(FitDivergedError, match=r'coarse stage diverged at step \d+ of 20: l1'):
        write_fitted_scene(tmp_path, scene, config, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_half_written_scene(fitted, tmp_path):
    root, _, _ = fitted
    scene = load_scene(root / FOURDGS_DIR)
    bad = replace(scene.canonical, means=torch.full_like(scene.canonical.means, float('nan')))
    with pytest.raises(SceneFormatError, match='not written'):
        save_fourdgaussians(tmp_path / 'out', bad, scene.network, 1)
    assert list(tmp_path.iterdir()) == []


def test_bad_fit_steps_are_refused():
    with pytest.raises(SceneFormatError, match='coarse_steps'):
        FitConfig(coarse_steps=-1)


def test_st4r_synth_writes_the_4dgaussians_format(tmp_path):
    out = tmp_path / 'synth'
    proc = subprocess.run([sys.executable, '-m', 'st4r_ros.cli', 'synth', str(out), '--frames',
                           '2', '--format', '4dgaussians', '--fit-steps', '2', '2', '--device',
                           'cpu'], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert isinstance(load_scene(out / FOURDGS_DIR), FourDGaussiansScene)
    assert 'PSNR' in proc.stdout and (out / 'fit_4dgaussians.json').is_file()
