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
The frames to annotate and the scene's training views they map to.

Dataset folders bring both, frames being the training images themselves:

- st4r synthetic scenes: ``cameras.json`` (``st4r-synthetic-cameras``), its ``train`` views;
- D-NeRF (as 4DGaussians reads it): ``transforms_train.json``, ``camera_angle_x`` and per frame
  ``file_path``, ``time`` and a Blender camera-to-world ``transform_matrix``; times divided by
  the largest train or test time; RGBA images composited on the configured background;
- HyperNeRF: ``dataset.json``, ``metadata.json``, ``camera/<id>.json`` and ``rgb/{N}x/<id>.png``;
  the train ids (every 4th image when ``val_ids`` is empty), time = warp_id / max warp_id, the
  focal length scaled to the image and the principal point at its centre, as 4DGaussians does.

A video file or a folder of frames brings frames only; the views then come from a dataset given
with ``--cameras``, and each view takes the frame nearest its time (frame i of F at time
i / (F - 1)). The frames must show the training camera's images, at any resolution of the same
aspect ratio: masks are resized to each camera with nearest-neighbour sampling.

The annotated stream is ordered by time (then view name): a monocular capture is one video.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import re
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from st4r_ros.annotate.config import InputConfig
from st4r_ros.errors import AnnotationError, CameraError
from st4r_ros.files import read_json_object
from st4r_ros.render.camera import Camera
import torch

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')
VIDEO_SUFFIXES = ('.mp4', '.mov', '.avi', '.mkv', '.webm')
# OpenGL/Blender camera axes (x right, y up, z back) -> OpenCV (x right, y down, z forward).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class TrainingView:
    """A training view: its camera at one scene time; ``image`` its file, when it has one."""

    name: str
    time: float
    frame: int
    camera: Camera
    image: Optional[Path] = None


@dataclass(frozen=True)
class StreamFrame:
    """One frame of the annotated video: index in the stream, scene time, frame number."""

    index: int
    time: float
    frame: int
    load: Callable[[], Image.Image]


@dataclass(frozen=True)
class AnnotationInput:
    """
    The stream to annotate and the training views with the stream frame each one maps to.

    :ivar view_frames: per view, the index of its stream frame.
    """

    frames: List[StreamFrame]
    views: List[TrainingView]
    view_frames: List[int]
    kind: str


def open_input(source: str | Path, cameras: Optional[str | Path] = None,
               config: InputConfig = InputConfig()) -> AnnotationInput:
    """
    Read a dataset folder, or a video / frames folder with the views of ``cameras``.

    :raises AnnotationError: unknown layout, missing files, views without a frame.
    """
    source = Path(source)
    kind = dataset_kind(source)
    if kind is not None:
        if cameras is not None:
            raise AnnotationError(f'{source}: a {kind} dataset brings its own cameras; '
                                  'leave out --cameras')
        views = read_views(source, config)
        frames = [StreamFrame(i, v.time, v.frame, _image_loader(v.image, config))
                  for i, v in enumerate(views)]
        return AnnotationInput(frames, views, list(range(len(views))), kind)
    if cameras is None:
        raise AnnotationError(f'{source}: not a dataset folder ({_LAYOUTS}); a video or a '
                              'folder of frames needs --cameras DATASET for its views')
    loaders, kind = _frame_loaders(source, config)
    views = read_views(Path(cameras), config)
    times = frame_times(len(loaders))
    frames = [StreamFrame(i, t, i, load) for i, (t, load) in enumerate(zip(times, loaders))]
    return AnnotationInput(frames, views, nearest_frames([v.time for v in views], times), kind)


def frame_times(count: int) -> List[float]:
    """Normalised times of ``count`` evenly spaced frames: i / (count - 1), one frame at 0."""
    return [i / (count - 1) if count > 1 else 0.0 for i in range(count)]


def nearest_frames(view_times: Sequence[float], times: Sequence[float]) -> List[int]:
    """Per view time, the index of the nearest frame time (the earlier one on a tie)."""
    stamps = np.asarray(times, dtype=np.float64)
    return [int(np.argmin(np.abs(stamps - t))) for t in view_times]


