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
The pure-torch rasterizer and SH colours against independent float64 references.

The references below are written from the maths, not from the backend: an EWA projection and
a per-pixel front-to-back compositor that visits every Gaussian for every pixel (no tiles), and
the real spherical harmonics built from associated Legendre functions. Tile-box cut-offs only
differ from that brute force for opacities above 0.998 (gsplat caps the box at 3.33 sigmas),
so the scenes here stay below that.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import pytest
from st4r_ros.render import torch_backend
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.sh import sh_to_rgb
from st4r_ros.render.torch_backend import render_torch
from st4r_ros.scene.gaussians import Gaussians, SH_C0
import torch

EPS2D = 0.3


def make_gaussians(means, scales, opacities, quats=None, sh=None) -> Gaussians:
    """Gaussians from array-likes; identity rotations and black DC colour unless given."""
    means = torch.as_tensor(np.asarray(means), dtype=torch.float32).reshape(-1, 3)
    n = len(means)
    scales = torch.as_tensor(scales, dtype=torch.float32).reshape(n, 3)
    if quats is None:
        quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    quats = torch.as_tensor(quats, dtype=torch.float32).reshape(n, 4)
    quats = torch.nn.functional.normalize(quats, dim=1)
    if sh is None:
        sh = torch.zeros(n, 1, 3)
    return Gaussians(
        means=means,
        quats=quats,
        scales=scales,
        opacities=torch.as_tensor(opacities, dtype=torch.float32).reshape(n),
        sh=sh,
    )


def pinhole(
    width: int, height: int, f: float = 60.0, w2c: Optional[torch.Tensor] = None, **kw
) -> Camera:
    """Square pixels, centred principal point, identity pose unless ``w2c`` is given."""
    return Camera.from_intrinsics(f, f, width / 2, height / 2, width, height, w2c, **kw)


def random_gaussians(
    n: int, seed: int, depth=(2.0, 5.0), spread=0.6, max_opacity=0.97
) -> Gaussians:
    """Draw n anisotropic Gaussians in front of an identity camera, some partly off screen."""
    gen = torch.Generator().manual_seed(seed)
    z = depth[0] + (depth[1] - depth[0]) * torch.rand(n, generator=gen)
    xy = (2 * torch.rand(n, 2, generator=gen) - 1) * spread * z[:, None]
    return make_gaussians(
        torch.cat([xy, z[:, None]], dim=1),
        torch.exp(torch.empty(n, 3).uniform_(math.log(0.03), math.log(0.4), generator=gen)),
        0.05 + (max_opacity - 0.05) * torch.rand(n, generator=gen),
        quats=torch.randn(n, 4, generator=gen),
    )


# ---------------------------------------------------------------------------------------------
# Independent float64 reference: EWA projection + per-pixel compositing over all Gaussians.


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
        ]
    )


def reference_splat(g: Gaussians, i: int, camera: Camera) -> Tuple[np.ndarray, np.ndarray, float]:
    """(pixel mean [2], 2D covariance incl. eps2d [2, 2], depth) of Gaussian i, float64."""
    w2c = camera.world_to_cam.double().numpy()
    K = camera.K.double().numpy()
    fx, fy = K[0, 0], K[1, 1]
    x, y, z = w2c[:3, :3] @ g.means[i].double().numpy() + w2c[:3, 3]
    rot = w2c[:3, :3] @ quat_to_matrix(g.quats[i].double().numpy())
    cov3 = rot @ np.diag(g.scales[i].double().numpy() ** 2) @ rot.T
    # The Jacobian is taken at the mean's ray clamped to 1.3x the image's half-FoV (per side).
    x_max = (camera.width - K[0, 2]) / fx + 0.15 * camera.width / fx
    x_min = -K[0, 2] / fx - 0.15 * camera.width / fx
    y_max = (camera.height - K[1, 2]) / fy + 0.15 * camera.height / fy
    y_min = -K[1, 2] / fy - 0.15 * camera.height / fy
    u, v = np.clip(x / z, x_min, x_max), np.clip(y / z, y_min, y_max)
    jac = np.array([[fx / z, 0.0, -fx * u / z], [0.0, fy / z, -fy * v / z]])
    cov2 = jac @ cov3 @ jac.T + EPS2D * np.eye(2)
    return np.array([fx * x / z + K[0, 2], fy * y / z + K[1, 2]]), cov2, z


