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
A pure-torch tile rasterizer that reproduces gsplat 1.5.3's ``rasterization()``.

It is the CPU path of `st4r_ros.render.api.render` and the reference the CUDA path is tested
against, so it follows gsplat's forward pass step by step (perspective camera, classic mode,
``radius_clip = 0``, ``tile_size = 16``), in float32 like the CUDA kernels:

1. Projection (gsplat ``projection_ewa_3dgs_fused_fwd``): cull means with z < near or z > far;
   world covariance R S S^T R^T from the normalised quaternion; EWA splatting with the Jacobian
   evaluated at the mean clamped to 1.3x the image's half tan-FoV; ``eps2d`` added to the
   2D covariance's diagonal (no opacity compensation, which is only for 'antialiased');
   cull det <= 0 and opacity < 1/255; opacity-aware extent min(3.33, sqrt(2 ln(255 opacity)))
   sigmas, radius = ceil(extent * sqrt(diagonal)); cull Gaussians whose box misses the image.
2. Binning (gsplat ``intersect_tile``): every tile touched by [floor((m - r) / 16),
   ceil((m + r) / 16)) per axis, ordered inside a tile by depth z (ties by index: gsplat's
   radix sort is stable).
3. Compositing (gsplat ``rasterize_to_pixels_3dgs_fwd``): at pixel centres (x + 0.5, y + 0.5),
   sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, alpha = min(0.999, opacity exp(-sigma)); Gaussians
   with alpha < 1/255 are skipped; the first Gaussian whose inclusion would bring the
   transmittance T to <= 1e-4 ends the pixel, itself excluded. image = sum w c + T bg,
   alpha = 1 - T, and the depth is gsplat's 'ED': sum w z / max(alpha, 1e-10).

Instead of one thread per pixel, each tile's pixels x Gaussians form an alpha matrix; the
transmittance is its cumulative product along the depth-sorted Gaussians, and the weights meet
the features in one batched matmul. Tiles with similar Gaussian counts are batched together and
long lists are cut into depth chunks that carry T over, which bounds memory and lets a batch
stop as soon as all its pixels are done.

Agreement with gsplat: gsplat builds its kernels with ``-use_fast_math`` (approximate exp, log,
division), so bit equality is out of reach. Checked on an H200 (30k and 5k Gaussian scenes,
1-5 channels and SH RGB): alpha, features and depth agree to about 2e-5, except for the odd
isolated pixel (0-1 per image) where a Gaussian sits on the 1/255 cut-off (alpha then differs
by up to T / 255) or two overlapping Gaussians have the same depth up to rounding (their order,
and so the features but not alpha, may differ).

The output is differentiable with respect to ``features`` (the renders are linear in them).
Geometry (means, quaternions, scales, opacities, SH) is treated as constant unless one of its
tensors requires grad: then the projection keeps its graph and compositing runs out of place,
so a photometric fit can move the Gaussians (the synthetic 4DGaussians-format scenes are fitted
so on the CPU; gsplat does it on CUDA). Culling, binning and the depth order are not
differentiated, as in gsplat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from st4r_ros.render.api import EPS2D, RenderOutput
from st4r_ros.render.camera import Camera
from st4r_ros.render.sh import sh_to_rgb
from st4r_ros.scene.gaussians import Gaussians
import torch
from torch import Tensor

TILE_SIZE = 16
TILE_PIXELS = TILE_SIZE * TILE_SIZE
# gsplat's ALPHA_THRESHOLD (1/255 in float32), its alpha ceiling and its transmittance floor.
ALPHA_MIN = 1.0 / 255.0
# The float32 just below 1/255: threshold() keeps values strictly above it, i.e. >= 1/255.
ALPHA_SKIP_BELOW = float(torch.nextafter(torch.tensor(ALPHA_MIN), torch.tensor(0.0)))
ALPHA_MAX = 0.999
T_MIN = 1e-4
# Largest extent of a Gaussian's screen box, in standard deviations.
MAX_EXTENT_SIGMAS = 3.33
# The Jacobian is evaluated at most this far outside the image, in units of the half tan-FoV.
FOV_CLAMP_MARGIN = 0.3
# Elements (pixels x Gaussians) in one compositing chunk: about 4 MB per float32 temporary,
# which keeps the handful of live temporaries inside the caches of a small CPU.
CHUNK_ELEMENTS = 1 << 20
# Longest depth chunk of one tile's list; longer lists are composited in pieces.
MAX_CHUNK_GAUSSIANS = 1024


