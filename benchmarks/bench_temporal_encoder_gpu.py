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
Time the paper's temporal encoder shape on a GPU: a Mistral-7B decoder, last-token pooling.

Writes a randomly initialised MistralModel of e5-mistral-7b-instruct's size (hidden 4096,
32 layers, vocabulary 32000) in bfloat16, with a sentence-transformers config (last-token
pooling, a query instruction) and a word-level tokenizer over the synthetic scenes' words, into
a folder, and loads it through TextEncoder as `st4r train --temporal-text-model DIR
--temporal-text-dtype bfloat16` would. The weights' values do not change the cost; the
word-level tokenizer gives fewer tokens per sentence than e5-mistral's SentencePiece one
(reported). Checks first that the bfloat16 encoder agrees with the same weights in float32
and that a batch agrees with single texts, then times one query with its instruction and the
encoding of state captions for a cache (synchronised).

Usage (on a CUDA machine):
    PYTHONPATH=. python benchmarks/bench_temporal_encoder_gpu.py --folder /tmp/e5_shape \
        [--out results.json]
    PYTHONPATH=. python benchmarks/bench_temporal_encoder_gpu.py --smoke [--out results.json]

``--smoke`` checks the script, not the GPU: the same architecture at a tiny size (one layer,
hidden 64) written into a new temporary folder, two timed calls per figure, on the CPU. It
skips the compiled query (``--compile``: CUDA graphs need a CUDA device) and says so.
"""

import argparse
import atexit
import json
from pathlib import Path
import re
import shutil
import tempfile
import time

from st4r_ros.synthetic.language import (EVALUATION_STATES, EVALUATION_WORDS, TRAINING_STATES,
                                         TRAINING_WORDS)
from st4r_ros.text import TextEncoder
import torch
import torch.nn.functional as F

PROMPT = ('Instruct: Given a question about a moment, retrieve the state descriptions that '
          'answer it\nQuery: ')
QUERY = 'when is the crimson box squeezed down?'
CAPTIONS = [f'the {colour} {shape} {state}' for colour in ('ruby', 'navy', 'pearl')
            for shape in ('cube', 'globe', 'drum') for phrases in TRAINING_STATES.values()
            for state in phrases]
# MistralConfig sizes: the paper's temporal encoder's, and a tiny one of the same architecture.
SHAPE = {'hidden_size': 4096, 'intermediate_size': 14336, 'num_attention_heads': 32,
         'num_key_value_heads': 8}
SMOKE_SHAPE = {'hidden_size': 64, 'intermediate_size': 128, 'num_attention_heads': 4,
               'num_key_value_heads': 2}


def vocabulary() -> list:
    """Every word the synthetic language and the prompt use, after the special tokens."""
    texts = [PROMPT, QUERY, *CAPTIONS, *(p for ps in EVALUATION_STATES.values() for p in ps)]
    for words in (TRAINING_WORDS, EVALUATION_WORDS):
        for table in (words.colours, words.shapes, words.sizes):
            texts += [w for options in table.values() for w in options]
    found = sorted({w for text in texts for w in re.findall(r'\w+|[^\w\s]', text)})
    return ['<unk>', '<s>', '</s>'] + found


def write_folder(folder: Path, layers: int, device: str, shape: dict = SHAPE) -> None:
    from tokenizers import models, pre_tokenizers, processors, Tokenizer
    from transformers import MistralConfig, MistralModel, PreTrainedTokenizerFast

    words = vocabulary()
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)},
                                           unk_token='<unk>'))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single='<s> $A',
                                                             special_tokens=[('<s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token='<s>', eos_token='</s>',
                            unk_token='<unk>', model_max_length=4096).save_pretrained(folder)
    config = MistralConfig(vocab_size=32000, num_hidden_layers=layers, **shape,
                           max_position_embeddings=32768, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):
        model = MistralModel(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    empty_cache()
    modules = [{'idx': 0, 'name': '0', 'path': '',
                'type': 'sentence_transformers.models.Transformer'},
               {'idx': 1, 'name': '1', 'path': '1_Pooling',
                'type': 'sentence_transformers.models.Pooling'},
               {'idx': 2, 'name': '2', 'path': '2_Normalize',
                'type': 'sentence_transformers.models.Normalize'}]
    (folder / 'modules.json').write_text(json.dumps(modules))
    (folder / '1_Pooling').mkdir(exist_ok=True)
    (folder / '1_Pooling' / 'config.json').write_text(json.dumps(
        {'word_embedding_dimension': shape['hidden_size'], 'pooling_mode_lasttoken': True}))
    (folder / 'config_sentence_transformers.json').write_text(json.dumps(
        {'prompts': {'query': PROMPT, 'document': ''}}))


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def timed(call, repeats: int) -> dict:
    for _ in range(5):
        call()
    synchronize()
    laps = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize()
        laps.append((time.perf_counter() - start) * 1e3)
    laps = torch.tensor(laps)
    return {'median_ms': float(laps.median()), 'p99_ms': float(laps.quantile(0.99)),
            'repeats': repeats}


def compiled_query(encoder: TextEncoder, repeats: int) -> dict:
    """
    Time the query again with the encoder compiled for single texts (CUDA graphs).

    ``TextEncoder.compile_for_queries``, as ``QueryEngine.open(..., compile_text=True)`` and
    the node's compile_text_encoders do it; the answer must match the eager one.
    """
    eager = encoder.encode([QUERY], prompt=PROMPT).sentence
    report = {'compile_s': encoder.compile_for_queries()}
    compiled = encoder.encode([QUERY], prompt=PROMPT).sentence
    report['cosine_to_eager'] = float(F.cosine_similarity(compiled, eager).min())
    report.update(timed(lambda: encoder.encode([QUERY], prompt=PROMPT), repeats))
    return report


def parse_args() -> argparse.Namespace:
    """Read the options; ``--smoke`` replaces the sizes with tiny ones on the CPU."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--folder', default='/tmp/e5_mistral_shape')
    parser.add_argument('--repeats', type=int, default=100)
    parser.add_argument('--layers', type=int, default=32)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--compile', action='store_true',
                        help='also time the query compiled for single texts (CUDA graphs)')
    parser.add_argument('--out')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny model in a new temporary folder, CPU: checks the script only')
    args = parser.parse_args()
    args.shape = SHAPE
    if args.smoke:
        # A folder of its own: a full-size run must never pick up the tiny model.
        args.folder = tempfile.mkdtemp(prefix='e5_mistral_smoke_')
        atexit.register(shutil.rmtree, args.folder, True)
        args.layers, args.repeats, args.device, args.shape = 1, 2, 'cpu', SMOKE_SHAPE
    return args


