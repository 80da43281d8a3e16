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
The fused deformation (Triton + cuBLAS / one Triton kernel) against DeformationNetwork.

Parity tests need CUDA and triton. Without a GPU they can run on the CPU through Triton's
interpreter, which executes the same kernels with numpy (slow, so the clouds are small):

    TRITON_INTERPRET=1 python -m pytest tests/test_deformation_fused.py

(the variable must be set before triton is imported). The interpreter does not emulate TF32
and mishandles bf16 dots, so the reduced-precision tests run on CUDA only. Without either,
the parity tests skip and only the error-path tests run.
"""

import dataclasses
import os

from fourdgs_fixture import write_fourdgs_scene
import pytest
from st4r_ros.errors import RenderError
from st4r_ros.scene.deformation import DeformationConfig, DeformationNetwork
from st4r_ros.scene.deformation_fused import FusedDeformation, triton_available
from st4r_ros.scene.fourdgs import FourDGaussiansScene
from st4r_ros.scene.ply import RawGaussians
import torch

FIELDS = ('means', 'log_scales', 'quats_raw', 'opacity_logits', 'sh')
TIMES = (0.0, 0.3, 0.77, 1.0)
INTERPRETING = os.environ.get('TRITON_INTERPRET') == '1'
# The interpreter runs every program in numpy: a few hundred points keep a test in seconds.
N_POINTS = 400 if INTERPRETING else 50_000
# The fp32 path differs from the reference only in summation order.
FP32_ATOL = 1e-4


def kernel_device() -> torch.device:
    """Where the kernels can run here, or skip with the reason."""
    if not triton_available():
        pytest.skip('triton is not installed (the fused deformation needs it)')
    if INTERPRETING:
        return torch.device('cpu')
    if torch.cuda.is_available():
        return torch.device('cuda')
    pytest.skip('needs CUDA, or TRITON_INTERPRET=1 to run the kernels on the CPU')


def cuda_device() -> torch.device:
    if not triton_available():
        pytest.skip('triton is not installed (the fused deformation needs it)')
    if INTERPRETING or not torch.cuda.is_available():
        pytest.skip('needs CUDA with compiled (not interpreted) Triton kernels')
    return torch.device('cuda')


def config(name: str) -> DeformationConfig:
    """Return the hypernerf / dnerf presets, or 'all-heads': D-NeRF, every head on, 2 layers."""
    if name == 'all-heads':
        return dataclasses.replace(DeformationConfig.preset('dnerf'), no_do=False, no_dshs=False,
                                   defor_depth=2)
    return DeformationConfig.preset(name)


def random_network(name: str, seed: int = 0) -> DeformationNetwork:
    """Random weights, random planes (time planes too) and an asymmetric aabb."""
    gen = torch.Generator().manual_seed(seed)
    net = DeformationNetwork(config(name)).eval()
    with torch.no_grad():
        for param in net.deformation_net.parameters():
            if param.dim() == 4:  # planes: away from the constant init, so t matters
                param.copy_(0.1 + 0.9 * torch.rand(param.shape, generator=gen))
            else:
                uniform = torch.rand(param.shape, generator=gen) * 2 - 1
                param.copy_(uniform / param.shape[-1] ** 0.5)
        net.deformation_net.grid.aabb.copy_(torch.tensor([[1.2, 0.8, 2.0], [-1.0, -1.5, -0.3]]))
    return net


def random_raw(n: int, seed: int = 1) -> RawGaussians:
    """Gaussians over the aabb and 10% beyond it on every side (border padding)."""
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor([-1.0, -1.5, -0.3]), torch.tensor([1.2, 0.8, 2.0])
    unit = torch.rand(n, 3, generator=gen) * 1.2 - 0.1
    return RawGaussians(
        means=low + (high - low) * unit,
        quats_raw=torch.randn(n, 4, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) * 0.3 - 4.0,
        opacity_logits=torch.randn(n, generator=gen),
        sh=torch.randn(n, 16, 3, generator=gen) * 0.3,
    )


def max_diffs(got: RawGaussians, want: RawGaussians):
    return {name: float((getattr(got, name) - getattr(want, name)).abs().max()) for name in FIELDS}


def max_deltas(deformed: RawGaussians, canonical: RawGaussians):
    return {name: float((getattr(deformed, name) - getattr(canonical, name)).abs().max())
            for name in FIELDS}


@pytest.mark.parametrize('mlp', ['torch', 'triton'])
@pytest.mark.parametrize('name', ['hypernerf', 'dnerf', 'all-heads'])
def test_fp32_matches_reference(name, mlp):
    device = kernel_device()
    net = random_network(name).to(device)
    raw = random_raw(N_POINTS).to(device)
    fused = FusedDeformation.from_network(net, mlp=mlp)
    with torch.no_grad():
        for t in TIMES:
            want = net(raw, t)
            features = fused.grid_features(raw.means, t)
            expected = net.grid_features(raw.means, t)
            # A last-ulp difference in a normalised coordinate moves a bilinear sample by up to
            # resolution x texel step (~1e-5 at these grids, seen on the H200 against CUDA's
            # grid_sample); the deformed outputs below are held to FP32_ATOL.
            assert float((features - expected).abs().max()) <= 5e-5
            got = fused(raw, t)
            diffs = max_diffs(got, want)
            assert all(d <= FP32_ATOL for d in diffs.values()), (name, mlp, t, diffs)
            # The deformation is not trivially zero, and heads that are off pass values through.
            deltas = max_deltas(want, raw)
            assert deltas['means'] > 1e-3 and deltas['quats_raw'] > 1e-3
            for head_off, field in (('no_do', 'opacity_logits'), ('no_dshs', 'sh')):
                if getattr(net.config, head_off):
                    assert getattr(got, field) is getattr(raw, field)


@pytest.mark.parametrize('mlp', ['torch', 'triton'])
def test_scene_with_fused_deformation(tmp_path, mlp):
    """The public path: a 4DGaussians folder loaded with the fused deformation."""
    device = kernel_device()
    fixture = write_fourdgs_scene(tmp_path / 'scene', 'hypernerf', n=300, variant='known')
    reference = FourDGaussiansScene.load(fixture.path, deformation_factory=lambda net: net)
    fused = FourDGaussiansScene.load(
        fixture.path, deformation_factory=lambda net: FusedDeformation.from_network(net, mlp=mlp)
    )
    for t in TIMES:
        want = reference.deform_raw(t, device)
        got = fused.deform_raw(t, device)
        diffs = max_diffs(got, want)
        assert all(d <= FP32_ATOL for d in diffs.values()), (t, diffs)
        expected = fixture.known.expected_raw(fixture.canonical, t)
        assert float((got.means.cpu() - expected.means).abs().max()) <= 1e-4
        gaussians = fused.at(t, device)
        assert torch.allclose(gaussians.scales, torch.exp(got.log_scales))


def test_scenes_use_the_fused_path_on_cuda_by_default(tmp_path):
    """
    A plain load serves CUDA callers through the kernels (TF32), CPU callers through the network.

    Both agree with the known deformation.
    """
    device = cuda_device()
    fixture = write_fourdgs_scene(tmp_path / 'scene', 'hypernerf', n=300, variant='known')
    scene = FourDGaussiansScene.load(fixture.path)
    on_cpu = scene.deform_raw(0.6, 'cpu')
    assert scene.deformation.backend == 'reference'
    on_cuda = scene.deform_raw(0.6, device)
    assert scene.deformation.backend == 'fused', scene.deformation.fallback_reason
    assert scene.info().details['deformation'] == 'fused'
    expected = fixture.known.expected_raw(fixture.canonical, 0.6)
    assert float((on_cuda.means.cpu() - expected.means).abs().max()) <= 1e-3
    assert float((on_cpu.means - expected.means).abs().max()) <= 1e-5


@pytest.mark.parametrize('precision,tolerance,floor', [('tf32', 2e-2, 1e-4), ('bf16', 5e-2, 1e-3)])
@pytest.mark.parametrize('mlp', ['torch', 'triton'])
def test_reduced_precision_is_close(precision, tolerance, floor, mlp):
    """TF32 / bf16 errors stay a small fraction of the deltas themselves (plus a floor)."""
    device = cuda_device()
    net = random_network('hypernerf').to(device)
    raw = random_raw(N_POINTS).to(device)
    fused = FusedDeformation.from_network(net, precision=precision, mlp=mlp)
    with torch.no_grad():
        for t in TIMES:
            want = net(raw, t)
            diffs, deltas = max_diffs(fused(raw, t), want), max_deltas(want, raw)
            for name in ('means', 'log_scales', 'quats_raw'):
                assert diffs[name] <= tolerance * deltas[name] + floor, (precision, t, name, diffs)


@pytest.mark.parametrize('mlp', ['torch', 'triton'])
def test_cuda_graph_replays_new_times(mlp):
    device = cuda_device()
    net = random_network('hypernerf').to(device)
    raw = random_raw(N_POINTS).to(device)
    fused = FusedDeformation.from_network(net, mlp=mlp, cuda_graph=True)
    with torch.no_grad():
        kept = [fused(raw, t) for t in TIMES]  # one capture, then replays
        assert fused._graph is not None and fused._graph.raw is raw
        for t, got in zip(TIMES, kept):  # earlier results were not overwritten by later replays
            diffs = max_diffs(got, net(raw, t))
            assert all(d <= FP32_ATOL for d in diffs.values()), (t, diffs)
        graph = fused.capture(raw)
        no_copy = graph(0.5, copy=False)
        assert float((no_copy.means - net(raw, 0.5).means).abs().max()) <= FP32_ATOL


def test_cpu_without_interpreter_is_refused():
    if INTERPRETING:
        pytest.skip('TRITON_INTERPRET=1 makes the CPU a valid device')
    net = random_network('dnerf')
    if not triton_available():
        with pytest.raises(RenderError, match='triton'):
            FusedDeformation.from_network(net)
        return
    fused = FusedDeformation.from_network(net)  # packing on the CPU is fine...
    with pytest.raises(RenderError, match='CUDA'):  # ...running there is not
        fused(random_raw(10), 0.5)


def test_unsupported_settings_are_named():
    if not triton_available():
        pytest.skip('triton is not installed: construction fails earlier, on that')
    net = DeformationNetwork(dataclasses.replace(DeformationConfig.preset('dnerf'),
                                                 static_mlp=True))
    with pytest.raises(RenderError, match='static_mlp'):
        FusedDeformation.from_network(net)
    with pytest.raises(RenderError, match='precision'):
        FusedDeformation.from_network(random_network('dnerf'), precision='fp16')


@pytest.mark.filterwarnings('ignore:TRITON_DEFAULT_FP_FUSION')
def test_kernels_compile_for_hopper():
    """
    Compile both kernels for sm_90 without a GPU (triton bundles ptxas).

    This catches code that only the compiler, not the interpreter, rejects.
    """
    if not triton_available() or INTERPRETING:
        pytest.skip('needs triton, not in interpreter mode')
    from st4r_ros.scene import deformation_fused as fused_module
    import triton

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        pytest.skip(f'this triton has no ahead-of-time compile API: {exc}')
    target = GPUTarget('cuda', 90, 32)
    common = {'means_ptr': '*fp32', 't_ptr': '*fp32', 'norm_ptr': '*fp32', 'grid_ptr': '*fp32',
              'meta_ptr': '*i32', 'n_points': 'i32'}
    hexplane = dict(common, out_ptr='*fp32', NUM_SCALES='constexpr', C='constexpr',
                    C_PAD='constexpr', BLOCK='constexpr')
    deform = dict(common, base_ptr='*fp32', out_ptr='*fp32', b0_ptr='*fp32', bh_ptr='*fp32',
                  b1_ptr='*fp32', **{name: 'constexpr' for name in (
                      'NUM_SCALES', 'C', 'C_PAD', 'WIDTH', 'EXTRA_LAYERS', 'HIDDEN', 'CHUNK',
                      'OUT', 'OUT_PAD', 'BLOCK', 'DOT_PRECISION')})
    hypernerf = {'NUM_SCALES': 3, 'C': 16, 'C_PAD': 16, 'WIDTH': 128, 'EXTRA_LAYERS': 0,
                 'HIDDEN': 384, 'CHUNK': 32, 'OUT': 10, 'OUT_PAD': 16, 'BLOCK': 64}
    jobs = [(fused_module.hexplane_kernel, dict(hexplane, out_ptr=out),
             {'NUM_SCALES': 3, 'C': 16, 'C_PAD': 16, 'BLOCK': 64}, 8)
            for out in ('*fp32', '*bf16')]
    for precision, weights, warps in (('ieee', '*fp32', 4), ('tf32', '*fp32', 8),
                                      ('tf32', '*bf16', 8)):
        signature = dict(deform, **{name: weights
                                    for name in ('w0_ptr', 'wh_ptr', 'w1_ptr', 'w2_ptr')})
        jobs.append((fused_module.deform_kernel, signature,
                     dict(hypernerf, DOT_PRECISION=precision), warps))
    for kernel, signature, constexprs, warps in jobs:
        # Parameter order must follow the kernel's.
        ordered = {name: signature[name] for name in kernel.arg_names}
        try:
            source = ASTSource(fn=kernel, signature=ordered, constexprs=constexprs)
        except TypeError as exc:
            pytest.skip(f"this triton's ASTSource differs: {exc}")
        compiled = triton.compile(source, target=target, options={'num_warps': warps})
        assert compiled.metadata.shared <= 227 * 1024  # the H100/H200 per-block maximum