@dataclass(frozen=True)
class Splats:
    """
    Visible Gaussians projected to the image, sorted front to back (M of them).

    :ivar index: row of each splat in the input Gaussians, [M] int64.
    :ivar means2d: pixel coordinates of the centres, [M, 2].
    :ivar conics: inverse 2D covariance (a, b, c) = ((0, 0), (0, 1), (1, 1)) entries, [M, 3].
    :ivar depths: z in the camera frame, [M].
    :ivar opacities: [M].
    :ivar radii: half-sizes of the screen boxes in pixels (x, y), [M, 2] float32 integers.
    """

    index: Tensor
    means2d: Tensor
    conics: Tensor
    depths: Tensor
    opacities: Tensor
    radii: Tensor


def covariances_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """
    Compute world covariances R S S^T R^T, [N, 3, 3], from quaternions and scales.

    Quaternions (w, x, y, z) [N, 4] are normalised here, as gsplat does; scales are [N, 3].
    """
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)
    half = rot * scales[:, None, :]
    return half @ half.transpose(1, 2)


def ewa_jacobians(means_cam: Tensor, camera: Camera, K: Tensor) -> Tensor:
    """
    Jacobians of the pinhole projection at the means, [N, 2, 3], for means_cam [N, 3].

    Means far outside the view would get huge, unstable Jacobians; like gsplat (and the Inria
    rasterizer) the point is clamped to 1.3x the half-FoV before differentiating.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = means_cam.unbind(-1)
    margin_x = FOV_CLAMP_MARGIN * (0.5 * camera.width / fx)
    margin_y = FOV_CLAMP_MARGIN * (0.5 * camera.height / fy)
    rz = 1.0 / z
    rz2 = rz * rz
    u = torch.clamp(x * rz, -(cx / fx + margin_x), (camera.width - cx) / fx + margin_x)
    v = torch.clamp(y * rz, -(cy / fy + margin_y), (camera.height - cy) / fy + margin_y)
    tx, ty = z * u, z * v
    zeros = torch.zeros_like(z)
    return torch.stack(
        [fx * rz, zeros, -fx * tx * rz2, zeros, fy * rz, -fy * ty * rz2], dim=-1
    ).reshape(-1, 2, 3)


def project(gaussians: Gaussians, camera: Camera, eps2d: float = EPS2D) -> Splats:
    """Project, cull and depth-sort the Gaussians (step 1 of the module docstring)."""
    device = gaussians.device
    w2c = camera.world_to_cam.to(device=device, dtype=torch.float32)
    K = camera.K.to(device=device, dtype=torch.float32)
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    means_cam = gaussians.means.float() @ rot.T + trans  # [N, 3]
    # Cheap cull first, so the rest only runs on Gaussians inside the depth range.
    depth = means_cam[:, 2]
    index = torch.nonzero((depth >= camera.near) & (depth <= camera.far)).squeeze(1)
    means_cam = means_cam[index]
    opacities = gaussians.opacities.float()[index]

    cov_world = covariances_3d(gaussians.quats.float()[index], gaussians.scales.float()[index])
    cov_cam = rot @ cov_world @ rot.T
    jac = ewa_jacobians(means_cam, camera, K)
    cov2d = jac @ cov_cam @ jac.transpose(1, 2)  # [M, 2, 2]
    cxx = cov2d[:, 0, 0] + eps2d
    cyy = cov2d[:, 1, 1] + eps2d
    cxy = cov2d[:, 0, 1]
    det = cxx * cyy - cxy * cov2d[:, 1, 0]
    inv_det = 1.0 / det
    conics = torch.stack([cyy * inv_det, -cxy * inv_det, cxx * inv_det], dim=-1)

    x, y, z = means_cam.unbind(-1)
    rz = 1.0 / z
    means2d = torch.stack([K[0, 0] * x * rz + K[0, 2], K[1, 1] * y * rz + K[1, 2]], dim=-1)

    # Opacity-aware extent (gsplat cites arXiv 2402.00525, B.2): the box holds every pixel where
    # opacity * exp(-sigma) >= 1/255, capped at 3.33 sigmas.
    alpha_min = torch.tensor(ALPHA_MIN, dtype=torch.float32, device=device)
    extent = torch.sqrt(2.0 * torch.log(opacities / alpha_min).clamp_min(0.0))
    extent = extent.clamp_max(MAX_EXTENT_SIGMAS)
    radii = torch.ceil(extent[:, None] * torch.stack([cxx, cyy], dim=-1).clamp_min(0.0).sqrt())
    visible = (
        (det > 0)
        & (opacities >= alpha_min)
        & ((radii[:, 0] > 0) | (radii[:, 1] > 0))
        & (means2d[:, 0] + radii[:, 0] > 0)
        & (means2d[:, 0] - radii[:, 0] < camera.width)
        & (means2d[:, 1] + radii[:, 1] > 0)
        & (means2d[:, 1] - radii[:, 1] < camera.height)
    )
    keep = torch.nonzero(visible).squeeze(1)
    order = keep[torch.sort(z[keep], stable=True).indices]
    return Splats(
        index=index[order],
        means2d=means2d[order],
        conics=conics[order],
        depths=z[order],
        opacities=opacities[order],
        radii=radii[order],
    )


def bin_to_tiles(splats: Splats, tiles_x: int, tiles_y: int) -> Tuple[Tensor, Tensor]:
    """
    Tile-Gaussian intersections (step 2 of the module docstring).

    :return: ``(splat_of_isect, tile_starts)``: the splat index of each intersection, grouped
        by tile (row-major tile id) and front to back inside a tile, [I] int64; the offset of
        each tile's group, [tiles_y * tiles_x + 1] int64.
    """
    device = splats.means2d.device
    tile_centre = splats.means2d / TILE_SIZE
    tile_radius = splats.radii / TILE_SIZE
    limits = torch.tensor([tiles_x, tiles_y], dtype=torch.float32, device=device)
    lo = torch.minimum(torch.floor(tile_centre - tile_radius).clamp_min(0.0), limits).long()
    hi = torch.minimum(torch.ceil(tile_centre + tile_radius).clamp_min(0.0), limits).long()
    # gsplat bins only splats whose radii are both positive.
    span = (hi - lo) * (splats.radii > 0).all(dim=1, keepdim=True)  # [M, 2]
    counts = span[:, 0] * span[:, 1]
    splat_of_isect = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(splat_of_isect), device=device) - first[splat_of_isect]
    width = span[splat_of_isect, 0]
    tile_x = lo[splat_of_isect, 0] + local % width
    tile_y = lo[splat_of_isect, 1] + local // width
    tile_id = tile_y * tiles_x + tile_x
    # Splats are already depth sorted, so a stable sort by tile keeps them front to back.
    tile_id, order = torch.sort(tile_id, stable=True)
    per_tile = torch.bincount(tile_id, minlength=tiles_x * tiles_y)
    tile_starts = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.long, device=device)
    tile_starts[1:] = torch.cumsum(per_tile, 0)
    return splat_of_isect[order], tile_starts


def tile_batches(tile_starts: Tensor) -> Iterator[Tensor]:
    """
    Group the non-empty tile ids by similar list lengths.

    Each group is a [B] int64 tensor whose padded alpha matrices fit in about
    ``CHUNK_ELEMENTS`` elements per depth chunk.
    """
    lengths = tile_starts[1:] - tile_starts[:-1]
    by_length = torch.argsort(lengths, descending=True)
    by_length = by_length[lengths[by_length] > 0]
    sizes = lengths[by_length].tolist()
    begin = 0
    while begin < len(sizes):
        chunk = min(sizes[begin], MAX_CHUNK_GAUSSIANS)
        count = max(1, CHUNK_ELEMENTS // (TILE_PIXELS * chunk))
        yield by_length[begin:begin + count]
        begin += count


def tile_alphas(tiles: Tensor, slots: Tensor, splats: Splats, tiles_x: int) -> Tensor:
    """
    Alpha of each pixel and Gaussian of a depth chunk of some tiles.

    In place where nothing needs a gradient, out of place where the splats carry one.

    :param tiles: tile ids, [B].
    :param slots: splat index per tile and list position, -1 for padding, [B, G].
    :return: alphas as gsplat computes them, 0 where skipped (< 1/255) or padding, [B, 256, G].
    """
    pad = slots < 0
    safe = slots.clamp_min(0)
    mean = splats.means2d[safe]  # [B, G, 2]
    conic = splats.conics[safe]  # [B, G, 3]
    # log(opacity) rides along with the separable terms, so alpha = exp(log(opacity) - sigma)
    # costs one pass over the block instead of three; padding gets log(0) = -inf, i.e. alpha 0.
    log_opacity = splats.opacities[safe].masked_fill(pad, 0.0).log()  # [B, G]
    offsets = torch.arange(TILE_SIZE, dtype=torch.float32, device=tiles.device) + 0.5
    px = ((tiles % tiles_x) * TILE_SIZE)[:, None] + offsets  # [B, 16] columns
    py = ((tiles // tiles_x) * TILE_SIZE)[:, None] + offsets  # [B, 16] rows
    # delta = mean - pixel, as in gsplat; the quadratic form is separable in rows and columns,
    # so only the cross term and two sums touch the full [B, 16, 16, G] block.
    dx = mean[:, None, :, 0] - px[:, :, None]  # [B, 16 cols, G]
    dy = mean[:, None, :, 1] - py[:, :, None]  # [B, 16 rows, G]
    log_x = log_opacity[:, None, :] - conic[:, None, :, 0] * dx * dx * 0.5  # [B, 16 cols, G]
    neg_yy = conic[:, None, :, 2] * dy * dy * -0.5  # [B, 16 rows, G]
    neg_cross = conic[:, None, :, 1] * dx * -1.0
    log_alpha = neg_yy[:, :, None, :] + log_x[:, None, :, :]  # [B, rows, cols, G]
    # sigma >= 0 up to rounding: the conic is the inverse of a covariance with eps2d added, so
    # positive definite; gsplat's "sigma < 0" skip is therefore not repeated here.
    if log_alpha.requires_grad:
        log_alpha = torch.addcmul(log_alpha, dy[:, :, None, :], neg_cross[:, None, :, :])
        alpha = torch.threshold(log_alpha.exp().clamp_max(ALPHA_MAX), ALPHA_SKIP_BELOW, 0.0)
    else:
        log_alpha.addcmul_(dy[:, :, None, :], neg_cross[:, None, :, :])
        alpha = log_alpha.exp_().clamp_max_(ALPHA_MAX)
        torch.threshold_(alpha, ALPHA_SKIP_BELOW, 0.0)  # F.threshold_ under its typed name
    return alpha.reshape(len(tiles), TILE_PIXELS, -1)


def composite_chunk(
    alpha: Tensor, values: Tensor, trans: Tensor, done: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """
    Front-to-back compositing of one depth chunk, continuing from earlier chunks.

    :param alpha: [B, P, G], depth sorted (consumed: overwritten with the weights, unless it
        requires grad).
    :param values: what each Gaussian carries (features and depth), [B, G, C].
    :param trans: transmittance before this chunk, [B, P].
    :param done: pixels already ended by the T <= 1e-4 rule, [B, P] bool.
    :return: sum of weight * value over the chunk [B, P, C], the transmittance after it [B, P]
        and the updated done flags [B, P].
    """
    start = trans.masked_fill(done, 0.0)  # ended pixels take nothing more
    keep_fraction = torch.rsub(alpha, 1.0)
    if alpha.requires_grad or start.requires_grad:  # the same products, out of place
        keep_fraction = torch.cat([keep_fraction[..., :1] * start[..., None],
                                   keep_fraction[..., 1:]], dim=-1)
        after = torch.cumprod(keep_fraction, dim=-1)
        ended = after <= T_MIN
        before = torch.cat([start[..., None], after[..., :-1]], dim=-1)  # T before each
        weights = (alpha * before).masked_fill(ended, 0.0)
    else:
        keep_fraction[..., 0].mul_(start)  # so that the product starts from the carried T
        after = torch.cumprod(keep_fraction, dim=-1)  # T after each Gaussian
        # True from the Gaussian that ends the pixel onwards, as T only decreases along the
        # list; a skipped Gaussian (alpha 0) leaves T as it is, so it never ends it.
        ended = after <= T_MIN
        weights = alpha
        weights[..., 1:].mul_(after[..., :-1])
        weights[..., 0].mul_(start)
        weights.masked_fill_(ended, 0.0)
    kept = ended.shape[-1] - ended.sum(dim=-1)  # [B, P] Gaussians before the end
    last = after.gather(-1, (kept - 1).clamp_min(0)[..., None])[..., 0]
    trans = torch.where(kept > 0, last, trans)
    return torch.bmm(weights, values), trans, done | ended[..., -1]


def composite(splats: Splats, values: Tensor, tiles_x: int, tiles_y: int) -> Tuple[Tensor, Tensor]:
    """
    Composite ``values`` [M, C] of the splats into every tile.

    :return: accumulated sum of weight * value per tile pixel, [tiles, 256, C], and the final
        transmittance, [tiles, 256].
    """
    device, dtype, channels = values.device, values.dtype, values.shape[1]
    n_tiles = tiles_x * tiles_y
    splat_of_isect, tile_starts = bin_to_tiles(splats, tiles_x, tiles_y)
    sums = torch.zeros(n_tiles, TILE_PIXELS, channels, dtype=dtype, device=device)
    trans_out = torch.ones(n_tiles, TILE_PIXELS, device=device)
    for tiles in tile_batches(tile_starts):
        starts = tile_starts[tiles]
        lengths = tile_starts[tiles + 1] - starts
        trans = torch.ones(len(tiles), TILE_PIXELS, device=device)
        done = torch.zeros(len(tiles), TILE_PIXELS, dtype=torch.bool, device=device)
        acc = torch.zeros(len(tiles), TILE_PIXELS, channels, dtype=dtype, device=device)
        longest = int(lengths.max())
        for first in range(0, longest, MAX_CHUNK_GAUSSIANS):
            position = torch.arange(first, min(first + MAX_CHUNK_GAUSSIANS, longest),
                                    device=device)
            isect = (starts[:, None] + position).clamp_max(len(splat_of_isect) - 1)  # [B, G]
            slots = torch.where(position < lengths[:, None], splat_of_isect[isect], -1)
            alpha = tile_alphas(tiles, slots, splats, tiles_x)
            # Padding slots read splat 0's values, but their weight is 0.
            part, trans, done = composite_chunk(alpha, values[slots.clamp_min(0)], trans, done)
            acc = acc + part
            if bool(done.all()):
                break
        sums[tiles] = acc
        trans_out[tiles] = trans
    return sums, trans_out


def untile(tiled: Tensor, tiles_x: int, tiles_y: int, width: int, height: int) -> Tensor:
    """[tiles_y * tiles_x, 256, C] per-tile pixels -> [height, width, C] image."""
    channels = tiled.shape[-1]
    grid = tiled.reshape(tiles_y, tiles_x, TILE_SIZE, TILE_SIZE, channels).permute(0, 2, 1, 3, 4)
    return grid.reshape(tiles_y * TILE_SIZE, tiles_x * TILE_SIZE, channels)[:height, :width]


def splat_colours(gaussians: Gaussians, camera: Camera, splats: Splats) -> Tensor:
    """View-dependent RGB of the splats, [M, 3]: gsplat's SH colour seen from the camera centre."""
    w2c = camera.world_to_cam.to(device=gaussians.device, dtype=torch.float32)
    centre = -w2c[:3, :3].T @ w2c[:3, 3]
    means = gaussians.means.float()[splats.index]
    return sh_to_rgb(gaussians.sh.float()[splats.index], means - centre, gaussians.sh_degree)


