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
A tiny randomly initialised decoder-only sentence encoder written into a folder.

Shaped like e5-mistral-7b-instruct as sentence-transformers saves it: a Mistral model, a
tokenizer that adds <s> but not </s>, last-token pooling, and an instruction prompt for queries.
"""

import json
from pathlib import Path

from tokenizers import models, pre_tokenizers, processors, Tokenizer
import torch
from transformers import MistralConfig, MistralModel, PreTrainedTokenizerFast

TINY_VOCAB = ['<unk>', '<s>', '</s>', 'Instruct', ':', 'find', 'the', 'moment', 'Query', 'a',
              'red', 'cube', 'is', 'spinning', 'when', 'does', 'it', 'spin', '?', 'box',
              'at', 'rest', 'squashed', 'blue', 'sphere', 'moving']
QUERY_PROMPT = 'Instruct: find the moment\nQuery: '
HIDDEN = 32


def write_tiny_decoder(folder: Path, prompts=None) -> Path:
    """Write the model, its tokenizer and a sentence-transformers config into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_VOCAB)},
                                           unk_token='<unk>'))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single='<s> $A', special_tokens=[('<s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token='<s>', eos_token='</s>',
                            unk_token='<unk>', model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(TINY_VOCAB), hidden_size=HIDDEN, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    MistralModel(config).save_pretrained(folder)
    modules = [{'idx': 0, 'name': '0', 'path': '',
                'type': 'sentence_transformers.models.Transformer'},
               {'idx': 1, 'name': '1', 'path': '1_Pooling',
                'type': 'sentence_transformers.models.Pooling'},
               {'idx': 2, 'name': '2', 'path': '2_Normalize',
                'type': 'sentence_transformers.models.Normalize'}]
    (folder / 'modules.json').write_text(json.dumps(modules))
    (folder / '1_Pooling').mkdir(exist_ok=True)
    (folder / '1_Pooling' / 'config.json').write_text(json.dumps(
        {'word_embedding_dimension': HIDDEN, 'pooling_mode_lasttoken': True,
         'pooling_mode_mean_tokens': False, 'pooling_mode_cls_token': False}))
    (folder / 'config_sentence_transformers.json').write_text(json.dumps(
        {'prompts': {'query': QUERY_PROMPT, 'document': ''} if prompts is None else prompts}))
    return folder
