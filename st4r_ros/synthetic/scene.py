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
Synthetic dynamic scenes with ground truth: the test bed of the referring and temporal parts.

A scene is a table of flat Gaussians (instance id -1) with objects on it, each a cloud of
Gaussians sampled on the surface of a sphere, cube, cylinder or torus, in a named colour and
size. Every scene has one object of each role:

- twin x 2: identical shape, colour, size and Gaussian cloud, static; only position tells them
  apart ("the white sphere on the left");
- mover: slides to a neighbouring free slot of the table ("moving");
- rotator: a cube (the only shape whose turn about the vertical is visible) turning about z
  ("rotating") and, from the middle of its turn to a little after it, flattened less deeply
  than the squasher ("squashed"): the object that changes two things, at times both at once;
- squasher: flattened and restored with its volume kept, twice, at rest in between
  ("squashed" in two spans, "static" between them): the event that happens more than once;
- splitter: breaks in half along its local x axis, the halves drifting apart ("splitting",
  then "split" for good);
- vanisher: fades out, stays invisible, fades back in ("disappearing", "invisible",
  "appearing"), through opacity only;

plus static extras when ``num_objects`` > 7. A frame with none of the changing events
(moving, rotating, squashed, splitting, disappearing, appearing) also has "static".

A frame's ``events`` list every event holding at that frame (the rotator's may hold "rotating"
and "squashed" together), and ``spans`` every maximal run of frames of one event (the
squasher's "squashed" has two). At the default 24 frames the windows are drawn so that each of
these shows: the squasher's pause and each of its squashes span at least two frames, and the
rotator has frames turning only, turning and squashed, and squashed only.

Identity is time invariant, as the referring field's per-Gaussian embeddings are: every object
keeps its Gaussians, in the same order, in every frame (so frames correspond and the bundle
interpolates linearly), and the two halves of a split object keep its instance id. Object ids
are 1..K in a seeded order that tells nothing about roles; 0 is never a Gaussian's id so that
mask value 0 can mean "no object".

Ground-truth masks are rendered through `render()` with one-hot instance features: pixel value
k (1..K) when instance k's accumulated blending weight is the largest and at least 0.5, else
0 (background: table or nothing). A half-covered pixel is thus labelled by what mostly shows,
and the table in front of an object occludes it as it should.

Output of `write_synthetic(out, seed)`::

    out/
      scene/manifest.json, scene/gaussians.safetensors   the bundle (load_bundle)
      objects.json     objects: id, name, shape, colour, size, role, look-alikes, per-frame
                       state (position, yaw, height scale, split gap, opacity, events) and
                       event spans (inclusive frame ranges)
      cameras.json     {"train": [...], "novel": [...]}: name, frame, time, camera
                       (Camera.to_json), mask and image paths relative to out/
      masks/{train,novel}/<name>.png    8-bit instance ids, 0 = background
      images/{train,novel}/<name>.png   RGB on a white background

Everything is drawn from ``numpy.random.default_rng(seed)``, but for the squasher's second
squash and the rotator's squash, drawn from ``default_rng([seed, 1])`` so that every other
draw is what it was before they were added: the same seed gives the same bytes, another seed
another layout, look, timing and Gaussians.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import json
import math
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from st4r_ros.errors import SceneFormatError
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import save_png
from st4r_ros.scene.bundle import save_bundle
from st4r_ros.scene.gaussians import Gaussians, SH_C0
from st4r_ros.scene.keyframes import Keyframe
import torch
from torch import Tensor

PALETTE: Dict[str, Tuple[float, float, float]] = {
    'red': (0.85, 0.12, 0.10),
    'green': (0.15, 0.65, 0.20),
    'blue': (0.12, 0.25, 0.85),
    'yellow': (0.95, 0.85, 0.10),
    'orange': (0.95, 0.50, 0.08),
    'purple': (0.55, 0.20, 0.70),
    'cyan': (0.10, 0.75, 0.80),
    'pink': (0.95, 0.45, 0.65),
    'white': (0.95, 0.95, 0.95),
    'black': (0.08, 0.08, 0.08),
}
TABLE_RGB = (0.55, 0.42, 0.30)  # wood, kept out of the palette so objects stand out
SHAPES = ('sphere', 'cube', 'cylinder', 'torus')
# Size word -> half width of the object in metres (sphere radius, cube half side, ...).
SIZES = {'small': 0.14, 'medium': 0.18, 'large': 0.22}
ROLES = ('twin', 'twin', 'mover', 'rotator', 'squasher', 'splitter', 'vanisher')
MOTION_EVENTS = ('moving', 'rotating', 'squashed', 'splitting', 'disappearing', 'appearing')
# Slots on the table are this far apart; large enough for a turning large cube, squashed by
# ROTATOR_SQUASH_DEPTH (reach 0.22 * sqrt 2 / sqrt 0.7 = 0.37), beside a split object (reach
# 0.22 + half the gap = 0.32) or a squashed one (0.22 / sqrt 0.5 = 0.31).
SLOT_SPACING = 0.7
MAX_SPLIT_GAP = 0.2
SQUASH_DEPTH = 0.5
ROTATOR_SQUASH_DEPTH = 0.3
TARGET = (0.0, 0.0, 0.15)  # where every camera looks
TRAIN_ELEVATIONS_DEG = (20.0, 40.0)
MASK_MIN_WEIGHT = 0.5
MAX_OBJECTS = 20  # shape x colour cycles stay distinct up to lcm(4, 10) looks


@dataclass(frozen=True)
class SyntheticConfig:
    """
    Size of a synthetic scene.

    The defaults give ~13.5k Gaussians, 24 frames, 72 views; the views' renders take nearly all
    of the generation time.
    """

    num_objects: int = 7
    gaussians_per_object: int = 1500
    table_gaussians: int = 3000
    num_frames: int = 24
    duration_s: float = 4.0
    train_cameras_per_frame: int = 2
    novel_cameras_per_frame: int = 1
    width: int = 160
    height: int = 120
    fov_x_deg: float = 60.0
    sh_degree: int = 0

    def __post_init__(self) -> None:
        minimums = {'num_objects': len(ROLES), 'gaussians_per_object': 16, 'table_gaussians': 0,
                    'num_frames': 2, 'train_cameras_per_frame': 0, 'novel_cameras_per_frame': 0,
                    'width': 8, 'height': 8, 'sh_degree': 0}
        for name, low in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SceneFormatError(f"synthetic option '{name}': expected an integer >= {low}, "
                                       f'got {value!r}')
        if self.num_objects > MAX_OBJECTS or self.sh_degree > 3:
            raise SceneFormatError(f'synthetic options: expected num_objects <= {MAX_OBJECTS} and '
                                   f'sh_degree <= 3, got {self.num_objects}, {self.sh_degree}')
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in (self.duration_s, self.fov_x_deg))
        if not (numbers and self.duration_s > 0 and 0 < self.fov_x_deg < 180):
            raise SceneFormatError(f'synthetic options: expected duration_s > 0 and fov_x_deg in '
                                   f'(0, 180), got {self.duration_s!r}, {self.fov_x_deg!r}')


