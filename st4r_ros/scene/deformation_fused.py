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
A fast CUDA path for the 4DGaussians deformation network, with the same outputs.

Why it exists: on an H200 the reference `DeformationNetwork` spends 3.55 ms at 300k Gaussians
(HyperNeRF config), mostly waiting. Its HexPlane lookup is 18 separate ``grid_sample`` calls
(3 scales x 6 planes), each reading channel-first grids [C, H, W] whose C values of one texel
lie H*W floats apart, followed by elementwise products and a concat that round-trip [N, F]
tensors through memory; its heads are four-to-five small fp32 GEMM chains launched one by one.

What this module does instead:

1. One Triton kernel computes the whole HexPlane feature [N, F] (F = C * num_scales): for a
   block of points it normalises the positions by the aabb, bilinearly samples every plane of
   every scale with ``grid_sample``'s exact semantics (align_corners=True, border padding, the
   first coordinate of a plane along its width), multiplies over planes and stores each scale's
   C channels straight into their slice of the output. The grids are packed once into one flat
   channel-last buffer (texel-major, C contiguous floats per texel) so one bilinear corner is
   one contiguous vector load, with a small int32 table of (texel offset, width, height, axes) per
   plane.
2. The MLP runs ``feature_out`` and only the heads that the config leaves active (no_dx, no_ds,
   no_dr, no_do, no_dshs), with the first layers of all active heads concatenated into one
   GEMM [W, k*W] and their last layers into one block-diagonal GEMM [k*W, O]; that last GEMM
   accumulates into a buffer pre-filled with the canonical values plus the last biases, so it
   writes the deformed parameters directly (the 4DGaussians deltas are plain additions).
   ``mlp='triton'`` instead runs the MLP inside the feature kernel (tl.dot per block of points),
   so no [N, F], [N, W] or [N, k*W] intermediate ever reaches memory.
3. ``cuda_graph=True`` (or `FusedDeformation.capture`) records the whole thing as one CUDA graph
   for a fixed set of canonical Gaussians (static input buffers, time as a one-element device
   tensor written before each replay), removing the launch overhead that dominates at these
   sizes. The graph keeps its intermediates: with mlp='torch' about 4 * (F + W + k*W) bytes per
   Gaussian (up to 1M rows; larger N is processed in 1M-row chunks), none with mlp='triton'.

Precision (``precision=``):
    'fp32' (default): fp32 everywhere, IEEE matmuls (TF32 is switched off for the call whatever
        torch's global setting); agrees with the reference network to ~1e-6 (summation order
        only): the parity tests hold it to 1e-4 absolute.
    'tf32': fp32 storage, TF32 tensor-core matmuls (10-bit mantissa operands, fp32
        accumulation): errors of order 1e-3 of the deltas.
    'bf16': features, weights and activations in bfloat16 with fp32 accumulation, the deltas
        added to the fp32 canonical values: errors of a few 1e-3 of the largest delta
        (measured 0.3-0.5% with random weights). Fastest.

The module imports without triton or CUDA; using it without them raises RenderError. With
``TRITON_INTERPRET=1`` in the environment before triton is first imported, the kernels run on
CPU tensors through Triton's interpreter (slow, and its bf16 dot is wrong: tests only); CUDA
graphs always need CUDA.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
import os
from typing import Iterator, List, Optional, Sequence, Tuple

from st4r_ros.errors import RenderError, SceneFormatError
from st4r_ros.scene.deformation import DeformationNetwork, HexPlaneGrid
from st4r_ros.scene.ply import RawGaussians
import torch
from torch import nn, Tensor

try:  # optional: only this fast path needs triton, and CPU-only installs lack it
    import triton
    import triton.language as tl
except ImportError:
    triton = None
    tl = None

# Whether the kernels below run in Triton's CPU interpreter: decided when they are decorated,
# i.e. by TRITON_INTERPRET at import time.
_INTERPRETED = os.environ.get('TRITON_INTERPRET', '0') == '1'

