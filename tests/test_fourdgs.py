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

"""4DGaussians scenes: cfg_args parsing, strict state_dict loading, known deformations, safety."""

import dataclasses
import os
from pathlib import Path

from fourdgs_fixture import (CONFIG_FILES, HIDDEN_DEFAULTS, public_state_dict, small_grid,
                             trainer_namespace, write_fourdgs_scene)
import pytest
from st4r_ros.errors import SceneFormatError, TimeRangeError
from st4r_ros.limits import MAX_CFG_ARGS_CHARS
from st4r_ros.scene import deformation
from st4r_ros.scene.deformation import (DeformationConfig, DeformationNetwork, KPlanesConfig,
                                        parse_cfg_args)
from st4r_ros.scene.fourdgs import FourDGaussiansScene
from st4r_ros.scene.ply import RawGaussians, read_ply, write_ply
import torch

TIMES = (0.0, 0.25, 0.6, 1.0)


def hidden_params(config, **overrides):
    namespace = trainer_namespace(config, '/out', overrides)
    return {key: getattr(namespace, key) for key in HIDDEN_DEFAULTS}


def config_of(config, **overrides):
    return DeformationConfig.from_values(vars(trainer_namespace(config, '/out', overrides)))


def state_for(config, random=True, **overrides):
    aabb = torch.tensor([[1.0, 0.8, 0.6], [-1.0, -0.9, -0.7]])
    return public_state_dict(hidden_params(config, **overrides), aabb,
                             torch.Generator().manual_seed(3), random=random)


def assert_raw_close(got, want, atol=2e-6):
    for name in ('means', 'quats_raw', 'log_scales', 'opacity_logits', 'sh'):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=atol,
                                   msg=lambda m, name=name: f'{name}: {m}')


@pytest.fixture(scope='module', params=['hypernerf', 'dnerf'])
def known_scene(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f'known_{request.param}')
    return write_fourdgs_scene(root, request.param, n=48, seed=1, variant='known',
                               overrides=small_grid(request.param))


@pytest.fixture(scope='module')
def known_loaded(known_scene):
    return FourDGaussiansScene.load(known_scene.path)


@pytest.fixture(scope='module')
def random_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp('random')
    return write_fourdgs_scene(root, 'dnerf', n=40, seed=2, variant='random',
                               overrides=small_grid('dnerf'))


# --- cfg_args ---------------------------------------------------------------------------------

def test_cfg_args_of_the_trainer_parse_to_the_public_presets():
    for config in ('hypernerf', 'dnerf'):
        values = parse_cfg_args(str(trainer_namespace(config, '/out')))
        parsed = DeformationConfig.from_values(values)
        configs = CONFIG_FILES[config]['configs']
        assert parsed == dataclasses.replace(DeformationConfig.preset(config), configs=configs)
        assert parsed.matching_preset() == config
        assert parsed.name == CONFIG_FILES[config]['configs'][len('arguments/'):-len('.py')]


def test_public_config_values():
    hypernerf, dnerf = config_of('hypernerf'), config_of('dnerf')
    assert hypernerf.kplanes_config == KPlanesConfig(2, 4, 16, (64, 64, 64, 150))
    assert (hypernerf.multires, hypernerf.net_width, hypernerf.defor_depth) == ((1, 2, 4), 128, 1)
    assert dnerf.kplanes_config == KPlanesConfig(2, 4, 32, (64, 64, 64, 25))
    assert (dnerf.multires, dnerf.net_width, dnerf.defor_depth) == ((1, 2), 64, 0)
    for config in (hypernerf, dnerf):
        assert (config.no_do, config.no_dshs, config.no_dx, config.no_ds, config.no_dr) == (
            True, True, False, False, False)


def test_missing_keys_take_the_public_defaults():
    config = DeformationConfig.from_values(parse_cfg_args('Namespace(net_width=32)'))
    assert config.net_width == 32
    assert config.multires == (1, 2, 4, 8) and config.bounds == 1.6 and config.no_do
    assert config.name == 'custom'


def test_cfg_args_is_parsed_without_evaluating_code(tmp_path):
    marker = tmp_path / 'evaluated'
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    values = parse_cfg_args(f"Namespace(expname={payload}, net_width=32, **{{'odd-key': 1}})")
    assert values['net_width'] == 32 and values['odd-key'] == 1
    assert DeformationConfig.from_values(values).net_width == 32   # unneeded key: ignored
    with pytest.raises(SceneFormatError, match="'net_width' = __import__.*is not a literal"):
        DeformationConfig.from_values(parse_cfg_args(f'Namespace(net_width={payload})'))
    assert not marker.exists()


