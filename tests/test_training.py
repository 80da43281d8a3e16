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
Training the referring field: determinism, resumption, layer output, a small end-to-end run.

Also `st4r train`'s entry (st4r_ros/training.py), which builds the temporal layer after the field.

The scene is two balls on a table (the red one moves), seen by six cameras; captions name the
balls by colour and by side. A hashed bag-of-words encoder stands in for the transformer so
that the tests need no weights and run in seconds.
"""

from __future__ import annotations

from dataclasses import replace
import math
from pathlib import Path
from types import SimpleNamespace
import zlib

import numpy as np
from PIL import Image
import pytest
from st4r_ros.engine import QueryEngine
from st4r_ros.errors import SupervisionFormatError
from st4r_ros.evaluation.referring import evaluate_referring, training_benchmark
from st4r_ros.field import train as train_module
from st4r_ros.field.layer import load_referring_layer
from st4r_ros.field.model import FieldConfig
from st4r_ros.field.train import drop_words, train_field, TrainConfig
from st4r_ros.render.camera import Camera
from st4r_ros.scene.bundle import load_bundle, read_manifest, save_bundle
from st4r_ros.scene.gaussians import Gaussians, SH_C0
from st4r_ros.supervision.format import (Caption, InstanceCaptions, load_supervision,
                                         save_supervision, Supervision, SupervisionView)
from st4r_ros.synthetic.scene import render_ground_truth
from st4r_ros.temporal import load_temporal_layer
from st4r_ros.temporal.layer import temporal_encoder_for
from st4r_ros.text import EncoderSpec, normalise_expression, TextEncoder, TextFeatures
from st4r_ros.training import TemporalConfig, train_layers, train_main
from tiny_decoder import HIDDEN, write_tiny_decoder
import torch

DIM = 32
CAPTIONS = {1: ['the red ball', 'the ball on the left'],
            2: ['the blue ball', 'the ball on the right']}
# A higher network learning rate than the default: two hashed words per ball tell the balls
# apart, so the field needs it to leave 0.5 within a test's time.
FAST = TrainConfig(steps=40, checkpoint_every=10, captions_per_view=2, lr_networks=2e-3,
                   field=FieldConfig(hidden_dim=32))


class HashEncoder:
    """
    Bag of words: each token a fixed random unit vector drawn from its CRC32.

    The sentence is their normalised mean. Cuts texts after ``max_length`` tokens, as
    TextEncoder does.
    """

    name = 'test-hash-encoder'
    dim = DIM
    dtype = 'float32'
    prompts: dict = {}  # a TextEncoder's named prompts: none
    max_length = 12

    def encode(self, texts, prompt='') -> TextFeatures:
        clean = tuple(normalise_expression(prompt + t) for t in texts)
        tokens = [t.lower().replace('?', ' ').replace(',', ' ').split() for t in clean]
        length = max(1, min(self.max_length, max(len(t) for t in tokens)))
        words = torch.zeros(len(clean), length, DIM)
        mask = torch.zeros(len(clean), length, dtype=torch.bool)
        for row, sentence in enumerate(tokens):
            for col, token in enumerate(sentence[:length]):
                seed = zlib.crc32(token.encode())
                vector = torch.randn(DIM, generator=torch.Generator().manual_seed(seed))
                words[row, col] = vector / vector.norm()
                mask[row, col] = True
        sentence = torch.nn.functional.normalize(words.sum(dim=1), dim=1)
        return TextFeatures(words, mask, sentence,
                            tuple(len(t) > self.max_length for t in tokens), clean)


def ball(centre, rgb, instance: int, n: int = 90, radius: float = 0.15) -> Gaussians:
    generator = torch.Generator().manual_seed(instance)
    v = torch.randn(n, 3, generator=generator)
    means = torch.tensor(centre) + radius * v / v.norm(dim=1, keepdim=True)
    sh = ((torch.tensor(rgb) - 0.5) / SH_C0).expand(n, 1, 3).clone()
    return Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     torch.full((n, 3), 0.05), torch.full((n,), 0.9), sh,
                     torch.full((n,), instance))


def table(n: int = 12) -> Gaussians:
    xs, ys = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing='ij')
    means = torch.stack([xs.ravel(), ys.ravel(), torch.full((n * n,), -0.16)], dim=1)
    sh = ((torch.tensor([0.5, 0.4, 0.3]) - 0.5) / SH_C0).expand(n * n, 1, 3).clone()
    return Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n * n, 1),
                     torch.tensor([[0.1, 0.1, 0.005]]).repeat(n * n, 1),
                     torch.full((n * n,), 0.95), sh, torch.full((n * n,), -1))


def frame(red_y: float) -> Gaussians:
    parts = [ball((-0.4, red_y, 0.0), (0.9, 0.1, 0.1), 1),
             ball((0.4, 0.0, 0.0), (0.1, 0.2, 0.9), 2), table()]
    return Gaussians(**{k: torch.cat([p.tensors()[k] for p in parts])
                        for k in parts[0].tensors()})


def write_task(root: Path) -> tuple[Path, Path]:
    """Write a two-ball bundle at root/scene and its supervision at root/supervision."""
    keyframes = [(0.0, frame(0.0)), (1.0, frame(0.3))]
    save_bundle(root / 'scene', keyframes, interpolation='linear')
    views, instances = [], []
    for i in range(6):
        t, azimuth = keyframes[i % 2][0], 2 * math.pi * i / 6
        eye = [2.2 * math.cos(azimuth), 2.2 * math.sin(azimuth), 1.2]
        camera = Camera.look_at(eye, [0, 0, 0], width=48, height=36)
        _, labels = render_ground_truth(keyframes[i % 2][1], camera, 2)
        path = root / 'supervision' / 'masks' / f'v{i}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels.numpy().astype(np.uint8)).save(path)
        views.append(SupervisionView(f'v{i}', t, i % 2, camera, path))
    for k, texts in CAPTIONS.items():
        captions = [Caption(f, float(f), text) for f in (0, 1) for text in texts]
        instances.append(InstanceCaptions(k, None, captions))
    save_supervision(root / 'supervision', Supervision(views, instances, root / 'supervision'))
    return root / 'scene', root / 'supervision'


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    scene_dir, supervision_dir = write_task(tmp_path_factory.mktemp('two_balls'))
    return SimpleNamespace(scene=load_bundle(scene_dir), supervision=load_supervision(
        supervision_dir), scene_dir=scene_dir, supervision_dir=supervision_dir)


def train(task, config=FAST, out=None, seed=0, resume=True):
    return train_field(task.scene, task.supervision, config, out, progress=False, seed=seed,
                       resume=resume, text_encoder=HashEncoder())


def test_same_seed_same_field_other_seed_differs(task):
    config = replace(FAST, steps=8)
    a, b = train(task, config), train(task, config)
    assert torch.equal(a.field.embeddings, b.field.embeddings)
    assert a.history == b.history
    c = train(task, config, seed=1)
    assert not torch.equal(a.field.embeddings, c.field.embeddings)


def test_killed_run_resumes_to_the_same_result(task, tmp_path, monkeypatch):
    config = replace(FAST, steps=24, checkpoint_every=8)
    whole = train(task, config, tmp_path / 'whole')
    original = train_module.step_losses

    def dies_at_step_13(model, data, config, step, *args):
        if step == 13:
            raise KeyboardInterrupt('killed')
        return original(model, data, config, step, *args)

    monkeypatch.setattr(train_module, 'step_losses', dies_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        train(task, config, tmp_path / 'resumed')
    monkeypatch.setattr(train_module, 'step_losses', original)
    resumed = train(task, config, tmp_path / 'resumed')
    assert resumed.resumed_from == 8
    assert torch.equal(resumed.field.embeddings, whole.field.embeddings)
    for key, value in whole.field.state_dict().items():
        assert torch.equal(resumed.field.state_dict()[key], value), key
    assert resumed.history == whole.history
    # another configuration does not pick up that checkpoint
    other = train(task, replace(config, lr_networks=1e-3), tmp_path / 'resumed')
    assert other.resumed_from == 0


def test_training_fits_the_views_and_saves_a_layer(task, tmp_path):
    result = train(task, replace(FAST, steps=150), tmp_path / 'layer')
    assert result.history[-1]['ref'] < result.history[0]['ref']
    report = evaluate_referring(QueryEngine(task.scene, result.field, HashEncoder()),
                                training_benchmark(task.supervision))
    assert report.miou > 0.3, report.per_expression
    assert result.assignment.agreement(task.scene.at(0.0).instance_ids) > 0.9
    assert 0.0 <= result.threshold <= 0.5
    field, meta = load_referring_layer(tmp_path / 'layer')
    assert meta['text_encoder'] == {'name': HashEncoder.name, 'dim': DIM}
    assert meta['threshold'] == result.threshold and meta['seed'] == 0
    assert torch.equal(field.embeddings, result.field.embeddings)
    assert field.instance_ids.tolist() == [1, 2]


def test_train_main_writes_the_layer_into_the_bundle(task, tmp_path):
    import shutil

    bundle = tmp_path / 'scene'
    shutil.copytree(task.scene_dir, bundle)
    train_main(bundle, task.supervision_dir, steps=4, progress=False,
               field={'hidden_dim': 16}, text_encoder=HashEncoder())
    assert read_manifest(bundle)['layers']['referring']['file'] == 'referring.safetensors'
    assert load_bundle(bundle).info().semantic_layers == ['referring']


def with_state_captions(supervision):
    """Return ``supervision`` with a state caption per instance and frame."""
    states = {1: ('at rest', 'moving'), 2: ('spinning', 'at rest')}
    instances = [replace(inst, state_captions=[
        Caption(f, float(f), f'the {"red cube" if inst.id == 1 else "blue sphere"} is '
                             f'{states[inst.id][f]}') for f in (0, 1)])
        for inst in supervision.instances]
    return replace(supervision, instances=instances)


def test_the_temporal_layer_gets_its_own_prompted_encoder(task, tmp_path):
    decoder = write_tiny_decoder(tmp_path / 'decoder')
    train_layers(task.scene, with_state_captions(task.supervision), replace(FAST, steps=2),
                 tmp_path / 'layer', TemporalConfig(str(decoder), query_prompt='Query: '),
                 progress=False, text_encoder=HashEncoder())
    layer = load_temporal_layer(tmp_path / 'layer')
    assert layer.text_encoder == EncoderSpec(str(decoder.resolve()), 'float32', 'Query: ', '')
    own = temporal_encoder_for(layer, HashEncoder())
    assert isinstance(own, TextEncoder) and own.pooling == 'lasttoken' and own.dim == HIDDEN
    with pytest.raises(SupervisionFormatError, match='temporal_text_dtype'):
        TemporalConfig(text_dtype='float64')


def test_train_field_trains_the_field_alone_and_train_layers_both(task, tmp_path):
    supervision = with_state_captions(task.supervision)
    config = replace(FAST, steps=2)
    train_field(task.scene, supervision, config, tmp_path / 'field', progress=False,
                text_encoder=HashEncoder())
    assert (tmp_path / 'field' / 'referring.json').is_file()
    assert load_temporal_layer(tmp_path / 'field') is None
    both = train_layers(task.scene, supervision, config, tmp_path / 'both', progress=False,
                        text_encoder=HashEncoder())
    assert both.layer_path == tmp_path / 'both' / 'referring.safetensors'
    layer = load_temporal_layer(tmp_path / 'both')
    assert layer.cache.instance_ids.tolist() == [1, 2]
    assert layer.text_encoder.name == HashEncoder.name  # the field's encoder, shared
    # the temporal options leave the field's checkpoint usable
    again = train_layers(task.scene, supervision, config, tmp_path / 'both',
                         TemporalConfig(query_prompt='Query: '), progress=False,
                         text_encoder=HashEncoder())
    assert again.resumed_from == config.steps
    assert load_temporal_layer(tmp_path / 'both').text_encoder.query_prompt == 'Query: '


def test_train_main_reads_the_temporal_options_apart():
    from st4r_ros.training import split_options

    config, temporal = split_options({'steps': 3, 'temporal_text_dtype': 'bfloat16',
                                      'temporal_query_prompt': 'Query: '})
    assert config == TrainConfig(steps=3)
    assert temporal == TemporalConfig(text_dtype='bfloat16', query_prompt='Query: ')
    with pytest.raises(SupervisionFormatError, match='temporal_text_modle'):
        split_options({'temporal_text_modle': 'e5'})


def test_uncached_training_through_render_matches_the_cached_path(task):
    """
    Training without caches gives the same field up to float rounding.

    cache_bytes=0 recomputes frames and masks on every draw; cache_weights=False renders
    through render() as on CUDA.
    """
    config = replace(FAST, steps=8)
    cached = train(task, config)
    uncached = train(task, replace(config, cache_bytes=0, cache_weights=False))
    assert torch.allclose(cached.field.embeddings, uncached.field.embeddings, atol=1e-5)


def test_bounded_cache_keeps_what_fits_and_recomputes_the_rest():
    calls = []
    cache = train_module.BoundedCache(lambda k: calls.append(k) or torch.zeros(k),
                                      lambda t: t.numel(), max_bytes=5)
    for key in (3, 3, 4, 4, 2, 2):
        assert len(cache[key]) == key
    assert calls == [3, 4, 4, 2]


def test_separating_threshold_sits_between_the_scores():
    threshold, accuracy = train_module.separating_threshold(torch.tensor([0.8, 0.9]),
                                                            torch.tensor([0.1, 0.2]))
    assert 0.2 < threshold < 0.8 and accuracy == 1.0
    threshold, accuracy = train_module.separating_threshold(torch.tensor([0.6, 0.9]),
                                                            torch.tensor([0.1, 0.7]))
    assert accuracy == 0.75
    assert train_module.separating_threshold(torch.tensor([0.6]), torch.zeros(0))[0] == (
        pytest.approx(0.3))


def test_word_dropout_hides_words_but_never_a_whole_caption():
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    generator = torch.Generator().manual_seed(0)
    every = torch.stack([drop_words(mask, 0.9, generator) for _ in range(200)])  # [200, 2, 4]
    assert bool((every <= mask).all())  # padding is never turned into a word
    assert bool(every.any(dim=2).all())  # each caption keeps at least one word
    assert bool((~every[:, 0, :3]).any())  # and words are hidden
    again = drop_words(mask, 0.9, torch.Generator().manual_seed(0))
    assert torch.equal(again, every[0])
    assert torch.equal(drop_words(mask, 0.0, generator), mask)


def test_training_with_word_dropout_learns_and_differs(task):
    config = replace(FAST, steps=60)
    dropped = train(task, replace(config, word_dropout=0.3))
    ref = [h['ref'] for h in dropped.history]
    assert sum(ref[-10:]) < sum(ref[:10])
    assert not torch.equal(dropped.field.embeddings, train(task, config).field.embeddings)


@pytest.mark.parametrize('rate', [-0.1, 1.0, 3])
def test_a_word_dropout_outside_0_1_is_refused(rate):
    with pytest.raises(SupervisionFormatError, match='word_dropout must be in'):
        TrainConfig.from_json({'word_dropout': rate})
