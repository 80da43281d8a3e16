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
The annotation factory: each stage's deterministic logic, then every stage end to end on CPU.

The end-to-end runs use tiny random models (annotate_fixture.py): their boxes and captions are
garbage, so those tests check structure, the supervision format (loaded and trained on by the
real consumers), resumption after a kill, the cache, and the error messages.
"""

import json
import math
from pathlib import Path
import shutil

from annotate_fixture import build_models
import numpy as np
from PIL import Image
import pytest
from st4r_ros.annotate.cache import AnswerCache, cache_key
from st4r_ros.annotate.config import AnnotateConfig, config_from_dict, load_config
from st4r_ros.annotate.detection import box_iou, class_query, Detections
from st4r_ros.annotate.distributed import Job, my_jobs, read_jobs
from st4r_ros.annotate.highlight import contour, fit_pixels, highlight
from st4r_ros.annotate.models import resolve_models
import st4r_ros.annotate.pipeline as pipeline
from st4r_ros.annotate.pipeline import annotate, first_appearance
from st4r_ros.annotate.tracking import (assign_detections, compose_ids, mask_box, match_boxes,
                                        segments, Track)
from st4r_ros.annotate.views import frame_times, nearest_frames, open_input, read_views
from st4r_ros.cli import main
from st4r_ros.errors import AnnotationError
from st4r_ros.field.train import TrainConfig
from st4r_ros.scene.loading import load_scene
from st4r_ros.supervision.format import load_supervision
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
from st4r_ros.training import train_layers
import torch

REPO = Path(__file__).resolve().parents[1]


# ---- config -------------------------------------------------------------------------------


def test_config_file_lists_the_defaults():
    assert load_config(REPO / 'config' / 'annotate.yaml') == AnnotateConfig()
    assert load_config(None) == AnnotateConfig()


@pytest.mark.parametrize('data, message', [
    ({'detector': {'promt': ['cup']}}, "detector: unknown keys ['promt']"),
    ({'detector': {'detect_every': 0}}, 'detector.detect_every: expected a value > 0'),
    ({'segmenter': {'match_iou': 1.5}}, 'segmenter.match_iou: expected a value in [0, 1]'),
    ({'highlight': {'contour_rgb': [255, 0]}}, 'highlight.contour_rgb: expected three integers'),
    ({'captioner': {'batch_size': 'four'}}, 'captioner.batch_size: expected an integer'),
    ({'dtype': 'float8'}, "dtype: expected one of ('auto'"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(AnnotationError, match='^cfg: ' + message.replace('[', r'\[')
                       .replace('(', r'\(')):
        config_from_dict(data, 'cfg')


# ---- highlight ----------------------------------------------------------------------------


def test_highlight_outlines_the_instance_in_red_and_blurs_the_rest():
    checker = (np.indices((40, 60)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([checker, 255 - checker, checker], axis=-1))
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:20, 20:35] = True
    out = np.asarray(highlight(image, mask))
    original = np.asarray(image)
    assert (out[mask] == original[mask]).all()  # the instance itself stays as it is
    ring = contour(mask, 3)
    assert ring.sum() == (16 * 21 - 10 * 15) and not (ring & mask).any()
    assert (out[ring] == [255, 0, 0]).all()  # a 3-pixel band just outside
    far = np.zeros_like(mask)
    far[30:, :] = True
    assert out[far].std() < 0.2 * original[far].std()  # the background is blurred flat
    assert highlight(image, np.zeros_like(mask)).size == image.size


def test_fit_pixels_keeps_the_aspect_ratio():
    image = Image.new('RGB', (400, 200))
    small = fit_pixels(image, 20000)
    assert small.width * small.height <= 20000 and abs(small.width / small.height - 2) < 0.05
    assert fit_pixels(image, 10 ** 6) is image


# ---- views --------------------------------------------------------------------------------


def test_frames_map_to_the_views_nearest_in_time():
    assert frame_times(5) == [0.0, 0.25, 0.5, 0.75, 1.0] and frame_times(1) == [0.0]
    assert nearest_frames([0.0, 0.1, 0.13, 0.5, 0.99], frame_times(5)) == [0, 0, 1, 2, 4]


def _write_dnerf(root: Path) -> None:
    root.mkdir()
    (root / 'train').mkdir()
    frames = []
    for i, time in enumerate([0.0, 0.5, 0.8]):
        rgba = np.zeros((8, 10, 4), dtype=np.uint8)
        rgba[2:4, 2:4] = [255, 0, 0, 255]  # transparent elsewhere
        Image.fromarray(rgba).save(root / 'train' / f'r_{i:03d}.png')
        pose = np.eye(4)
        pose[:3, 3] = [0.0, 0.0, 4.0 + i]
        frames.append({'file_path': f'./train/r_{i:03d}', 'time': time,
                       'transform_matrix': pose.tolist()})
    (root / 'transforms_train.json').write_text(json.dumps(
        {'camera_angle_x': 2 * math.atan(0.5), 'frames': frames}))
    (root / 'transforms_test.json').write_text(json.dumps(
        {'camera_angle_x': 1.0, 'frames': [{'time': 1.0}]}))


def test_dnerf_views_have_opencv_cameras_and_normalised_times(tmp_path):
    _write_dnerf(tmp_path / 'lego')
    views = read_views(tmp_path / 'lego')
    assert [v.time for v in views] == [0.0, 0.5, 0.8] and [v.frame for v in views] == [0, 1, 2]
    camera = views[1].camera
    assert (camera.width, camera.height) == (10, 8)
    assert torch.allclose(camera.K, torch.tensor([[10.0, 0, 5], [0, 10, 4], [0, 0, 1]]))
    # Blender camera at z = 5 looking down -z: OpenCV flips y and z.
    expected = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 5], [0, 0, 0, 1]])
    assert torch.allclose(camera.world_to_cam.float(), expected, atol=1e-6)
    stream = open_input(tmp_path / 'lego')
    pixels = np.asarray(stream.frames[0].load())
    assert stream.kind == 'dnerf' and pixels.shape == (8, 10, 3)
    assert (pixels[0, 0] == 255).all() and (pixels[2, 2] == [255, 0, 0]).all()


def test_hypernerf_views_take_every_fourth_image_and_warp_times(tmp_path):
    root = tmp_path / 'cookie'
    ids = [f'{i:06d}' for i in range(9)]
    (root / 'camera').mkdir(parents=True)
    (root / 'rgb' / '2x').mkdir(parents=True)
    (root / 'dataset.json').write_text(json.dumps({'ids': ids, 'train_ids': ids, 'val_ids': []}))
    (root / 'metadata.json').write_text(json.dumps(
        {k: {'warp_id': i, 'camera_id': 0} for i, k in enumerate(ids)}))
    rotation = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    for k in ids:
        (root / 'camera' / f'{k}.json').write_text(json.dumps(
            {'orientation': rotation, 'position': [1.0, 2.0, 3.0], 'focal_length': 40.0,
             'principal_point': [20.0, 15.0], 'image_size': [40, 30]}))
        Image.new('RGB', (20, 15)).save(root / 'rgb' / '2x' / f'{k}.png')
    views = read_views(root)
    assert [v.name for v in views] == ['000000', '000004', '000008']
    assert [v.time for v in views] == [0.0, 0.5, 1.0]
    camera = views[0].camera
    assert math.isclose(float(camera.K[0, 0]), 20.0) and (camera.width, camera.height) == (20, 15)
    centre = -camera.world_to_cam[:3, :3].T @ camera.world_to_cam[:3, 3]
    assert torch.allclose(centre.float(), torch.tensor([1.0, 2.0, 3.0]), atol=1e-6)


@pytest.mark.parametrize('text, message', [
    ('[1, 2]', 'cameras.json: expected a JSON object, got list'),
    ('{not json', 'cameras.json: not valid JSON'),
    ('{"format": "something else"}', "malformed synthetic dataset.*'something else'"),
])
def test_a_malformed_dataset_file_is_refused_by_name(tmp_path, text, message):
    (tmp_path / 'cameras.json').write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_views(tmp_path)


def test_a_video_without_cameras_or_an_unknown_folder_is_refused(tmp_path):
    (tmp_path / 'frames').mkdir()
    Image.new('RGB', (4, 4)).save(tmp_path / 'frames' / '0001.png')
    with pytest.raises(AnnotationError, match='needs --cameras DATASET'):
        open_input(tmp_path / 'frames')
    with pytest.raises(AnnotationError, match='expected a dataset folder'):
        open_input(tmp_path / 'frames', cameras=tmp_path / 'frames')
    (tmp_path / 'clip.mp4').write_bytes(b'')
    _write_dnerf(tmp_path / 'lego')
    try:
        import av  # noqa: F401 (only whether PyAV is there matters)
    except ImportError:
        with pytest.raises(AnnotationError, match='pip install av'):
            open_input(tmp_path / 'clip.mp4', cameras=tmp_path / 'lego')


def test_frames_folder_maps_each_view_to_its_frame(tmp_path):
    _write_dnerf(tmp_path / 'lego')
    (tmp_path / 'frames').mkdir()
    for i in range(6):  # numbered names are ordered by number, not by text
        Image.new('RGB', (20, 16), (i, i, i)).save(tmp_path / 'frames' / f'f{i}.png')
    stream = open_input(tmp_path / 'frames', cameras=tmp_path / 'lego')
    assert stream.kind == 'frames' and len(stream.frames) == 6
    assert stream.view_frames == [0, 2, 4]  # view times 0, 0.5, 0.8 of frames at i / 5
    assert stream.frames[4].load().getpixel((0, 0)) == (4, 4, 4)


# ---- detection and tracking logic ---------------------------------------------------------


def test_class_query_spans_and_box_iou():
    text, spans = class_query(['Red  Cup', 'hand'])
    assert text == 'red cup . hand .' and [text[a:b] for a, b in spans] == ['red cup', 'hand']
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 3, 0.0, 0.0]]))


def test_matching_continues_tracks_and_starts_new_ones():
    tracks = {1: Track(box=(0.0, 0, 10, 10)), 2: Track(last_box=(50.0, 50, 60, 60)),
              3: Track(box=(100.0, 0, 110, 10))}
    found = Detections(torch.tensor([[51.0, 50, 61, 60], [1.0, 0, 11, 10], [200.0, 0, 210, 9]]),
                       torch.tensor([0.9, 0.8, 0.7]), ('cup', 'hand', 'cup'))
    prompts, next_id = assign_detections(tracks, found, 0.5, 4)
    # Detection 0 finds lost track 2 again, 1 continues track 1, 2 starts track 4; track 3,
    # visible but missed by the detector, carries on from its own box.
    assert next_id == 5 and sorted(prompts) == [1, 2, 3, 4]
    assert prompts[2] == (51.0, 50, 61, 60) and prompts[3] == (100.0, 0, 110, 10)
    assert tracks[4].labels == {'cup': 1} and tracks[1].labels == {'hand': 1}
    assert match_boxes(torch.zeros(0, 4), found.boxes, 0.5) == {}


def test_compose_ids_and_mask_boxes():
    logits = torch.full((3, 4, 5), -5.0)
    logits[0, :2, :] = 2.0
    logits[1, 1:3, 1:3] = 3.0  # overlaps track 0 on row 1 and wins there
    logits[2] = 9.0  # everywhere, but absent
    ids = compose_ids(logits, [7, 9, 11], torch.tensor([True, True, False]), 0.0, 1)
    assert ids.tolist() == [[7, 7, 7, 7, 7], [7, 9, 9, 7, 7], [0, 9, 9, 0, 0], [0] * 5]
    assert compose_ids(logits, [7, 9, 11], torch.tensor([True, True, False]), 0.0, 5)[2, 1] == 0
    assert mask_box(ids == 9) == (1.0, 1.0, 3.0, 3.0) and mask_box(ids == 11) is None


def test_segments_cover_every_frame_once():
    for frames in range(1, 12):
        for stride in (1, 2, 5):
            spans = segments(frames, stride)
            written = [i for start, _, last in spans for i in range(start, last + 1)]
            assert written == list(range(frames))
            assert all(end == min(start + stride, frames - 1) for start, end, _ in spans)


def test_instances_are_numbered_by_first_appearance():
    assert first_appearance([{5}, {9, 5}, set(), {2}]) == {5: 1, 9: 2, 2: 3}


# ---- cache, jobs, missing weights ---------------------------------------------------------


def test_cache_key_holds_model_prompt_and_pixels(tmp_path):
    image = Image.new('RGB', (4, 4), (1, 2, 3))
    other = Image.new('RGB', (4, 4), (1, 2, 4))
    key = cache_key('m@1', {'prompt': 'a'}, [image])
    assert key == cache_key('m@1', {'prompt': 'a'}, [image.copy()])
    assert len({key, cache_key('m@2', {'prompt': 'a'}, [image]),
                cache_key('m@1', {'prompt': 'b'}, [image]),
                cache_key('m@1', {'prompt': 'a'}, [other])}) == 4
    cache = AnswerCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, 'a red cube')
    assert AnswerCache(tmp_path).get(key) == 'a red cube' and cache.misses == 1


def test_jobs_are_dealt_round_robin_by_rank(tmp_path):
    file = tmp_path / 'jobs.txt'
    file.write_text('# source scene out\na s1 o1\n\nb s2 o2 cams  # with cameras\nc s3 o3\n')
    jobs = read_jobs(file)
    assert jobs[1] == Job('b', 's2', 'o2', 'cams') and len(jobs) == 3
    assert my_jobs(jobs, {'RANK': '1', 'WORLD_SIZE': '2'}) == [jobs[1]]
    assert my_jobs(jobs, {}) == jobs
    file.write_text('a s1\n')
    with pytest.raises(AnnotationError, match='jobs.txt:1: expected SOURCE SCENE OUT'):
        read_jobs(file)


def test_missing_weights_are_each_named_with_the_command_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    config = config_from_dict({'segmenter': {'model': str(tmp_path)}})
    with pytest.raises(AnnotationError) as caught:
        resolve_models(config)
    message = str(caught.value)
    assert "detector 'IDEA-Research/grounding-dino-tiny': not in the hub cache" in message
    assert 'huggingface-cli download IDEA-Research/grounding-dino-tiny' in message
    assert 'hf download Qwen/Qwen2.5-VL-3B-Instruct' in message
    assert f'{tmp_path} has no config.json' in message


# ---- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Tiny models and a 4-frame synthetic scene (one 64 x 48 training camera per frame)."""
    root = tmp_path_factory.mktemp('annotate')
    models = build_models(root / 'models')
    write_synthetic(root / 'synth', 0, SyntheticConfig(
        num_frames=4, train_cameras_per_frame=1, novel_cameras_per_frame=0, width=64,
        height=48, gaussians_per_object=64, table_gaussians=200))
    settings = {
        'detector': {'model': models['detector'], 'prompt': ['cube', 'sphere'],
                     'score_threshold': 0.0, 'max_detections': 2, 'detect_every': 2},
        # Every pixel goes to the highest random logit: each frame has some instance.
        'segmenter': {'model': models['segmenter'], 'mask_threshold': -1e9, 'min_area': 0.0},
        'captioner': {'model': models['captioner'], 'max_new_tokens': 3, 'max_pixels': 3136,
                      'batch_size': 8},
        'sampling': {'caption_every': 2, 'state_every': 2, 'summary_frames': 2,
                     'clip_radius': 1},
        'device': 'cpu'}
    return root, settings