@pytest.mark.parametrize('text, message', [
    ('Namespace(net_width=', 'not a Namespace'),
    ('dict(net_width=3)', 'expected text of the form Namespace'),
    ("Namespace(net_width='wide')", "'net_width' = 'wide'; expected an integer"),
    ('Namespace(no_do=1)', "'no_do' = 1; expected a bool"),
    ('Namespace(multires=[1, 2.5])', "'multires' = \\[1, 2.5\\]; expected a list of integers"),
    ("Namespace(kplanes_config={'grid_dimensions': 2})", "'kplanes_config' lacks"),
    ('Namespace(no_grid=True)', 'no_grid=True'),
    ('Namespace(grid_pe=1)', 'grid_pe=1'),
    ('Namespace(multires=[])', 'multires is empty'),
    ('Namespace(net_width=0)', 'net_width=0; expected > 0'),
])
def test_bad_cfg_args(text, message):
    with pytest.raises(SceneFormatError, match=message):
        DeformationConfig.from_values(parse_cfg_args(text, 'cfg_args'), 'cfg_args')


def kplanes(resolution, grid_dimensions=2, channels=32):
    return (f"{{'grid_dimensions': {grid_dimensions}, 'input_coordinate_dim': 4, "
            f"'output_coordinate_dim': {channels}, 'resolution': {resolution}}}")


# Each of these once built (or tried to build) its network: minutes of growing memory or a
# traceback. Sizes are now refused against st4r_ros.limits before anything is allocated.
@pytest.mark.parametrize('text, message', [
    ('Namespace(defor_depth=100000000)', r'defor_depth=100000000; expected <= 16'),
    ('Namespace(net_width=1000000000)', r'net_width=1000000000; expected <= 1024'),
    ('Namespace(timenet_width=5000)', r'timenet_width=5000; expected <= 1024'),
    ('Namespace(timebase_pe=2000)', r'timebase_pe=2000; expected <= 32'),
    ('Namespace(posebase_pe=-1)', r'posebase_pe=-1; expected >= 0'),
    ('Namespace(grid_pe=10**30)', r"'grid_pe' = 10\*\*30 is not a literal"),
    (f'Namespace(grid_pe={10 ** 30})', r'grid_pe=1000000000000000000000000000000; expected <= '),
    ('Namespace(multires=[1, 2, 4, 8, 16, 32, 64, 128, 256])', r'len\(multires\)=9'),
    ('Namespace(multires=[1, 4096])', r'multires\[1\]=4096; expected <= 2048'),
    (f'Namespace(kplanes_config={kplanes([10 ** 9, 64, 64, 25])})',
     r'kplanes_config.resolution\[0\]=1000000000; expected <= 2048'),
    (f'Namespace(kplanes_config={kplanes([64, 64, 64, 25], channels=100000)})',
     r'output_coordinate_dim=100000; expected <= 256'),
    (f'Namespace(multires=[1, 64], kplanes_config={kplanes([64, 64, 64, 25])})',
     r'a plane 4096 cells wide'),
    (f'Namespace(kplanes_config={kplanes([2000, 2000, 2000, 25], grid_dimensions=3)})',
     r'\d+ plane parameters .*expected <= 134217728'),
    # A hexadecimal literal parses to an int of more digits than Python prints.
    ('Namespace(net_width=0x' + 'f' * 5000 + ')', r'net_width=an integer of 20000 bits'),
    ('Namespace(no_do=0x' + 'f' * 5000 + ')', r"'no_do' = an integer of 20000 bits"),
    ('Namespace(bounds=0x' + 'f' * 5000 + ')', r"'bounds' = an integer of .*a finite number"),
    ('Namespace(bounds=1e999)', r"'bounds' = inf; expected a finite number"),
    ('Namespace(net_width=True)', r"'net_width' = True; expected an integer"),
    ('Namespace(net_width=64.0)', r"'net_width' = 64.0; expected an integer"),
    ('Namespace(bounds=True)', r"'bounds' = True; expected a finite number"),
    ("Namespace(no_dx='yes')", r"'no_dx' = 'yes'; expected a bool"),
    ('Namespace(multires=[1, True])', r"'multires' = \[1, True\]; expected a list of integers"),
    (f"Namespace(kplanes_config={kplanes('[64, 64, 64, 25]').replace('32', 'None')})",
     r"'kplanes_config.output_coordinate_dim' = None; expected an integer"),
    # Deep expressions: ast.parse recursion, and (when it parses) ast.unparse recursion.
    ('Namespace(net_width=' + '+'.join(['1'] * 5000) + ')', 'not a Namespace.*recursion'),
    ('Namespace(net_width=' + '+'.join(['1'] * 900) + ')', r"'net_width' = 1\+1\+.*\.\.\. is not"),
    ('Namespace(x=' + '+'.join(['1'] * 200_000) + ')', f'longer than {MAX_CFG_ARGS_CHARS}'),
    ('Namespace(net_width=1\0)', 'not a Namespace'),
])
def test_cfg_args_sizes_and_types_are_bounded(text, message):
    with pytest.raises(SceneFormatError, match=message) as info:
        DeformationConfig.from_values(parse_cfg_args(text, 'x/cfg_args'), 'x/cfg_args')
    assert str(info.value).startswith('x/cfg_args: ') and len(str(info.value)) < 1000


