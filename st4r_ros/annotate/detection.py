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
Open-vocabulary detection on keyframes with a Grounding DINO-style model.

The configured classes become one text query ("cup . hand ."). Each of the model's queries
scores every class by the highest probability among that class's tokens; it is kept with its
best class when that score reaches the threshold, then overlapping boxes of a class are thinned
by non-maximum suppression.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
from typing import Any, Callable, Dict, List, Sequence, Tuple

from PIL import Image
from st4r_ros.annotate.cache import AnswerCache, cache_key
from st4r_ros.annotate.config import DetectorConfig
import torch
from torch import Tensor

NMS_IOU = 0.7


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one image: boxes [D, 4] xyxy pixels, scores [D], one label per box."""

    boxes: Tensor
    scores: Tensor
    labels: Tuple[str, ...]

    def to_json(self) -> Dict[str, Any]:
        return {'boxes': self.boxes.tolist(), 'scores': self.scores.tolist(),
                'labels': list(self.labels)}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'Detections':
        return cls(torch.tensor(data['boxes'], dtype=torch.float32).reshape(-1, 4),
                   torch.tensor(data['scores'], dtype=torch.float32), tuple(data['labels']))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Return the IoU of boxes a [N, 4] and b [M, 4] (xyxy), [N, M]; empty boxes match none."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def non_maximum_suppression(boxes: Tensor, scores: Tensor, threshold: float) -> List[int]:
    """Return the indices kept, best first; a box overlapping a kept one above threshold goes."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    overlap = box_iou(boxes, boxes)
    kept: List[int] = []
    for i in order:
        if all(overlap[i, j] <= threshold for j in kept):
            kept.append(i)
    return kept


def class_query(classes: Sequence[str]) -> Tuple[str, List[Tuple[int, int]]]:
    """Return the text query for ``classes`` and each class's character span in it."""
    text, spans = '', []
    for name in classes:
        phrase = ' '.join(name.lower().split())
        spans.append((len(text), len(text) + len(phrase)))
        text += phrase + ' . '
    return text.strip(), spans


class GroundingDetector:
    """A zero-shot detector with its processor, batched and cached."""

    def __init__(self, identity: str, config: DetectorConfig, cache: AnswerCache,
                 load: Callable[[], Tuple[Any, Any]]) -> None:
        """
        Wrap a detector that ``load()`` returns as (processor, model) on first use.

        Answers found in the cache never load it.
        """
        self.identity, self.config, self.cache, self._load = identity, config, cache, load
        self.text, self.spans = class_query(config.prompt)

    @functools.cached_property
    def _network(self) -> Tuple[Any, Any, Tensor]:
        """(processor, model, token classes [T]) loaded on first use."""
        processor, model = self._load()
        return processor, model, self._token_classes(processor.tokenizer)

    def _token_classes(self, tokenizer) -> Tensor:
        """Per text token, the index of the class it belongs to, -1 for none: [T] int64."""
        encoded = tokenizer(self.text, return_offsets_mapping=True)
        owners = []
        for start, end in encoded['offset_mapping']:
            owner = [c for c, (lo, hi) in enumerate(self.spans)
                     if end > start and lo <= start and end <= hi]
            owners.append(owner[0] if owner else -1)
        return torch.tensor(owners, dtype=torch.int64)

    def _params(self) -> Dict[str, Any]:
        return {'task': 'detect', 'query': self.text, 'threshold': self.config.score_threshold,
                'max': self.config.max_detections, 'nms': NMS_IOU}

    def detect(self, images: Sequence[Image.Image]) -> List[Detections]:
        """Detect on each image; cached answers are reused, the rest run in batches."""
        keys = [cache_key(self.identity, self._params(), [image]) for image in images]
        answers: List[Any] = [self.cache.get(key) for key in keys]
        todo = [i for i, answer in enumerate(answers) if answer is None]
        for start in range(0, len(todo), self.config.batch_size):
            batch = todo[start:start + self.config.batch_size]
            for i, found in zip(batch, self._run([images[i] for i in batch])):
                answers[i] = found.to_json()
                self.cache.put(keys[i], answers[i])
        return [Detections.from_json(answer) for answer in answers]

    @torch.no_grad()
    def _run(self, images: List[Image.Image]) -> List[Detections]:
        processor, model, _ = self._network
        device = next(model.parameters()).device
        inputs = processor(images=images, text=[self.text] * len(images),
                           return_tensors='pt').to(device)
        outputs = model(**inputs)
        probs = outputs.logits.sigmoid().float().cpu()  # [B, Q, max_text_len]
        centres = outputs.pred_boxes.float().cpu()  # [B, Q, 4] cx, cy, w, h in [0, 1]
        return [self._decode(p, c, image.size) for p, c, image in zip(probs, centres, images)]

    def _decode(self, probs: Tensor, centres: Tensor, size: Tuple[int, int]) -> Detections:
        """Decode one image from probs [Q, L] and boxes [Q, 4] (normalised cx, cy, w, h)."""
        per_class = torch.stack([self._class_score(probs, c) for c in range(len(self.spans))],
                                dim=1)  # [Q, C]
        scores, classes = per_class.max(dim=1)
        width, height = size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = torch.cat([centres[:, :2] - centres[:, 2:] / 2,
                           centres[:, :2] + centres[:, 2:] / 2], dim=1) * scale
        boxes = torch.minimum(boxes.clamp(min=0), scale)
        keep = torch.nonzero(scores >= self.config.score_threshold).flatten()
        kept = [int(keep[i]) for i in non_maximum_suppression(boxes[keep], scores[keep], NMS_IOU)]
        kept = kept[:self.config.max_detections]
        return Detections(boxes[kept], scores[kept],
                          tuple(self.config.prompt[int(classes[i])] for i in kept))

    def _class_score(self, probs: Tensor, index: int) -> Tensor:
        """Return the best token probability of class ``index`` per query: probs [Q, L] -> [Q]."""
        token_classes = self._network[2]
        length = min(probs.shape[1], token_classes.shape[0])
        tokens = torch.nonzero(token_classes[:length] == index).flatten()
        if tokens.numel() == 0:  # the class was cut by the model's text length
            return torch.zeros(probs.shape[0])
        return probs[:, tokens].max(dim=1).values
