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
The referring field: model shapes and masking, ablation variants, frozen geometry, losses.

Also rendering through the blend-weight cache, instance assignment from masks, layer files.
"""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
from st4r_ros.errors import QueryError, SceneFormatError
from st4r_ros.field.instances import assign_instances
from st4r_ros.field.layer import (LAYER_FILE, LAYER_NAME, load_referring_layer,
                                  save_referring_layer)
from st4r_ros.field.losses import (compactness_loss, contrastive_loss, distinctiveness_loss,
                                   instance_loss, LossWeights, referring_bce, tau_at, top_tau_mean)
from st4r_ros.field.model import (BlendWeights, FieldConfig, FieldOutput, instance_means,
                                  ReferringField, render_relevance)
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.scene.bundle import load_bundle, read_manifest
from st4r_ros.scene.layers import default_layer_dir
from st4r_ros.synthetic.scene import SyntheticConfig, write_synthetic
import torch

N, D, L = 50, 24, 6
SMALL = SyntheticConfig(gaussians_per_object=120, table_gaussians=300, num_frames=4,
                        train_cameras_per_frame=4, novel_cameras_per_frame=0, width=64,
                        height=48)


def make_field(config: FieldConfig = FieldConfig(text_dim=D, hidden_dim=32), n: int = N,
               seed: int = 0) -> ReferringField:
    torch.manual_seed(seed)
    means = torch.rand(n, 3) * 2 - 1
    assignment = torch.arange(n) % 3 - 1  # ids -1, 0, 1 -> instances 0 and 1, some none
    return ReferringField(n, means, config, assignment)


def words(e: int = 3, length: int = L, seed: int = 1):
    """Word features [e, length, D], their mask and sentence embeddings [e, D]."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(e, length, D, generator=generator)
    mask = torch.ones(e, length, dtype=torch.bool)
    return w, mask, torch.nn.functional.normalize(w.mean(dim=1), dim=1)


# ---- model ----------------------------------------------------------------------------------


@pytest.mark.parametrize('config', [
    FieldConfig(text_dim=D, hidden_dim=32),
    FieldConfig(text_dim=D, hidden_dim=32, attention=False),
    FieldConfig(text_dim=D, hidden_dim=32, static=True),
    FieldConfig(text_dim=D, hidden_dim=32, sentence_token=False),
    FieldConfig(text_dim=D, hidden_dim=32, word_weights=True),
])
def test_shapes_of_every_variant(config):
    field = make_field(config)
    w, mask, s = words()
    out = field(torch.rand(N, 3), w, mask, s)
    length = L + int(config.sentence_token)
    assert out.relevance.shape == (3, N)
    assert out.words.shape == (3, length, 32)
    assert bool(torch.isfinite(out.relevance).all())
    # m_i = mean over tokens of <e'_i, w_j>, with e' built explicitly for every Gaussian
    every = torch.arange(N).expand(3, N)
    refined = out.refined(every)
    assert refined.shape == (3, N, 32)
    explicit = torch.einsum('enh,elh->en', refined, out.words) / length
    assert torch.allclose(out.relevance, explicit, atol=1e-4)
    assert torch.allclose(out.word_weights, torch.full((3, length), 1 / length))


def test_word_weights_start_as_the_mean_learn_and_skip_padding():
    plain = make_field(FieldConfig(text_dim=D, hidden_dim=32))
    weighted = make_field(FieldConfig(text_dim=D, hidden_dim=32, word_weights=True))
    w, mask, s = words(e=2, length=4)
    mask[1, 2:] = False
    means = torch.rand(N, 3)
    start = weighted(means, w, mask, s)
    assert torch.allclose(start.relevance, plain(means, w, mask, s).relevance, atol=1e-5)
    # Trained to raise one word's share: the share moves, padding keeps none, rows sum to 1.
    optimiser = torch.optim.SGD(weighted.parameters(), lr=0.5)
    for _ in range(20):
        optimiser.zero_grad()
        (-weighted(means, w, mask, s).word_weights[:, 1].sum()).backward()
        optimiser.step()
    shares = weighted(means, w, mask, s).word_weights
    assert float(shares[0, 1]) > 0.5 and float(shares[1, 1]) > 0.5
    assert torch.all(shares[1, 3:] == 0) and torch.allclose(shares.sum(1), torch.ones(2))
    every = torch.arange(N).expand(2, N)
    out = weighted(means, w, mask, s)
    explicit = torch.einsum('enh,elh,el->en', out.refined(every), out.words, out.word_weights)
    assert torch.allclose(out.relevance, explicit, atol=1e-4)