def test_cfg_args_file_longer_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / 'cfg_args'
    path.write_text('Namespace(net_width=64' + ' ' * MAX_CFG_ARGS_CHARS + ')')
    with pytest.raises(SceneFormatError, match=f'cfg_args: cfg_args longer than '
                                               f'{MAX_CFG_ARGS_CHARS} characters'):
        DeformationConfig.from_cfg_args(path)


# --- strict state_dict loading ----------------------------------------------------------------

@pytest.mark.parametrize('config, shapes', [
    ('hypernerf', {
        'deformation_net.grid.grids.0.0': (1, 16, 64, 64),
        'deformation_net.grid.grids.0.2': (1, 16, 150, 64),
        'deformation_net.grid.grids.2.3': (1, 16, 256, 256),
        'deformation_net.grid.grids.2.5': (1, 16, 150, 256),
        'deformation_net.feature_out.0.weight': (128, 48),
        'deformation_net.pos_deform.1.weight': (128, 128),
        'deformation_net.shs_deform.3.weight': (48, 128),
    }),
    ('dnerf', {
        'deformation_net.grid.grids.1.0': (1, 32, 128, 128),
        'deformation_net.grid.grids.1.4': (1, 32, 25, 128),
        'deformation_net.feature_out.0.weight': (64, 64),
        'deformation_net.rotations_deform.3.weight': (4, 64),
    }),
])
def test_public_state_dicts_load_strictly_with_real_shapes(config, shapes):
    state = state_for(config, random=False)
    network = DeformationNetwork.from_state(config_of(config), state, 'deformation.pth')
    for key, shape in shapes.items():
        assert tuple(network.state_dict()[key].shape) == shape
    for key in ('deformation_net.grid.aabb', 'timenet.0.weight', 'time_poc', 'pos_poc',
                'rotation_scaling_poc', 'opacity_poc'):
        assert key in network.state_dict()
    grid = network.deformation_net.grid
    assert torch.equal(grid.aabb, state['deformation_net.grid.aabb'])
    assert torch.equal(grid.grids[0][2], state['deformation_net.grid.grids.0.2'])
    features = network.grid_features(torch.zeros(5, 3), 0.5)
    assert features.shape == (5, config_of(config).feature_dim)


@pytest.mark.parametrize('overrides', [
    {'static_mlp': True}, {'empty_voxel': True}, {'grid_pe': 2}, {'defor_depth': 3},
    {'kplanes_config': {'grid_dimensions': 3, 'input_coordinate_dim': 4,
                        'output_coordinate_dim': 4, 'resolution': [6, 6, 6, 4]}},
])
def test_optional_modules_load_strictly(overrides):
    state = state_for('dnerf', **{**small_grid('dnerf'), **overrides})
    network = DeformationNetwork.from_state(
        config_of('dnerf', **{**small_grid('dnerf'), **overrides}), state, 'deformation.pth')
    raw = RawGaussians(torch.randn(7, 3), torch.randn(7, 4), torch.randn(7, 3), torch.randn(7),
                       torch.randn(7, 16, 3))
    assert torch.isfinite(network(raw, 0.3).means).all()


