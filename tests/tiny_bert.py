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

"""A tiny randomly initialised BERT written into a folder: a second, real-format text encoder."""

from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

TINY_VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
              'a', 'red', 'cube', 'the', 'box', 'dog', '##s', 'on', 'table', 'word']
TINY_HIDDEN = 32
TINY_POSITIONS = 64


def write_tiny_bert(folder: Path) -> Path:
    """Write a randomly initialised 2-layer BERT, 15-word WordPiece vocabulary, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'vocab.txt').write_text('\n'.join(TINY_VOCAB) + '\n', encoding='utf-8')
    BertTokenizer.from_pretrained(folder, local_files_only=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=TINY_HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=TINY_POSITIONS)
    BertModel(config).save_pretrained(folder)
    return folder