@dataclass(frozen=True)
class CameraView:
    """A camera paired with the scene frame it sees."""

    name: str
    split: str  # 'train' or 'novel'
    frame: int
    time: float
    camera: Camera


@dataclass(frozen=True)
class SyntheticScene:
    """
    A generated scene.

    Keyframes (time, Gaussians with instance_ids), objects.json's object entries and the
    cameras, train views first.
    """

    seed: int
    config: SyntheticConfig
    keyframes: List[Keyframe]
    objects: List[Dict]
    views: List[CameraView]

    @property
    def num_instances(self) -> int:
        return len(self.objects)


@dataclass(frozen=True)
class _Template:
    """An object's Gaussians in its own frame (centre at the origin, z up), float64 numpy."""

    points: np.ndarray  # [n, 3]
    sigma: float  # isotropic standard deviation of each Gaussian
    rgb: np.ndarray  # [n, 3]
    half_height: float


@dataclass(frozen=True)
class _Object:
    instance_id: int
    role: str
    shape: str
    colour: str
    size: str
    slot: Tuple[float, float]
    template: _Template
    schedule: Dict[str, float]  # role-specific window bounds and amounts
    destination: Optional[Tuple[float, float]] = None  # mover only


@dataclass(frozen=True)
class _State:
    position: np.ndarray  # [3] object centre
    yaw: float  # radians about z
    height_scale: float  # z stretch; x and y get 1 / sqrt of it (volume kept)
    split_gap: float  # distance between the two halves, metres
    opacity_scale: float  # multiplies every Gaussian's opacity
    events: List[str]