@pytest.mark.parametrize('attention', [True, False])
def test_padded_words_do_not_change_relevance(attention):
    field = make_field(FieldConfig(text_dim=D, hidden_dim=32, attention=attention))
    w, mask, s = words(e=2, length=4)
    means = torch.rand(N, 3)
    base = field(means, w, mask, s).relevance
    padded = torch.cat([w, torch.randn(2, 3, D) * 5], dim=1)  # junk in the padding
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(field(means, padded, padded_mask, s).relevance, base, atol=1e-5)


def test_expressions_are_independent_in_a_batch():
    field = make_field()
    w, mask, s = words(e=3)
    means = torch.rand(N, 3)
    together = field(means, w, mask, s).relevance
    alone = field(means, w[1:2], mask[1:2], s[1:2]).relevance
    assert torch.allclose(together[1:2], alone, atol=1e-5)


def test_positions_matter_with_attention_only_and_static_ignores_time():
    w, mask, s = words()
    a, b = torch.rand(N, 3), torch.rand(N, 3)
    dynamic = make_field()
    assert not torch.allclose(dynamic(a, w, mask, s).relevance, dynamic(b, w, mask, s).relevance)
    off = make_field(FieldConfig(text_dim=D, hidden_dim=32, attention=False))
    assert torch.equal(off(a, w, mask, s).relevance, off(b, w, mask, s).relevance)
    static = make_field(FieldConfig(text_dim=D, hidden_dim=32, static=True))
    assert torch.equal(static(a, w, mask, s).relevance, static(None, w, mask, s).relevance)


def test_bad_inputs_raise_clear_errors():
    field = make_field()
    w, mask, s = words()
    with pytest.raises(QueryError):
        field(torch.rand(N, 3), w, torch.zeros_like(mask), s)  # an expression without words
    with pytest.raises(QueryError):
        field(torch.rand(N, 3), w, mask)  # this field reads the sentence embedding too
    with pytest.raises(SceneFormatError):
        field(torch.rand(N + 1, 3), w, mask, s)  # other Gaussians than the field's


def test_instance_embeddings_are_means_over_assigned_gaussians():
    field = make_field()
    assert field.instance_ids.tolist() == [0, 1]
    expected = torch.stack([field.embeddings[field.assignment == k].mean(0) for k in (0, 1)])
    assert torch.allclose(field.instance_embeddings(), expected, atol=1e-6)
    ids = torch.tensor([3, 7])
    values = torch.arange(8.0)[:, None]
    got = instance_means(values, torch.tensor([3, 3, 7, -1, 5, 7, 7, -1]), ids)
    assert got[:, 0].tolist() == pytest.approx([0.5, (2 + 5 + 6) / 3])


def tiny_gaussians(n: int = 40):
    from st4r_ros.scene.gaussians import Gaussians

    generator = torch.Generator().manual_seed(3)
    means = torch.rand(n, 3, generator=generator) - 0.5
    means[:, 2] += 3.0
    return Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     torch.full((n, 3), 0.08), torch.full((n,), 0.8), torch.zeros(n, 1, 3))


def test_gradients_reach_embeddings_and_never_the_geometry():
    gaussians = tiny_gaussians()
    means = gaussians.means.clone().requires_grad_(True)
    from dataclasses import replace as dc_replace

    gaussians = dc_replace(gaussians, means=means)
    field = make_field(n=len(gaussians))
    w, mask, s = words(e=2)
    camera = Camera.from_fov(60.0, 32, 24)
    probabilities = render_relevance(gaussians, camera, field(means, w, mask, s).relevance)
    assert probabilities.shape == (24, 32, 2)
    probabilities.sum().backward()
    assert field.embeddings.grad is not None and float(field.embeddings.grad.abs().sum()) > 0
    assert means.grad is None


