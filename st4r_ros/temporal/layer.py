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
The 'temporal' semantic layer: state cache, router and interval parameters on disk.

Files, in the layer folder (the scene's bundle, or the folder of its referring layer; where
that is and how the files are written is scene/layers.py's)::

    temporal.safetensors   cache/instance_ids [K] int64, cache/frame_times [T],
                           cache/features [K, T, D], cache/valid [K, T] uint8,
                           states/features [K, T, D], states/valid [K, T] uint8,
                           router/weight [D]
    temporal.json          {"format": "st4r-temporal-layer", "version": 2,
                            "file": "temporal.safetensors",
                            "text_encoder": {"name", "dim", "dtype", "query_prompt",
                                             "document_prompt"},
                            "router_bias": b, "intervals": IntervalParams,
                            "calibration": {...}, "duration_s": seconds or null}

Only safetensors and JSON are read: loading executes nothing from the data, and checks the
type of every JSON value and the kind and rank of every tensor it reads. Version 1 (a sentence
router and an object basis instead of state features) is refused with how to rebuild.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from st4r_ros.errors import SceneFormatError, SupervisionFormatError
from st4r_ros.files import read_json_object
from st4r_ros.limits import MAX_SMOOTHING_WINDOW
from st4r_ros.scene.layers import (json_fields, json_int, json_value, layer_tensor,
                                   load_layer_tensors, save_layer)
from st4r_ros.supervision.format import Supervision
from st4r_ros.temporal.intervals import find_intervals, IntervalParams, Intervals
from st4r_ros.temporal.routing import fit_router, Router, router_examples
from st4r_ros.temporal.state_cache import (cache_from_table, NO_STATE_CAPTIONS,
                                           state_caption_table, StateCache, unit_sentences)
from st4r_ros.temporal.state_space import state_features
from st4r_ros.text import (DTYPES, EncoderSpec, NamedEncoder, SentenceEncoder, TextEncoder,
                           TextFeatures)
import torch
from torch import Tensor
import torch.nn.functional as F

LAYER_NAME = 'temporal'
LAYER_FILE = 'temporal.safetensors'
META_FILE = 'temporal.json'
LAYER_FORMAT = 'st4r-temporal-layer'
LAYER_VERSION = 2


@dataclass(frozen=True)
class TemporalLayer:
    """
    Everything a time-sensitive query needs besides the referring field.

    :ivar cache: the state cache c_{k,t} of caption sentence embeddings: which instance a
        query names (``locate``).
    :ivar router: time-sensitive vs time-agnostic; its word scores also make state features.
    :ivar states: the captions' state features per instance and frame (``state_space``), same
        instances and frames as ``cache``: when (``intervals``).
    :ivar params: how scores become intervals.
    :ivar text_encoder: the sentence encoder that made the cache and how (queries must be
        encoded alike: ``encode_queries``).
    :ivar calibration: how the parameters were chosen (for the record).
    :ivar locate_floor: the least cache match that names an instance (``locate``).
    """

    cache: StateCache
    router: Router
    states: StateCache
    params: IntervalParams = IntervalParams()
    text_encoder: EncoderSpec = EncoderSpec()
    calibration: Dict = field(default_factory=dict)
    locate_floor: float = 0.0

    def __post_init__(self) -> None:
        if not (torch.equal(self.states.instance_ids.cpu(), self.cache.instance_ids.cpu())
                and torch.equal(self.states.frame_times.cpu(), self.cache.frame_times.cpu())):
            raise SupervisionFormatError('temporal layer: state features must cover the '
                                         "cache's instances and frames")
        dims = (self.cache.dim, self.states.dim, len(self.router.weight))
        if len(set(dims)) != 1:
            raise SupervisionFormatError('temporal layer: cache, state features and router '
                                         f'must share one dimension D, got {dims}')

    def intervals(self, instance_id: int, state: Tensor) -> Optional[Intervals]:
        """
        Find the active frames of instance_id for a query's state feature [D] (``state_of``).

        None: the instance has no row.
        """
        row = self.states.row(instance_id)
        if row is None:
            return None
        return find_intervals(self.states.features[row], self.states.valid[row], state,
                              self.params)

    def locate(self, query: Tensor) -> Optional[Tuple[int, float]]:
        """
        Name the instance a time-sensitive query is about, from its state captions.

        State captions name the object as well as its state, and so does the query: the
        instance whose cache holds the best match, max_t <q, c_{k,t}>, is the query's, when
        that match reaches ``locate_floor``. With the default encoder this names the asked
        instance far more often than the referring field does on such queries, whose state
        words the field never saw (BENCHMARKS.md).

        :param query: the query's sentence embedding, [D].
        :return: (instance id, match), or None below the floor or without any known frame.
        """
        best = best_matches(self.cache, F.normalize(query.to(self.cache.features), dim=0))
        if len(best) == 0 or not bool(torch.isfinite(best).any()):
            return None
        row = int(best.argmax())
        match = float(best[row])
        return (int(self.cache.instance_ids[row]), match) if match >= self.locate_floor else None

    def encode_queries(self, encoder: SentenceEncoder, texts: List[str],
                       encoded: Optional[TextFeatures] = None) -> TextFeatures:
        """
        Return queries encoded as the layer compares and routes them (``TextFeatures``).

        :param encoder: the layer's sentence encoder.
        :param encoded: ``encoder.encode(texts)`` when the caller has it already (the field's
            encoder is the layer's): reused unless the layer puts a prompt before queries.
        """
        prompt = self.text_encoder.query_prompt
        if encoded is not None and not prompt:
            return encoded
        return encoder.encode(texts, prompt=prompt)

    def state_of(self, said: TextFeatures) -> Tensor:
        """Return the state features [E, D] of queries encoded by ``encode_queries``."""
        return state_features(self.router.weight, said)

    def to(self, device: torch.device | str) -> 'TemporalLayer':
        return TemporalLayer(self.cache.to(device), self.router.to(device),
                             self.states.to(device), self.params, self.text_encoder,
                             self.calibration, self.locate_floor)


def build_temporal_layer(supervision: Supervision, encoder: NamedEncoder, window: int = 3,
                         min_contrast: float = 0.05,
                         query_prompt: Optional[str] = None) -> TemporalLayer:
    """
    Build the cache from the state captions, fit the router and calibrate the level.

    The level is the median over the description captions and the instances of a
    description's best state-feature match over the instance's frames: a description says
    nothing about a state, so a query whose best frame scores no better than a typical
    description does is answered "never". Captions at their own frames score far higher
    (``positive_median``, recorded), and reworded queries in between (0.49 median on the
    benchmark's, against 0.23 for this level: BENCHMARKS.md).

    Captions are encoded as documents for the cache (the encoder's ``document`` prompt, if it
    names one); whatever stands for a query (the router's examples, the captions the state
    features, the level and the floor come from) is encoded as queries are at run time.

    :param encoder: a TextEncoder, or any NamedEncoder (name, dtype, prompts, ``encode``).
    :param query_prompt: the instruction put in front of queries; None: the encoder's
        ``query`` prompt, if it names one.
    :raises SupervisionFormatError: the supervision has no state captions.
    """
    times, table = state_caption_table(supervision)
    if not times:
        raise SupervisionFormatError(NO_STATE_CAPTIONS)
    spec = EncoderSpec(str(encoder.name), encoder.dtype,
                       encoder.prompts.get('query', '') if query_prompt is None else query_prompt,
                       encoder.prompts.get('document', ''))
    descriptions = sorted({c.text for inst in supervision.instances for c in inst.captions})
    states = sorted({text for captions in table.values() for text in captions})
    said_states, said_descriptions = router_examples(states, descriptions)
    # One encoding pass per prompt for the cache, the router, the state features and levels.
    texts = sorted(set(said_states) | set(said_descriptions))
    said = encoder.encode(texts, prompt=spec.query_prompt)
    query = dict(zip(texts, F.normalize(said.sentence.float().cpu(), dim=-1)))
    if spec.query_prompt == spec.document_prompt:  # one pass serves both sides
        document = query
    else:
        captions = states + descriptions
        document = dict(zip(captions, unit_sentences(encoder, captions, spec.document_prompt)))
    cache = cache_from_table(times, table, document)
    sensitive = set(said_states)  # a text among both kinds of example counts as a state
    router = fit_router(said, torch.tensor([text in sensitive for text in texts]))
    state_of = dict(zip(texts, state_features(router.weight, said).cpu()))  # the captions' too
    state_cache = cache_from_table(times, table, state_of, cache.instance_ids.tolist())
    said_nothing = best_matches(state_cache, torch.stack([state_of[t] for t in descriptions]))
    level = float(said_nothing.median())
    params = IntervalParams(window=window, level=level, min_contrast=min_contrast)
    # A query naming one of the scene's objects matches its captions about as well as a
    # description of it does (median over the descriptions: about 0.72 with MiniLM; held-out
    # queries 0.32-0.6); unrelated text stays lower (0.06-0.39 measured). Half that median.
    description_match = float(best_matches(cache, torch.stack(
        [query[t] for t in descriptions])).amax(dim=0).median())
    calibration = {'positive_median': _positive_median(state_cache, table, state_of),
                   'description_state_median': level,
                   'description_match_median': description_match,
                   'state_captions': len(states), 'description_captions': len(descriptions),
                   'router_training_accuracy': _router_accuracy(
                       dict(zip(texts, router.probability(said).tolist())), states, descriptions)}
    return TemporalLayer(cache, router, state_cache, params, spec, calibration,
                         description_match / 2)


def best_matches(cache: StateCache, units: Tensor) -> Tensor:
    """
    Return each instance's best match max_t <c_{k,t}, u> over known frames.

    :param units: one unit vector [D] (result [K]) or several [E, D] (result [K, E]).
    """
    scores = torch.einsum('ktd,...d->kt...', cache.features, units.to(cache.features))
    valid = cache.valid.reshape(*cache.valid.shape, *([1] * (units.dim() - 1)))
    return torch.where(valid, scores, torch.full_like(scores, -math.inf)).amax(dim=1)


def _positive_median(states: StateCache, table: Dict[Tuple[int, int], List[str]],
                     state_of: Dict[str, Tensor]) -> float:
    """Median state-feature score of a state caption at the frames it was said at."""
    row = {k: i for i, k in enumerate(states.instance_ids.tolist())}
    scores = [float(states.features[row[k], frame] @ state_of[text])
              for (k, frame), texts in table.items() for text in texts]
    return float(torch.tensor(scores).median())


def _router_accuracy(p: Dict[str, float], states: List[str], descriptions: List[str]) -> float:
    """Fraction of the captions themselves routed right, from p(time-sensitive) per text."""
    right = sum(p[t] >= 0.5 for t in states) + sum(p[t] < 0.5 for t in descriptions)
    return right / (len(states) + len(descriptions))


def save_temporal_layer(layer_dir: str | Path, layer: TemporalLayer,
                        metadata: Optional[Dict] = None) -> Path:
    """Write the layer into layer_dir; registered in the manifest if that is a bundle."""
    meta = {'format': LAYER_FORMAT, 'version': LAYER_VERSION, 'file': LAYER_FILE,
            'text_encoder': {**asdict(layer.text_encoder), 'dim': layer.cache.dim},
            'router_bias': layer.router.bias, 'intervals': asdict(layer.params),
            'calibration': layer.calibration, 'locate_floor': layer.locate_floor,
            **(metadata or {})}
    cache = layer.cache
    tensors = {'cache/instance_ids': cache.instance_ids.cpu(),
               'cache/frame_times': cache.frame_times.cpu(),
               'cache/features': cache.features.cpu().contiguous(),
               'cache/valid': cache.valid.cpu().to(torch.uint8),
               'states/features': layer.states.features.cpu().contiguous(),
               'states/valid': layer.states.valid.cpu().to(torch.uint8),
               'router/weight': layer.router.weight.cpu().contiguous()}
    return save_layer(layer_dir, LAYER_NAME, tensors, meta,
                      {'file': LAYER_FILE, 'meta': META_FILE,
                       'instances': len(cache.instance_ids), 'frames': len(cache.frame_times)})


def load_temporal_layer(layer_dir: str | Path,
                        device: torch.device | str = 'cpu') -> Optional[TemporalLayer]:
    """
    Load the temporal layer of layer_dir; None when the folder has none.

    :raises SceneFormatError: malformed files (the message names the file and what is wrong).
    """
    folder = Path(layer_dir)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    meta = read_json_object(meta_path, SceneFormatError)
    source = str(meta_path)
    version = json_value(meta, 'version', int, source, -1)
    if meta.get('format') == LAYER_FORMAT and version == 1:
        raise SceneFormatError(f'{meta_path}: temporal layer version 1 (sentence router, no '
                               'state features) is no longer read; rebuild it: run the '
                               '`st4r train` that made it again (same options: the referring '
                               'field resumes from its last checkpoint, the temporal layer is '
                               'rebuilt from the state captions)')
    if meta.get('format') != LAYER_FORMAT or version != LAYER_VERSION:
        raise SceneFormatError(f'{meta_path}: expected format {LAYER_FORMAT!r} version '
                               f'{LAYER_VERSION}')
    path, tensors = load_layer_tensors(folder, LAYER_FILE, f'{meta_path}: its tensor file')
    router = Router(layer_tensor(path, tensors, 'router/weight', 'float', 1).float(),
                    json_value(meta, 'router_bias', float, source))
    try:
        cache = _state_cache(path, tensors, 'cache')
        states = _state_cache(path, tensors, 'states', cache)
        layer = TemporalLayer(cache, router, states, _interval_params(meta, source),
                              _encoder_spec(meta, source),
                              json_value(meta, 'calibration', dict, source, {}),
                              json_value(meta, 'locate_floor', float, source))
    except SupervisionFormatError as err:
        raise SceneFormatError(f'{path}: {err}') from None
    return layer.to(device)


def _state_cache(path: Path, tensors: Mapping[str, Tensor], prefix: str,
                 like: Optional[StateCache] = None) -> StateCache:
    """
    Read the StateCache ``prefix``/features [K, T, D] and /valid [K, T] of the layer file.

    Instances and frame times are the ``cache``'s own (``cache/instance_ids`` [K] integer,
    ``cache/frame_times`` [T] float), or those of ``like``.
    """
    if like is None:
        ids = layer_tensor(path, tensors, 'cache/instance_ids', 'integer', 1).long()
        times = layer_tensor(path, tensors, 'cache/frame_times', 'float', 1)
    else:
        ids, times = like.instance_ids, like.frame_times
    return StateCache(ids, times,
                      layer_tensor(path, tensors, f'{prefix}/features', 'float', 3).float(),
                      layer_tensor(path, tensors, f'{prefix}/valid', 'flag', 2).bool())


def _interval_params(meta: Mapping, source: str) -> IntervalParams:
    """Read temporal.json's ``intervals``: typed, with an odd window of at most the bound."""
    where = f'{source}: intervals'
    checked = json_fields(IntervalParams, json_value(meta, 'intervals', dict, source), where)
    window = json_int(checked, 'window', where, 1, MAX_SMOOTHING_WINDOW, IntervalParams.window)
    if window % 2 == 0:  # an even window would give T + 1 averages of T frames (smooth)
        raise SceneFormatError(f"{where}: field 'window' = {window}; expected an odd number")
    return IntervalParams(**checked)


def _encoder_spec(meta: Mapping, source: str) -> EncoderSpec:
    """Read the layer's EncoderSpec from temporal.json's text_encoder (dim checked, left out)."""
    where = f'{source}: text_encoder'
    recorded = dict(json_value(meta, 'text_encoder', dict, source, {}))
    json_value(recorded, 'dim', int, where, 0)
    recorded.pop('dim', None)
    spec = EncoderSpec(**json_fields(EncoderSpec, recorded, where))
    if spec.dtype not in DTYPES:
        raise SceneFormatError(f"{where}: field 'dtype' = {spec.dtype!r}; expected one of "
                               f'{list(DTYPES)}')
    return spec


def temporal_encoder_for(layer: Optional[TemporalLayer], encoder: NamedEncoder,
                         device: torch.device | str = 'cpu') -> Optional[TextEncoder]:
    """
    Return the sentence encoder a temporal layer needs beside the referring ``encoder``.

    None when there is no layer or it was built with ``encoder`` itself (same name and weight
    type); else the encoder the layer records, loaded by name.

    :raises TextEncoderError: that encoder's weights cannot be found.
    :raises SceneFormatError: its dimension differs from the layer's cache.
    """
    if layer is None:
        return None
    spec = layer.text_encoder
    same = spec.name == str(encoder.name) and spec.dtype == encoder.dtype
    own = None if same else spec.load(device)
    if int((own or encoder).dim) != layer.cache.dim:
        raise SceneFormatError(f'temporal layer: its cache has D = {layer.cache.dim}, its text '
                               f'encoder {spec.name!r} gives {(own or encoder).dim}')
    return own