_LAYOUTS = ('cameras.json of a st4r synthetic scene, transforms_train.json (D-NeRF), '
            'dataset.json + metadata.json (HyperNeRF)')


def dataset_kind(path: Path) -> Optional[str]:
    """``synthetic``, ``dnerf``, ``hypernerf`` or None for a folder of another layout."""
    if not path.is_dir():
        return None
    if (path / 'cameras.json').is_file():
        return 'synthetic'
    if (path / 'transforms_train.json').is_file():
        return 'dnerf'
    if (path / 'dataset.json').is_file() and (path / 'metadata.json').is_file():
        return 'hypernerf'
    return None


def read_views(path: Path, config: InputConfig = InputConfig()) -> List[TrainingView]:
    """
    Training views of a dataset folder, ordered by time then name.

    :raises AnnotationError: not a dataset folder, or a malformed file (named with its field).
    """
    kind = dataset_kind(path)
    readers = {'synthetic': _synthetic_views, 'dnerf': _dnerf_views,
               'hypernerf': lambda p: _hypernerf_views(p, config.hypernerf_scale)}
    if kind is None:
        raise AnnotationError(f'{path}: expected a dataset folder with one of: {_LAYOUTS}')
    try:
        views = readers[kind](path)
    except (KeyError, IndexError, TypeError, ValueError, CameraError) as err:
        raise AnnotationError(f'{path}: malformed {kind} dataset ({type(err).__name__}: '
                              f'{err})') from None
    if not views:
        raise AnnotationError(f'{path}: the {kind} dataset lists no training views')
    for view in views:
        if not 0.0 <= view.time <= 1.0:
            raise AnnotationError(f'{path}: view {view.name}: time {view.time} outside [0, 1]')
    return sorted(views, key=lambda v: (v.time, v.name))


def _synthetic_views(root: Path) -> List[TrainingView]:
    document = read_json_object(root / 'cameras.json', AnnotationError)
    if document.get('format') != 'st4r-synthetic-cameras':
        raise ValueError(f"cameras.json format {document.get('format')!r}, expected "
                         "'st4r-synthetic-cameras'")
    return [TrainingView(e['name'], float(e['time']), int(e['frame']),
                         Camera.from_json(e['camera'], source=f"cameras.json {e['name']}"),
                         root / e['image'])
            for e in document['train']]


def _dnerf_views(root: Path) -> List[TrainingView]:
    train = read_json_object(root / 'transforms_train.json', AnnotationError)
    test_file = root / 'transforms_test.json'
    test_times = ([f['time'] for f in read_json_object(test_file, AnnotationError)['frames']]
                  if test_file.is_file() else [])
    latest = max([float(f['time']) for f in train['frames']] + test_times)
    distinct = sorted({float(f['time']) for f in train['frames']})
    views = []
    for entry in train['frames']:
        image = _with_suffix(root / entry['file_path'])
        with Image.open(image) as img:
            width, height = img.size
        focal = 0.5 * width / math.tan(0.5 * float(train['camera_angle_x']))
        cam_to_world = np.asarray(entry['transform_matrix'], dtype=np.float64) @ _GL_TO_CV
        world_to_cam = np.linalg.inv(cam_to_world)
        camera = Camera.from_json({'width': width, 'height': height,
                                   'K': [[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]],
                                   'world_to_cam': world_to_cam.tolist()}, source=str(image))
        time = float(entry['time'])
        views.append(TrainingView(image.stem, time / latest if latest > 0 else 0.0,
                                  distinct.index(time), camera, image))
    return views


