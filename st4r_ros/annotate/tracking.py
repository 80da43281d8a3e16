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
Temporally consistent instance trajectories {M_k,t}: keyframe detection + SAM 2 propagation.

The stream is cut into segments of ``detect_every`` frames, each starting at a keyframe
(Grounded-SAM-2's continuous-id scheme). On a keyframe the detector's boxes are matched to the
tracks' boxes (the box of the track's mask on that frame, or its last box while it is lost) by
greedy IoU: a match continues the track, an unmatched box starts a new one, a visible track the
detector missed carries on from its own box. SAM 2 then segments every prompted track on the
keyframe and propagates the masks to the next keyframe. A pixel belongs to the track with the
highest mask logit among those above the threshold whose object score says "present".

Each finished segment is stored before the next starts: its frames' id masks (16-bit PNG) and
then the track state (``segment_NNNNN.json``, the commit mark), so a killed run resumes at the
first segment without a state file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import functools
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from st4r_ros.annotate.config import SegmenterConfig
from st4r_ros.annotate.detection import box_iou, Detections, GroundingDetector
from st4r_ros.annotate.views import StreamFrame
from st4r_ros.files import atomic_write
import torch
from torch import Tensor
import torch.nn.functional as F

# SAM 2's input normalisation (ImageNet statistics, as its processor applies).
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
# Prompt labels of a box's top-left and bottom-right corners in SAM 2's prompt encoder.
_BOX_LABELS = (2, 3)

Box = Tuple[float, float, float, float]


@dataclass
class Track:
    """
    A track's state at a keyframe.

    :ivar box: its box on the current keyframe, None when it is not visible there.
    :ivar last_box: its latest box, kept while it is lost so that it can be found again.
    :ivar labels: detector labels seen for it, with counts.
    """

    box: Optional[Box] = None
    last_box: Optional[Box] = None
    labels: Counter = field(default_factory=Counter)

    def to_json(self) -> Dict:
        return {'box': self.box, 'last_box': self.last_box, 'labels': dict(self.labels)}

    @classmethod
    def from_json(cls, data: Dict) -> 'Track':
        box = tuple(data['box']) if data['box'] is not None else None
        last = tuple(data['last_box']) if data['last_box'] is not None else None
        return cls(box, last, Counter(data['labels']))


def match_boxes(track_boxes: Tensor, det_boxes: Tensor, threshold: float) -> Dict[int, int]:
    """
    Greedy one-to-one matching by IoU, best pair first.

    :param track_boxes: [N, 4] xyxy.
    :param det_boxes: [D, 4] xyxy.
    :returns: detection index -> track index, for pairs with IoU >= threshold.
    """
    if track_boxes.numel() == 0 or det_boxes.numel() == 0:
        return {}
    iou = box_iou(det_boxes, track_boxes)  # [D, N]
    pairs = sorted(((float(iou[d, t]), d, t) for d in range(iou.shape[0])
                    for t in range(iou.shape[1])), key=lambda p: (-p[0], p[1], p[2]))
    matched: Dict[int, int] = {}
    used = set()
    for value, d, t in pairs:
        if value < threshold:
            break
        if d not in matched and t not in used:
            matched[d] = t
            used.add(t)
    return matched


def assign_detections(tracks: Dict[int, Track], detections: Detections, threshold: float,
                      next_id: int) -> Tuple[Dict[int, Box], int]:
    """
    Match a keyframe's detections to ``tracks`` (updated in place) and choose the prompts.

    :returns: the box prompt of every track to segment from this keyframe, and the next free id.
    """
    candidates = [(k, t.box or t.last_box) for k, t in sorted(tracks.items())
                  if (t.box or t.last_box) is not None]
    track_boxes = torch.tensor([b for _, b in candidates], dtype=torch.float32).reshape(-1, 4)
    matched = match_boxes(track_boxes, detections.boxes, threshold)
    prompts: Dict[int, Box] = {}
    for d, (box, label) in enumerate(zip(detections.boxes.tolist(), detections.labels)):
        if d in matched:
            key = candidates[matched[d]][0]
        else:
            key, next_id = next_id, next_id + 1
            tracks[key] = Track()
        tracks[key].labels[label] += 1
        prompts[key] = tuple(box)
    for key, track in sorted(tracks.items()):
        if key not in prompts and track.box is not None:
            prompts[key] = track.box
    return prompts, next_id


