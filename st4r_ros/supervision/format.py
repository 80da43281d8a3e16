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
Supervision and benchmark files.

What the annotation factory writes, what `st4r train` and `st4r eval` read.

Supervision folder
------------------

A folder holding ``supervision.json`` and the masks it names::

    {"format": "st4r-supervision", "version": 1,
     "views": [
       {"name": "train_f000_c0", "time": 0.0, "frame": 0,
        "camera": {"width": 160, "height": 120, "K": [[138.6, 0, 80], [0, 138.6, 60], [0, 0, 1]],
                   "world_to_cam": [[...], [...], [...], [0, 0, 0, 1]]},
        "mask": "masks/train_f000_c0.png"}],
     "instances": [
       {"id": 3, "name": "red cube",
        "captions": [{"frame": 0, "time": 0.0,
                      "text": "the red cube to the left of the blue torus"}],
        "state_captions": []}],
     "metadata": {}}

- ``views``: training views, at least one, names unique. ``time`` is normalised scene time in
  [0, 1]; ``frame`` (optional) the frame index; ``camera`` any Camera JSON (README, "Camera
  JSON"), whose width and height the mask must match; ``mask`` the path, relative to the folder,
  of a single-channel PNG (8 or 16 bit) of instance ids, 0 = background.
- ``instances``: at least one, ids unique integers >= 1 (the mask values); ``name`` optional.
  ``captions`` are frame-level description captions (appearance, attributes, spatial
  relations) of the instance at that frame (``frame`` >= 0, ``time`` in [0, 1]);
  ``state_captions`` (same shape, may be empty) are per-frame temporal state captions ("the
  red cube is sliding across the table"): `st4r train` builds the temporal layer (state cache,
  router) from them when there are any.
- ``metadata``: free-form (generator, seed, conventions).

Benchmark file
--------------

One JSON file (``bench.json``); mask paths are relative to its folder::

    {"format": "st4r-benchmark", "version": 1,
     "views": [{"name": "novel_f000_c0", "time": 0.0, "frame": 0, "camera": {...},
                "mask": "masks/novel/novel_f000_c0.png"}],
     "instances": [{"id": 3, "name": "red cube"}],
     "expressions": [
       {"id": "e0001", "text": "find the crimson box", "instance_id": 3,
        "kind": "appearance", "frames": [0, 1, 2, 3], "metadata": {}}],
     "metadata": {}}

- ``views``: evaluation views (usually held-out novel views), as above.
- ``instances``: the instances that expressions may refer to (ids >= 1, unique).
- ``expressions``: at least one; ``id`` a unique string; ``kind`` a free label for per-kind
  scores (the synthetic benchmark uses "appearance", "attribute", "spatial",
  "relation-only", and "time-sensitive" for *when* queries, whose ``frames`` are the frames
  where the asked state holds and which the time-agnostic mIoU leaves out); ``frames`` (frame
  indices) or ``times`` (each in [0, 1]), at most one of
  the two, list where the expression holds, absent = at every view; ``metadata`` optional.
  A view's ground truth for an expression is its mask == ``instance_id``.

Every malformed input raises SupervisionFormatError naming the file, the field and what was
expected. Saving validates the document exactly as loading does, then writes atomically
(temporary file + rename), so a saved file always loads and a crash never leaves half a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError
from st4r_ros.errors import CameraError, QueryError, SupervisionFormatError, TimeRangeError
from st4r_ros.files import atomic_write, finite_number, read_json
from st4r_ros.render.camera import Camera
import torch
from torch import Tensor

SUPERVISION_FORMAT = 'st4r-supervision'
BENCHMARK_FORMAT = 'st4r-benchmark'
VERSION = 1
SUPERVISION_FILE = 'supervision.json'
# Single-channel PIL modes: 8 bit (L; P, whose palette indices are the ids) and 16 bit (PIL
# opens a 16-bit greyscale PNG as I;16 or, depending on its version, I).
MASK_MODES = ('L', 'P', 'I;16', 'I;16B', 'I;16L', 'I')
# Expression times and view times are matched with this slack (JSON float round trips).
TIME_TOLERANCE = 1e-6
# The kind of a benchmark expression that asks *when* (scored by the temporal branch).
TIME_SENSITIVE = 'time-sensitive'


@dataclass(frozen=True)
class Caption:
    """A caption of one instance at one frame."""

    frame: int
    time: float
    text: str


@dataclass
class InstanceCaptions:
    """Captions of one instance over time; id is its mask value."""

    # A003: `id` is the field's name in supervision.json; a dataclass field shadows the
    # builtin nowhere.
    id: int  # noqa: A003
    name: Optional[str]
    captions: List[Caption]
    state_captions: List[Caption] = field(default_factory=list)


@dataclass(frozen=True, eq=False)  # eq=False: Camera holds tensors, == on them is ambiguous
class SupervisionView:
    """A posed view at one time and its instance mask (``mask_path`` absolute)."""

    name: str
    time: float
    frame: Optional[int]
    camera: Camera
    mask_path: Path

    def load_mask(self) -> Tensor:
        """Instance ids [H, W] int64 (0 = background); checks the PNG against the camera."""
        checker = _Checker(self.mask_path)
        with _open_mask(checker, self.mask_path, self.camera, 'mask') as image:
            ids = np.asarray(image).astype(np.int64)
        if ids.size and ids.min() < 0:
            checker.fail('pixels', 'instance ids >= 0', int(ids.min()))
        return torch.from_numpy(ids)


@dataclass(eq=False)
class Supervision:
    """Training supervision: posed views with instance masks and per-instance captions."""

    views: List[SupervisionView]
    instances: List[InstanceCaptions]
    root: Path
    metadata: Dict[str, Any] = field(default_factory=dict)

    def captions_at(self, time: Optional[float] = None,
                    frame: Optional[int] = None) -> Dict[int, List[str]]:
        """
        Return each instance's captions at the captioned frame nearest ``time`` (or ``frame``).

        Instances without captions at that frame are absent. Give exactly one argument.
        """
        if (time is None) == (frame is None):
            raise QueryError('captions_at: expected exactly one of time or frame')
        if time is not None and not (_is_number(time) and 0.0 <= time <= 1.0):
            raise TimeRangeError(f'captions_at: expected a time in [0, 1], got {time!r}')
        stamps = {(c.frame, c.time) for inst in self.instances for c in inst.captions}
        if not stamps:
            return {}
        # One frame for all instances, so that spatial relations are read at the same moment.
        if frame is not None:
            chosen = min(stamps, key=lambda s: (abs(s[0] - frame), s[0]))[0]
        elif time is not None:  # always, with no frame (exactly one was given: checked above)
            chosen = min(stamps, key=lambda s: (abs(s[1] - time), s[0]))[0]
        found = {inst.id: [c.text for c in inst.captions if c.frame == chosen]
                 for inst in self.instances}
        return {k: texts for k, texts in found.items() if texts}

    def caption_texts(self) -> List[str]:
        """Return every caption's text, description and state captions alike, in file order."""
        return [c.text for inst in self.instances
                for c in (*inst.captions, *inst.state_captions)]


@dataclass
class Expression:
    """An evaluation expression: the instance it refers to and where it holds."""

    # A003: `id` is the field's name in the benchmark file (see InstanceCaptions).
    id: str  # noqa: A003
    text: str
    instance_id: int
    kind: str
    frames: Optional[List[int]] = None
    times: Optional[List[float]] = None
    metadata: Dict[str, Any] = field(default_factory=dict)

    def holds_at(self, view: SupervisionView) -> bool:
        if self.frames is not None:
            return view.frame in self.frames
        if self.times is not None:
            return any(abs(view.time - t) <= TIME_TOLERANCE for t in self.times)
        return True


@dataclass(eq=False)
class Benchmark:
    """Evaluation views with instance masks, and referring expressions with their answers."""

    views: List[SupervisionView]
    expressions: List[Expression]
    instances: Dict[int, Optional[str]]
    root: Path
    metadata: Dict[str, Any] = field(default_factory=dict)

    def expressions_at(self, view: SupervisionView) -> List[Expression]:
        return [e for e in self.expressions if e.holds_at(view)]


# ---- public load / save -------------------------------------------------------------------


def load_supervision(path: str | Path) -> Supervision:
    """Load a supervision folder (or its supervision.json)."""
    file = Path(path)
    if file.suffix != '.json':  # a folder, existing or not: name the file it lacks
        file = file / SUPERVISION_FILE
    return _parse_supervision(read_json(file, SupervisionFormatError), _Checker(file), file.parent)


def save_supervision(path: str | Path, supervision: Supervision) -> Path:
    """
    Write ``supervision.json`` into folder ``path`` (mask paths made relative to it).

    Returns the file's path.
    """
    folder = Path(path)
    document = {
        'format': SUPERVISION_FORMAT, 'version': VERSION,
        'views': [_view_document(view, folder) for view in supervision.views],
        'instances': [_instance_document(inst) for inst in supervision.instances],
        'metadata': supervision.metadata,
    }
    file = folder / SUPERVISION_FILE
    _parse_supervision(document, _Checker(file), folder)
    atomic_write(file, lambda tmp: tmp.write_text(json.dumps(document, indent=1)))
    return file


def load_benchmark(path: str | Path) -> Benchmark:
    """Load a benchmark JSON file."""
    file = Path(path)
    return _parse_benchmark(read_json(file, SupervisionFormatError), _Checker(file), file.parent)


def save_benchmark(path: str | Path, benchmark: Benchmark) -> Path:
    """Write the benchmark as JSON file ``path`` (mask paths relative to its folder)."""
    file = Path(path)
    document = {
        'format': BENCHMARK_FORMAT, 'version': VERSION,
        'views': [_view_document(view, file.parent) for view in benchmark.views],
        'instances': [_named({'id': k}, name) for k, name in benchmark.instances.items()],
        'expressions': [_expression_document(e) for e in benchmark.expressions],
        'metadata': benchmark.metadata,
    }
    _parse_benchmark(document, _Checker(file), file.parent)
    atomic_write(file, lambda tmp: tmp.write_text(json.dumps(document, indent=1)))
    return file


# ---- checking -----------------------------------------------------------------------------


_MISSING = object()  # a field absent from the document
_UNSHOWN = object()  # fail() without a "got" part


class _Checker:
    """
    Typed reads from one JSON document.

    A failure names the file, the field (a path such as ``views[2].time``) and what was
    expected.
    """

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, where: str, expected: str, got: Any = _UNSHOWN) -> NoReturn:
        shown = '' if got is _UNSHOWN else f', got {_short(got)}'
        raise SupervisionFormatError(f'{self.source}: {where}: expected {expected}{shown}')

    def read(self, obj: Dict, key: str, where: str, kind: Callable[[Any, str], Any],
             optional: bool = False) -> Any:
        """``kind(value, path)`` of obj[key]; None for an optional key absent or null."""
        path = f'{where}.{key}' if where else key
        value = obj.get(key, _MISSING)
        if optional and (value is _MISSING or value is None):
            return None
        return kind(value, path)  # every kind rejects _MISSING, naming the field as missing

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, 'a non-empty string', value)
        return value

    def integer(self, value: Any, where: str, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(where, f'an integer >= {low}', value)
        return value

    def instance_id(self, value: Any, where: str) -> int:
        return self.integer(value, where, low=1)

    def time(self, value: Any, where: str) -> float:
        if not (_is_number(value) and 0.0 <= value <= 1.0):
            self.fail(where, 'a normalised time in [0, 1]', value)
        return float(value)

    def array(self, value: Any, where: str) -> List:
        if not isinstance(value, list):
            self.fail(where, 'a JSON list', value)
        return value

    def mapping(self, value: Any, where: str) -> Dict:
        if not isinstance(value, dict):
            self.fail(where, 'a JSON object', value)
        return value


def _is_number(value: Any) -> bool:
    return finite_number(value) is not None


def _short(value: Any) -> str:
    if value is _MISSING:
        return 'nothing (field missing)'
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _check_header(document: Any, checker: _Checker, expected_format: str) -> Dict:
    document = checker.mapping(document, 'document')
    if document.get('format') != expected_format:
        checker.fail('format', repr(expected_format), document.get('format', _MISSING))
    if document.get('version') != VERSION:
        checker.fail('version', str(VERSION), document.get('version', _MISSING))
    return document


def _parse_supervision(document: Any, checker: _Checker, root: Path) -> Supervision:
    document = _check_header(document, checker, SUPERVISION_FORMAT)
    views = _parse_views(document, checker, root)
    entries = checker.read(document, 'instances', '', checker.array)
    if not entries:
        checker.fail('instances', 'at least one instance', entries)
    instances = [_parse_instance(checker, entry, f'instances[{i}]')
                 for i, entry in enumerate(entries)]
    _check_unique(checker, [inst.id for inst in instances], 'instances', 'id')
    metadata = checker.read(document, 'metadata', '', checker.mapping, optional=True)
    return Supervision(views, instances, root, metadata or {})


def _parse_instance(checker: _Checker, entry: Any, where: str) -> InstanceCaptions:
    entry = checker.mapping(entry, where)

    def captions(key: str) -> List[Caption]:
        items = checker.read(entry, key, where, checker.array, optional=key == 'state_captions')
        return [_parse_caption(checker, c, f'{where}.{key}[{j}]')
                for j, c in enumerate(items or [])]

    return InstanceCaptions(checker.read(entry, 'id', where, checker.instance_id),
                            checker.read(entry, 'name', where, checker.string, optional=True),
                            captions('captions'), captions('state_captions'))


def _parse_caption(checker: _Checker, entry: Any, where: str) -> Caption:
    entry = checker.mapping(entry, where)
    return Caption(checker.read(entry, 'frame', where, checker.integer),
                   checker.read(entry, 'time', where, checker.time),
                   checker.read(entry, 'text', where, checker.string))


def _parse_views(document: Dict, checker: _Checker, root: Path) -> List[SupervisionView]:
    entries = checker.read(document, 'views', '', checker.array)
    if not entries:
        checker.fail('views', 'at least one view', entries)
    views = [_parse_view(checker, entry, f'views[{i}]', root) for i, entry in enumerate(entries)]
    _check_unique(checker, [view.name for view in views], 'views', 'name')
    return views


def _parse_view(checker: _Checker, entry: Any, where: str, root: Path) -> SupervisionView:
    entry = checker.mapping(entry, where)
    name = checker.read(entry, 'name', where, checker.string)
    time = checker.read(entry, 'time', where, checker.time)
    frame = checker.read(entry, 'frame', where, checker.integer, optional=True)
    camera = _camera(checker, checker.read(entry, 'camera', where, checker.mapping),
                     f'{where}.camera')
    relative = checker.read(entry, 'mask', where, checker.string)
    if os.path.isabs(relative):
        checker.fail(f'{where}.mask', "a path relative to the file's folder", relative)
    mask_path = Path(os.path.abspath(root / relative))
    with _open_mask(checker, mask_path, camera, f'{where}.mask'):
        pass  # the header alone: size and mode are checked without decoding the pixels
    return SupervisionView(name, time, frame, camera, mask_path)


def _camera(checker: _Checker, data: Dict, where: str) -> Camera:
    try:
        return Camera.from_json(data, source=where)
    except CameraError as err:
        problem = str(err)
    checker.fail(where, f'a valid camera ({problem})')  # outside except: no chained traceback


def _open_mask(checker: _Checker, path: Path, camera: Camera, where: str) -> Image.Image:
    """
    Open the mask PNG (lazily decoded), checked for kind, mode and the camera's size.

    The path is named in every failure, as the document only holds it relative.
    """
    where = f'{where} ({path})'
    if not path.is_file():
        checker.fail(where, 'an existing mask PNG')
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        problem = str(err)
    else:
        return _checked_mask(checker, image, camera, where)
    checker.fail(where, f'a readable PNG ({problem})')


def _checked_mask(checker: _Checker, image: Image.Image, camera: Camera,
                  where: str) -> Image.Image:
    """``image`` if it is a single-channel PNG of the camera's size; closed on failure."""
    if image.format != 'PNG' or image.mode not in MASK_MODES:
        image.close()
        checker.fail(where, f'a single-channel PNG of instance ids (modes {MASK_MODES})',
                     f'{image.format} {image.mode}')
    if image.size != (camera.width, camera.height):
        image.close()
        checker.fail(where, f"a mask of the camera's size {camera.width}x{camera.height}",
                     f'{image.size[0]}x{image.size[1]}')
    return image


def _check_unique(checker: _Checker, values: List, where: str, key: str) -> None:
    seen = set()
    for i, value in enumerate(values):
        if value in seen:
            checker.fail(f'{where}[{i}].{key}', f'a unique {key}', value)
        seen.add(value)


def _parse_benchmark(document: Any, checker: _Checker, root: Path) -> Benchmark:
    document = _check_header(document, checker, BENCHMARK_FORMAT)
    views = _parse_views(document, checker, root)
    entries = checker.read(document, 'instances', '', checker.array)
    instances: Dict[int, Optional[str]] = {}
    for i, entry in enumerate(entries):
        where = f'instances[{i}]'
        entry = checker.mapping(entry, where)
        key = checker.read(entry, 'id', where, checker.instance_id)
        if key in instances:
            checker.fail(f'{where}.id', 'a unique id', key)
        instances[key] = checker.read(entry, 'name', where, checker.string, optional=True)
    items = checker.read(document, 'expressions', '', checker.array)
    if not items:
        checker.fail('expressions', 'at least one expression', items)
    expressions = [_parse_expression(checker, item, f'expressions[{i}]', instances, views)
                   for i, item in enumerate(items)]
    _check_unique(checker, [e.id for e in expressions], 'expressions', 'id')
    metadata = checker.read(document, 'metadata', '', checker.mapping, optional=True)
    return Benchmark(views, expressions, instances, root, metadata or {})


def _parse_expression(checker: _Checker, entry: Any, where: str,
                      instances: Dict[int, Optional[str]],
                      views: List[SupervisionView]) -> Expression:
    entry = checker.mapping(entry, where)
    instance = checker.read(entry, 'instance_id', where, checker.instance_id)
    if instance not in instances:
        checker.fail(f'{where}.instance_id', f"one of the instances' ids {sorted(instances)}",
                     instance)
    frames = checker.read(entry, 'frames', where, checker.array, optional=True)
    times = checker.read(entry, 'times', where, checker.array, optional=True)
    if frames is not None and times is not None:
        checker.fail(where, "at most one of 'frames' and 'times'", sorted(entry))
    if frames is not None:
        frames = [checker.integer(f, f'{where}.frames[{j}]') for j, f in enumerate(frames)]
        unframed = [view.name for view in views if view.frame is None]
        if unframed:
            checker.fail(f'{where}.frames', "views with a 'frame' to match frames against",
                         unframed[0])
    if times is not None:
        times = [checker.time(t, f'{where}.times[{j}]') for j, t in enumerate(times)]
    metadata = checker.read(entry, 'metadata', where, checker.mapping, optional=True)
    return Expression(checker.read(entry, 'id', where, checker.string),
                      checker.read(entry, 'text', where, checker.string), instance,
                      checker.read(entry, 'kind', where, checker.string),
                      frames, times, metadata or {})


# ---- writing ------------------------------------------------------------------------------


def _view_document(view: SupervisionView, folder: Path) -> Dict:
    entry: Dict[str, Any] = {'name': view.name, 'time': view.time}
    if view.frame is not None:
        entry['frame'] = view.frame
    relative = os.path.relpath(os.path.abspath(view.mask_path), os.path.abspath(folder))
    entry.update(camera=view.camera.to_json(), mask=Path(relative).as_posix())
    return entry


def _caption_document(caption: Caption) -> Dict:
    return {'frame': caption.frame, 'time': caption.time, 'text': caption.text}


def _instance_document(instance: InstanceCaptions) -> Dict:
    entry = _named({'id': instance.id}, instance.name)
    entry['captions'] = [_caption_document(c) for c in instance.captions]
    entry['state_captions'] = [_caption_document(c) for c in instance.state_captions]
    return entry


def _expression_document(expression: Expression) -> Dict:
    entry: Dict[str, Any] = {'id': expression.id, 'text': expression.text,
                             'instance_id': expression.instance_id, 'kind': expression.kind}
    if expression.frames is not None:
        entry['frames'] = list(expression.frames)
    if expression.times is not None:
        entry['times'] = list(expression.times)
    if expression.metadata:
        entry['metadata'] = expression.metadata
    return entry


def _named(entry: Dict, name: Optional[str]) -> Dict:
    if name is not None:
        entry['name'] = name
    return entry