def reference_render(
    g: Gaussians, camera: Camera, features: np.ndarray, background: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [H, W, D], alpha [H, W], depth [H, W]) by brute force, front to back per pixel."""
    height, width = camera.height, camera.width
    px, py = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    trans = np.ones((height, width))
    done = np.zeros((height, width), dtype=bool)
    image = np.zeros((height, width, features.shape[1]))
    depth_sum = np.zeros((height, width))
    splats = [reference_splat(g, i, camera) for i in range(len(g))]
    for i in sorted(range(len(g)), key=lambda k: splats[k][2]):
        mean, cov2, z = splats[i]
        if z < camera.near or z > camera.far:
            continue
        delta = np.stack([px - mean[0], py - mean[1]], axis=-1)
        sigma = 0.5 * np.einsum('hwi,ij,hwj->hw', delta, np.linalg.inv(cov2), delta)
        alpha = np.minimum(0.999, float(g.opacities[i]) * np.exp(-sigma))
        hit = (alpha >= 1 / 255) & ~done
        ends = hit & (trans * (1 - alpha) <= 1e-4)
        done |= ends
        hit &= ~ends
        weight = np.where(hit, alpha * trans, 0.0)
        image += weight[..., None] * features[i]
        depth_sum += weight * z
        trans = np.where(hit, trans * (1 - alpha), trans)
    alpha_out = 1 - trans
    if background is not None:
        image += trans[..., None] * background
    depth = np.where(alpha_out > 0, depth_sum / np.maximum(alpha_out, 1e-10), 0.0)
    return image, alpha_out, depth


# ---------------------------------------------------------------------------------------------
# Geometry and compositing.


def test_single_gaussian_has_the_analytic_projected_falloff():
    camera = pinhole(48, 40, f=60.0)
    mean = np.array([0.3, -0.2, 3.0])  # off-axis: the Jacobian's third column matters
    s, opacity = 0.15, 0.8
    g = make_gaussians([mean], [[s, s, s]], [opacity])
    out = render_torch(g, camera, torch.ones(1, 1), torch.zeros(1))

    fx = 60.0
    x, y, z = mean
    jac = np.array([[fx / z, 0, -fx * x / z**2], [0, fx / z, -fx * y / z**2]])
    cov = s**2 * jac @ jac.T + EPS2D * np.eye(2)  # isotropic 3D covariance s^2 I
    centre = np.array([fx * x / z + 24.0, fx * y / z + 20.0])
    px, py = np.meshgrid(np.arange(48) + 0.5, np.arange(40) + 0.5)
    d = np.stack([px - centre[0], py - centre[1]], axis=-1)
    expected = opacity * np.exp(-0.5 * np.einsum('hwi,ij,hwj->hw', d, np.linalg.inv(cov), d))
    expected[expected < 1 / 255] = 0.0

    assert out.alpha.shape == (40, 48, 1) and out.image.shape == (40, 48, 1)
    np.testing.assert_allclose(out.alpha[..., 0].numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(out.image[..., 0].numpy(), expected, atol=2e-6)
    assert (expected == 0).any() and expected.max() > 0.75  # both regimes are exercised


def test_two_gaussians_composite_front_to_back_whatever_the_input_order():
    camera = pinhole(40, 32)
    near = ([0.05, 0.0, 3.0], [0.3, 0.25, 0.2], 0.6, [1.0, 0.0])
    far = ([-0.05, 0.05, 5.0], [0.5, 0.4, 0.3], 0.7, [0.0, 1.0])
    singles = [render_torch(make_gaussians([m], [s], [o]), camera, torch.ones(1, 1),
                            torch.zeros(1))
               for m, s, o, _ in (near, far)]
    a_near, a_far = singles[0].alpha, singles[1].alpha
    expected = torch.cat([a_near, (1 - a_near) * a_far], dim=-1)  # [H, W, 2]: one channel each

    for first, second in ((near, far), (far, near)):
        g = make_gaussians([first[0], second[0]], [first[1], second[1]], [first[2], second[2]])
        feats = torch.tensor([first[3], second[3]])
        out = render_torch(g, camera, feats, torch.zeros(2))
        torch.testing.assert_close(out.image, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.alpha, 1 - (1 - a_near) * (1 - a_far), atol=1e-6, rtol=0)
    assert float(expected[..., 1].max()) > 0.05  # the far one does show through


def test_empty_render_is_exactly_the_background():
    camera = pinhole(33, 17)
    background = torch.tensor([0.2, -1.0, 7.0])
    for g in (make_gaussians(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)),
              make_gaussians([[0.0, 0.0, -3.0]], [[0.5, 0.5, 0.5]], [0.9])):  # behind the camera
        out = render_torch(g, camera, torch.ones(len(g), 3), background)
        assert out.image.shape == (17, 33, 3)
        assert torch.equal(out.image, background.expand(17, 33, 3))
        assert torch.equal(out.alpha, torch.zeros(17, 33, 1))
        assert torch.equal(out.depth, torch.zeros(17, 33, 1))


def test_background_fills_what_the_gaussians_leave():
    camera = pinhole(32, 32)
    g = random_gaussians(12, seed=3)
    feats = torch.rand(12, 2)
    plain = render_torch(g, camera, feats, torch.zeros(2))
    background = torch.tensor([0.5, -2.0])
    with_bg = render_torch(g, camera, feats, background)
    expected = plain.image + (1 - plain.alpha) * background
    torch.testing.assert_close(with_bg.image, expected, atol=1e-6, rtol=0)
    # Through the public API with the ReferSplat trap in mind: empty pixels take the background.
    via_api = render(g, camera, feats, background=background, backend='torch')
    torch.testing.assert_close(via_api.image, with_bg.image)


def test_transmittance_floor_excludes_the_gaussian_that_crosses_it():
    camera = pinhole(16, 16, f=60.0)
    depths = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    means = [[0.5 * z / 60.0, 0.5 * z / 60.0, z] for z in depths]  # all on pixel (8, 8)'s centre
    feats = torch.arange(1.0, 7.0)[:, None] * torch.tensor([[1.0, 10.0]])
    order = torch.tensor([3, 0, 5, 1, 4, 2])  # shuffled input order
    # T after each at the centre: 0.95 -> 5e-2, 2.5e-3, 1.25e-4, 6.25e-6 (the 4th ends it);
    # 0.995 -> 5e-3, 2.5e-5 (the 2nd ends it).
    for opacity, kept in ((0.95, 3), (0.995, 1)):
        g = make_gaussians(means, [[0.02, 0.02, 0.02]] * 6, [opacity] * 6).select(order)
        out = render_torch(g, camera, feats[order], torch.zeros(2))
        weights = [opacity * (1 - opacity) ** k for k in range(kept)]
        assert float(out.alpha[8, 8, 0]) == pytest.approx(1 - (1 - opacity) ** kept, abs=1e-6)
        assert float(out.image[8, 8, 0]) == pytest.approx(
            sum(w * (k + 1) for k, w in enumerate(weights)), abs=1e-5
        )
        ref_img, ref_alpha, _ = reference_render(g, camera, feats[order].double().numpy())
        np.testing.assert_allclose(out.image.numpy(), ref_img, atol=2e-5)
        np.testing.assert_allclose(out.alpha[..., 0].numpy(), ref_alpha, atol=2e-5)


def test_gaussians_outside_the_depth_range_are_culled():
    camera = pinhole(24, 24, near=0.5, far=10.0)

    def peak_alpha(z: float) -> float:
        g = make_gaussians([[0.0, 0.0, z]], [[0.05, 0.05, 0.05]], [0.9])
        return float(render_torch(g, camera, torch.ones(1, 1), torch.zeros(1)).alpha.max())

    for z in (-3.0, 0.3, 12.0):  # behind, closer than near, beyond far
        assert peak_alpha(z) == 0.0
    for z in (0.5, 3.0, 10.0):  # the range is inclusive, as in gsplat
        assert peak_alpha(z) > 0.1


@pytest.mark.parametrize('channels', [1, 5])
def test_features_are_composited_linearly_per_channel(channels: int):
    camera = pinhole(40, 24)
    g = random_gaussians(20, seed=channels)
    feats = torch.rand(20, channels)
    out = render_torch(g, camera, feats, torch.zeros(channels))
    doubled = render_torch(g, camera, 2 * feats, torch.zeros(channels))
    assert out.image.shape == (24, 40, channels)
    torch.testing.assert_close(doubled.image, 2 * out.image)
    ref_img, ref_alpha, _ = reference_render(g, camera, feats.double().numpy())
    np.testing.assert_allclose(out.image.numpy(), ref_img, atol=2e-5)
    np.testing.assert_allclose(out.alpha[..., 0].numpy(), ref_alpha, atol=2e-5)
    for k in range(channels):
        alone = render_torch(g, camera, feats[:, k:k + 1], torch.zeros(1))
        torch.testing.assert_close(alone.image[..., 0], out.image[..., k])


def test_depth_is_the_expected_z():
    camera = pinhole(32, 32)
    flat = make_gaussians([[0.1, 0.0, 3.0]], [[0.2, 0.2, 1e-4]], [0.97])
    out = render_torch(flat, camera, torch.ones(1, 1), torch.zeros(1))
    hit = out.alpha[..., 0] > 0
    assert hit.float().mean() > 0.3 and (~hit).any()
    # Not exact: the depth is divided by 1 - T, which rounds differently from the sum of weights.
    depth = out.depth[hit]
    torch.testing.assert_close(depth, torch.full_like(depth, 3.0), rtol=1e-4, atol=0.0)
    assert torch.equal(out.depth[~hit], torch.zeros_like(out.depth[~hit]))
    # Two at different depths: the alpha-weighted mean of z.
    g = random_gaussians(10, seed=5)
    out = render_torch(g, camera, torch.ones(10, 1), torch.zeros(1))
    _, ref_alpha, ref_depth = reference_render(g, camera, np.ones((10, 1)))
    mask = ref_alpha > 0.05
    np.testing.assert_allclose(out.depth[..., 0].numpy()[mask], ref_depth[mask], rtol=1e-4)


def test_gaussians_across_tile_borders_render_seamlessly():
    # 45 x 37 is not a multiple of 16: partial tiles on the right and bottom as well.
    camera = pinhole(45, 37, f=40.0)
    g = random_gaussians(25, seed=11, spread=0.5)
    g = make_gaussians(
        torch.cat([g.means, torch.tensor([[0.0, 0.0, 2.5]])]),  # a big one right at a tile corner
        torch.cat([g.scales, torch.tensor([[0.4, 0.2, 0.1]])]),
        torch.cat([g.opacities, torch.tensor([0.9])]),
        quats=torch.cat([g.quats, torch.tensor([[0.9, 0.1, 0.2, 0.3]])]),
    )
    feats = torch.rand(len(g), 3)
    background = np.array([0.1, 0.2, 0.3])
    out = render_torch(g, camera, feats, torch.tensor(background, dtype=torch.float32))
    ref_img, ref_alpha, ref_depth = reference_render(g, camera, feats.double().numpy(), background)
    np.testing.assert_allclose(out.image.numpy(), ref_img, atol=3e-5)
    np.testing.assert_allclose(out.alpha[..., 0].numpy(), ref_alpha, atol=3e-5)
    mask = ref_alpha > 0.05
    np.testing.assert_allclose(out.depth[..., 0].numpy()[mask], ref_depth[mask], rtol=1e-4)


def test_depth_chunks_and_tile_batches_give_the_same_image(monkeypatch):
    camera = pinhole(48, 32)
    g = random_gaussians(200, seed=2, spread=0.25, max_opacity=0.99)
    feats = torch.rand(200, 2)
    whole = render_torch(g, camera, feats, torch.zeros(2))
    assert float((whole.alpha > 0.999).float().mean()) > 0.1  # many pixels hit the T floor
    # Lists cut into 3-Gaussian chunks that carry T over, and one tile per batch.
    monkeypatch.setattr(torch_backend, 'MAX_CHUNK_GAUSSIANS', 3)
    monkeypatch.setattr(torch_backend, 'CHUNK_ELEMENTS', 256)
    pieces = render_torch(g, camera, feats, torch.zeros(2))
    torch.testing.assert_close(pieces.image, whole.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces.alpha, whole.alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces.depth, whole.depth, atol=1e-5, rtol=0)


def test_feature_gradient_is_each_gaussians_total_weight():
    camera = pinhole(24, 24)
    g = random_gaussians(8, seed=7)
    feats = torch.rand(8, 1, requires_grad=True)
    render_torch(g, camera, feats, torch.zeros(1)).image.sum().backward()
    for i in (0, 3, 7):
        one_hot = torch.zeros(8, 1)
        one_hot[i] = 1.0
        weight = render_torch(g, camera, one_hot, torch.zeros(1)).image.sum()
        assert float(feats.grad[i, 0]) == pytest.approx(float(weight), rel=1e-5, abs=1e-6)


def _with_grad(g: Gaussians) -> Gaussians:
    """Return the same Gaussians with every float tensor a leaf that requires grad."""
    return Gaussians(**{name: t.clone().requires_grad_(t.is_floating_point())
                        for name, t in g.tensors().items()})


@pytest.mark.parametrize('features', [None, 2])
def test_a_render_with_geometry_gradients_is_the_same_render(features):
    camera = pinhole(48, 32)
    g = random_gaussians(150, seed=4, spread=0.3, max_opacity=0.99)
    feats = None if features is None else torch.rand(150, features)
    bg = torch.zeros(3 if features is None else features)
    plain = render_torch(g, camera, feats, bg)
    graded = render_torch(_with_grad(g), camera, feats, bg)
    assert graded.image.requires_grad and not plain.image.requires_grad
    for name in ('image', 'alpha', 'depth'):
        torch.testing.assert_close(getattr(graded, name).detach(), getattr(plain, name),
                                   atol=1e-6, rtol=0)


def test_geometry_gradients_match_finite_differences():
    camera = pinhole(32, 32)
    g = random_gaussians(6, seed=11, spread=0.15, max_opacity=0.8)
    feats = torch.rand(6, 1, dtype=torch.float32)
    leaf = _with_grad(g)
    render_torch(leaf, camera, feats, torch.zeros(1)).image.sum().backward()

    def total(means: torch.Tensor, opacities: torch.Tensor) -> float:
        moved = Gaussians(means, g.quats, g.scales, opacities, g.sh)
        return float(render_torch(moved, camera, feats, torch.zeros(1)).image.double().sum())

    # Small steps: a larger one can cross a screen box's or a tile's edge (not differentiated,
    # as in gsplat) and the difference quotient then jumps.
    step = 1e-4
    for i in range(3):
        for axis in range(3):
            up, down = g.means.clone(), g.means.clone()
            up[i, axis] += step
            down[i, axis] -= step
            numeric = (total(up, g.opacities) - total(down, g.opacities)) / (2 * step)
            assert float(leaf.means.grad[i, axis]) == pytest.approx(numeric, rel=0.02, abs=0.01)
        up, down = g.opacities.clone(), g.opacities.clone()
        up[i] += step
        down[i] -= step
        numeric = (total(g.means, up) - total(g.means, down)) / (2 * step)
        assert float(leaf.opacities.grad[i]) == pytest.approx(numeric, rel=0.02, abs=0.01)


def test_a_photometric_fit_moves_a_gaussian_onto_its_target():
    camera = pinhole(32, 32)
    target = make_gaussians([[0.1, -0.05, 3.0]], [0.08] * 3, [0.9],
                            sh=torch.full((1, 1, 3), 0.5 / SH_C0))
    wanted = render_torch(target, camera, None, torch.zeros(3)).image
    means = torch.tensor([[0.16, 0.02, 3.0]], requires_grad=True)
    optimiser = torch.optim.Adam([means], lr=0.005)
    for _ in range(80):
        moved = Gaussians(means, target.quats, target.scales, target.opacities, target.sh)
        loss = (render_torch(moved, camera, None, torch.zeros(3)).image - wanted).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float((means.detach() - target.means).norm()) < 0.02


# ---------------------------------------------------------------------------------------------
# Spherical harmonics.


def legendre(ell: int, m: int, x: float) -> float:
    """Associated Legendre P_l^m(x), l = ell, m >= 0, with the Condon-Shortley phase."""
    pmm = 1.0
    for k in range(1, m + 1):
        pmm *= -(2 * k - 1) * math.sqrt(1 - x * x)
    if ell == m:
        return pmm
    pm1 = x * (2 * m + 1) * pmm
    for ll in range(m + 2, ell + 1):
        pmm, pm1 = pm1, ((2 * ll - 1) * x * pm1 - (ll + m - 1) * pmm) / (ll - m)
    return pm1


def real_sh(ell: int, m: int, direction: np.ndarray) -> float:
    """Real spherical harmonic Y_lm, l = ell (the 3DGS basis) at a direction of any length."""
    x, y, z = direction / np.linalg.norm(direction)
    phi = math.atan2(y, x)
    ratio = math.factorial(ell - abs(m)) / math.factorial(ell + abs(m))
    k = math.sqrt((2 * ell + 1) / (4 * math.pi) * ratio)
    if m == 0:
        return k * legendre(ell, 0, z)
    angular = math.cos(m * phi) if m > 0 else math.sin(-m * phi)
    return math.sqrt(2) * k * legendre(ell, abs(m), z) * angular


def test_sh_degree_zero_is_the_clamped_dc_colour():
    dc = torch.tensor([[[0.5, -3.0, 1.0]], [[-2.0, 0.0, 4.0]]])
    rgb = sh_to_rgb(dc, torch.randn(2, 3), degree=0)
    torch.testing.assert_close(rgb, (SH_C0 * dc[:, 0] + 0.5).clamp_min(0.0))
    assert float(rgb.min()) == 0.0 and float(rgb.max()) > 1.0  # clamped below only, like gsplat


@pytest.mark.parametrize('degree', [1, 3])
def test_sh_matches_the_real_harmonics(degree: int):
    gen = torch.Generator().manual_seed(degree)
    sh = torch.randn(3, 16, 3, generator=gen, dtype=torch.float64) * 0.4
    dirs = np.array([[0.3, -0.8, 0.5], [-2.0, 1.0, -0.5], [0.0, 0.0, -4.0]])
    got = sh_to_rgb(sh.float(), torch.tensor(dirs, dtype=torch.float32), degree)
    for n, direction in enumerate(dirs):
        basis = np.array(
            [real_sh(ell, m, direction) for ell in range(degree + 1) for m in range(-ell, ell + 1)]
        )
        expected = np.maximum(basis @ sh[n, : (degree + 1) ** 2].numpy() + 0.5, 0.0)
        np.testing.assert_allclose(got[n].numpy(), expected, atol=2e-6)


def test_rgb_render_looks_along_mean_minus_camera_centre():
    # Only the l=1, m=0 coefficient (basis C1 * dz): the colour flips with the viewing side.
    sh = torch.zeros(1, 4, 3)
    sh[0, 2] = torch.tensor([1.0, 0.0, -1.0])
    g = make_gaussians([[0.0, 0.0, 3.0]], [[0.2, 0.2, 0.2]], [0.9], sh=sh)
    c1 = 0.4886025119029199
    front = pinhole(16, 16)  # at the origin looking +z: direction +z
    flip = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))  # 180 degrees about y
    flip[2, 3] = 6.0  # camera at z = 6, looking -z: direction -z
    back = pinhole(16, 16, w2c=flip)
    for camera, sign in ((front, 1.0), (back, -1.0)):
        out = render_torch(g, camera, None, torch.zeros(3))
        alpha = out.alpha[8, 8, 0]
        expected = torch.tensor([0.5 + sign * c1, 0.5, max(0.5 - sign * c1, 0.0)]) * alpha
        torch.testing.assert_close(out.image[8, 8], expected, atol=1e-5, rtol=0)
