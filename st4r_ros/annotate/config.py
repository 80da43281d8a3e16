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
Everything an annotation run can be told: models, prompts, resolutions, batch sizes, sampling.

One YAML file (``config/annotate.yaml`` lists every key with its default) with the sections of
:class:`AnnotateConfig`; keys left out keep their defaults, unknown keys and wrong types are
refused with the file and the key named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from st4r_ros.errors import AnnotationError

DEFAULT_DESC_PROMPT = (
    'The object outlined in red is a {label}. Describe it in one sentence: its colour, shape, '
    'material and size, and where it is relative to the other objects in the scene. Do not '
    'mention the red outline or the blur.'
)
DEFAULT_SUMMARY_PROMPT = (
    'These frames are in time order. The object outlined in red is a {label}. Summarise in one '
    'or two sentences what happens to it over the video: how it moves or changes, and when.'
)
DEFAULT_STATE_PROMPT = (
    'Over the whole video: {summary} These frames are a short clip in time order. In one short '
    'sentence starting with "the {label}", say what the object outlined in red is doing or what '
    'state it is in at the middle frame.'
)


@dataclass(frozen=True)
class DetectorConfig:
    """
    Open-vocabulary detection on keyframes (Grounding DINO through transformers).

    :ivar prompt: the object classes to look for; each becomes one phrase of the text query.
    :ivar score_threshold: a box is kept when its best class phrase scores at least this.
    :ivar detect_every: keyframe stride in frames; new objects are found on keyframes only.
    """

    model: str = 'IDEA-Research/grounding-dino-tiny'
    revision: Optional[str] = None
    prompt: Tuple[str, ...] = ('object',)
    score_threshold: float = 0.35
    max_detections: int = 20
    detect_every: int = 5
    batch_size: int = 4


@dataclass(frozen=True)
class SegmenterConfig:
    """
    Masks and their propagation through the video (SAM 2 through transformers).

    :ivar match_iou: a keyframe detection continues a track when its box overlaps the track's
        box by at least this IoU, else it starts a new track.
    :ivar min_area: masks smaller than this fraction of the image count as absent.
    """

    model: str = 'facebook/sam2.1-hiera-tiny'
    revision: Optional[str] = None
    mask_threshold: float = 0.0
    match_iou: float = 0.5
    min_area: float = 0.0005


@dataclass(frozen=True)
class CaptionerConfig:
    """
    The vision-language model that writes captions (Qwen-VL family through transformers).

    ``max_pixels`` bounds each image sent (the model's processor resizes to fit); prompts are
    Python format strings with the fields ``{label}`` and, for the state prompt, ``{summary}``.
    """

    model: str = 'Qwen/Qwen2.5-VL-3B-Instruct'
    revision: Optional[str] = None
    max_new_tokens: int = 64
    batch_size: int = 4
    max_pixels: int = 448 * 448
    system_prompt: str = 'You are a helpful assistant.'
    desc_prompt: str = DEFAULT_DESC_PROMPT
    summary_prompt: str = DEFAULT_SUMMARY_PROMPT
    state_prompt: str = DEFAULT_STATE_PROMPT


@dataclass(frozen=True)
class HighlightConfig:
    """How an instance is shown to the captioner: red contour, blurred background."""

    contour_rgb: Tuple[int, int, int] = (255, 0, 0)
    contour_width: int = 3
    blur_radius: float = 8.0


@dataclass(frozen=True)
class SamplingConfig:
    """
    Which frames get captions.

    :ivar caption_every: description captions every this many frames an instance is seen.
    :ivar state_every: state captions likewise.
    :ivar clip_radius: a state clip holds this many frames on each side of its frame.
    :ivar summary_frames: frames (evenly spread) shown for an instance's temporal summary.
    """

    caption_every: int = 4
    state_every: int = 1
    clip_radius: int = 2
    summary_frames: int = 8


@dataclass(frozen=True)
class InputConfig:
    """
    How dataset frames are read.

    :ivar background: what transparent pixels of RGBA frames become (D-NeRF: white).
    :ivar hypernerf_scale: the ``rgb/{N}x`` folder of a HyperNeRF capture (4DGaussians: 2).
    """

    background: str = 'white'
    hypernerf_scale: int = 2