def mask_box(mask: Tensor) -> Optional[Box]:
    """Pixel-edge box (x0, y0, x1, y1) of mask [H, W] bool, None when it is empty."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def compose_ids(logits: Tensor, ids: Sequence[int], present: Tensor, threshold: float,
                min_pixels: int) -> Tensor:
    """
    Instance-id map [H, W] int32 from per-track mask logits [O, H, W].

    A pixel takes the id of the highest logit among the tracks above ``threshold`` that are
    ``present`` [O] bool and cover at least ``min_pixels``; 0 where none is.
    """
    on = (logits > threshold) & present[:, None, None]
    on &= (on.flatten(1).sum(dim=1) >= max(min_pixels, 1))[:, None, None]
    scores = torch.where(on, logits, torch.full_like(logits, -torch.inf))
    best, index = scores.max(dim=0)
    lookup = torch.tensor(list(ids), dtype=torch.int32)
    return torch.where(torch.isfinite(best), lookup[index], torch.zeros_like(lookup[index]))


class Sam2Propagator:
    """SAM 2 video propagation of box prompts from a segment's first frame."""

    def __init__(self, config: SegmenterConfig, load: Callable[[], Any]) -> None:
        """Wrap the SAM 2 video model that ``load()`` returns on first use."""
        self.config, self._load = config, load

    @functools.cached_property
    def model(self) -> Any:
        return self._load()

    @property
    def size(self) -> Tuple[int, int]:
        """Return the rows and columns of the model's input."""
        size = self.model.config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def _pixels(self, images: Sequence[Image.Image]) -> Tensor:
        """Frames as the model takes them: [T, 3, S, S] float32, ImageNet-normalised."""
        frames = []
        for image in images:
            array = np.asarray(image.convert('RGB'), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array).permute(2, 0, 1)[None]
            tensor = F.interpolate(tensor, size=self.size, mode='bilinear', align_corners=False)
            frames.append((tensor[0] - _MEAN) / _STD)
        return torch.stack(frames)

    @torch.no_grad()
    def propagate(self, images: Sequence[Image.Image], prompts: Dict[int, Box]
                  ) -> Iterator[Tuple[int, List[int], Tensor, Tensor]]:
        """
        Yield (frame, track ids, logits [O, H, W], present [O] bool) for every frame in order.

        Boxes are in the pixels of the images, which share one size.
        """
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        device = next(self.model.parameters()).device
        width, height = images[0].size
        session = Sam2VideoInferenceSession(
            video=self._pixels(images), video_height=height, video_width=width,
            inference_device=device, inference_state_device=device,
            video_storage_device=device, dtype=torch.float32)
        scale = torch.tensor([self.size[1] / width, self.size[0] / height])
        for key, box in prompts.items():
            index = session.obj_id_to_idx(key)
            corners = torch.tensor(box, dtype=torch.float32).view(1, 1, 2, 2) * scale
            session.add_point_inputs(index, 0, {
                'point_coords': corners,
                'point_labels': torch.tensor([[list(_BOX_LABELS)]], dtype=torch.int32)})
        session.obj_with_new_inputs = list(prompts)
        self.model(inference_session=session, frame_idx=0)
        for output in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            logits = self._upsample(output.pred_masks.float(), (height, width))
            present = output.object_score_logits.float().reshape(-1) > 0
            yield output.frame_idx, list(output.object_ids), logits.cpu(), present.cpu()

    def _upsample(self, masks: Tensor, size: Tuple[int, int]) -> Tensor:
        """Upsample logits [O, 1, h, w] -> [O, H, W]: to the model's input, then the frame."""
        full = F.interpolate(masks, size=self.size, mode='bilinear', align_corners=False)
        return F.interpolate(full, size=size, mode='bilinear', align_corners=False)[:, 0]