def generate_synthetic(seed: int = 0, config: Optional[SyntheticConfig] = None) -> SyntheticScene:
    """Generate the synthetic scene of ``seed`` (deterministic), in memory."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SceneFormatError(f"synthetic option 'seed': expected an integer >= 0, got {seed!r}")
    config = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    slots, table_half = _table_layout(config.num_objects)
    objects = _make_objects(rng, np.random.default_rng([seed, 1]), config, slots)
    table = _table_gaussians(rng, config, table_half)
    times = [f / (config.num_frames - 1) for f in range(config.num_frames)]
    states = [[_state(obj, u) for u in times] for obj in objects]
    keyframes = [
        (u, _frame_gaussians(objects, [s[f] for s in states], table, config.sh_degree))
        for f, u in enumerate(times)
    ]
    radius = 1.6 * math.hypot(*table_half)
    views = _train_views(config, times, radius) + _novel_views(rng, config, times, radius)
    entries = [_object_entry(obj, s, times) for obj, s in zip(objects, states)]
    _link_look_alikes(entries)
    return SyntheticScene(seed, config, keyframes, entries, views)


def instance_labels(weights: Tensor, min_weight: float = MASK_MIN_WEIGHT) -> Tensor:
    """
    Per-pixel instance id from per-instance blending weights.

    :param weights: accumulated weight of instances 1..K, [H, W, K].
    :return: [H, W] int64: argmax + 1 where that weight >= ``min_weight``, else 0 (background).
    """
    best, index = weights.max(dim=-1)
    return torch.where(best >= min_weight, index + 1, torch.zeros_like(index))


def render_ground_truth(
    gaussians: Gaussians, camera: Camera, num_instances: int
) -> Tuple[Tensor, Tensor]:
    """
    Render the RGB image [H, W, 3] on white and instance labels [H, W] int64 (`instance_labels`).

    Both come from one render whose features are colour and one-hot instance channels
    [N, 3 + K].
    """
    ids = gaussians.instance_ids
    if ids is None:
        raise SceneFormatError('render_ground_truth: the Gaussians have no instance_ids')
    one_hot = (ids[:, None] == torch.arange(1, num_instances + 1, device=ids.device)).float()
    features = torch.cat([gaussians.rgb, one_hot], dim=1)
    background = torch.cat([torch.ones(3), torch.zeros(num_instances)])
    image = render(gaussians, camera, features, background=background).image
    return image[..., :3], instance_labels(image[..., 3:])


def write_synthetic(
    out_dir: str | Path,
    seed: int = 0,
    config: Optional[SyntheticConfig] = None,
    progress: Callable[[Sequence[CameraView]], Iterable[CameraView]] = lambda views: views,
) -> SyntheticScene:
    """
    Generate the scene of ``seed`` and write it under ``out_dir`` (layout in the module doc).

    Existing files of the same names are replaced; ``progress`` wraps the loop over views
    (e.g. rich.progress.track).
    """
    out = Path(out_dir)
    scene = generate_synthetic(seed, config)
    metadata = {'generator': 'st4r_ros.synthetic.scene', 'seed': seed,
                'config': asdict(scene.config), 'objects': '../objects.json'}
    save_bundle(out / 'scene', scene.keyframes, scene.config.duration_s, metadata,
                interpolation='linear')
    cameras: Dict[str, List[Dict]] = {'train': [], 'novel': []}
    for view in progress(scene.views):
        gaussians = scene.keyframes[view.frame][1]
        rgb, labels = render_ground_truth(gaussians, view.camera, scene.num_instances)
        mask_path = f'masks/{view.split}/{view.name}.png'
        image_path = f'images/{view.split}/{view.name}.png'
        _save_labels(out / mask_path, labels)
        save_png(out / image_path, rgb)
        cameras[view.split].append({'name': view.name, 'frame': view.frame, 'time': view.time,
                                    'camera': view.camera.to_json(), 'mask': mask_path,
                                    'image': image_path})
    _write_json(out / 'cameras.json', {'format': 'st4r-synthetic-cameras', 'version': 1,
                                       'mask_background': 0, **cameras})
    _write_json(out / 'objects.json', _objects_document(scene))
    return scene


def synth_main(out: str | Path, seed: int = 0, **options) -> SyntheticScene:
    """
    Write a synthetic scene with a progress bar: `st4r synth OUT --seed S [--option value ...]`.

    ``options`` are SyntheticConfig fields; an unknown one raises SceneFormatError.
    """
    from rich.progress import track

    known = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SceneFormatError(
            f'synthetic options: unknown {unknown}; expected some of {sorted(known)}'
        )
    config = SyntheticConfig(**options)
    return write_synthetic(out, seed, config,
                           progress=lambda views: track(views, description='rendering masks'))


# ---- layout and objects -------------------------------------------------------------------


def _table_layout(num_objects: int) -> Tuple[List[Tuple[float, float]], Tuple[float, float]]:
    """
    Lay out the table: slot centres on a grid, and the table's half extents (x, y).

    The grid has room for every object, the mover's destination and spares.
    """
    needed = num_objects + 4
    cols = math.ceil(math.sqrt(needed * 4 / 3))
    rows = math.ceil(needed / cols)
    slots = [((c - (cols - 1) / 2) * SLOT_SPACING, (r - (rows - 1) / 2) * SLOT_SPACING)
             for r in range(rows) for c in range(cols)]
    margin = SLOT_SPACING * 0.7
    return slots, ((cols - 1) / 2 * SLOT_SPACING + margin, (rows - 1) / 2 * SLOT_SPACING + margin)


def _make_objects(rng: np.random.Generator, extra: np.random.Generator, config: SyntheticConfig,
                  slots: List[Tuple[float, float]]) -> List[_Object]:
    """
    Objects sorted by id; ids are a seeded permutation of 1..K over ROLES + extras.

    ``extra`` draws the windows added to the roles' first ones (`_schedule`).
    """
    roles = list(ROLES) + ['static'] * (config.num_objects - len(ROLES))
    twin_look, *looks = _looks(rng, len(roles) - 1)
    # The rotator (roles[3], looks[1]) takes the first cube look: a cube shows its turn.
    cube = next(i for i, look in enumerate(looks) if look[0] == 'cube')
    looks.insert(1, looks.pop(cube))
    looks = [twin_look, twin_look] + looks
    placement = _placement(rng, roles, slots)
    ids = rng.permutation(len(roles)) + 1
    templates = [_template(rng, shape, SIZES[size], PALETTE[colour], config.gaussians_per_object)
                 for shape, colour, size in looks[1:]]
    templates.insert(0, templates[0])  # the twins share one cloud: identical up to position
    objects = []
    for i, role in enumerate(roles):
        shape, colour, size = looks[i]
        slot, destination = placement[i]
        objects.append(_Object(int(ids[i]), role, shape, colour, size, slot, templates[i],
                               _schedule(rng, extra, role), destination))
    return sorted(objects, key=lambda obj: obj.instance_id)


def _looks(rng: np.random.Generator, count: int) -> List[Tuple[str, str, str]]:
    """
    Draw ``count`` distinct (shape, colour, size) looks.

    Shapes and colours each cycle through a shuffled order, so every shape appears and no two
    looks coincide up to MAX_OBJECTS.
    """
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    colours = [list(PALETTE)[i] for i in rng.permutation(len(PALETTE))]
    sizes = [list(SIZES)[i] for i in rng.integers(0, len(SIZES), count)]
    return [(shapes[i % len(shapes)], colours[i % len(colours)], sizes[i]) for i in range(count)]


def _placement(rng: np.random.Generator, roles: List[str], slots: List[Tuple[float, float]]
               ) -> List[Tuple[Tuple[float, float], Optional[Tuple[float, float]]]]:
    """
    Choose (slot, destination) per object.

    The mover gets a free 4-neighbour slot to move to, so its straight path passes between
    other objects, never through them.
    """
    free = [slots[i] for i in rng.permutation(len(slots))]
    mover_slot = free.pop()
    neighbours = [s for s in free
                  if math.isclose(math.dist(s, mover_slot), SLOT_SPACING, rel_tol=1e-6)]
    destination = neighbours[int(rng.integers(len(neighbours)))]
    free.remove(destination)
    return [(mover_slot, destination) if role == 'mover' else (free.pop(), None) for role in roles]


def _schedule(rng: np.random.Generator, extra: np.random.Generator,
              role: str) -> Dict[str, float]:
    """
    Normalised-time windows of the role's change, and its amount.

    ``rng`` draws as many numbers for each role as it did before the squasher squashed twice
    and the rotator was squashed too; ``extra`` draws those added windows. The squasher's
    squashes are at least 0.2 long and its pause 0.1, the rotator's turn-only,
    turn-and-squash and squash-only parts at least 0.08: two frames or more each at the
    default 24 frames (1/23 apart), but at least one for the rotator's squash only.
    """
    if role in ('twin', 'static'):
        return {}
    if role == 'squasher':
        start = rng.uniform(0.05, 0.15)
        end = start + rng.uniform(0.2, 0.3)
        again = end + extra.uniform(0.1, 0.2)  # the pause
        return {'start': start, 'end': end, 'again_start': again,
                'again_end': again + extra.uniform(0.2, 0.3)}
    if role == 'vanisher':
        start = rng.uniform(0.15, 0.35)
        gone = start + 0.1 + rng.uniform(0.2, 0.3)
        return {'out_start': start, 'out_end': start + 0.1, 'in_start': gone, 'in_end': gone + 0.1}
    if role == 'splitter':
        start = rng.uniform(0.3, 0.5)
        return {'start': start, 'end': start + rng.uniform(0.2, 0.3)}
    start = rng.uniform(0.1, 0.4)
    window = {'start': start, 'end': start + rng.uniform(0.25, 0.4)}
    if role == 'rotator':
        window['angle'] = float(rng.choice([-1.0, 1.0]) * rng.uniform(math.pi / 3, math.pi))
        turn = window['end'] - start  # >= 0.25
        window['squash_start'] = start + extra.uniform(0.35, 0.65) * turn
        window['squash_end'] = window['end'] + extra.uniform(0.08, 0.15)
    return window


# ---- shapes -------------------------------------------------------------------------------


def _template(rng: np.random.Generator, shape: str, size: float, rgb: Sequence[float],
              n: int) -> _Template:
    """
    Sample n Gaussians on the surface of ``shape`` of half width ``size``.

    They are coloured ``rgb`` with a little per-Gaussian noise; sigma is about half the mean
    spacing so the surface looks closed.
    """
    points, area, half_height = _SAMPLERS[shape](rng, size, n)
    colours = np.clip(np.asarray(rgb) + rng.normal(0.0, 0.03, (n, 3)), 0.0, 1.0)
    return _Template(points, 0.6 * math.sqrt(area / n), colours, half_height)


def _sphere(rng: np.random.Generator, r: float, n: int) -> Tuple[np.ndarray, float, float]:
    v = rng.normal(size=(n, 3))
    return r * v / np.linalg.norm(v, axis=1, keepdims=True), 4 * math.pi * r * r, r


def _cube(rng: np.random.Generator, a: float, n: int) -> Tuple[np.ndarray, float, float]:
    face = rng.integers(0, 6, n)
    points = rng.uniform(-a, a, (n, 3))
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    points[np.arange(n), axis] = sign * a
    return points, 24 * a * a, a


def _cylinder(rng: np.random.Generator, r: float, n: int) -> Tuple[np.ndarray, float, float]:
    h = 1.2 * r  # half height
    side, cap = 2 * math.pi * r * 2 * h, math.pi * r * r
    theta = rng.uniform(0, 2 * math.pi, n)
    on_side = rng.uniform(0, side + 2 * cap, n) < side
    radial = np.where(on_side, r, r * np.sqrt(rng.uniform(0, 1, n)))
    z = np.where(on_side, rng.uniform(-h, h, n), np.where(rng.uniform(0, 1, n) < 0.5, h, -h))
    points = np.stack([radial * np.cos(theta), radial * np.sin(theta), z], axis=1)
    return points, side + 2 * cap, h


def _torus(rng: np.random.Generator, size: float, n: int) -> Tuple[np.ndarray, float, float]:
    """
    Sample a ring lying flat: tube radius 0.3 size around a circle of radius 0.7 size.

    The tube angle is drawn by rejection so that density is uniform over the surface.
    """
    R, r = 0.7 * size, 0.3 * size
    accepted: List[np.ndarray] = []
    while sum(len(a) for a in accepted) < n:
        phi = rng.uniform(0, 2 * math.pi, 2 * n)
        keep = rng.uniform(0, 1, 2 * n) < (R + r * np.cos(phi)) / (R + r)
        accepted.append(phi[keep])
    phi = np.concatenate(accepted)[:n]
    theta = rng.uniform(0, 2 * math.pi, n)
    ring = R + r * np.cos(phi)
    points = np.stack([ring * np.cos(theta), ring * np.sin(theta), r * np.sin(phi)], axis=1)
    return points, 4 * math.pi ** 2 * R * r, r


_SAMPLERS = {'sphere': _sphere, 'cube': _cube, 'cylinder': _cylinder, 'torus': _torus}


def _table_gaussians(rng: np.random.Generator, config: SyntheticConfig,
                     half: Tuple[float, float]) -> Gaussians:
    """
    Make a flat grid of about ``table_gaussians`` Gaussians just below z = 0 (id -1).

    They are jittered inside their cells; none when table_gaussians is 0.
    """
    nx = round(math.sqrt(config.table_gaussians * half[0] / half[1]))
    ny = config.table_gaussians // nx if nx else 0
    dx, dy = 2 * half[0] / max(nx, 1), 2 * half[1] / max(ny, 1)
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * dx - half[0],
                         (np.arange(ny) + 0.5) * dy - half[1])
    n = nx * ny
    means = np.stack([gx.ravel(), gy.ravel(), np.full(n, -0.005)], axis=1)
    means[:, :2] += rng.uniform(-0.25, 0.25, (n, 2)) * [dx, dy]
    rgb = np.clip(np.asarray(TABLE_RGB) + rng.normal(0.0, 0.04, (n, 3)), 0.0, 1.0)
    scales = np.tile([0.6 * dx, 0.6 * dy, 0.004], (n, 1))
    return _gaussians(means, np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)), scales, np.full(n, 0.95), rgb,
                      np.full(n, -1), config.sh_degree)


# ---- time ---------------------------------------------------------------------------------


def _smoothstep(u: float, start: float, end: float) -> float:
    """Eased progress through [start, end]: 0 before, 1 after, C1-continuous in between."""
    x = min(max((u - start) / (end - start), 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _squash(u: float, start: float, end: float, depth: float) -> float:
    """Height scale of a squash over (start, end): 1 - depth at its middle, exactly 1 outside."""
    if not start < u < end:
        return 1.0
    return 1.0 - depth * math.sin(math.pi * (u - start) / (end - start))


def _state(obj: _Object, u: float) -> _State:
    """
    Compute where ``obj`` is and what it does at normalised time ``u``.

    An event holds strictly inside its window (the object has not started or has finished
    changing at the bounds).
    """
    s, events = obj.schedule, []
    inside = obj.role not in ('twin', 'static', 'vanisher') and s['start'] < u < s['end']
    x, y = obj.slot
    yaw, height, gap, opacity = 0.0, 1.0, 0.0, 1.0
    if obj.role == 'mover':
        p = _smoothstep(u, s['start'], s['end'])
        x, y = (1 - p) * np.asarray(obj.slot) + p * np.asarray(obj.destination)
        events += ['moving'] if inside else []
    elif obj.role == 'rotator':
        yaw = s['angle'] * _smoothstep(u, s['start'], s['end'])
        height = _squash(u, s['squash_start'], s['squash_end'], ROTATOR_SQUASH_DEPTH)
        events += ['rotating'] if inside else []
        events += ['squashed'] if s['squash_start'] < u < s['squash_end'] else []
    elif obj.role == 'squasher':
        height = min(_squash(u, s['start'], s['end'], SQUASH_DEPTH),
                     _squash(u, s['again_start'], s['again_end'], SQUASH_DEPTH))
        squashing = (s['start'] < u < s['end'], s['again_start'] < u < s['again_end'])
        events += ['squashed'] if any(squashing) else []
    elif obj.role == 'splitter':
        gap = MAX_SPLIT_GAP * _smoothstep(u, s['start'], s['end'])
        events += ['splitting'] if inside else ['split'] if u >= s['end'] else []
    elif obj.role == 'vanisher':
        opacity = 1.0 - _smoothstep(u, s['out_start'], s['out_end']) + _smoothstep(
            u, s['in_start'], s['in_end'])
        events += ['disappearing'] if s['out_start'] < u < s['out_end'] else []
        events += ['invisible'] if opacity == 0.0 else []
        events += ['appearing'] if s['in_start'] < u < s['in_end'] else []
    if not set(events) & set(MOTION_EVENTS):
        events.append('static')
    position = np.array([x, y, obj.template.half_height * height])
    return _State(position, yaw, height, gap, opacity, events)


def _object_gaussians(obj: _Object, state: _State, sh_degree: int) -> Gaussians:
    """Place the object's Gaussians in world coordinates: squash, split, turn, place."""
    t = obj.template
    widen = 1.0 / math.sqrt(state.height_scale)
    local = t.points * [widen, widen, state.height_scale]
    # The two halves (x >= 0 and x < 0 in the object's frame) drift apart along x.
    local[:, 0] += np.where(t.points[:, 0] >= 0, 0.5, -0.5) * state.split_gap
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    means = local @ rotation.T + state.position
    n = len(local)
    quat = [math.cos(state.yaw / 2), 0.0, 0.0, math.sin(state.yaw / 2)]  # wxyz about z
    scales = np.tile(t.sigma * np.array([widen, widen, state.height_scale]), (n, 1))
    return _gaussians(means, np.tile(quat, (n, 1)), scales, np.full(n, 0.9 * state.opacity_scale),
                      t.rgb, np.full(n, obj.instance_id), sh_degree)