def render_torch(
    gaussians: Gaussians, camera: Camera, features: Optional[Tensor], background: Tensor
) -> RenderOutput:
    """
    Render like gsplat 1.5.3 ``rasterization(..., render_mode='RGB+ED')``.

    The render runs on the Gaussians' device (any device).

    :param gaussians: N Gaussians.
    :param camera: pinhole camera; its near/far are gsplat's near_plane/far_plane.
    :param features: channels to composite, [N, D]; None: RGB from the SH coefficients
        (view direction = mean - camera centre, colour clamped below at 0).
    :param background: [D], added as T * background.
    :return: RenderOutput with image [H, W, D], alpha [H, W, 1], depth [H, W, 1] (expected z,
        0 where alpha is 0).
    """
    tiles_x = (camera.width + TILE_SIZE - 1) // TILE_SIZE
    tiles_y = (camera.height + TILE_SIZE - 1) // TILE_SIZE
    geometry = torch.is_grad_enabled() and any(
        t.requires_grad for t in gaussians.tensors().values() if t.is_floating_point())
    with torch.set_grad_enabled(geometry):
        splats = project(gaussians, camera)
    if features is None:
        with torch.set_grad_enabled(geometry):
            colours = splat_colours(gaussians, camera, splats)
    else:
        colours = features.float()[splats.index]
    values = torch.cat([colours, splats.depths[:, None]], dim=1)  # [M, D + 1]
    sums, trans = composite(splats, values, tiles_x, tiles_y)
    sums = untile(sums, tiles_x, tiles_y, camera.width, camera.height)
    trans = untile(trans[..., None], tiles_x, tiles_y, camera.width, camera.height)
    alpha = 1.0 - trans
    image = sums[..., :-1] + trans * background.to(sums.device, torch.float32)
    depth = sums[..., -1:] / alpha.clamp_min(1e-10)
    return RenderOutput(image=image, alpha=alpha, depth=depth)
