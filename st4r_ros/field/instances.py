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
Which instance each Gaussian belongs to, from the 2D training masks alone.

A real scene has no 3D instance labels, only per-view masks from a segmenter/tracker. Each
Gaussian's centre is projected into every training view at the view's time (``scene.at(t)``,
so moving objects are followed); where it lands inside the image, in front (its depth within
a tolerance of the rendered expected depth: Gaussians behind the visible surface see someone
else's pixel) and not faded out, it casts one vote for the mask id under it (0 = background).
A Gaussian gets the object id with the most votes if that id has at least ``min_votes`` votes
and at least ``min_fraction`` of all its votes (background included); otherwise -1.

Gaussians seen in fewer than ``min_votes`` views (the underside of an object on a table, the
inside of a cluster) have no evidence of their own; they take the majority decision of their
``NEIGHBOURS`` nearest decided Gaussians (at the first view's time), as the surface they are
hidden behind belongs to the same object far more often than not.

Why the fraction counts background votes: a table Gaussian right beside an object is sometimes
covered by the object's mask edge; it still sees background from most views, while an object
Gaussian sees its object from most views that see it at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Protocol, Sequence

from st4r_ros.errors import SceneFormatError, SupervisionFormatError
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.torch_backend import ALPHA_MIN
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.scene4d import Scene4D
import torch
from torch import Tensor

# A Gaussian counts as visible if its depth is at most (1 + this) x the rendered expected depth
# at its pixel: 3% of 3 m is 9 cm, inside a 15-20 cm object's front half, short of its back.
DEPTH_TOLERANCE = 0.03
MIN_VOTES = 2
MIN_FRACTION = 0.5
NEIGHBOURS = 8
# Rows of the unseen-to-decided distance matrix computed at once: 256 x 300k floats = 300 MB.
DISTANCE_ROWS = 256


class MaskedView(Protocol):
    """What instance assignment needs from a training view (SupervisionView has it)."""

    @property
    def time(self) -> float:
        """Return the view's normalised scene time."""

    @property
    def camera(self) -> Camera:
        """Return the camera that took the view."""

    def load_mask(self) -> Tensor:
        """[H, W] int64 instance ids, 0 = background."""


@dataclass(frozen=True)
class InstanceAssignment:
    """
    Gaussian -> instance, from mask votes.

    :ivar assignment: instance id per Gaussian, -1 for none, [N] int64.
    :ivar instance_ids: the ids that got at least one Gaussian, sorted, [K] int64.
    :ivar votes: votes for the assigned id (or the best object id when unassigned), [N] int64.
    :ivar seen: number of views in which each Gaussian was visible, [N] int64.
    """

    assignment: Tensor
    instance_ids: Tensor
    votes: Tensor
    seen: Tensor

    def agreement(self, true_ids: Tensor) -> float:
        """Fraction of the Gaussians with a true object id (> 0) assigned exactly that id."""
        objects = true_ids > 0
        if not bool(objects.any()):
            return 1.0
        hit = self.assignment.cpu()[objects.cpu()] == true_ids.cpu()[objects.cpu()]
        return float(hit.float().mean())


def project_centres(means: Tensor, camera: Camera) -> tuple[Tensor, Tensor, Tensor]:
    """
    Project means [N, 3] to pixel column, row and depth z, each [N].

    Column and row are int64, the floor of the projected centre. Points behind the near plane
    get depth <= near and are filtered by the caller.
    """
    w2c = camera.world_to_cam.to(means.device, torch.float32)
    K = camera.K.to(means.device, torch.float32)
    cam = means.float() @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    safe = torch.where(z > camera.near, z, torch.ones_like(z))
    u = K[0, 0] * cam[:, 0] / safe + K[0, 2]
    v = K[1, 1] * cam[:, 1] / safe + K[1, 2]
    return torch.floor(u).long(), torch.floor(v).long(), z


def visible_labels(gaussians: Gaussians, camera: Camera, mask: Tensor,
                   depth_tolerance: float = DEPTH_TOLERANCE) -> tuple[Tensor, Tensor]:
    """
    Find the Gaussians seen in one view and the mask id under each.

    :param gaussians: the scene at the view's time (N Gaussians).
    :param mask: [H, W] int64 ids of the view, 0 = background.
    :return: indices of the visible Gaussians [M] int64 and their mask ids [M] int64.
    """
    if tuple(mask.shape) != (camera.height, camera.width):
        raise SupervisionFormatError(f'mask: expected shape ({camera.height}, {camera.width}) '
                                     f'as the camera, got {tuple(mask.shape)}')
    u, v, z = project_centres(gaussians.means, camera)
    inside = ((z > camera.near) & (u >= 0) & (u < camera.width) & (v >= 0)
              & (v < camera.height) & (gaussians.opacities >= ALPHA_MIN))
    index = torch.nonzero(inside).squeeze(1)
    u, v, z = u[index], v[index], z[index]
    probe = torch.ones(len(gaussians), 1, device=gaussians.device)
    with torch.no_grad():
        depth = render(gaussians, camera, probe).depth[..., 0]  # [H, W]
    front = z <= depth[v, u] * (1.0 + depth_tolerance)
    return index[front], mask.to(gaussians.device)[v[front], u[front]].long()


def assign_instances(
    scene: Scene4D,
    views: Sequence[MaskedView],
    *,
    device: torch.device | str = 'cpu',
    depth_tolerance: float = DEPTH_TOLERANCE,
    min_votes: int = MIN_VOTES,
    min_fraction: float = MIN_FRACTION,
    progress: Callable[[Sequence], Iterable] = lambda views: views,
) -> InstanceAssignment:
    """
    Vote every Gaussian into an instance over ``views`` (see the module docstring).

    The scene must keep the same N Gaussians at every time (the referring field's premise).
    """
    counts: Optional[Tensor] = None  # [N, max id + 1] votes per id, column 0 = background
    for view in progress(views):
        gaussians = scene.at(view.time, device)
        index, labels = visible_labels(gaussians, view.camera, view.load_mask(), depth_tolerance)
        counts = _add_votes(counts, len(gaussians), index, labels)
    if counts is None:
        raise SupervisionFormatError('assign_instances: expected at least one view')
    decided = _decide(counts, min_votes, min_fraction)
    means = scene.at(views[0].time, device).means
    filled = fill_unseen(decided.assignment, decided.seen >= min_votes, means)
    return replace(decided, assignment=filled, instance_ids=torch.unique(filled[filled >= 0]))


def fill_unseen(assignment: Tensor, decided: Tensor, means: Tensor,
                neighbours: int = NEIGHBOURS) -> Tensor:
    """
    Fill in the undecided Gaussians of an assignment [N].

    Every undecided Gaussian (decided [N] bool False) takes the most common label (an id or -1)
    of its ``neighbours`` nearest decided ones (means [N, 3]).
    """
    undecided = torch.nonzero(~decided).squeeze(1)
    known = torch.nonzero(decided).squeeze(1)
    if len(undecided) == 0 or len(known) == 0:
        return assignment
    k = min(neighbours, len(known))
    filled = assignment.clone()
    for rows in undecided.split(DISTANCE_ROWS):
        nearest = torch.cdist(means[rows].float(), means[known].float()).topk(k, largest=False)
        filled[rows] = torch.mode(assignment[known][nearest.indices], dim=1).values
    return filled


def _add_votes(counts: Optional[Tensor], n: int, index: Tensor, labels: Tensor) -> Tensor:
    """Add one vote per (index, label) to counts [N, C]; widened when a label >= C."""
    width = int(labels.max()) + 1 if len(labels) else 1
    if counts is None:
        counts = torch.zeros(n, width, dtype=torch.long, device=index.device)
    if counts.shape[0] != n:
        raise SceneFormatError(f'scene: {n} Gaussians at one time, {counts.shape[0]} at another; '
                               'the referring field needs the same Gaussians at every time')
    if width > counts.shape[1]:
        counts = torch.cat([counts, counts.new_zeros(n, width - counts.shape[1])], dim=1)
    flat = counts.view(-1)
    flat.index_add_(0, index * counts.shape[1] + labels, torch.ones_like(index))
    return counts


def _decide(counts: Tensor, min_votes: int, min_fraction: float) -> InstanceAssignment:
    seen = counts.sum(dim=1)
    if counts.shape[1] == 1:  # no object id in any mask
        none = torch.full_like(seen, -1)
        return InstanceAssignment(none, seen.new_zeros(0), torch.zeros_like(seen), seen)
    votes, best = counts[:, 1:].max(dim=1)
    best = best + 1
    keep = (votes >= min_votes) & (votes >= min_fraction * seen)
    assignment = torch.where(keep, best, torch.full_like(best, -1))
    return InstanceAssignment(assignment, torch.unique(assignment[keep]), votes, seen)
