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
`st4r annotate`: frames + cameras -> the supervision folder `st4r train` reads.

Stages, each resumable:

1. tracking (tracking.py): keyframe detection + SAM 2 propagation into id masks per stream
   frame, stored segment by segment under ``OUT/annotate/tracks``;
2. mapping: tracks renumbered 1..K by first appearance, each training view's mask taken from
   its frame and resized to its camera (``OUT/masks/<view>.png``);
3. description captions C_desc(o_k, t) on highlighted frames;
4. temporal state captions C_state(o_k, t): a summary per instance, then short clips around
   each time, the summary given as context;
5. ``supervision.json``, validated by the loader and written atomically, last.

Model answers go to the cache (cache.py) as they come, so a killed run redoes nothing already
answered; models load only when something is missing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
import functools
import json
from pathlib import Path
import shutil
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from st4r_ros.annotate.cache import AnswerCache
from st4r_ros.annotate.captioning import CaptionRequest, fill, VisionLanguageCaptioner
from st4r_ros.annotate.config import AnnotateConfig, load_config
from st4r_ros.annotate.detection import GroundingDetector
from st4r_ros.annotate.highlight import fit_pixels, highlight
from st4r_ros.annotate.models import (captioner_dtype, load_captioner, load_detector,
                                      load_segmenter, pick_device, resolve_models,
                                      ResolvedModel)
from st4r_ros.annotate.tracking import load_ids, Sam2Propagator, track_stream, TrackState
from st4r_ros.annotate.views import AnnotationInput, open_input, resize_ids
from st4r_ros.errors import AnnotationError
from st4r_ros.files import atomic_write
from st4r_ros.supervision.format import (Caption, InstanceCaptions, save_supervision,
                                         Supervision, SupervisionView)
import torch

WORK = 'annotate'
MASKS = 'masks'
# Frames decoded at once while captioning (highlighting reads each frame several times).
FRAME_CACHE = 64

Progress = Callable[[Iterable, str], Iterable]


@dataclass(frozen=True)
class AnnotateResult:
    """What a run wrote: the supervision file and counts for the summary."""

    supervision: Path
    views: int
    instances: int
    captions: int
    state_captions: int
    empty_answers: int
    cache_hits: int
    cache_misses: int


@dataclass(frozen=True)
class Sighting:
    """An instance seen at one frame number, in the stream frame where it shows largest."""

    frame: int
    index: int
    pixels: int


def annotate(source: str | Path, scene: str | Path, out: str | Path,
             config: AnnotateConfig = AnnotateConfig(), cameras: Optional[str | Path] = None,
             restart: bool = False, progress: Optional[Progress] = None) -> AnnotateResult:
    """
    Annotate ``source`` for ``scene`` into the supervision folder ``out``.

    :param source: a dataset folder, or a video / frames folder with ``cameras``.
    :param scene: the 4DGS scene the views belong to (their times are checked against it).
    :param restart: drop ``out``'s earlier work (tracks and masks; the cache stays).
    :param progress: wraps each stage's loop, ``progress(items, description)``.
    :raises AnnotationError: bad input, missing weights, earlier work made with other settings.
    """
    out = Path(out)
    show = progress or (lambda items, _description: items)
    data = open_input(source, cameras, config.input)
    _check_scene_times(scene, data)
    models = resolve_models(config)
    work = out / WORK
    if restart:
        for folder in (work / 'tracks', out / MASKS):
            shutil.rmtree(folder, ignore_errors=True)
    _check_run(work, _run_record(source, data, models, config))
    device = pick_device(config.device)
    cache = AnswerCache(config.cache_dir or work / 'cache')

    state = _track(data, models, config, cache, device, work / 'tracks', show)
    ids, sightings = _map_views(data, state, work / 'tracks' / 'frames', out, show)
    if not ids:
        raise AnnotationError(f'{source}: no instance was found; check detector.prompt '
                              f'{list(config.detector.prompt)} and detector.score_threshold')
    names = {new: _name(state, old) for old, new in ids.items()}
    captioner = VisionLanguageCaptioner(
        models['captioner'].identity, config.captioner, cache,
        lambda: load_captioner(models['captioner'], device,
                               captioner_dtype(config.dtype, device)))
    frames = _FrameReader(data, work / 'tracks' / 'frames', {v: k for k, v in ids.items()})
    desc, empty_desc = _descriptions(captioner, frames, sightings, names, config, show)
    states, empty_states = _states(captioner, frames, sightings, names, config, show)

    instances = [InstanceCaptions(k, names[k], desc.get(k, []), states.get(k, []))
                 for k in sorted(ids.values())]
    views = [SupervisionView(v.name, v.time, data.frames[i].frame, v.camera,
                             out / MASKS / f'{v.name}.png')
             for v, i in zip(data.views, data.view_frames)]
    metadata = {'generator': 'st4r_ros.annotate', 'source': str(source), 'scene': str(scene),
                'input': data.kind,
                'models': {role: m.identity for role, m in models.items()},
                'tracks': {str(old): new for old, new in sorted(ids.items())},
                'config': config.to_dict()}
    file = save_supervision(out, Supervision(views, instances, out, metadata))
    return AnnotateResult(file, len(views), len(instances),
                          sum(len(i.captions) for i in instances),
                          sum(len(i.state_captions) for i in instances),
                          empty_desc + empty_states, cache.hits, cache.misses)