def _run(world, out: Path, **options):
    root, settings = world
    return annotate(root / 'synth', root / 'synth' / 'scene', out, config_from_dict(settings),
                    **options)


@pytest.fixture(scope='module')
def annotated(world):
    root, _ = world
    result = _run(world, root / 'sup')
    return root, result


def test_annotate_writes_supervision_the_loader_reads(annotated):
    root, result = annotated
    supervision = load_supervision(root / 'sup')
    cameras = json.loads((root / 'synth' / 'cameras.json').read_text())['train']
    assert [v.name for v in supervision.views] == [c['name'] for c in cameras]
    assert [v.frame for v in supervision.views] == [0, 1, 2, 3]
    ids = [inst.id for inst in supervision.instances]
    assert ids == list(range(1, len(ids) + 1)) and result.instances == len(ids) >= 1
    seen = set()
    for view in supervision.views:
        mask = view.load_mask()
        assert tuple(mask.shape) == (48, 64)
        seen |= set(mask.unique().tolist()) - {0}
    assert seen == set(ids)  # every instance shows somewhere, nothing else does
    captions = [c for inst in supervision.instances for c in inst.captions]
    states = [c for inst in supervision.instances for c in inst.state_captions]
    assert len(captions) == result.captions >= 1 and len(states) == result.state_captions >= 1
    assert all(inst.name in ('cube', 'sphere') for inst in supervision.instances)
    assert supervision.metadata['generator'] == 'st4r_ros.annotate'
    assert set(supervision.metadata['models']) == {'detector', 'segmenter', 'captioner'}