def test_unexpected_and_missing_keys_are_named():
    state = state_for('dnerf', **small_grid('dnerf'))
    state['deformation_net.static_mlp.1.weight'] = torch.zeros(64, 64)
    del state['deformation_net.pos_deform.3.bias']
    network = DeformationNetwork(config_of('dnerf', **small_grid('dnerf')))
    with pytest.raises(SceneFormatError) as info:
        network.check_state(state, 'x/deformation.pth')
    message = str(info.value)
    assert message.startswith('x/deformation.pth: state_dict does not fit')
    assert 'missing keys (expected shape) [deformation_net.pos_deform.3.bias (3,)]' in message
    assert 'unexpected keys [deformation_net.static_mlp.1.weight]' in message


def test_wrong_shapes_are_named_with_expected_shapes():
    # A D-NeRF state loaded with the HyperNeRF cfg_args.
    network = DeformationNetwork(config_of('hypernerf'))
    with pytest.raises(SceneFormatError) as info:
        network.check_state(state_for('dnerf', random=False), 'deformation.pth')
    message = str(info.value)
    assert ('deformation_net.grid.grids.0.0: got (1, 32, 64, 64), expected (1, 16, 64, 64)'
            in message)
    assert 'deformation_net.feature_out.0.weight: got (64, 64), expected (128, 48)' in message
    assert ('missing keys (expected shape) [deformation_net.grid.grids.2.0 (1, 16, 256, 256)'
            in message)


@pytest.mark.filterwarnings('ignore:.*(quantized|TypedStorage)')  # torch deprecations
@pytest.mark.parametrize('make, kind', [
    (lambda t: t.to(torch.float8_e4m3fn), 'dtype torch.float8_e4m3fn'),
    (lambda t: t.to(torch.complex64), 'dtype torch.complex64'),
    (lambda t: t.to(torch.int32), 'dtype torch.int32'),
    (lambda t: t.to(torch.bool), 'dtype torch.bool'),
    (lambda t: t.to_sparse(), 'layout torch.sparse_coo'),
    (lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8), 'dtype torch.qint8'),
    (lambda t: t.to('meta'), 'device meta'),
])
def test_weights_of_other_kinds_are_refused_naming_key_and_kind(tmp_path, make, kind):
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    key = 'deformation_net.pos_deform.1.weight'
    state = dict(fixture.state, **{key: make(fixture.state[key])})
    torch.save(state, in_iteration(fixture.path, 'deformation.pth'))
    with pytest.raises(SceneFormatError, match=rf'deformation.pth: .*not dense float16, bfloat16, '
                                               rf'float32 or float64 weights \[{key}: {kind}\]'):
        FourDGaussiansScene.load(fixture.path)


def test_half_and_double_weights_load_as_float32(tmp_path):
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    state = {k: v.to(torch.float64 if i % 2 else torch.bfloat16)
             for i, (k, v) in enumerate(fixture.state.items())}
    torch.save(state, in_iteration(fixture.path, 'deformation.pth'))
    network = FourDGaussiansScene.load(fixture.path).network
    assert all(v.dtype == torch.float32 for v in network.state_dict().values())


def test_the_network_cfg_args_declares_is_checked_against_the_file_first(tmp_path, monkeypatch):
    # Planes of 66 million parameters (within the bounds) against a small deformation.pth:
    # refused from shapes alone, every plane made on the meta device (no storage).
    grid = {'kplanes_config': {'grid_dimensions': 2, 'input_coordinate_dim': 4,
                               'output_coordinate_dim': 64, 'resolution': [256, 256, 256, 25]}}
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    big = trainer_namespace('dnerf', fixture.path, grid)
    Path(fixture.path, 'cfg_args').write_text(str(big))
    devices = []
    init_plane = deformation._init_plane
    monkeypatch.setattr(deformation, '_init_plane', lambda shape, axes: devices.append(
        init_plane(shape, axes).device.type) or init_plane([1, 1, 1, 1], axes))
    with pytest.raises(SceneFormatError, match=r'does not fit.*wrong shapes'):
        FourDGaussiansScene.load(fixture.path)
    assert devices and set(devices) == {'meta'}


