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

"""The `st4r` command end to end: scene info, export, render, synth, and its error exits."""

import json
from types import SimpleNamespace

from fourdgs_fixture import small_grid, write_fourdgs_scene
import numpy as np
from PIL import Image
import pytest
from st4r_ros import cli
from st4r_ros.cli import main
from st4r_ros.errors import SceneFormatError, St4rError
from st4r_ros.files import read_json_object
from st4r_ros.render.camera import Camera
from st4r_ros.scene.loading import detect_format, load_scene
from st4r_ros.scene.ply import read_ply
import torch


@pytest.fixture
def fourdgs_dir(tmp_path):
    root = tmp_path / 'fourdgs'
    write_fourdgs_scene(root, 'hypernerf', n=200, overrides=small_grid('hypernerf'))
    return root


def test_scene_info_json_for_a_4dgaussians_folder(fourdgs_dir, capsys):
    assert main(['scene', 'info', str(fourdgs_dir), '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['format'] == '4dgaussians'
    assert info['num_gaussians'] == 200 and info['sh_degree'] == 3
    assert info['time_range'] == [0.0, 1.0] and info['semantic_layers'] == []


def test_scene_info_table_for_a_bundle(tmp_path, capsys):
    assert main(['synth', str(tmp_path / 's'), '--seed', '3', '--frames', '2']) == 0
    assert main(['scene', 'info', str(tmp_path / 's' / 'scene')]) == 0
    out = capsys.readouterr().out
    assert 'bundle' in out and 'num_frames' in out


def test_export_writes_the_deformed_gaussians(fourdgs_dir, tmp_path):
    out = tmp_path / 't03.ply'
    assert main(['scene', 'export', str(fourdgs_dir), '--time', '0.3', '--out', str(out)]) == 0
    exported = read_ply(out).activate()
    expected = load_scene(fourdgs_dir).at(0.3)
    assert torch.allclose(exported.means, expected.means, atol=1e-6)
    assert torch.allclose(exported.scales, expected.scales, rtol=1e-5)
    assert torch.allclose(exported.opacities, expected.opacities, atol=1e-5)
    assert torch.allclose(exported.sh, expected.sh)
    # The deformation moved the Gaussians: t = 0.3 is not the canonical state.
    assert not torch.allclose(exported.means, load_scene(fourdgs_dir).at(0.0).means)
    assert detect_format(out) == 'ply'


def test_render_writes_png_and_depth(fourdgs_dir, tmp_path):
    scene = load_scene(fourdgs_dir).at(0.5)
    center = scene.means.mean(0).tolist()
    camera = Camera.look_at([center[0] + 4, center[1], center[2] + 1], center, width=64, height=48)
    camera.save(tmp_path / 'cam.json')
    rgb, depth = tmp_path / 'rgb.png', tmp_path / 'depth.png'
    args = ['render', str(fourdgs_dir), '--time', '0.5', '--camera', str(tmp_path / 'cam.json'),
            '--out', str(rgb), '--depth', str(depth), '--device', 'cpu']
    assert main(args) == 0
    image = np.asarray(Image.open(rgb))
    assert image.shape == (48, 64, 3) and image.max() > 0  # something was drawn on black
    assert np.asarray(Image.open(depth)).shape == (48, 64)


BAD_K = {'width': 32, 'height': 24, 'K': [[30, 0, 16], [0, 30, 12]],
         'world_to_cam': [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}


@pytest.mark.parametrize(
    'argv, message',
    [
        (['scene', 'info', '/nonexistent/scene'], 'no such file or folder'),
        (['scene', 'export', '{scene}', '--time', '1.5', '--out', 'x.ply'], 'time'),
        (['render', '{scene}', '--time', '0.1', '--camera', '/nonexistent.json', '--out', 'x.png'],
         'file not found'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', 'x.png',
          '--backend', 'gsplat', '--device', 'cpu'], 'needs the Gaussians on a CUDA device'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', 'x.png',
          '--background', '2'], '--background: expected a grey level in 0..1, got 2.0'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{bad}', '--out', 'x.png'],
         '{bad}: expected K [3, 3]'),
        # A path that is rich markup ('[/]' closes a style) is printed as it is.
        (['render', '{scene}', '--time', '0.1', '--camera', '/no/such[/]cam[bold].json',
          '--out', 'x.png'], '/no/such[/]cam[bold].json: file not found'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', 'x.png',
          '--device', 'cuda'], 'device cuda: this machine has no CUDA device'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', 'x.png',
          '--device', 'gpu'], "device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        (['train', '{scene}', 'SUP', '--device', 'cuda:1'], 'device cuda:1: this machine'),
        (['query', '{scene}', 'the red cube', '--camera', '{bad}'], '{bad}: expected K [3, 3]'),
        (['query', '{scene}', 'the red cube', '--time', '1.5'],
         'time: expected a normalised scene time in [0, 1], got 1.5'),
        (['query', '{scene}', 'the red cube', '--device', 'cuda'], 'device cuda: this machine'),
        (['query', '{scene}', 'the red cube', '--device', 'cpu'],
         '{scene}: no referring layer to answer from'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', 'x.json'],
         '--out x.json: expected a .png file'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', '/no/dir/x.png'],
         '--out /no/dir/x.png: folder /no/dir does not exist'),
        (['render', '{scene}', '--time', '0.1', '--camera', '{cam}', '--out', '{tmp}/x.png',
          '--depth', '{tmp}/d.jpg'], '--depth {tmp}/d.jpg: expected a .png file'),
        (['scene', 'export', '{scene}', '--time', '0.1', '--out', '{folder}'],
         'is a folder; expected a .ply file'),
        (['scene', 'export', '{scene}', '--time', '0.1', '--out', '/proc/x.ply'],
         '/proc/x.ply: cannot write'),
    ],
)
def test_errors_exit_2_with_one_plain_line(fourdgs_dir, tmp_path, capsys, monkeypatch, argv,
                                           message):
    """Each error is one line on stderr naming the file or option at fault; nothing on stdout."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # a machine without CUDA
    Camera.from_fov(60, 32, 24).save(tmp_path / 'cam.json')
    (tmp_path / 'bad_k.json').write_text(json.dumps(BAD_K))
    (tmp_path / 'out.ply').mkdir()
    names = {'scene': fourdgs_dir, 'cam': tmp_path / 'cam.json', 'bad': tmp_path / 'bad_k.json',
             'tmp': tmp_path, 'folder': tmp_path / 'out.ply'}
    argv = [a.format(**names) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ''
    (line,) = captured.err.splitlines()
    assert line.startswith('st4r: error: ') and message.format(**names) in line, line


def test_train_passes_the_temporal_encoder_options(monkeypatch):
    from st4r_ros import training

    seen = {}

    def fake_train_main(scene, supervision, out, **options):  # the options, not training
        seen.update(options)
        return SimpleNamespace(layer_path='LAYER', threshold=0.5)

    monkeypatch.setattr(training, 'train_main', fake_train_main)
    assert main(['train', 'SCENE', 'SUP', '--device', 'cpu', '--temporal-text-model', 'e5',
                 '--temporal-text-dtype', 'bfloat16',
                 '--temporal-query-prompt', r'Instruct: find the moment\nQuery: ']) == 0
    assert seen['temporal_text_model'] == 'e5' and seen['temporal_text_dtype'] == 'bfloat16'
    assert seen['temporal_query_prompt'] == 'Instruct: find the moment\nQuery: '


def test_an_unknown_temporal_text_dtype_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(['train', 'SCENE', 'SUP', '--temporal-text-dtype', 'float64'])
    assert 'float64' in capsys.readouterr().err


def test_a_bug_is_one_line_and_exit_1_with_the_traceback_only_under_debug(
        fourdgs_dir, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('boom [/] at line\nthree')

    monkeypatch.setattr(cli, 'load_scene', broken)
    assert main(['scene', 'info', str(fourdgs_dir)]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith('st4r: internal error, a bug in st4r (RuntimeError: boom [/] at line '
                           'three)') and '--debug' in line
    assert 'Traceback' not in captured.err and captured.out == ''
    assert main(['--debug', 'scene', 'info', str(fourdgs_dir)]) == 1
    captured = capsys.readouterr()
    assert 'Traceback (most recent call last)' in captured.err
    assert captured.err.splitlines()[-1].startswith('st4r: internal error')


@pytest.mark.parametrize('content, said', [
    ('[' * 100_000 + ']' * 100_000, 'nested too deeply'),
    ('{"width": ' + '7' * 5000 + '}', 'not valid JSON'),
    (b'\xff\xfe{}', 'cannot be read as a JSON file'),
    (None, 'cannot be read as a JSON file'),  # a folder
])
def test_hostile_json_files_are_one_error_naming_the_file(tmp_path, content, said):
    path = tmp_path / 'cam.json'
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    for read in (Camera.load, lambda p: read_json_object(p, SceneFormatError)):
        with pytest.raises(St4rError) as caught:
            read(path)
        assert str(caught.value).startswith(f'{path}: ') and said in str(caught.value)