def test_st4r_train_consumes_the_annotation(annotated, tmp_path):
    root, _ = annotated
    config = TrainConfig(steps=2, checkpoint_every=2, captions_per_view=1, min_pixels=1)
    result = train_layers(load_scene(root / 'synth' / 'scene'), load_supervision(root / 'sup'),
                          config, tmp_path / 'layer', progress=False)
    assert result.layer_path is not None
    assert (tmp_path / 'layer' / 'temporal.json').is_file()  # from the state captions


def test_a_killed_run_resumes_without_redoing_work(world, annotated, tmp_path, monkeypatch):
    root, _ = annotated

    class Killed(Exception):
        pass

    def kill_at(stage, done):
        def progress(items, description):
            for number, item in enumerate(items):
                if description.startswith(stage) and number == done:
                    raise Killed(description)
                yield item
        return progress

    out = tmp_path / 'sup'
    with pytest.raises(Killed):  # killed after the first tracking segment
        _run(world, out, progress=kill_at('tracking', 1))
    first = (out / 'annotate' / 'tracks' / 'segment_00000.json').stat().st_mtime_ns
    assert not (out / 'annotate' / 'tracks' / 'segment_00001.json').exists()
    with pytest.raises(Killed):  # killed after the summaries, before the state captions
        _run(world, out, progress=kill_at('state captions', 0))
    assert (out / 'annotate' / 'tracks' / 'segment_00000.json').stat().st_mtime_ns == first
    assert not (out / 'supervision.json').exists()

    def refuse(*_args, **_kwargs):
        raise AssertionError('a finished stage loaded its model again')

    monkeypatch.setattr(pipeline, 'load_detector', refuse)
    monkeypatch.setattr(pipeline, 'load_segmenter', refuse)
    result = _run(world, out)
    # Only the state captions were left to ask.
    assert 0 < result.cache_misses <= result.state_captions + result.empty_answers
    assert result.cache_hits >= result.captions + result.instances
    # The same as a run never stopped: resumption lost and duplicated nothing.
    assert (out / 'supervision.json').read_text().replace(str(out), '') == \
        (root / 'sup' / 'supervision.json').read_text().replace(str(root / 'sup'), '')
    for mask in (root / 'sup' / 'masks').iterdir():
        assert (out / 'masks' / mask.name).read_bytes() == mask.read_bytes()