def test_non_finite_and_non_tensor_weights_are_refused():
    config = config_of('dnerf', **small_grid('dnerf'))
    state = state_for('dnerf', **small_grid('dnerf'))
    state['deformation_net.pos_deform.1.weight'][3, 4] = float('nan')
    with pytest.raises(SceneFormatError,
                       match=r'NaN or inf values in \[deformation_net.pos_deform.1.weight\]'):
        DeformationNetwork.from_state(config, state, 'deformation.pth')
    state['deformation_net.pos_deform.1.weight'] = [1.0]
    with pytest.raises(SceneFormatError,
                       match=r'not tensors \[deformation_net.pos_deform.1.weight\]'):
        DeformationNetwork.from_state(config, state, 'deformation.pth')


# --- deformation --------------------------------------------------------------------------------

@pytest.mark.parametrize('t', TIMES)
def test_known_deformation(known_scene, known_loaded, t):
    scene = known_loaded
    expected = known_scene.known.expected_raw(known_scene.canonical, t)
    assert_raw_close(scene.deform_raw(t), expected)
    activated = scene.at(t)
    want = expected.activate()
    torch.testing.assert_close(activated.means, want.means, rtol=0, atol=2e-6)
    torch.testing.assert_close(activated.scales, want.scales, rtol=1e-5, atol=0)
    torch.testing.assert_close(activated.quats, want.quats, rtol=0, atol=2e-6)
    assert torch.equal(activated.opacities, torch.sigmoid(known_scene.canonical.opacity_logits))


def test_known_deformation_exercises_time_space_and_border(known_scene):
    known, canonical = known_scene.known, known_scene.canonical
    x_max, x_min = known.aabb[0, 0], known.aabb[1, 0]
    x_n = (canonical.means[:, 0] - x_max) * 2 / (x_min - x_max) - 1
    assert (x_n.abs() > 1).any()   # some Gaussians lie outside the aabb: border padding
    moved = known.expected_raw(canonical, 1.0).means - known.expected_raw(canonical, 0.0).means
    assert moved.abs().min() > 0.1


def test_grid_features_and_heads_compose_to_forward(random_scene):
    scene = FourDGaussiansScene.load(random_scene.path)
    network, canonical = scene.network, scene.canonical
    with torch.no_grad():
        features = network.grid_features(canonical.means, 0.4)
        assert features.shape == (len(canonical), 64)
        split = network.apply_heads(features, canonical)
        whole = network(canonical, 0.4)
    assert_raw_close(split, whole, atol=0)
    assert_raw_close(scene.deform_raw(0.4), whole, atol=0)


def test_random_scene_moves_with_time(random_scene):
    scene = FourDGaussiansScene.load(random_scene.path)
    early, late = scene.at(0.1), scene.at(0.9)
    for g in (early, late):
        assert all(bool(torch.isfinite(v).all()) for v in g.tensors().values()
                   if v.is_floating_point())
    assert (early.means - late.means).abs().max() > 1e-3
    assert torch.equal(early.opacities, torch.sigmoid(random_scene.canonical.opacity_logits))


def test_opacity_and_sh_deform_when_enabled(tmp_path):
    overrides = {**small_grid('dnerf'), 'no_do': False, 'no_dshs': False}
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=16, variant='random', overrides=overrides)
    scene = FourDGaussiansScene.load(fixture.path)
    raw = scene.deform_raw(0.5)
    assert not torch.equal(raw.opacity_logits, fixture.canonical.opacity_logits)
    assert not torch.equal(raw.sh, fixture.canonical.sh)


def test_deformed_state_exports_as_ply(known_loaded, tmp_path):
    raw = known_loaded.deform_raw(0.6)
    write_ply(tmp_path / 't.ply', raw)
    assert_raw_close(read_ply(tmp_path / 't.ply'), raw, atol=0)


# --- the scene ----------------------------------------------------------------------------------

def test_time_outside_unit_interval(random_scene):
    scene = FourDGaussiansScene.load(random_scene.path)
    for t in (-0.01, 1.5, float('nan')):
        with pytest.raises(TimeRangeError):
            scene.at(t)
        with pytest.raises(TimeRangeError):
            scene.deform_raw(t)


def test_info(known_scene, known_loaded):
    info = known_loaded.info()
    config = known_scene.namespace.configs
    assert (info.format, info.num_gaussians, info.sh_degree, info.time_range) == (
        '4dgaussians', 48, 3, (0.0, 1.0))
    assert info.details['iteration'] == 14000 and info.details['iterations'] == [7000, 14000]
    assert info.details['config'] == config[len('arguments/'):-len('.py')]
    assert info.details['deformed'] == ['means', 'scales', 'rotations']
    assert info.details['aabb'] == known_scene.known.aabb.tolist()