# The HexPlane planes in the order of itertools.combinations(range(4), 2), which is the order of
# the original's ParameterList; 0, 1, 2 = x, y, z (normalised), 3 = t. The first coordinate of a
# pair runs along the plane's width (grid_sample's x), the second along its height.
PLANES: Tuple[Tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

PRECISIONS = ('fp32', 'tf32', 'bf16')
MLP_BACKENDS = ('torch', 'triton')


@dataclass(frozen=True)
class HeadSpec:
    """One deformation head and the RawGaussians field it adds to."""

    module: str  # attribute of deformation_net, e.g. 'pos_deform'
    flag: str  # config flag that switches it off, e.g. 'no_dx'
    field: str  # RawGaussians field, e.g. 'means'


HEADS: Tuple[HeadSpec, ...] = (
    HeadSpec('pos_deform', 'no_dx', 'means'),
    HeadSpec('scales_deform', 'no_ds', 'log_scales'),
    HeadSpec('rotations_deform', 'no_dr', 'quats_raw'),
    HeadSpec('opacity_deform', 'no_do', 'opacity_logits'),
    HeadSpec('shs_deform', 'no_dshs', 'sh'),
)

# Rows per launch of the torch-MLP path: bounds the [rows, k*W] intermediates (1.5 GiB in fp32
# for 1M rows and three 128-wide heads) while keeping every GEMM large enough to fill the GPU.
_ROWS_PER_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Environment checks
# --------------------------------------------------------------------------------------------


def triton_available() -> bool:
    """Whether triton is installed (it is optional: only this fast path needs it)."""
    return triton is not None


def _check_device(device: torch.device, what: str) -> None:
    """Raise RenderError unless ``device`` can run the Triton kernels."""
    if not triton_available():
        raise RenderError(
            f'{what}: the fused deformation needs triton (pip install triton; it ships with '
            'CUDA builds of torch); use the reference DeformationNetwork instead'
        )
    if device.type == 'cuda':
        return
    if device.type == 'cpu' and _INTERPRETED:
        return
    raise RenderError(
        f"{what}: the fused deformation runs on CUDA devices only, got tensors on '{device}'; "
        'use the reference DeformationNetwork on CPU (or set TRITON_INTERPRET=1 for tests)'
    )


@contextlib.contextmanager
def _matmul_precision(precision: str) -> Iterator[None]:
    """
    Set torch's fp32 matmul mode for the duration ('fp32' -> IEEE, 'tf32' -> TF32).

    torch's setting is process-global; it is restored on exit so callers see no change. Under
    CUDA graph capture the cuBLAS kernel chosen here is the one the graph replays.
    """
    wanted = 'high' if precision == 'tf32' else 'highest'
    previous = torch.get_float32_matmul_precision()
    if previous == wanted:
        yield
        return
    torch.set_float32_matmul_precision(wanted)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# --------------------------------------------------------------------------------------------
# Triton kernels
# --------------------------------------------------------------------------------------------

# The kernels are defined at module level (Triton resolves the helpers they call through the
# module's globals), and only when triton imported.
if triton is not None:

    @triton.jit
    def _axis(px, py, pz, pt, axis):
        """Coordinate ``axis`` (0, 1, 2, 3 = x, y, z, t) of a block of points -> [BLOCK]."""
        return tl.where(axis == 0, px, tl.where(axis == 1, py, tl.where(axis == 2, pz, pt)))

    @triton.jit
    def _plane_sample(grid_ptr, meta_ptr, plane, px, py, pz, pt, chan, mask2d, C: tl.constexpr):
        """
        Bilinear sample of plane ``plane`` (index into meta) for a block -> [BLOCK, C_PAD].

        Same result as F.grid_sample(plane [1, C, H, W], (u, v), mode='bilinear',
        padding_mode='border', align_corners=True) with u, v the plane's two coordinates:
        u runs along the width, v along the height.
        """
        entry = meta_ptr + plane * 5  # (texel offset, width, height, axis u, axis v)
        texel0 = tl.load(entry)
        width = tl.load(entry + 1)
        height = tl.load(entry + 2)
        u = _axis(px, py, pz, pt, tl.load(entry + 3))
        v = _axis(px, py, pz, pt, tl.load(entry + 4))
        # align_corners=True: -1 is the centre of the first texel, +1 that of the last.
        x = ((u + 1.0) / 2.0) * (width - 1).to(tl.float32)
        y = ((v + 1.0) / 2.0) * (height - 1).to(tl.float32)
        # Border padding clamps the continuous coordinate before interpolation.
        x = tl.minimum(tl.maximum(x, 0.0), (width - 1).to(tl.float32))
        y = tl.minimum(tl.maximum(y, 0.0), (height - 1).to(tl.float32))
        x0f = tl.floor(x)
        y0f = tl.floor(y)
        # Integer corners, clamped again so that even a NaN coordinate cannot read outside the
        # plane. The far corner is clamped to the last texel: it is only ever needed there with
        # weight 0 (the coordinate sits exactly on the border).
        x0 = tl.minimum(tl.maximum(x0f.to(tl.int32), 0), width - 1)
        y0 = tl.minimum(tl.maximum(y0f.to(tl.int32), 0), height - 1)
        x1 = tl.minimum(x0 + 1, width - 1)
        y1 = tl.minimum(y0 + 1, height - 1)
        # Weights written as grid_sample writes them (distances to the opposite corner).
        wx1 = x - x0f
        wx0 = (x0f + 1.0) - x
        wy1 = y - y0f
        wy0 = (y0f + 1.0) - y
        # Channel-last packing: texel k of the plane holds C contiguous floats at
        # (texel0 + k) * C, so each corner is one contiguous vector per point.
        row0 = texel0 + y0 * width
        row1 = texel0 + y1 * width
        c = chan[None, :]
        v00 = tl.load(grid_ptr + ((row0 + x0) * C)[:, None] + c, mask=mask2d, other=0.0)
        v01 = tl.load(grid_ptr + ((row0 + x1) * C)[:, None] + c, mask=mask2d, other=0.0)
        v10 = tl.load(grid_ptr + ((row1 + x0) * C)[:, None] + c, mask=mask2d, other=0.0)
        v11 = tl.load(grid_ptr + ((row1 + x1) * C)[:, None] + c, mask=mask2d, other=0.0)
        out = v00 * (wx0 * wy0)[:, None]
        out += v01 * (wx1 * wy0)[:, None]
        out += v10 * (wx0 * wy1)[:, None]
        out += v11 * (wx1 * wy1)[:, None]
        return out

    @triton.jit
    def _scale_features(grid_ptr, meta_ptr, scale, px, py, pz, pt, chan, mask2d,
                        C: tl.constexpr):
        """
        Product over the six planes of one scale -> [BLOCK, C_PAD].

        Runtime loops over planes (and scales, in the callers) rather than unrolled ones: the
        unrolled version let the compiler hoist all 72 gathers of a point block at once and
        spill; one plane at a time keeps registers low and occupancy high, which hides the
        gather latency better.
        """
        f = _plane_sample(grid_ptr, meta_ptr, scale * 6, px, py, pz, pt, chan, mask2d, C)
        for p in range(1, 6):
            f = f * _plane_sample(grid_ptr, meta_ptr, scale * 6 + p, px, py, pz, pt, chan,
                                  mask2d, C)
        return f

    @triton.jit
    def _coords(means_ptr, t_ptr, norm_ptr, rows, row_mask, BLOCK: tl.constexpr):
        """
        4D HexPlane coordinates of a block of points: xyz normalised by the aabb, t raw.

        norm holds (aabb[0] (= max corner), 2 / (aabb[1] - aabb[0])), computed by torch as the
        original computes it, so that p = (x - aabb[0]) * scale - 1 matches it exactly.
        """
        x = tl.load(means_ptr + rows * 3 + 0, mask=row_mask, other=0.0)
        y = tl.load(means_ptr + rows * 3 + 1, mask=row_mask, other=0.0)
        z = tl.load(means_ptr + rows * 3 + 2, mask=row_mask, other=0.0)
        px = (x - tl.load(norm_ptr + 0)) * tl.load(norm_ptr + 3) - 1.0
        py = (y - tl.load(norm_ptr + 1)) * tl.load(norm_ptr + 4) - 1.0
        pz = (z - tl.load(norm_ptr + 2)) * tl.load(norm_ptr + 5) - 1.0
        # Time is not normalised by the original: t in [0, 1] uses the upper half of the axis.
        pt = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(t_ptr)
        return px, py, pz, pt

    @triton.jit
    def hexplane_kernel(means_ptr, t_ptr, norm_ptr, grid_ptr, meta_ptr, out_ptr, n_points,
                        NUM_SCALES: tl.constexpr, C: tl.constexpr, C_PAD: tl.constexpr,
                        BLOCK: tl.constexpr):
        """Compute features [N, NUM_SCALES * C] for means [N, 3] at time t_ptr[0]."""
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        row_mask = rows < n_points
        chan = tl.arange(0, C_PAD)
        mask2d = row_mask[:, None] & (chan[None, :] < C)
        px, py, pz, pt = _coords(means_ptr, t_ptr, norm_ptr, rows, row_mask, BLOCK)
        out_rows = out_ptr + rows.to(tl.int64)[:, None] * (NUM_SCALES * C) + chan[None, :]
        for s in range(NUM_SCALES):
            f = _scale_features(grid_ptr, meta_ptr, s, px, py, pz, pt, chan, mask2d, C)
            tl.store(out_rows + s * C, f, mask=mask2d)

    @triton.jit
    def deform_kernel(means_ptr, t_ptr, norm_ptr, grid_ptr, meta_ptr,
                      w0_ptr, b0_ptr, wh_ptr, bh_ptr, w1_ptr, b1_ptr, w2_ptr,
                      base_ptr, out_ptr, n_points,
                      NUM_SCALES: tl.constexpr, C: tl.constexpr, C_PAD: tl.constexpr,
                      WIDTH: tl.constexpr, EXTRA_LAYERS: tl.constexpr, HIDDEN: tl.constexpr,
                      CHUNK: tl.constexpr, OUT: tl.constexpr, OUT_PAD: tl.constexpr,
                      BLOCK: tl.constexpr, DOT_PRECISION: tl.constexpr):
        """
        Compute out [N, OUT] = base [N, OUT] + heads(feature_out(hexplane(means, t))), one pass.

        Weights (dtype = the matmul operand dtype, fp32 or bf16; biases fp32):
            w0 [NUM_SCALES, C_PAD, WIDTH]: feature_out's first layer, transposed, split by scale;
            wh [EXTRA_LAYERS, WIDTH, WIDTH], bh: feature_out's further layers (ReLU before each);
            w1 [WIDTH, HIDDEN], b1 [HIDDEN]: first layers of the active heads side by side
                (HIDDEN = heads x WIDTH);
            w2 [HIDDEN, OUT_PAD]: their last layers, block-diagonal (each head's own columns).
        base holds the canonical values plus the heads' last biases (fp32).
        """
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        row_mask = rows < n_points
        chan = tl.arange(0, C_PAD)
        mask2d = row_mask[:, None] & (chan[None, :] < C)
        kc = tl.arange(0, C_PAD)[:, None]
        kw = tl.arange(0, WIDTH)[:, None]
        nw = tl.arange(0, WIDTH)[None, :]
        kn = tl.arange(0, CHUNK)
        no = tl.arange(0, OUT_PAD)[None, :]
        op_dtype = w0_ptr.dtype.element_ty
        px, py, pz, pt = _coords(means_ptr, t_ptr, norm_ptr, rows, row_mask, BLOCK)

        # feature_out's first layer, accumulated scale by scale (x @ W0 = sum_s x_s @ W0_s), so
        # the [BLOCK, F] feature never needs to exist as one tensor.
        h = tl.zeros([BLOCK, WIDTH], dtype=tl.float32)
        for s in range(NUM_SCALES):
            f = _scale_features(grid_ptr, meta_ptr, s, px, py, pz, pt, chan, mask2d, C)
            w0 = tl.load(w0_ptr + s * C_PAD * WIDTH + kc * WIDTH + nw)
            h = tl.dot(f.to(op_dtype), w0, h, input_precision=DOT_PRECISION)
        h += tl.load(b0_ptr + nw)
        for layer in tl.static_range(EXTRA_LAYERS):  # none in the published configs
            wl = tl.load(wh_ptr + layer * WIDTH * WIDTH + kw * WIDTH + nw)
            h = tl.dot(tl.maximum(h, 0.0).to(op_dtype), wl, input_precision=DOT_PRECISION)
            h += tl.load(bh_ptr + layer * WIDTH + nw)

        # Heads: every head starts with a ReLU of the shared hidden state. The heads' hidden
        # layer [BLOCK, HIDDEN] is produced CHUNK columns at a time and immediately consumed by
        # the block-diagonal last layer, so only [BLOCK, CHUNK] of it is ever live (Triton
        # cannot slice register tensors, hence chunks of weights instead).
        r = tl.maximum(h, 0.0).to(op_dtype)
        acc = tl.zeros([BLOCK, OUT_PAD], dtype=tl.float32)
        for k0 in range(0, HIDDEN, CHUNK):
            w1 = tl.load(w1_ptr + kw * HIDDEN + (k0 + kn)[None, :])
            a = tl.dot(r, w1, input_precision=DOT_PRECISION)
            a = tl.maximum(a + tl.load(b1_ptr + k0 + kn)[None, :], 0.0)
            w2 = tl.load(w2_ptr + (k0 + kn)[:, None] * OUT_PAD + no)
            acc = tl.dot(a.to(op_dtype), w2, acc, input_precision=DOT_PRECISION)

        offs = rows.to(tl.int64)[:, None] * OUT + no
        mask_out = row_mask[:, None] & (no < OUT)
        base = tl.load(base_ptr + offs, mask=mask_out, other=0.0)
        tl.store(out_ptr + offs, base + acc, mask=mask_out)


# --------------------------------------------------------------------------------------------
# Packing the reference network
# --------------------------------------------------------------------------------------------


def _next_pow2(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _pack_grids(grids: Sequence[Sequence[Tensor]]) -> Tuple[Tensor, Tensor, int]:
    """
    Pack every plane of every scale channel-last into one flat buffer.

    :param grids: grids[s][p] of shape [1, C, H, W] (p in PLANES order).
    :return: (texels, meta, C): texels [sum of H*W*C] fp32, plane k's texel (i, j) at
        ``(offset_k + i * W + j) * C``; meta [num_planes * 5] int32 = (offset, W, H, axis
        along W, axis along H) per plane, the axes as in PLANES.
    """
    channels = int(grids[0][0].shape[1])
    flat: List[Tensor] = []
    meta: List[int] = []
    offset = 0
    for s, scale in enumerate(grids):
        if len(scale) != len(PLANES):
            raise SceneFormatError(
                f'deformation_net.grid.grids.{s}: expected {len(PLANES)} planes, got {len(scale)}'
            )
        for p, plane in enumerate(scale):
            if plane.dim() != 4 or plane.shape[0] != 1 or plane.shape[1] != channels:
                raise SceneFormatError(
                    f'deformation_net.grid.grids.{s}.{p}: expected shape [1, {channels}, H, W], '
                    f'got {list(plane.shape)}'
                )
            height, width = int(plane.shape[2]), int(plane.shape[3])
            # [1, C, H, W] -> [H, W, C]: the C values of one texel become contiguous.
            flat.append(plane.detach()[0].permute(1, 2, 0).reshape(-1).float())
            meta += [offset, width, height, *PLANES[p]]
            offset += height * width
    if offset * channels >= 2**31:
        raise SceneFormatError(
            f"deformation_net.grid: {offset * channels} grid values exceed the kernel's int32 "
            'indexing (2^31)'
        )
    return torch.cat(flat), torch.tensor(meta, dtype=torch.int32), channels


def _linears(seq: nn.Module, name: str, leading_relu: bool) -> List[nn.Linear]:
    """Return the Linear layers of ``seq``, checking it is [ReLU] Linear (ReLU Linear)*."""
    layers = list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]
    expected_relu = leading_relu
    linears: List[nn.Linear] = []
    for module in layers:
        want = nn.ReLU if expected_relu else nn.Linear
        if not isinstance(module, want):
            raise SceneFormatError(
                f"deformation_net.{name}: expected {'[ReLU] ' if leading_relu else ''}Linear "
                f'(ReLU Linear)*, found {type(module).__name__} where {want.__name__} belongs'
            )
        if isinstance(module, nn.Linear):
            linears.append(module)
        expected_relu = not expected_relu
    if not linears or not isinstance(layers[-1], nn.Linear):
        raise SceneFormatError(f'deformation_net.{name}: expected it to end with a Linear layer')
    return linears


def _check_supported(net: DeformationNetwork) -> None:
    """
    Refuse, naming the setting, the options of the original that this path does not fuse.

    They are marked "useless" in the public arguments and off in every published config; the
    reference DeformationNetwork still runs them.
    """
    config = net.config
    kplanes = config.kplanes_config
    unsupported = [
        (kplanes.grid_dimensions != 2,
         f'kplanes_config.grid_dimensions={kplanes.grid_dimensions}'),
        (config.grid_pe != 0, f'grid_pe={config.grid_pe}'),
        (config.static_mlp, 'static_mlp=True'),
        (config.empty_voxel, 'empty_voxel=True'),
        (config.apply_rotation and not config.no_dr, 'apply_rotation=True'),
    ]
    problems = [text for bad, text in unsupported if bad]
    if problems:
        raise RenderError(
            'FusedDeformation: the fused path supports the published 4DGaussians configs only; '
            f"this network has {', '.join(problems)}: use DeformationNetwork itself"
        )
    planes = tuple(tuple(p) for p in getattr(net.deformation_net.grid, 'planes', PLANES))
    if planes != PLANES:
        raise SceneFormatError(
            f'deformation_net.grid.planes: expected {list(PLANES)}, got {list(planes)}'
        )


@dataclass(frozen=True)
class _ActiveHead:
    spec: HeadSpec
    first: nn.Linear
    last: nn.Linear
    start: int  # first output column in the packed [N, O] layout
    stop: int


def _active_heads(net: DeformationNetwork) -> List[_ActiveHead]:
    """Return the heads that net.config leaves on, in HEADS order, with their packed columns."""
    inner = net.deformation_net
    heads: List[_ActiveHead] = []
    column = 0
    for spec in HEADS:
        if getattr(net.config, spec.flag):
            continue
        linears = _linears(getattr(inner, spec.module), spec.module, leading_relu=True)
        if len(linears) != 2:
            raise SceneFormatError(
                f'deformation_net.{spec.module}: expected ReLU-Linear-ReLU-Linear, '
                f'found {len(linears)} Linear layers'
            )
        width = linears[-1].out_features
        heads.append(_ActiveHead(spec, linears[0], linears[1], column, column + width))
        column += width
    return heads


# --------------------------------------------------------------------------------------------
# The fused deformation
# --------------------------------------------------------------------------------------------


class FusedDeformation:
    """
    Same outputs as ``DeformationNetwork(raw, t)``, computed by fused CUDA kernels.

    Build with `from_network`; call as ``fused(raw, t) -> RawGaussians``, a drop-in for the
    network wherever a (canonical RawGaussians, t) -> RawGaussians callable is taken (e.g.
    ``FourDGaussiansScene.load(path, deformation_factory=FusedDeformation.from_network)``).
    Inference only (no autograd). Deformed fields are views into one packed [N, O] tensor
    (O = total width of the active heads); fields whose head is switched off are the input
    tensors themselves, as in the original.

    The packed weights follow the Gaussians: a call with tensors on another device moves
    them there first (so the network may be packed on the CPU and run on CUDA).

    :param net: the reference DeformationNetwork (read once; later changes to it are not seen).
    :param precision: 'fp32' (default), 'tf32' or 'bf16'; see the module docstring.
    :param mlp: 'torch' (Triton features + cuBLAS GEMMs) or 'triton' (one kernel for everything).
    :param cuda_graph: replay a CUDA graph captured at the first call for the given canonical
        Gaussians (recaptured when called with another RawGaussians object). The
        canonical tensors are then read by reference at every replay: do not modify them
        in place.
    :param device: where to keep the packed weights (default: the network's device).
    :param block, block_warps: points and warps per program of the feature kernel; by default
        one point (all its C channels, as 16-byte vectors) per thread, which keeps it at
        ~52 registers (sm_90, C=16) and the SMs full of warps to hide the gathers' latency.
    :param mlp_block, mlp_warps, mlp_chunk: points per program, warps per program and head-hidden
        columns per step of the one-kernel path. Defaults: 64 points and 4 warps for fp32
        (~220 registers on sm_90; 8 warps spill there), 128 points and 8 warps for tf32 /
        bf16 (fastest in benchmarks/gpu_suite.py's sweep on an H200), 32 columns.
    """

    def __init__(self, net: DeformationNetwork, precision: str = 'fp32', mlp: str = 'torch',
                 cuda_graph: bool = False, device: Optional[torch.device | str] = None,
                 block: int = 64, block_warps: Optional[int] = None,
                 mlp_block: Optional[int] = None, mlp_warps: Optional[int] = None,
                 mlp_chunk: int = 32) -> None:
        if precision not in PRECISIONS:
            raise RenderError(f'precision: expected one of {PRECISIONS}, got {precision!r}')
        if mlp not in MLP_BACKENDS:
            raise RenderError(f'mlp: expected one of {MLP_BACKENDS}, got {mlp!r}')
        if not triton_available():
            raise RenderError(
                'FusedDeformation needs triton (it ships with CUDA builds of torch); '
                'use DeformationNetwork itself'
            )
        _check_supported(net)
        grid = net.deformation_net.grid
        self.device = torch.device(device) if device is not None else grid.aabb.device
        self.precision = precision
        self.mlp = mlp
        self.cuda_graph = cuda_graph
        self.block = block
        self.block_warps = block_warps
        self.mlp_block = mlp_block or (64 if precision == 'fp32' else 128)
        self.mlp_warps = mlp_warps or (4 if precision == 'fp32' else 8)
        self.mlp_chunk = mlp_chunk
        self._op_dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
        self._graph: Optional[DeformationGraph] = None
        with torch.no_grad():
            self._pack_hexplane(grid)
            self._pack_mlp(net)

    @classmethod
    def from_network(cls, net: DeformationNetwork, **options) -> 'FusedDeformation':
        """Pack ``net``'s weights once; ``options`` as in the constructor."""
        return cls(net, **options)

    # ---- packing ---------------------------------------------------------------------------

    def _pack_hexplane(self, grid: HexPlaneGrid) -> None:
        texels, meta, channels = _pack_grids([list(scale) for scale in grid.scales()])
        aabb = grid.aabb.detach().float()
        # The original's normalisation: (p - aabb[0]) * (2 / (aabb[1] - aabb[0])) - 1.
        norm = torch.cat([aabb[0], 2.0 / (aabb[1] - aabb[0])])
        self.num_scales = len(grid.grids)
        self.channels = channels
        # Power of two for tl.arange, at least 16 for tl.dot's K on tensor cores.
        self.channels_pad = max(16, _next_pow2(channels))
        self.feature_dim = channels * self.num_scales
        self._texels = texels.to(self.device)
        self._meta = meta.to(self.device)
        self._norm = norm.to(self.device)

    def _pack_mlp(self, net: DeformationNetwork) -> None:
        inner = net.deformation_net
        trunk = _linears(inner.feature_out, 'feature_out', leading_relu=False)
        if trunk[0].in_features != self.feature_dim:
            raise SceneFormatError(
                f'deformation_net.feature_out.0: expected {self.feature_dim} inputs (C x scales), '
                f'got {trunk[0].in_features}'
            )
        heads = _active_heads(net)
        self.heads = heads
        self.out_dim = heads[-1].stop if heads else 0
        width = trunk[-1].out_features
        self.width = width
        dev, dt = self.device, self._op_dtype

        def t_(w: Tensor) -> Tensor:  # Linear weight [out, in] -> GEMM operand [in, out]
            return w.detach().t().contiguous().to(dev, dt)

        # torch path: trunk layers, then the heads' first layers side by side, then their last
        # layers block-diagonally, so each stage is one GEMM whatever the number of heads.
        self._trunk = [(t_(lin.weight), lin.bias.detach().to(dev, dt)) for lin in trunk]
        if not heads:
            return
        self._w1 = torch.cat([t_(h.first.weight) for h in heads], dim=1)
        self._b1 = torch.cat([h.first.bias.detach() for h in heads]).to(dev, dt)
        w2 = torch.zeros(len(heads) * width, self.out_dim)
        for j, h in enumerate(heads):
            w2[j * width:(j + 1) * width, h.start:h.stop] = h.last.weight.detach().t().float()
        self._w2 = w2.to(dev, dt)
        self._b2 = torch.cat([h.last.bias.detach().float() for h in heads]).to(dev)
        if self.mlp == 'triton':
            self._pack_triton_mlp(trunk, width)

    def _pack_triton_mlp(self, trunk: List[nn.Linear], width: int) -> None:
        if width != _next_pow2(width) or width < 16:
            raise RenderError(
                f"mlp='triton': net_width must be a power of two >= 16, got {width}; "
                "use mlp='torch'"
            )
        dev, dt = self.device, self._op_dtype
        c, cp, s = self.channels, self.channels_pad, self.num_scales
        w0 = torch.zeros(s, cp, width)
        w0[:, :c] = trunk[0].weight.detach().t().float().reshape(s, c, width)
        self._tw0 = w0.to(dev, dt).contiguous()
        self._tb0 = trunk[0].bias.detach().float().to(dev)
        extra = trunk[1:]
        if extra:
            self._twh = torch.stack([lin.weight.detach().t().float() for lin in extra]).to(dev, dt)
            self._tbh = torch.stack([lin.bias.detach().float() for lin in extra]).to(dev)
        else:  # never read (EXTRA_LAYERS = 0) but the kernel needs valid pointers
            self._twh, self._tbh = self._tw0, self._tb0
        # Same side-by-side / block-diagonal layout as the torch path, with the output columns
        # padded to a power of two (tl.dot needs N >= 16) and biases kept in fp32.
        self.out_pad = max(16, _next_pow2(self.out_dim))
        self._tw1 = self._w1.to(dt).contiguous()
        self._tb1 = self._b1.float()
        w2 = torch.zeros(self._w2.shape[0], self.out_pad, device=dev)
        w2[:, :self.out_dim] = self._w2.float()
        self._tw2 = w2.to(dt).contiguous()

    def to(self, device: torch.device | str) -> 'FusedDeformation':
        """Move the packed weights to ``device`` (in place; returns self)."""
        device = torch.device(device)
        if device == self.device:
            return self
        for name, value in list(vars(self).items()):
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
        self._trunk = [(w.to(device), b.to(device)) for w, b in self._trunk]
        self._graph = None
        self.device = device
        return self

    # ---- running ---------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, raw: RawGaussians, t: float) -> RawGaussians:
        """Deform canonical ``raw`` to time ``t``; same result as DeformationNetwork(raw, t)."""
        _check_device(raw.device, 'FusedDeformation')
        if not self.heads:
            return raw
        self.to(raw.device)
        if self.cuda_graph and raw.device.type == 'cuda':
            if self._graph is None or self._graph.raw is not raw:
                self._graph = None  # release the old graph's memory before capturing anew
                self._graph = DeformationGraph(self, raw)
            return self._graph(t)
        out = self.pack_base(raw)
        self.run_packed(raw.means.float().contiguous(), self._time_tensor(t), out)
        return self.unpack(out, raw)

    def capture(self, raw: RawGaussians, warmup: int = 2) -> 'DeformationGraph':
        """Capture a CUDA graph of this deformation for the fixed canonical Gaussians ``raw``."""
        self.to(raw.device)
        return DeformationGraph(self, raw, warmup=warmup)

    def grid_features(self, means: Tensor, t: float | Tensor,
                      dtype: torch.dtype = torch.float32) -> Tensor:
        """Compute HexPlane features at time ``t``: means [N, 3] -> [N, C * num_scales]."""
        _check_device(means.device, 'FusedDeformation.grid_features')
        self.to(means.device)
        t_dev = t if isinstance(t, Tensor) else self._time_tensor(t)
        out = torch.empty(means.shape[0], self.feature_dim, dtype=dtype, device=means.device)
        self._launch_hexplane(means.float().contiguous(), t_dev, out)
        return out

    def pack_base(self, raw: RawGaussians) -> Tensor:
        """
        Canonical values of the deformed fields plus the last biases, [N, O] fp32.

        The last GEMM accumulates into this, so it yields the deformed parameters directly.
        Column layout: the active heads in HEADS order; sh [N, K, 3] flattens to index k*3 + c,
        the order of the original's ``reshape([N, 16, 3])`` of the SH head output.
        """
        n = len(raw)
        columns = [getattr(raw, h.spec.field).reshape(n, -1) for h in self.heads]
        for head, col in zip(self.heads, columns):
            if col.shape[1] != head.stop - head.start:
                raise SceneFormatError(
                    f'RawGaussians.{head.spec.field}: {col.shape[1]} values per Gaussian, but '
                    f'deformation_net.{head.spec.module} outputs {head.stop - head.start}'
                )
        base = torch.cat([c.float() for c in columns], dim=1)
        return base.add_(self._b2)

    def run_packed(self, means: Tensor, t_dev: Tensor, out: Tensor) -> None:
        """
        Run the whole deformation into a pre-filled buffer: out [N, O] += heads(features).

        :param means: canonical centres [N, 3], fp32, contiguous, on the device.
        :param t_dev: time, one-element fp32 tensor on the device (a graph replays new values).
        :param out: `pack_base` of the canonical Gaussians [N, O] fp32; overwritten with the
            deformed values.
        """
        if self.mlp == 'triton':
            self._run_triton_mlp(means, t_dev, out, out)
            return
        for start in range(0, means.shape[0], _ROWS_PER_CHUNK):
            stop = min(start + _ROWS_PER_CHUNK, means.shape[0])
            self._run_torch_mlp(means[start:stop], t_dev, out[start:stop])

    def unpack(self, packed: Tensor, raw: RawGaussians) -> RawGaussians:
        """Unpack into RawGaussians: deformed fields are views of packed [N, O], the rest raw's."""
        fields = {
            'means': raw.means, 'quats_raw': raw.quats_raw, 'log_scales': raw.log_scales,
            'opacity_logits': raw.opacity_logits, 'sh': raw.sh,
        }
        for head in self.heads:
            block = packed[:, head.start:head.stop]
            name = head.spec.field
            if name == 'opacity_logits':
                block = block[:, 0]
            elif name == 'sh':
                block = block.unflatten(1, (raw.sh.shape[1], 3))
            fields[name] = block
        return RawGaussians(**fields)

    # ---- kernels ---------------------------------------------------------------------------

    def _time_tensor(self, t: float) -> Tensor:
        return torch.full((1,), float(t), dtype=torch.float32, device=self.device)

    def _launch_hexplane(self, means: Tensor, t_dev: Tensor, out: Tensor) -> None:
        """Write features for means [n, 3] (contiguous) into out [n, F] (fp32 or bf16)."""
        n = means.shape[0]
        if n == 0:
            return
        # Triton's default layout gives a [BLOCK, C_PAD] fp32 tile 4-wide vectors per thread and
        # C_PAD / 4 threads per row: BLOCK * C_PAD / 128 warps make that one row per thread.
        warps = self.block_warps or max(1, min(16, self.block * self.channels_pad // 128))
        hexplane_kernel[(_cdiv(n, self.block),)](
            means, t_dev, self._norm, self._texels, self._meta, out, n,
            NUM_SCALES=self.num_scales, C=self.channels, C_PAD=self.channels_pad,
            BLOCK=self.block, num_warps=warps,
        )

    def _run_torch_mlp(self, means: Tensor, t_dev: Tensor, out: Tensor) -> None:
        feats = torch.empty(means.shape[0], self.feature_dim, dtype=self._op_dtype,
                            device=means.device)
        self._launch_hexplane(means, t_dev, feats)
        with _matmul_precision(self.precision):
            h = feats
            for i, (w, b) in enumerate(self._trunk):
                h = torch.addmm(b, h if i == 0 else torch.relu(h), w)
            # Every head starts with a ReLU; the concatenated first layers are one GEMM whose
            # ReLU epilogue cuBLASLt fuses where torch offers it.
            a = _addmm_relu(self._b1, torch.relu(h), self._w1)
            if a.dtype == out.dtype:
                out.addmm_(a, self._w2)
            else:  # bf16 operands: deltas rounded once to bf16, added to fp32 values
                out.add_(torch.mm(a, self._w2))

    def _run_triton_mlp(self, means: Tensor, t_dev: Tensor, base: Tensor, out: Tensor) -> None:
        n = means.shape[0]
        if n == 0:
            return
        # 'ieee' keeps fp32 products exact (FMA path); 'tf32' lets fp32 operands use tensor
        # cores, and is Triton's usual setting for bf16 operands (whose products are exact).
        dot_precision = 'ieee' if self.precision == 'fp32' else 'tf32'
        deform_kernel[(_cdiv(n, self.mlp_block),)](
            means, t_dev, self._norm, self._texels, self._meta,
            self._tw0, self._tb0, self._twh, self._tbh, self._tw1, self._tb1, self._tw2,
            base, out, n,
            NUM_SCALES=self.num_scales, C=self.channels, C_PAD=self.channels_pad,
            WIDTH=self.width, EXTRA_LAYERS=len(self._trunk) - 1,
            HIDDEN=len(self.heads) * self.width, CHUNK=min(self.mlp_chunk, self.width),
            OUT=self.out_dim, OUT_PAD=self.out_pad, BLOCK=self.mlp_block,
            DOT_PRECISION=dot_precision, num_warps=self.mlp_warps,
        )


class DeformationGraph:
    """
    The fused deformation of fixed canonical Gaussians, captured as one CUDA graph.

    Static inputs: the canonical centres and the packed canonical values are prepared once;
    only the time changes, written into a one-element device tensor before each replay. By
    default every call returns fresh tensors (one copy of the packed [N, O] output), so a
    caller that keeps the state of an earlier time never sees it overwritten by a later replay.
    """

    def __init__(self, fused: FusedDeformation, raw: RawGaussians, warmup: int = 2) -> None:
        if raw.device.type != 'cuda' or fused.device != raw.device:
            raise RenderError(
                f'DeformationGraph: CUDA graphs need the Gaussians and the weights on one CUDA '
                f"device, got '{raw.device}' and '{fused.device}'"
            )
        if not fused.heads:
            raise RenderError('DeformationGraph: every deformation head is off; '
                              'nothing to capture')
        self.fused = fused
        self.raw = raw
        with torch.no_grad():
            self._means = raw.means.float().contiguous()
            self._base = fused.pack_base(raw)
            self._out = torch.empty_like(self._base)
            self._t = torch.zeros(1, dtype=torch.float32, device=raw.device)
            self._graph = torch.cuda.CUDAGraph()
            self._capture(warmup)

    def _body(self) -> None:
        self._out.copy_(self._base)
        self.fused.run_packed(self._means, self._t, self._out)

    def _capture(self, warmup: int) -> None:
        # Warm up on a side stream (as torch's CUDA-graph docs ask): Triton compiles and cuBLAS
        # picks its kernels and workspaces before capture, none of which may happen inside it.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(self._graph):
            self._body()

    @torch.no_grad()
    def __call__(self, t: float, copy: bool = True) -> RawGaussians:
        """
        Return the deformed Gaussians at time ``t``.

        :param copy: False returns views of the graph's static output buffer (no copy; the next
            call overwrites them), for callers that consume the result at once.
        """
        self._t.fill_(float(t))
        self._graph.replay()
        packed = self._out.clone() if copy else self._out
        return self.fused.unpack(packed, self.raw)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _addmm_relu(bias: Tensor, mat1: Tensor, mat2: Tensor) -> Tensor:
    """relu(bias + mat1 @ mat2), with the ReLU fused into the GEMM epilogue on CUDA."""
    if mat1.is_cuda and hasattr(torch, '_addmm_activation'):
        return torch._addmm_activation(bias, mat1, mat2)
    return torch.relu(torch.addmm(bias, mat1, mat2))


class AutoDeformation:
    """
    The deformation a 4DGaussians scene uses by default.

    That is the fused kernels on CUDA, the reference network elsewhere or where the fused path
    does not support the configuration.

    The choice is made per call from the Gaussians' device, so one scene can serve CPU and
    CUDA callers. ``fused_options`` go to `FusedDeformation`. The default, the one-kernel MLP
    with TF32 dots replayed as a CUDA graph, stays within ~1.2e-4 of the fp32 reference on the
    deformed values, meets the frame-time targets and keeps no [N, width] intermediates
    (BENCHMARKS.md); ``precision='fp32'`` reproduces the reference to ~1e-6.
    """

    DEFAULTS = {'precision': 'tf32', 'mlp': 'triton', 'cuda_graph': True}

    def __init__(self, net: DeformationNetwork, **fused_options) -> None:
        self.net = net
        self.fused_options = {**self.DEFAULTS, **fused_options}
        self._fused: Optional[FusedDeformation] = None
        self.fallback_reason: Optional[str] = None  # why CUDA calls use the network, if they do

    @classmethod
    def from_network(cls, net: DeformationNetwork, **fused_options) -> 'AutoDeformation':
        return cls(net, **fused_options)

    @property
    def backend(self) -> str:
        """'fused' once CUDA calls run the kernels, else 'reference'."""
        return 'fused' if self._fused is not None else 'reference'

    def __call__(self, raw: RawGaussians, t: float) -> RawGaussians:
        if raw.device.type != 'cuda' or self.fallback_reason is not None:
            return self.net(raw, t)
        if self._fused is None:
            try:
                self._fused = FusedDeformation(self.net, **self.fused_options)
            except RenderError as unsupported:  # no triton, or a config the kernels lack
                self.fallback_reason = str(unsupported)
                return self.net(raw, t)
        return self._fused(raw, t)