def test_a_rerun_answers_from_the_cache_and_other_settings_are_refused(world, annotated):
    root, settings = world
    again = _run(world, root / 'sup')
    assert again.cache_misses == 0 and again.cache_hits == again.captions + \
        again.state_captions + again.instances + again.empty_answers
    changed = {**settings, 'detector': {**settings['detector'], 'score_threshold': 0.1}}
    with pytest.raises(AnnotationError, match='pass --restart'):
        annotate(root / 'synth', root / 'synth' / 'scene', root / 'sup',
                 config_from_dict(changed))


def test_cli_annotate_and_its_missing_weights_error(world, tmp_path, monkeypatch, capsys):
    import yaml
    from huggingface_hub import constants

    root, settings = world
    config = tmp_path / 'annotate.yaml'
    config.write_text(yaml.safe_dump(settings))
    # The finished run's tracks and cache: the command itself is under test here.
    shutil.copytree(root / 'sup' / 'annotate', tmp_path / 'out' / 'annotate')
    args = ['annotate', str(root / 'synth'), str(root / 'synth' / 'scene'), '--out',
            str(tmp_path / 'out'), '--config', str(config)]
    assert main(args) == 0
    assert 'instances' in capsys.readouterr().out
    load_supervision(tmp_path / 'out')

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    assert main(args[:5] + ['--out', str(tmp_path / 'other')]) == 2
    error = capsys.readouterr().err
    assert 'model weights missing' in error and 'Qwen/Qwen2.5-VL-3B-Instruct' in error
