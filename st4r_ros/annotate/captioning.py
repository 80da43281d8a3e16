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
Captions from a Qwen-VL family model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) through transformers.

A request is a few images and a question. The model's own image processor turns the images
into patches; the prompt is written in the Qwen-VL chat format, each image as
``<|vision_start|>`` + one image token per merged patch + ``<|vision_end|>`` (token names read
from the model's config), so that no processor class beyond the image processor is needed.
Batches are padded on the left and decoded greedily; answers are cached by model + prompt +
images.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
from typing import Any, Callable, Dict, List, Sequence, Tuple

from PIL import Image
from st4r_ros.annotate.cache import AnswerCache, cache_key
from st4r_ros.annotate.config import CaptionerConfig
from st4r_ros.errors import AnnotationError
import torch


@dataclass(frozen=True, eq=False)
class CaptionRequest:
    """Images (in order) and the question about them."""

    images: Tuple[Image.Image, ...]
    prompt: str


def fill(template: str, name: str, **values: str) -> str:
    """
    Fill a configured prompt's ``{fields}``.

    :raises AnnotationError: the template names a field this prompt does not have.
    """
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise AnnotationError(f'captioner.{name}: cannot fill the prompt ({type(err).__name__}: '
                              f'{err}); its fields are {sorted(values)}') from None


class VisionLanguageCaptioner:
    """Batched, cached greedy answers of a Qwen-VL model."""

    def __init__(self, identity: str, config: CaptionerConfig, cache: AnswerCache,
                 load: Callable[[], Tuple[Any, Any, Any]]) -> None:
        """
        Wrap the model that ``load()`` returns as (tokenizer, image processor, model).

        It is loaded on the first answer not in the cache.
        """
        self.identity, self.config, self.cache, self._load = identity, config, cache, load

    @functools.cached_property
    def _network(self) -> Tuple[Any, Any, Any, Tuple[str, str, str], int]:
        """(tokenizer, image processor, model, vision tokens, spatial merge) on first use."""
        tokenizer, images, model = self._load()
        tokenizer.padding_side = 'left'  # generation continues every row at its end
        merge = int(model.config.vision_config.spatial_merge_size)
        return tokenizer, images, model, _vision_tokens(tokenizer, model.config), merge

    def _params(self, prompt: str) -> Dict[str, Any]:
        return {'task': 'caption', 'system': self.config.system_prompt, 'prompt': prompt,
                'max_new_tokens': self.config.max_new_tokens}

    def answer(self, requests: Sequence[CaptionRequest],
               progress=lambda batches: batches) -> List[str]:
        """
        Answer every request; cached answers are reused, the rest run in batches.

        ``progress`` wraps the iteration over batches (e.g. a progress bar).
        """
        keys = [cache_key(self.identity, self._params(r.prompt), r.images) for r in requests]
        answers: List[Any] = [self.cache.get(key) for key in keys]
        todo = [i for i, answer in enumerate(answers) if answer is None]
        size = self.config.batch_size
        for start in progress(range(0, len(todo), size)):
            batch = todo[start:start + size]
            for i, text in zip(batch, self._generate([requests[i] for i in batch])):
                answers[i] = text
                self.cache.put(keys[i], text)
        return answers

    @torch.no_grad()
    def _generate(self, batch: Sequence[CaptionRequest]) -> List[str]:
        tokenizer, processor, model, tokens, merge = self._network
        device = next(model.parameters()).device
        images = [image for request in batch for image in request.images]
        pixels = processor(images=images, return_tensors='pt')
        grid = pixels['image_grid_thw']  # [n_images, 3]: frames, rows, cols of patches
        counts = (grid.prod(dim=-1) // merge ** 2).tolist()
        texts, used = [], 0
        for request in batch:
            texts.append(self._chat(request, counts[used:used + len(request.images)], tokens))
            used += len(request.images)
        encoded = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors='pt')
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
        output = model.generate(
            input_ids=encoded['input_ids'].to(device),
            attention_mask=encoded['attention_mask'].to(device),
            pixel_values=pixels['pixel_values'].to(device, model.dtype),
            image_grid_thw=grid.to(device), max_new_tokens=self.config.max_new_tokens,
            do_sample=False, pad_token_id=pad)
        new = output[:, encoded['input_ids'].shape[1]:]
        return [' '.join(text.split())
                for text in tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _chat(self, request: CaptionRequest, counts: Sequence[int],
              tokens: Tuple[str, str, str]) -> str:
        """Write the Qwen-VL chat prompt of one request, each image expanded to its token count."""
        start, end, pad = tokens
        vision = ''.join(f'{start}{pad * n}{end}' for n in counts)
        return (f'<|im_start|>system\n{self.config.system_prompt}<|im_end|>\n'
                f'<|im_start|>user\n{vision}{request.prompt}<|im_end|>\n'
                '<|im_start|>assistant\n')


def _vision_tokens(tokenizer, config) -> Tuple[str, str, str]:
    """(vision start, vision end, image pad) token strings from the model's config ids."""
    ids = [getattr(config, name, None)
           for name in ('vision_start_token_id', 'vision_end_token_id', 'image_token_id')]
    if None in ids or getattr(config, 'vision_config', None) is None:
        raise AnnotationError(f'captioner {getattr(config, "model_type", "?")}: expected a '
                              'Qwen-VL family model (config with vision_start_token_id, '
                              'vision_end_token_id, image_token_id and vision_config)')
    start, end, pad = tokenizer.convert_ids_to_tokens(ids)
    return start, end, pad