def _check_scene_times(scene: str | Path, data: AnnotationInput) -> None:
    """Every view's time must lie in the scene's time range."""
    from st4r_ros.scene.loading import load_scene

    low, high = load_scene(scene).info().time_range
    for view in data.views:
        if not low - 1e-6 <= view.time <= high + 1e-6:
            raise AnnotationError(f'view {view.name}: time {view.time} outside the time range '
                                  f'[{low}, {high}] of scene {scene}')


def _run_record(source: str | Path, data: AnnotationInput,
                models: Dict[str, ResolvedModel], config: AnnotateConfig) -> Dict:
    """Describe what the stored tracks depend on: input frames, tracking models and settings."""
    return {'source': str(Path(source).resolve()), 'frames': len(data.frames),
            'times': [round(f.time, 9) for f in data.frames],
            'detector': models['detector'].identity, 'segmenter': models['segmenter'].identity,
            'settings': {'detector': config.to_dict()['detector'],
                         'segmenter': config.to_dict()['segmenter'],
                         'input': config.to_dict()['input']}}


def _check_run(work: Path, record: Dict) -> None:
    """Refuse to continue tracks made from other input or settings; record a fresh run."""
    file = work / 'run.json'
    if file.is_file():
        if json.loads(file.read_text()) != record:
            raise AnnotationError(f'{file}: this output folder was started with other input, '
                                  'models or tracking settings; pass --restart to redo the '
                                  'tracking or choose another --out')
        return
    atomic_write(file, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def _track(data: AnnotationInput, models: Dict[str, ResolvedModel], config: AnnotateConfig,
           cache: AnswerCache, device: torch.device, folder: Path, show: Progress
           ) -> TrackState:
    detector = GroundingDetector(models['detector'].identity, config.detector, cache,
                                 lambda: load_detector(models['detector'], device))
    propagator = Sam2Propagator(config.segmenter,
                                lambda: load_segmenter(models['segmenter'], device))
    return track_stream(data.frames, detector, propagator, config.segmenter,
                        config.detector.detect_every, folder,
                        progress=lambda items: show(items, 'tracking (segments)'))


def first_appearance(frame_ids: Iterable[Iterable[int]]) -> Dict[int, int]:
    """Track id -> instance id 1..K in order of first appearance (ids in a frame ascending)."""
    order: Dict[int, int] = {}
    for present in frame_ids:
        for track in sorted(present):
            if track and track not in order:
                order[track] = len(order) + 1
    return order


def _map_views(data: AnnotationInput, state: TrackState, frames: Path, out: Path,
               show: Progress) -> Tuple[Dict[int, int], Dict[int, List[Sighting]]]:
    """
    Write each view's mask with instance ids; return track -> instance ids and the sightings.

    Sightings: per instance, one per frame number (the stream frame where it shows largest),
    ordered by frame number.
    """
    counts: List[Dict[int, int]] = []
    for frame in show(data.frames, 'mapping (reading tracks)'):
        values, areas = np.unique(load_ids(frames / f'{frame.index:06d}.png').numpy(),
                                  return_counts=True)
        counts.append({int(v): int(n) for v, n in zip(values, areas) if v})
    ids = first_appearance(c.keys() for c in counts)
    lookup = torch.zeros(max(state.next_id, 1), dtype=torch.int64)
    for track, instance in ids.items():
        lookup[track] = instance
    deep = len(ids) > 255
    for view, index in show(list(zip(data.views, data.view_frames)), 'mapping (view masks)'):
        mask = resize_ids(lookup[load_ids(frames / f'{index:06d}.png')],
                          view.camera.width, view.camera.height)
        image = Image.fromarray(mask.numpy().astype(np.uint16 if deep else np.uint8))
        atomic_write(out / MASKS / f'{view.name}.png', lambda tmp: image.save(tmp, format='PNG'))
    best: Dict[Tuple[int, int], Sighting] = {}
    for frame, present in zip(data.frames, counts):
        for track, pixels in present.items():
            key = (ids[track], frame.frame)
            if key not in best or pixels > best[key].pixels:
                best[key] = Sighting(frame.frame, frame.index, pixels)
    sightings: Dict[int, List[Sighting]] = defaultdict(list)
    for (instance, _), sighting in sorted(best.items()):
        sightings[instance].append(sighting)
    return ids, dict(sightings)


def _name(state: TrackState, track: int) -> str:
    labels = state.tracks[track].labels
    return labels.most_common(1)[0][0] if labels else 'object'


class _FrameReader:
    """Stream frames and their instance masks, decoded on demand and kept for a while."""

    def __init__(self, data: AnnotationInput, folder: Path, tracks: Dict[int, int]) -> None:
        self.data, self.folder, self.tracks = data, folder, tracks
        self.image = functools.lru_cache(maxsize=FRAME_CACHE)(self._image)
        self.ids = functools.lru_cache(maxsize=FRAME_CACHE)(self._ids)

    def _image(self, index: int) -> Image.Image:
        return self.data.frames[index].load()

    def _ids(self, index: int) -> torch.Tensor:
        return load_ids(self.folder / f'{index:06d}.png')

    def highlighted(self, index: int, instance: int, config: AnnotateConfig) -> Image.Image:
        """Frame ``index`` with ``instance`` highlighted, shrunk to the captioner's budget."""
        mask = (self.ids(index) == self.tracks[instance]).numpy()
        return fit_pixels(highlight(self.image(index), mask, config.highlight),
                          config.captioner.max_pixels)

    def time(self, index: int) -> float:
        return self.data.frames[index].time


def _descriptions(captioner: VisionLanguageCaptioner, frames: _FrameReader,
                  sightings: Dict[int, List[Sighting]], names: Dict[int, str],
                  config: AnnotateConfig, show: Progress) -> Tuple[Dict[int, List[Caption]], int]:
    """Frame-level description captions, every ``caption_every``-th sighting of an instance."""
    chosen = [(k, s) for k in sorted(sightings)
              for s in sightings[k][::config.sampling.caption_every]]
    requests = [CaptionRequest((frames.highlighted(s.index, k, config),),
                               fill(config.captioner.desc_prompt, 'desc_prompt', label=names[k]))
                for k, s in chosen]
    answers = captioner.answer(requests, lambda b: show(b, 'description captions (batches)'))
    return _collect([(k, s.frame, frames.time(s.index)) for k, s in chosen], answers)


def _states(captioner: VisionLanguageCaptioner, frames: _FrameReader,
            sightings: Dict[int, List[Sighting]], names: Dict[int, str],
            config: AnnotateConfig, show: Progress) -> Tuple[Dict[int, List[Caption]], int]:
    """Temporal summaries per instance, then a state caption per sampled sighting."""
    sampling = config.sampling
    instances = sorted(sightings)
    summary_requests = []
    for k in instances:
        seen = sightings[k]
        picks = np.linspace(0, len(seen) - 1, min(sampling.summary_frames, len(seen)))
        images = tuple(frames.highlighted(seen[int(round(p))].index, k, config) for p in picks)
        summary_requests.append(CaptionRequest(
            images, fill(config.captioner.summary_prompt, 'summary_prompt', label=names[k])))
    summaries = dict(zip(instances, captioner.answer(
        summary_requests, lambda b: show(b, 'temporal summaries (batches)'))))
    chosen, requests = [], []
    for k in instances:
        seen = sightings[k]
        for position in range(0, len(seen), sampling.state_every):
            radius = sampling.clip_radius
            clip = seen[max(0, position - radius):position + radius + 1]
            prompt = fill(config.captioner.state_prompt, 'state_prompt', label=names[k],
                          summary=summaries[k] or f'the {names[k]} is in the video.')
            requests.append(CaptionRequest(
                tuple(frames.highlighted(s.index, k, config) for s in clip), prompt))
            chosen.append((k, seen[position].frame, frames.time(seen[position].index)))
    answers = captioner.answer(requests, lambda b: show(b, 'state captions (batches)'))
    return _collect(chosen, answers)


def _collect(chosen: Sequence[Tuple[int, int, float]], answers: Sequence[str]
             ) -> Tuple[Dict[int, List[Caption]], int]:
    """Captions per instance from (instance, frame, time) and answers; empty answers counted."""
    captions: Dict[int, List[Caption]] = defaultdict(list)
    empty = 0
    for (k, frame, time), text in zip(chosen, answers):
        if text.strip():
            captions[k].append(Caption(frame, time, text.strip()))
        else:
            empty += 1
    return dict(captions), empty


def annotate_main(source: str, scene: str, out: str, config_path: Optional[str] = None,
                  cameras: Optional[str] = None, device: Optional[str] = None,
                  restart: bool = False) -> AnnotateResult:
    """`st4r annotate`: load the config, run with rich progress bars."""
    from rich.progress import track

    config = load_config(config_path).with_device(device)
    return annotate(source, scene, out, config, cameras=cameras, restart=restart,
                    progress=lambda items, description: track(items, description=description))