def test_blend_weights_render_exactly_like_render():
    gaussians = tiny_gaussians(200)
    camera = Camera.from_fov(60.0, 40, 30)
    features = torch.rand(len(gaussians), 3)
    cached = BlendWeights.of(gaussians, camera).render(features)
    assert torch.allclose(cached, render(gaussians, camera, features).image, atol=1e-5)


def test_empty_pixels_render_as_not_target():
    gaussians = tiny_gaussians()
    field = make_field(n=len(gaussians))
    with torch.no_grad():
        field.embeddings.mul_(0)  # sigmoid(m) = 0.5 + something constant
    away = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))  # turned round: sees nothing
    camera = Camera.from_intrinsics(20.0, 20.0, 8.0, 6.0, 16, 12, away)
    w, mask, s = words(e=1)
    image = render_relevance(gaussians, camera, field(gaussians.means, w, mask, s).relevance)
    assert float(image.max()) == 0.0


# ---- losses ---------------------------------------------------------------------------------


def test_bce_is_zero_for_perfect_masks_and_positive_otherwise():
    target = torch.zeros(8, 8, 2, dtype=torch.bool)
    target[2:5, 2:5, 0] = True
    assert float(referring_bce(target.float(), target)) < 1e-4
    assert float(referring_bce(torch.full((8, 8, 2), 0.5), target)) > 0.5


def test_contrastive_prefers_the_matching_sentence():
    sentences = torch.nn.functional.normalize(torch.randn(3, 16), dim=1)
    positives = torch.eye(3, dtype=torch.bool)
    matching = contrastive_loss(sentences * 4, sentences, positives)
    shuffled = contrastive_loss(sentences[[1, 2, 0]] * 4, sentences, positives)
    assert float(matching) < float(shuffled)
    # two captions of one instance: with both marked positive the best grounded feature lies
    # between them, instead of being pushed away from the other caption
    pair = torch.nn.functional.normalize(torch.stack([sentences[0], sentences[0] + sentences[1]
                                                      * 0.5, sentences[2]]), dim=1)
    middle = torch.nn.functional.normalize(pair[0] + pair[1], dim=0)
    at_first = pair.clone()
    at_middle = torch.stack([middle, middle, pair[2]])
    both = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    alone = torch.eye(3, dtype=torch.bool)
    assert float(contrastive_loss(at_middle, pair, both)) < float(
        contrastive_loss(at_first, pair, both))
    assert float(contrastive_loss(at_first, pair, alone)) < float(
        contrastive_loss(at_middle, pair, alone))


def test_top_tau_mean_and_schedule():
    features = torch.arange(10.0)[:, None].repeat(1, 4)  # f_i = i, [N=10, h=4]
    relevance = torch.stack([torch.arange(10.0), -torch.arange(10.0)])
    output = FieldOutput(relevance, torch.zeros(2, 1, 4), features, torch.ones(2, 1))  # e' = f
    picked = top_tau_mean(output, 0.2)  # 2 Gaussians each
    assert picked[0, 0] == 8.5 and picked[1, 0] == 0.5
    assert tau_at(0, 100) == pytest.approx(0.1)
    assert tau_at(99, 100) == pytest.approx(0.005)
    assert tau_at(0, 100) > tau_at(50, 100) > tau_at(99, 100)


def test_instance_loss_is_lower_for_compact_separated_embeddings():
    assignment = torch.tensor([0, 0, 0, 1, 1, 1, -1])
    ids = torch.tensor([0, 1])
    good = torch.tensor([[3.0, 0]] * 3 + [[-3.0, 0]] * 3 + [[0.0, 9.0]])
    bad = torch.randn(7, 2, generator=torch.Generator().manual_seed(0)) * 0.3
    weights = LossWeights()
    assert float(compactness_loss(good, assignment, ids)) == 0.0
    assert float(distinctiveness_loss(instance_means(good, assignment, ids))) < float(
        distinctiveness_loss(instance_means(bad, assignment, ids)))
    assert float(instance_loss(good, assignment, ids, weights)[0]) < float(
        instance_loss(bad, assignment, ids, weights)[0])