def _frame_gaussians(objects: List[_Object], states: List[_State], table: Gaussians,
                     sh_degree: int) -> Gaussians:
    """Objects in id order, then the table: the same order in every frame."""
    parts = [_object_gaussians(obj, st, sh_degree) for obj, st in zip(objects, states)] + [table]
    return Gaussians(**{name: torch.cat([p.tensors()[name] for p in parts])
                        for name in table.tensors()})


def _gaussians(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray,
               rgb: np.ndarray, ids: np.ndarray, sh_degree: int) -> Gaussians:
    """Gaussians from numpy arrays [n, ...]; colour goes into the SH DC term, higher bands 0."""
    n = len(means)
    sh = np.zeros((n, (sh_degree + 1) ** 2, 3))
    sh[:, 0] = (rgb - 0.5) / SH_C0

    def f32(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return Gaussians(f32(means), f32(quats), f32(scales), f32(opacities), f32(sh),
                     torch.from_numpy(np.asarray(ids, dtype=np.int64)))


# ---- cameras ------------------------------------------------------------------------------


def _orbit_camera(config: SyntheticConfig, azimuth: float, elevation: float,
                  radius: float) -> Camera:
    direction = np.array([math.cos(elevation) * math.cos(azimuth),
                          math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
    eye = np.asarray(TARGET) + radius * direction
    return Camera.look_at(eye.tolist(), TARGET, fov_x_deg=config.fov_x_deg,
                          width=config.width, height=config.height)


def _train_views(config: SyntheticConfig, times: List[float], radius: float) -> List[CameraView]:
    """
    Place each frame's cameras evenly spaced on a ring, alternating between two heights.

    The ring turns by a golden-ratio fraction of a step each frame so that over time the
    training views cover all azimuths.
    """
    n = config.train_cameras_per_frame
    golden = (math.sqrt(5) - 1) / 2
    views = []
    for f, u in enumerate(times):
        for j in range(n):
            azimuth = 2 * math.pi * (j + f * golden) / n
            elevation = math.radians(TRAIN_ELEVATIONS_DEG[(f + j) % 2])
            views.append(CameraView(f'train_f{f:03d}_c{j}', 'train', f, u,
                                    _orbit_camera(config, azimuth, elevation, radius)))
    return views


def _novel_views(rng: np.random.Generator, config: SyntheticConfig, times: List[float],
                 radius: float) -> List[CameraView]:
    """
    Place held-out cameras at random, off the training rings.

    Azimuths are random, elevations 10-60 degrees and radii 0.8-1.25 of the training ring's.
    """
    views = []
    for f, u in enumerate(times):
        for j in range(config.novel_cameras_per_frame):
            azimuth = rng.uniform(0, 2 * math.pi)
            elevation = math.radians(rng.uniform(10.0, 60.0))
            camera = _orbit_camera(config, azimuth, elevation, radius * rng.uniform(0.8, 1.25))
            views.append(CameraView(f'novel_f{f:03d}_c{j}', 'novel', f, u, camera))
    return views


# ---- documents ----------------------------------------------------------------------------


def _object_entry(obj: _Object, states: List[_State], times: List[float]) -> Dict:
    """objects.json entry: identity, look, per-frame state and event spans."""
    frames = [
        {'frame': f, 'time': u, 'position': [_r(v) for v in st.position],
         'yaw_deg': _r(math.degrees(st.yaw)), 'height_scale': _r(st.height_scale),
         'split_gap': _r(st.split_gap), 'opacity_scale': _r(st.opacity_scale),
         'visible': st.opacity_scale > 0, 'events': st.events}
        for f, (u, st) in enumerate(zip(times, states))
    ]
    return {'id': obj.instance_id, 'name': f'{obj.colour} {obj.shape}', 'shape': obj.shape,
            'colour': obj.colour, 'rgb': list(PALETTE[obj.colour]), 'size': obj.size,
            'size_m': SIZES[obj.size], 'role': obj.role, 'look_alikes': [],
            'num_gaussians': len(obj.template.points), 'frames': frames,
            'spans': _spans(states, times)}


def _spans(states: List[_State], times: List[float]) -> List[Dict]:
    """Maximal runs of frames holding each event: the temporal ground truth."""
    spans = []
    for event in sorted({e for st in states for e in st.events}):
        start = None
        for f, st in enumerate(states + [None]):
            holds = st is not None and event in st.events
            if holds and start is None:
                start = f
            if not holds and start is not None:
                spans.append({'event': event, 'start_frame': start, 'end_frame': f - 1,
                              'start_time': times[start], 'end_time': times[f - 1]})
                start = None
    return sorted(spans, key=lambda span: (span['start_frame'], span['event']))


def _link_look_alikes(entries: List[Dict]) -> None:
    """Fill each entry's look_alikes: ids of the other objects of the same shape, colour, size."""
    def look(entry: Dict) -> Tuple[str, str, str]:
        return entry['shape'], entry['colour'], entry['size']

    by_look: Dict[Tuple, List[int]] = {}
    for entry in entries:
        by_look.setdefault(look(entry), []).append(entry['id'])
    for entry in entries:
        entry['look_alikes'] = [i for i in by_look[look(entry)] if i != entry['id']]


def _objects_document(scene: SyntheticScene) -> Dict:
    return {'format': 'st4r-synthetic-objects', 'version': 1, 'seed': scene.seed,
            'num_frames': scene.config.num_frames, 'duration_s': scene.config.duration_s,
            'frame_times': [u for u, _ in scene.keyframes],
            'background': {'instance_id': -1, 'name': 'table', 'mask_value': 0},
            'events': list(MOTION_EVENTS) + ['split', 'invisible', 'static'],
            'objects': scene.objects}


def _r(value: float) -> float:
    """
    Round a state value to 6 decimals for a readable JSON.

    Times are written exact so that they equal the bundle's frame times.
    """
    return round(float(value), 6)


def _save_labels(path: Path, labels: Tensor) -> None:
    """[H, W] int64 ids 1..K (K <= MAX_OBJECTS < 256) as an 8-bit greyscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.to(torch.uint8).numpy()).save(path)


def _write_json(path: Path, document: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