def main() -> None:
    args = parse_args()
    folder = Path(args.folder)
    started = time.perf_counter()
    if not (folder / 'config_sentence_transformers.json').is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_folder(folder, args.layers, args.device, args.shape)
    report = {'write_s': time.perf_counter() - started, 'layers': args.layers,
              'hidden_size': args.shape['hidden_size'], 'smoke': args.smoke,
              'device': (torch.cuda.get_device_name() if args.device.startswith('cuda')
                         else args.device)}

    # Correctness: bfloat16 against the same weights in float32, batch against single texts.
    texts = [QUERY, *CAPTIONS[:7]]
    reference = TextEncoder(folder, args.device, dtype='float32').encode(texts, prompt=PROMPT)
    empty_cache()
    started = time.perf_counter()
    encoder = TextEncoder(folder, args.device, dtype='bfloat16')
    report['load_s'] = time.perf_counter() - started
    assert encoder.pooling == 'lasttoken' and encoder.prompts['query'] == PROMPT
    batch = encoder.encode(texts, prompt=PROMPT)
    agreement = F.cosine_similarity(batch.sentence, reference.sentence.to(batch.sentence))
    singles = torch.cat([encoder.encode([t], prompt=PROMPT).sentence for t in texts])
    report['bf16_vs_fp32_cosine_min'] = float(agreement.min())
    report['batch_vs_single_cosine_min'] = float(
        F.cosine_similarity(batch.sentence, singles).min())
    print(json.dumps(report, indent=1), flush=True)
    assert report['bf16_vs_fp32_cosine_min'] > 0.98, report
    assert report['batch_vs_single_cosine_min'] > 0.98, report

    tokens = len(encoder.tokenizer(PROMPT + QUERY)['input_ids']) + 1
    report['query_tokens_with_prompt'] = tokens
    report['query'] = timed(lambda: encoder.encode([QUERY], prompt=PROMPT), args.repeats)
    # Where that goes: the tokenizer and the transformer's forward pass apart.
    report['query_tokenize'] = timed(lambda: encoder._tokenize([PROMPT + QUERY]), args.repeats)
    inputs = {k: v.to(encoder.device) for k, v in encoder._tokenize([PROMPT + QUERY]).items()
              if k in encoder.tokenizer.model_input_names}
    with torch.no_grad():
        report['query_forward'] = timed(lambda: encoder.model(**inputs), args.repeats)
    report['weights_gib'] = sum(p.numel() * p.element_size()
                                for p in encoder.model.parameters()) / 2**30
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    captions = CAPTIONS * 4
    started = time.perf_counter()
    encoder.encode(captions, batch_size=64)
    synchronize()
    seconds = time.perf_counter() - started
    report['captions'] = {'count': len(captions), 'seconds': seconds,
                          'per_second': len(captions) / seconds}
    if torch.cuda.is_available():  # since the float32 reference was dropped
        report['peak_gib_bf16'] = torch.cuda.max_memory_allocated() / 2**30
    if args.compile and not args.smoke:
        report['compiled'] = compiled_query(encoder, args.repeats)
    elif args.smoke:
        report['compiled'] = {'skipped': 'compile_for_queries replays CUDA graphs: it needs a '
                                         'CUDA device'}
        print('smoke: skipped the compiled query (CUDA graphs need a CUDA device)', flush=True)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