def _hypernerf_views(root: Path, scale: int) -> List[TrainingView]:
    dataset = read_json_object(root / 'dataset.json', AnnotationError)
    metadata = read_json_object(root / 'metadata.json', AnnotationError)
    ids = dataset['ids']
    if dataset.get('val_ids'):
        train = [i for i in ids if i in set(dataset['train_ids'])]
    else:
        train = ids[::4]
    latest = max(metadata[i]['warp_id'] for i in ids)
    views = []
    for item in train:
        camera = read_json_object(root / 'camera' / f'{item}.json', AnnotationError)
        image = root / 'rgb' / f'{scale}x' / f'{item}.png'
        with Image.open(image) as img:
            width, height = img.size
        focal = float(camera['focal_length']) * width / float(camera['image_size'][0])
        rotation = np.asarray(camera['orientation'], dtype=np.float64)  # world -> camera
        world_to_cam = np.eye(4)
        world_to_cam[:3, :3] = rotation
        world_to_cam[:3, 3] = -rotation @ np.asarray(camera['position'], dtype=np.float64)
        cam = Camera.from_json({'width': width, 'height': height,
                                'K': [[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]],
                                'world_to_cam': world_to_cam.tolist()}, source=str(image))
        warp = int(metadata[item]['warp_id'])
        views.append(TrainingView(item, warp / latest if latest > 0 else 0.0, warp, cam, image))
    return views


def _with_suffix(path: Path) -> Path:
    """D-NeRF's file_path carries no suffix: the existing image file it names."""
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    raise ValueError(f'no image file {path}(.png|.jpg...)')


def _image_loader(path: Optional[Path], config: InputConfig) -> Callable[[], Image.Image]:
    if path is None:
        raise AnnotationError('a training view without an image cannot be annotated')
    return lambda: load_rgb(path, config.background)


def _decoded(image: Image.Image) -> Callable[[], Image.Image]:
    return lambda: image


def load_rgb(path: Path, background: str = 'white') -> Image.Image:
    """
    Open an image as RGB; transparent pixels become the background.

    :raises AnnotationError: missing or unreadable file.
    """
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, UnidentifiedImageError) as err:
        raise AnnotationError(f'{path}: cannot read the frame ({err})') from None
    if image.mode in ('RGBA', 'LA', 'P'):
        rgba = image.convert('RGBA')
        base = Image.new('RGBA', rgba.size, (255, 255, 255, 255) if background == 'white'
                         else (0, 0, 0, 255))
        return Image.alpha_composite(base, rgba).convert('RGB')
    return image.convert('RGB')


def _frame_loaders(source: Path, config: InputConfig
                   ) -> Tuple[List[Callable[[], Image.Image]], str]:
    """Loaders of a frames folder (ordered by the number in the names) or of a video's frames."""
    if source.is_dir():
        files = [p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise AnnotationError(f'{source}: no frames ({", ".join(IMAGE_SUFFIXES)}) in the '
                                  'folder')
        files.sort(key=_frame_order)
        return [_image_loader(p, config) for p in files], 'frames'
    if source.suffix.lower() in VIDEO_SUFFIXES and source.is_file():
        return [_decoded(image) for image in _decode_video(source)], 'video'
    raise AnnotationError(f'{source}: expected a dataset folder ({_LAYOUTS}), a folder of '
                          f'frames or a video file ({", ".join(VIDEO_SUFFIXES)})')


def _frame_order(path: Path) -> Tuple[int, str]:
    numbers = re.findall(r'\d+', path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def _decode_video(path: Path) -> List[Image.Image]:
    """Every frame of a video as RGB, through PyAV."""
    try:
        import av
    except ImportError:
        raise AnnotationError(f'{path}: reading a video needs PyAV (pip install av); or extract '
                              f'its frames first: ffmpeg -i {path} frames/%05d.png') from None
    try:
        with av.open(str(path)) as container:
            return [frame.to_image().convert('RGB') for frame in container.decode(video=0)]
    except (OSError, ValueError, av.FFmpegError) as err:
        raise AnnotationError(f'{path}: cannot decode the video ({err})') from None


def resize_ids(ids: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Instance ids [h, w] int resized to [height, width] by nearest-neighbour sampling."""
    if tuple(ids.shape) == (height, width):
        return ids
    scaled = torch.nn.functional.interpolate(ids[None, None].float(), size=(height, width),
                                             mode='nearest')
    return scaled[0, 0].to(ids.dtype)