def save_ids(path: Path, ids: Tensor) -> None:
    """Write an id map [H, W] as a 16-bit PNG, atomically."""
    image = Image.fromarray(ids.to(torch.int32).numpy().astype(np.uint16))
    atomic_write(path, lambda tmp: image.save(tmp, format='PNG'))


def load_ids(path: Path) -> Tensor:
    """Read an id map written by :func:`save_ids`: [H, W] int64."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image).astype(np.int64))


@dataclass
class TrackState:
    """What carries from one segment to the next."""

    tracks: Dict[int, Track] = field(default_factory=dict)
    next_id: int = 1

    def to_json(self) -> Dict:
        return {'next_id': self.next_id,
                'tracks': {str(k): t.to_json() for k, t in sorted(self.tracks.items())}}

    @classmethod
    def from_json(cls, data: Dict) -> 'TrackState':
        return cls({int(k): Track.from_json(t) for k, t in data['tracks'].items()},
                   int(data['next_id']))


def segments(num_frames: int, stride: int) -> List[Tuple[int, int, int]]:
    """
    (keyframe, last frame fed to SAM 2, last frame written) per segment, all inclusive.

    Inner segments run into the next keyframe (to read the tracks' boxes there) but leave it
    to the next segment; the last one ends at the last frame.
    """
    spans = []
    for start in range(0, num_frames, stride):
        end = min(start + stride, num_frames - 1)
        spans.append((start, end, end - 1 if start + stride <= num_frames - 1 else end))
    return spans


def track_stream(frames: Sequence[StreamFrame], detector: GroundingDetector,
                 propagator: Sam2Propagator, config: SegmenterConfig, stride: int,
                 folder: Path, progress: Callable[[Iterable], Iterable] = iter) -> TrackState:
    """
    Track instances through ``frames``; id masks go to ``folder/frames/NNNNNN.png``.

    Segments already stored in ``folder`` are skipped. Returns the final track state.
    """
    state = TrackState()
    for number, (start, end, last) in enumerate(progress(segments(len(frames), stride))):
        marker = folder / f'segment_{number:05d}.json'
        if marker.is_file():
            state = TrackState.from_json(json.loads(marker.read_text()))
            continue
        images = [frames[i].load() for i in range(start, end + 1)]
        detections = detector.detect(images[:1])[0]
        prompts, state.next_id = assign_detections(state.tracks, detections,
                                                   config.match_iou, state.next_id)
        boxes = _run_segment(images, prompts, propagator, config, folder, start, last)
        for key, track in state.tracks.items():
            track.box = boxes.get(key)
            track.last_box = track.box or track.last_box
        atomic_write(marker, lambda tmp: tmp.write_text(json.dumps(state.to_json())))
    return state


def _run_segment(images: List[Image.Image], prompts: Dict[int, Box],
                 propagator: Sam2Propagator, config: SegmenterConfig, folder: Path,
                 start: int, last: int) -> Dict[int, Box]:
    """Segment, write frames start..last, return each track's box on the segment's end frame."""
    width, height = images[0].size
    min_pixels = int(config.min_area * width * height)
    results = propagator.propagate(images, prompts) if prompts else (
        (i, [], torch.zeros(0, height, width), torch.zeros(0, dtype=torch.bool))
        for i in range(len(images)))
    boxes: Dict[int, Box] = {}
    for local, ids, logits, present in results:
        id_map = compose_ids(logits, ids, present, config.mask_threshold, min_pixels) \
            if ids else torch.zeros(height, width, dtype=torch.int32)
        if start + local <= last:
            save_ids(folder / 'frames' / f'{start + local:06d}.png', id_map)
        if local == len(images) - 1:
            boxes = {k: b for k in ids if (b := mask_box(id_map == k)) is not None}
    return boxes