def test_iteration_choice(tmp_path):
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(3000, 500),
                                  overrides=small_grid('dnerf'))
    assert FourDGaussiansScene.load(fixture.path).iteration == 3000   # not coarse_iteration_3000
    assert FourDGaussiansScene.load(fixture.path, iteration=500).iteration == 500
    message = r'iteration 42 not found; available iterations \[500, 3000\]'
    with pytest.raises(SceneFormatError, match=message):
        FourDGaussiansScene.load(fixture.path, iteration=42)


def in_iteration(root, name=''):
    return Path(root, 'point_cloud', 'iteration_7000', name)


@pytest.mark.parametrize('damage, message', [
    (lambda root: os.remove(Path(root, 'cfg_args')), 'cfg_args file not found'),
    (lambda root: os.remove(in_iteration(root, 'deformation.pth')), 'deformation.pth not found'),
    (lambda root: os.remove(in_iteration(root, 'point_cloud.ply')),
     'point_cloud.ply: PLY file not found'),
    (lambda root: os.rename(in_iteration(root), Path(root, 'point_cloud', 'old')),
     'no iteration_N folder'),
    (lambda root: in_iteration(root, 'deformation.pth').write_bytes(b'PK\x03\x04 zip?' * 10),
     'not a loadable weights-only state_dict'),
    (lambda root: torch.save([torch.zeros(2)], in_iteration(root, 'deformation.pth')),
     'holds a list; expected a state_dict'),
])
def test_broken_folders(tmp_path, damage, message):
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    damage(fixture.path)
    with pytest.raises(SceneFormatError, match=message):
        FourDGaussiansScene.load(fixture.path)


def test_missing_folder(tmp_path):
    with pytest.raises(SceneFormatError, match='output folder not found'):
        FourDGaussiansScene.load(tmp_path / 'absent')


def test_sh_degree_must_match_cfg_args(tmp_path):
    fixture = write_fourdgs_scene(tmp_path, 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    ply = os.path.join(fixture.path, 'point_cloud', 'iteration_7000', 'point_cloud.ply')
    c = fixture.canonical
    write_ply(ply, RawGaussians(c.means, c.quats_raw, c.log_scales, c.opacity_logits, c.sh[:, :4]))
    message = r'SH degree 1 \(9 f_rest properties\), but cfg_args has sh_degree=3'
    with pytest.raises(SceneFormatError, match=message):
        FourDGaussiansScene.load(fixture.path)


class _Payload:
    """Unpickling this calls os.mkdir(marker): it creates the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_payload_is_not_executed(tmp_path):
    fixture = write_fourdgs_scene(tmp_path / 'scene', 'dnerf', n=8, iterations=(7000,),
                                  overrides=small_grid('dnerf'))
    marker = tmp_path / 'payload_ran'
    pth = os.path.join(fixture.path, 'point_cloud', 'iteration_7000', 'deformation.pth')
    state = dict(fixture.state)
    state['deformation_net.grid.aabb'] = _Payload(marker)
    torch.save(state, pth)
    with pytest.raises(SceneFormatError, match='deformation.pth: not a loadable weights-only'):
        FourDGaussiansScene.load(fixture.path)
    assert not marker.exists()
    # The payload is live: an unrestricted unpickler runs it.
    torch.load(pth, weights_only=False)
    assert marker.exists()


def test_pluggable_deformation(random_scene):
    calls = []

    def factory(network):
        def deform(raw, t):
            calls.append(t)
            return network(raw, t)
        return deform

    scene = FourDGaussiansScene.load(random_scene.path, deformation_factory=factory)
    reference = FourDGaussiansScene.load(random_scene.path)
    torch.testing.assert_close(scene.at(0.3).means, reference.at(0.3).means, rtol=0, atol=0)
    assert calls == [0.3]
    scene.at(0.3)
    assert calls == [0.3]   # Scene4D.at reuses the state while time stands still

    def frozen(raw, t):
        return raw

    scene.deformation = frozen   # replacing the deformation drops the cached state
    assert torch.equal(scene.at(0.3).means, random_scene.canonical.means)


def test_tensors_move_once_per_device(random_scene):
    scene = FourDGaussiansScene.load(random_scene.path)
    scene.at(0.2, 'cpu')
    means = scene.canonical.means
    scene.at(0.7, 'cpu')
    assert scene.canonical.means is means
    assert not scene.at(0.7).means.requires_grad