@dataclass(frozen=True)
class AnnotateConfig:
    """
    One annotation run's settings.

    :ivar device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
    :ivar dtype: ``auto`` (bfloat16 for the captioner on CUDA, else float32), ``float32``,
        ``bfloat16`` or ``float16``; detector and segmenter always run in float32.
    :ivar cache_dir: the cache of model answers; empty = ``OUT/annotate/cache``. Runs may share
        one (keys hold the model, prompt and input).
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    highlight: HighlightConfig = field(default_factory=HighlightConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    input: InputConfig = field(default_factory=InputConfig)  # noqa: A003 (the YAML section)
    device: str = 'auto'
    dtype: str = 'auto'
    cache_dir: str = ''

    def with_device(self, device: Optional[str]) -> 'AnnotateConfig':
        """Return a copy on ``device`` (None keeps the configured one)."""
        return self if device is None else replace(self, device=device)

    def to_dict(self) -> Dict[str, Any]:
        """Return the settings as plain JSON-able data (tuples as lists)."""
        return _plain(asdict(self))


_POSITIVE = {'max_detections', 'detect_every', 'batch_size', 'max_new_tokens', 'max_pixels',
             'caption_every', 'state_every', 'summary_frames', 'hypernerf_scale'}
_NON_NEGATIVE = {'contour_width', 'blur_radius', 'clip_radius', 'min_area'}
_UNIT = {'score_threshold', 'match_iou', 'min_area'}
_CHOICES = {'dtype': ('auto', 'float32', 'bfloat16', 'float16'),
            'background': ('white', 'black')}


def load_config(path: Optional[str | Path] = None) -> AnnotateConfig:
    """
    Read a YAML config; None gives the defaults.

    :raises AnnotationError: unreadable file, unknown key, wrong type or value out of range.
    """
    if path is None:
        return AnnotateConfig()
    import yaml

    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise AnnotationError(f'{file}: cannot read the annotation config ({err})') from None
    return config_from_dict(document or {}, str(file))


def config_from_dict(data: Any, source: str = 'config') -> AnnotateConfig:
    """Build a config from nested dicts, checked as :func:`load_config` describes."""
    return _build(AnnotateConfig, data, source, '')


def _build(cls: type, data: Any, source: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise AnnotationError(f'{source}: {where or "document"}: expected a mapping, got '
                              f'{type(data).__name__}')
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise AnnotationError(f'{source}: {where or "document"}: unknown keys {unknown}; '
                              f'expected some of {sorted(known)}')
    defaults = cls()
    values = {}
    for name, value in data.items():
        path = f'{where}.{name}' if where else name
        default = getattr(defaults, name)
        if is_dataclass(default):
            values[name] = _build(type(default), value, source, path)
        else:
            values[name] = _value(name, value, default, source, path)
    return cls(**values)


def _value(name: str, value: Any, default: Any, source: str, path: str) -> Any:
    """``value`` checked against the type of ``default`` and the key's range."""
    def fail(expected: str) -> None:
        raise AnnotationError(f'{source}: {path}: expected {expected}, got {value!r}')

    if isinstance(default, tuple):
        kind = type(default[0])
        if not isinstance(value, list) or not value or \
                not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            fail(f'a non-empty list of {kind.__name__}')
        if name == 'contour_rgb' and (len(value) != 3 or not all(0 <= v <= 255 for v in value)):
            fail('three integers in [0, 255]')
        return tuple(value)
    if default is None or isinstance(default, str):
        if not isinstance(value, str) and not (default is None and value is None):
            fail('a string')
        if name in _CHOICES and value not in _CHOICES[name]:
            fail(f'one of {_CHOICES[name]}')
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail('a number')
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        fail('an integer')
    if name in _POSITIVE and value <= 0:
        fail('a value > 0')
    if name in _NON_NEGATIVE and value < 0:
        fail('a value >= 0')
    if name in _UNIT and not 0.0 <= value <= 1.0:
        fail('a value in [0, 1]')
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