# ---- instances from masks -------------------------------------------------------------------


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    write_synthetic(out, 5, SMALL)
    return out


class MaskView:

    def __init__(self, root: Path, entry: dict) -> None:
        self.time = entry['time']
        self.camera = Camera.from_json(entry['camera'])
        self.path = root / entry['mask']

    def load_mask(self) -> torch.Tensor:
        return torch.from_numpy(np.array(Image.open(self.path))).long()


def test_instance_assignment_from_masks_agrees_with_ground_truth(synthetic):
    scene = load_bundle(synthetic / 'scene')
    views = [MaskView(synthetic, e) for e in json.loads((synthetic / 'cameras.json').read_text())
             ['train']]
    result = assign_instances(scene, views)
    truth = scene.at(0.0).instance_ids
    assert result.agreement(truth) > 0.9
    table = truth < 0
    assert float((result.assignment[table] >= 0).float().mean()) < 0.15
    assert result.instance_ids.tolist() == sorted(set(truth[truth > 0].tolist()))


# ---- layer ----------------------------------------------------------------------------------


def test_layer_round_trip_in_a_bundle_registers_it(synthetic, tmp_path):
    import shutil

    bundle = tmp_path / 'scene'
    shutil.copytree(synthetic / 'scene', bundle)
    n = load_bundle(bundle).info().num_gaussians
    field = make_field(FieldConfig(text_dim=D, hidden_dim=32), n=n)
    meta = {'text_encoder': {'name': 'stub', 'dim': D}, 'threshold': 0.3, 'seed': 4}
    save_referring_layer(default_layer_dir(bundle), field, meta)
    manifest = read_manifest(bundle)
    assert manifest['layers'][LAYER_NAME]['file'] == LAYER_FILE
    assert load_bundle(bundle).info().semantic_layers == [LAYER_NAME]
    loaded, got = load_referring_layer(bundle)
    assert got['threshold'] == 0.3 and got['text_encoder']['dim'] == D
    for key, value in field.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    w, mask, s = words()
    assert torch.allclose(loaded(None, w, mask, s).relevance, field(None, w, mask, s).relevance)


def test_layer_outside_a_bundle_needs_a_folder_and_rejects_mismatches(tmp_path):
    with pytest.raises(SceneFormatError, match='--out'):
        default_layer_dir(tmp_path / 'x.ply')
    field = make_field(FieldConfig(text_dim=D, hidden_dim=32, attention=False))
    save_referring_layer(tmp_path / 'layer', field, {'threshold': 0.0})
    loaded, _ = load_referring_layer(tmp_path / 'layer')
    assert loaded.config == field.config
    meta_path = tmp_path / 'layer' / 'referring.json'
    meta = json.loads(meta_path.read_text())
    meta['field'] = replace(field.config, hidden_dim=16).to_json()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match='do not match'):
        load_referring_layer(tmp_path / 'layer')


@pytest.mark.parametrize('claimed, named', [
    (True, "lacks tensor 'field/word_score.weight'"),
    ('yes', "mistypes field 'word_weights'"),
])
def test_a_layer_whose_word_weights_do_not_hold_is_refused_by_name(tmp_path, claimed, named):
    field = make_field(FieldConfig(text_dim=D, hidden_dim=32))
    save_referring_layer(tmp_path / 'layer', field, {'threshold': 0.0})
    meta_path = tmp_path / 'layer' / 'referring.json'
    meta = json.loads(meta_path.read_text())
    meta['field']['word_weights'] = claimed
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match=named):
        load_referring_layer(tmp_path / 'layer')


def test_a_layer_with_word_weights_round_trips(tmp_path):
    field = make_field(FieldConfig(text_dim=D, hidden_dim=32, word_weights=True))
    torch.nn.init.normal_(field.word_score.weight)
    save_referring_layer(tmp_path / 'layer', field, {'threshold': 0.0})
    loaded, _ = load_referring_layer(tmp_path / 'layer')
    w, mask, s = words()
    means = torch.rand(N, 3)
    assert torch.allclose(loaded(means, w, mask, s).word_weights,
                          field(means, w, mask, s).word_weights)
