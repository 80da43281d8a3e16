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
Finding and loading the three models of an annotation run, offline.

A model is a local folder (``save_pretrained`` layout, or ``hf download ID --local-dir DIR``)
or a hub id already in the local hub cache (``HF_HUB_CACHE``); nothing is downloaded. Weights
load from safetensors only and no repository code runs (no ``trust_remote_code``, no pickle).
Before any work starts every model is looked up, and the one error lists each missing model with
the command that fetches it.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
from pathlib import Path
import re
from typing import Dict, Optional, Tuple, TypedDict

from st4r_ros.annotate.config import AnnotateConfig
from st4r_ros.errors import AnnotationError
import torch

ROLES = ('detector', 'segmenter', 'captioner')
_HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$')
_WEIGHTS = ('model.safetensors', 'model.safetensors.index.json')


@dataclass(frozen=True)
class ResolvedModel:
    """
    A model found on disk.

    :ivar identity: name and revision (hub commit, or a digest of a local folder's config and
        weight files): the model part of every cache key.
    """

    role: str
    name: str
    folder: Path
    identity: str


def resolve_models(config: AnnotateConfig) -> Dict[str, ResolvedModel]:
    """
    Locate the detector, segmenter and captioner.

    :raises AnnotationError: one or more are missing; the message names each one, where it was
        looked for and how to get it.
    """
    found, missing = {}, []
    for role in ROLES:
        section = getattr(config, role)
        try:
            found[role] = _resolve(role, section.model, section.revision)
        except LookupError as problem:
            command = download_command(section.model, section.revision)
            missing.append(f'{role} {section.model!r}: {problem}\n      get it with: {command}')
    if missing:
        raise AnnotationError(
            'model weights missing (nothing is downloaded at run time):\n  - '
            + '\n  - '.join(missing)
            + '\nRun the commands on a machine with network and copy its hub cache '
              '(~/.cache/huggingface/hub, or HF_HUB_CACHE) here, or download with --local-dir '
              'and set the model to that folder in the annotation config.')
    return found


def download_command(name: str, revision: Optional[str]) -> str:
    """Return the shell command that fetches hub model ``name`` into the hub cache."""
    pinned = f' --revision {revision}' if revision else ''
    return f'huggingface-cli download {name}{pinned}  (newer clients: hf download {name}{pinned})'


def _resolve(role: str, name: str, revision: Optional[str]) -> ResolvedModel:
    folder = Path(name).expanduser()
    if folder.is_dir():
        _check_folder(folder)
        return ResolvedModel(role, name, folder.resolve(), f'{folder.resolve()}@{_digest(folder)}')
    if not _HUB_ID.match(name):
        raise LookupError(f'no folder {folder} and not a hub id')
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (OSError, ValueError) as err:
        raise LookupError(f'not in the hub cache {constants.HF_HUB_CACHE} '
                          f'({type(err).__name__})') from None
    _check_folder(snapshot)
    return ResolvedModel(role, name, snapshot, f'{name}@{snapshot.name}')


def _check_folder(folder: Path) -> None:
    if not (folder / 'config.json').is_file():
        raise LookupError(f'{folder} has no config.json')
    if not any((folder / f).is_file() for f in _WEIGHTS):
        raise LookupError(f'{folder} has no safetensors weights ({", ".join(_WEIGHTS)})')


def _digest(folder: Path) -> str:
    """Digest of a local model folder: its config and the names, sizes and times of its files."""
    digest = hashlib.sha256((folder / 'config.json').read_bytes())
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f'{path.name}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
    return digest.hexdigest()[:16]


def _load(role: str, model: ResolvedModel, loader):
    """``loader(folder)``, its failures turned into one AnnotationError naming the model."""
    try:
        return loader(model.folder)
    except Exception as err:  # whatever the third-party files break, name the model and folder
        raise AnnotationError(f'{role} {model.name}: cannot load {model.folder}: '
                              f'{type(err).__name__}: {err}') from err


class _Safe(TypedDict):
    local_files_only: bool
    trust_remote_code: bool


_SAFE: _Safe = {'local_files_only': True, 'trust_remote_code': False}


def load_detector(model: ResolvedModel, device: torch.device):
    """(processor, Grounding DINO-style zero-shot detector in eval mode on ``device``)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    def load(folder: Path):
        processor = AutoProcessor.from_pretrained(folder, **_SAFE)
        network = AutoModelForZeroShotObjectDetection.from_pretrained(
            folder, use_safetensors=True, **_SAFE)
        return processor, network.to(device).eval()

    return _load('detector', model, load)


def load_segmenter(model: ResolvedModel, device: torch.device):
    """SAM 2 video model in eval mode, float32, on ``device``."""
    from transformers import Sam2VideoModel

    def load(folder: Path):
        network = Sam2VideoModel.from_pretrained(folder, use_safetensors=True, **_SAFE)
        # transformers wraps Module.to with functools.wraps, whose type loses `self`.
        return network.to(device=device, dtype=torch.float32).eval()  # type: ignore[call-arg]

    return _load('segmenter', model, load)


def load_captioner(model: ResolvedModel, device: torch.device, dtype: torch.dtype
                   ) -> Tuple[object, object, object]:
    """(tokenizer, image processor, image-text-to-text model in eval mode on ``device``)."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    def load(folder: Path):
        tokenizer = AutoTokenizer.from_pretrained(folder, **_SAFE)
        images = AutoImageProcessor.from_pretrained(folder, **_SAFE)
        network = AutoModelForImageTextToText.from_pretrained(
            folder, use_safetensors=True, dtype=dtype, **_SAFE)
        # transformers wraps Module.to with functools.wraps, whose type loses `self`.
        return tokenizer, images, network.to(device).eval()  # type: ignore[arg-type]

    return _load('captioner', model, load)


def pick_device(name: str) -> torch.device:
    """Return the device: ``auto`` is CUDA when available, else CPU; others as torch reads them."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise AnnotationError(f'device {name!r}: {err}') from None


def captioner_dtype(name: str, device: torch.device) -> torch.dtype:
    """Return the captioner's dtype: ``auto`` is bfloat16 on CUDA and float32 elsewhere."""
    if name == 'auto':
        return torch.bfloat16 if device.type == 'cuda' else torch.float32
    return getattr(torch, name)
