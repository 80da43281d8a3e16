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
`st4r demo` end to end on a reduced configuration: every stage runs, every output is checked.

The packaged demo config with a tiny synthetic scene (4 frames, one train and one novel camera
per frame, 64 x 48 images, 150 Gaussians per object), one render view at two times and 900
training steps: seconds on two CPU cores. Fewer steps answer less (300 named one of the two
training captions' objects, and the twin wrong), so the answers are held to the ground truth.

The bags are read with an independent decoder, `mcap` + `mcap-ros2-support`, as test_replay
does; the PNGs with PIL, the PLYs with plyfile, and each file is compared with the message it
was made from.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
from types import SimpleNamespace

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
from PIL import Image
from plyfile import PlyData
import pytest
from rich.console import Console
from st4r_ros.demo import (CONFIG_KEYS, DemoCommand, judge, load_demo_config, run_demo,
                           state_questions)
from st4r_ros.engine import QueryEngine, QueryMode, QueryRequest, QueryStatus
from st4r_ros.errors import SceneFormatError, St4rError, TextEncoderError
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.ply import read_ply
from st4r_ros.supervision.format import load_benchmark, load_supervision, TIME_SENSITIVE
from st4r_ros.temporal import build_temporal_layer, save_temporal_layer
from st4r_ros.text import DEFAULT_MODEL_ID, TextEncoder
from tiny_bert import write_tiny_bert
import torch

WIDTH, HEIGHT = 64, 48
SYNTHETIC = {'num_frames': 4, 'train_cameras_per_frame': 1, 'novel_cameras_per_frame': 1,
             'gaussians_per_object': 150, 'table_gaussians': 200, 'width': WIDTH,
             'height': HEIGHT}
ANSWERED = {QueryStatus.OK, QueryStatus.NO_TARGET, QueryStatus.NOT_IN_STATE}
TAB_GREEN, TAB_ORANGE = (44, 160, 44), (255, 127, 14)  # matplotlib's tab:green, tab:orange


def small_config() -> dict:
    """Return the packaged demo config with a tiny scene, few steps, one view at two times."""
    config = copy.deepcopy(load_demo_config())
    config['synthetic'] = dict(SYNTHETIC)
    config['train_steps'] = 900
    config['render'].update(width=WIDTH, height=HEIGHT, times=[0.0, 1.0])
    config['render']['views'] = config['render']['views'][:1]
    config['commands'].update(state_captions=1, time_sensitive=1)  # both kinds of when-question
    return config


def read_mcap(bag):
    """Return {topic: [decoded message, ...]} of the bag's one .mcap, in log time order."""
    (path,) = bag.glob('*.mcap')
    by_topic = {}
    with path.open('rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, _, decoded in reader.iter_decoded_messages(log_time_order=True):
            by_topic.setdefault(channel.topic, []).append(decoded)
    return by_topic


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """
    Run the demo once for the module; its folder, config, written files and printed text.

    Torch runs on one thread meanwhile: the tensors are small, and with two threads on two
    busy cores OpenMP's waiting made the run three times slower.
    """
    out = tmp_path_factory.mktemp('demo')
    config = small_config()
    console = Console(file=io.StringIO(), width=160)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        written = run_demo(out, console, config)
    finally:
        torch.set_num_threads(threads)
    return out, config, written, console.file.getvalue()


@pytest.fixture(scope='module')
def bags(demo):
    out, _, _, _ = demo
    return read_mcap(out / 'commands_bag'), read_mcap(out / 'results_bag')


def test_written_files_exist_and_cover_the_outputs(demo):
    out, config, written, printed = demo
    assert written and len(set(written)) == len(written)
    for path in written:
        assert path.is_file() and path.stat().st_size > 0, path
    names = {path.relative_to(out).as_posix() for path in written}
    for t in config['render']['times']:
        assert {f'renders/t{t:.2f}_front_rgb.png', f'renders/t{t:.2f}_front_depth.png'} <= names
    assert f"scene_t{config['export_time']:.2f}.ply" in names
    assert {'results/index.json', 'results/spans.png'} <= names
    assert any(name.endswith('_cloud.ply') for name in names)
    # Every file of results/ and renders/ is listed, nothing more is there.
    on_disk = {p.relative_to(out).as_posix() for folder in ('results', 'renders')
               for p in (out / folder).iterdir()}
    assert on_disk == {name for name in names if '/' in name}
    assert 'demo done' in printed and 'answers (read back from the result bag)' in printed


def test_renders_and_scene_ply(demo):
    out, config, written, _ = demo
    renders = [path for path in written if path.parent.name == 'renders']
    assert len(renders) == 2 * len(config['render']['times'])
    for path in renders:
        with Image.open(path) as image:
            assert image.format == 'PNG' and image.size == (WIDTH, HEIGHT)
            assert image.mode == ('RGB' if path.stem.endswith('_rgb') else 'L')
            pixels = np.asarray(image)
        assert pixels.min() < pixels.max(), path  # not a blank image
    export_time = config['export_time']
    exported = read_ply(out / f'scene_t{export_time:.2f}.ply').activate()
    expected = load_scene(out / 'synthetic' / 'scene').at(export_time)
    assert len(exported.means) == len(expected.means) > 7 * 150  # seven objects and the table
    assert torch.allclose(exported.means, expected.means, atol=1e-5)


def test_result_bag_has_one_answer_per_command(demo, bags):
    out, config, _, _ = demo
    assert (out / 'results_bag' / 'metadata.yaml').is_file()
    commands_bag, results_bag = bags
    commands = [msg.data for msg in commands_bag['/command']]
    settings = config['commands']
    bench = load_benchmark(out / 'synthetic' / 'bench.json')
    sensitive = [e.text for e in bench.expressions if e.kind == TIME_SENSITIVE]
    asked = [c for c in commands if c in sensitive]
    assert len(asked) == min(settings['time_sensitive'], len(sensitive))
    stated = [c for c in commands if c.startswith('when is ') and c not in sensitive]
    assert len(stated) == settings['state_captions']
    assert len(commands) == (settings['training'] + settings['held_out'] + len(stated)
                             + len(asked) + len(settings['extra']))
    assert commands[-len(settings['extra']):] == [item['text'] for item in settings['extra']]
    results = results_bag['/result']
    assert [r.query for r in results] == commands
    assert [r.request_id for r in results] == [f'replay-{i}' for i in range(1, len(commands) + 1)]
    assert len(results_bag['/target_cloud']) == len(results_bag['/markers']) == len(commands)


def test_every_command_has_a_status(bags):
    _, results_bag = bags
    results = results_bag['/result']
    statuses = [QueryStatus(r.status) for r in results]
    # The extra commands: a valid query about nothing in the scene, and the empty command.
    assert statuses[-2:] == [QueryStatus.NO_TARGET, QueryStatus.INVALID]
    assert set(statuses[:-1]) <= ANSWERED
    assert QueryStatus.OK in statuses  # the layer learned something
    for result in results:
        ok = result.status == QueryStatus.OK
        assert (result.target_instance_id >= 1) == ok and (result.num_gaussians > 0) == ok
        if ok:
            assert result.active_spans and 0.0 < result.score <= 1.0
        if result.query:
            assert 0.0 <= result.scene_time <= 1.0
        else:
            assert math.isnan(result.scene_time)


def test_target_cloud_plys_are_the_answers_clouds(demo, bags):
    out, _, _, _ = demo
    _, results_bag = bags
    results, clouds = results_bag['/result'], results_bag['/target_cloud']
    assert [c.width for c in clouds] == [r.num_gaussians for r in results]
    index = json.loads((out / 'results' / 'index.json').read_text())['answers']
    written = 0
    for entry, cloud in zip(index, clouds):
        plys = [f for f in entry['files'] if f.endswith('_cloud.ply')]
        assert len(plys) == (1 if cloud.width else 0), entry
        if not cloud.width:
            continue
        assert plys[0].startswith(f"{entry['index']:02d}_")  # named by the request it answers
        written += 1
        fields = np.frombuffer(bytes(cloud.data), np.float32).reshape(cloud.width, 5)
        vertex = PlyData.read(str(out / 'results' / plys[0]))['vertex']
        assert vertex.count == cloud.width
        for axis, column in zip('xyz', range(3)):
            np.testing.assert_array_equal(vertex[axis], fields[:, column])
        np.testing.assert_array_equal(vertex['score'], fields[:, 4])
        rgb = fields[:, 3].copy().view(np.uint32)
        np.testing.assert_array_equal(vertex['red'], (rgb >> 16) & 255)
        np.testing.assert_array_equal(vertex['blue'], rgb & 255)
    assert written > 0


def test_index_judges_every_answer_against_the_scene_ground_truth(demo, bags):
    """The truth in index.json is the benchmark's and the captions', and 'right' follows it."""
    out, config, _, printed = demo
    _, results_bag = bags
    results = results_bag['/result']
    index = json.loads((out / 'results' / 'index.json').read_text())['answers']
    assert [e['command'] for e in index] == [r.query for r in results]
    supervision = load_supervision(out / 'synthetic' / 'supervision')
    captions = {text: instance for instance, texts in supervision.captions_at(time=0.0).items()
                for text in texts}
    bench = {e.text: e for e in load_benchmark(out / 'synthetic' / 'bench.json').expressions}
    frame_times = json.loads((out / 'synthetic' / 'objects.json').read_text())['frame_times']
    extra = {item['text']: item['expect'] for item in config['commands']['extra']}
    for entry, result in zip(index, results):
        text, truth = entry['command'], entry['truth']
        if text in extra:
            assert truth == {'status': extra[text], 'instance': -1, 'times': []}
        elif text in bench:
            expression = bench[text]
            assert truth['instance'] == expression.instance_id and truth['status'] == 'OK'
            if expression.kind == TIME_SENSITIVE:
                assert truth['times'] == [frame_times[f] for f in expression.frames]
        elif text in captions:
            assert truth == {'status': 'OK', 'instance': captions[text], 'times': []}
        else:  # a when-question in a state caption's words, the truth a benchmark event's
            assert truth['status'] == 'OK' and truth['times'], entry
            worded = {c.text for i in supervision.instances if i.id == truth['instance']
                      for c in i.state_captions if frame_times[c.frame] in truth['times']}
            assert text in {f"when is {c.replace(' is ', ' ', 1)}?" for c in worded}, entry
            events = {tuple(frame_times[f] for f in e.frames) for e in bench.values()
                      if e.kind == TIME_SENSITIVE and e.instance_id == truth['instance']}
            assert tuple(truth['times']) in events, entry
        status = QueryStatus(result.status).name
        assert (entry['status'], entry['instance']) == (status, result.target_instance_id)
        named_right = status == truth['status'] and (
            truth['instance'] < 0 or result.target_instance_id == truth['instance'])
        if not truth['times']:
            assert entry['right'] == named_right, entry
        elif not named_right:
            assert not entry['right'], entry
    right = sum(e['right'] for e in index)
    assert f'{right} of {len(index)} answers right against the ground truth' in printed
    # Even this small demo names the objects of its training captions (a twin among them) and
    # answers most commands right.
    named = [e for e in index if e['command'] in captions]
    assert named and all(e['right'] for e in named), named
    assert right >= 0.75 * len(index)


F = 1 / 11  # the frame step of a 12-frame scene; the truth is frame 4


@pytest.mark.parametrize('status, instance, spans, right, why', [
    ('OK', 3, [(3 * F, 5 * F)], True, ''),
    ('OK', 4, [(3 * F, 5 * F)], False, 'instance 4, expected 3'),
    ('NO_TARGET', -1, [], False, 'NO_TARGET, expected OK'),
    ('OK', 3, [(6 * F, 7 * F)], False, 'misses t = 0.36; span 0.55-0.64 where it does not hold'),
    ('OK', 3, [(3 * F, 5 * F), (7 * F, 8 * F)], False, 'span 0.64-0.73 where it does not hold'),
    # One frame either way is what the smoothing may move an edge by; two frames are not.
    ('OK', 3, [(3 * F, 3 * F), (5 * F, 5 * F)], True, ''),
    ('OK', 3, [(5 * F, 5 * F)], True, ''),
    ('OK', 3, [(2 * F, 4 * F)], False, 'span 0.18-0.36 where it does not hold'),
    ('OK', 3, [(6 * F, 6 * F)], False, 'misses t = 0.36; span 0.55-0.55 where it does not hold'),
])
def test_judge_time_sensitive_answers(status, instance, spans, right, why):
    command = DemoCommand('when does the tube fade out?', 3, times=(4 * F,))
    assert judge(command, status, instance, spans, frame_step=F) == (right, why)


def test_state_questions_take_the_event_caption_of_the_right_shape_once():
    def caption(frame, text):
        return SimpleNamespace(frame=frame, text=text)

    tube = SimpleNamespace(id=3, state_captions=[
        caption(2, 'the green tube is standing still'), caption(3, 'the green tube is vanishing'),
        caption(4, 'the lime tube is vanishing'), caption(4, 'the lime tube is at rest'),
        caption(7, 'the green tube lies on its side')])
    supervision = SimpleNamespace(instances=[tube])
    fade, lying = SimpleNamespace(instance_id=3, frames=[3, 4]), SimpleNamespace(
        instance_id=3, frames=[7])
    times = [f / 10 for f in range(11)]
    asked = state_questions(supervision, [fade, lying, fade], times)
    # Frame 4 has two state captions: the event is asked in frame 3's; frame 7's has no 'is'.
    assert asked == [DemoCommand('when is the green tube vanishing?', 3, times=(0.3, 0.4))]


def test_judge_expected_statuses():
    assert judge(DemoCommand('', expect='INVALID'), 'INVALID', -1, [], 0.1) == (True, '')
    elephant = DemoCommand('a purple elephant', expect='NO_TARGET')
    assert judge(elephant, 'OK', 5, [(0.0, 1.0)], 0.1) == (False, 'OK, expected NO_TARGET')


def test_mask_and_overlay_pngs_match_the_bag(demo, bags):
    out, _, written, _ = demo
    _, results_bag = bags
    masks, overlays = results_bag['/mask'], results_bag['/overlay']
    answered = sum(r.status != QueryStatus.INVALID for r in results_bag['/result'])
    assert len(masks) == len(overlays) >= answered  # one per answer, plus re-renders
    mask_pngs = sorted(p for p in written if p.name.endswith('_mask.png'))
    overlay_pngs = sorted(p for p in written if p.name.endswith('_overlay.png'))
    assert len(mask_pngs) == len(masks) and len(overlay_pngs) == len(overlays)
    lit = 0
    for path, msg in zip(mask_pngs, masks):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ('PNG', 'L', (WIDTH, HEIGHT))
            pixels = np.asarray(image)
        assert msg.encoding == 'mono8'
        np.testing.assert_array_equal(pixels, np.frombuffer(bytes(msg.data), np.uint8)
                                      .reshape(HEIGHT, WIDTH))
        lit += int(np.count_nonzero(pixels))
    assert lit > 0  # an OK target shows in some mask
    for path, msg in zip(overlay_pngs, overlays):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ('PNG', 'RGB', (WIDTH, HEIGHT))
            pixels = np.asarray(image)
        assert msg.encoding == 'bgr8'
        bgr = np.frombuffer(bytes(msg.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(pixels, bgr[..., ::-1])


def test_timeline_plot_has_a_row_per_result(demo, bags):
    out, _, _, _ = demo
    _, results_bag = bags
    with Image.open(out / 'results' / 'spans.png') as image:
        assert image.format == 'PNG'
        width, height = image.size
        pixels = np.asarray(image.convert('RGB')).astype(int)
    results = results_bag['/result']
    assert width == 800 and abs(height - 100 * (0.5 + 0.45 * len(results))) <= 1
    # The active spans are bars in their status's colour: none without spans, and some
    # hundreds of pixels for spans over 5 % of the time axis.
    assert any(r.active_spans for r in results)
    for status, colour in ((QueryStatus.OK, TAB_GREEN), (QueryStatus.NO_TARGET, TAB_ORANGE)):
        spans = [s for r in results if r.status == status for s in r.active_spans]
        bar = int((np.abs(pixels - colour).max(axis=2) <= 2).sum())
        if not spans:
            assert bar == 0, status
        elif sum(s.end - s.start for s in spans) > 0.05:
            assert bar > 100, status


def test_packaged_config_has_every_key_and_a_missing_one_is_refused(tmp_path):
    config = load_demo_config()
    assert set(CONFIG_KEYS) <= set(config)
    del config['render']
    with pytest.raises(St4rError, match='render'):
        run_demo(tmp_path, Console(file=io.StringIO()), config)
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize('change, named', [
    ({'training': -1}, 'commands.training'), ({'held_out': '3'}, 'commands.held_out'),
    ({'time_sensitive': True}, 'commands.time_sensitive'),
    ({'state_captions': -2}, 'commands.state_captions'),
    ({'extra': 'find it'}, 'commands.extra'), ({'extra': ['ok', 3]}, 'commands.extra'),
    ({'extra': [{'text': 'x', 'expect': 'OK'}]}, 'commands.extra')])
def test_demo_commands_that_would_pick_oddly_are_refused(tmp_path, change, named):
    config = load_demo_config()
    config['commands'] = {**config['commands'], **change}
    with pytest.raises(St4rError, match=named):
        run_demo(tmp_path, Console(file=io.StringIO()), config)
    assert not any(tmp_path.iterdir())


def test_the_demo_scene_opens_with_both_layers(demo, caplog):
    out, _, _, _ = demo
    engine = QueryEngine.open(out / 'synthetic' / 'scene', device='cpu', compile_text=True)
    assert 'compile_text ignored on cpu' in caplog.text  # eager on the CPU, and it says so
    assert engine.field is not None and engine.temporal is not None
    assert engine.temporal_encoder is None  # one encoder serves both layers
    bench = load_benchmark(out / 'synthetic' / 'bench.json')
    asked = next(e for e in bench.expressions if e.kind == TIME_SENSITIVE)
    answer = engine.query(QueryRequest(asked.text, mode=QueryMode.TIME_SENSITIVE))
    assert answer.status in ANSWERED and answer.time_sensitive, answer.message
    assert len(answer.frame_scores) == len(answer.frame_times) > 0


def test_a_temporal_layer_of_its_own_encoder(demo, tmp_path):
    """A temporal layer built with another encoder is queried with that encoder."""
    out, _, _, _ = demo
    scene = tmp_path / 'scene'
    shutil.copytree(out / 'synthetic' / 'scene', scene)
    tiny = TextEncoder(write_tiny_bert(tmp_path / 'tiny_bert'))
    supervision = load_supervision(out / 'synthetic' / 'supervision')
    save_temporal_layer(scene, build_temporal_layer(supervision, tiny))
    engine = QueryEngine.open(scene, device='cpu')
    assert engine.temporal_encoder.name == tiny.name and engine.temporal.cache.dim == tiny.dim
    answer = engine.query(QueryRequest('when is the red cube on the table?',
                                       mode=QueryMode.TIME_SENSITIVE))
    assert answer.status in ANSWERED | {QueryStatus.NO_STATE_CACHE}, answer.message
    meta = json.loads((scene / 'temporal.json').read_text())
    meta['text_encoder']['name'] = 'some/other-encoder'  # weights nowhere to be found
    (scene / 'temporal.json').write_text(json.dumps(meta))
    with pytest.raises(TextEncoderError, match='some/other-encoder'):
        QueryEngine.open(scene, device='cpu')
    meta['text_encoder']['name'] = DEFAULT_MODEL_ID  # D = 384 against a 32-d cache
    (scene / 'temporal.json').write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match='D = 32'):
        QueryEngine.open(scene, device='cpu')


def test_the_demo_runs_on_a_scene_fitted_as_the_4dgaussians_trainer_fits(tmp_path):
    from st4r_ros.scene.fourdgs import FourDGaussiansScene
    from st4r_ros.synthetic.fourdgs_fit import FOURDGS_DIR

    config = small_config()
    config['train_steps'] = 5
    config['scene_format'] = {'format': '4dgaussians', 'fit_steps': [3, 3]}
    printed = io.StringIO()
    written = run_demo(tmp_path, Console(file=printed, width=160), config)
    assert isinstance(load_scene(tmp_path / 'synthetic' / FOURDGS_DIR), FourDGaussiansScene)
    assert (tmp_path / 'synthetic' / 'layers_4dgs' / 'referring.json').is_file()
    assert 'fitted as the 4DGaussians trainer fits' in printed.getvalue()
    assert any(path.name == 'index.json' for path in written)


def test_an_unknown_scene_format_is_refused(tmp_path):
    config = small_config()
    config['scene_format'] = {'format': 'nerf'}
    with pytest.raises(St4rError, match="scene_format.format must be 'bundle' or '4dgaussians'"):
        run_demo(tmp_path, Console(file=io.StringIO()), config)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written
