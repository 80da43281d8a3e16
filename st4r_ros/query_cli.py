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
`st4r query`: ask a scene one question, or a few, from the shell.

The scene's engine is opened once (``QueryEngine.open``) and answers every text in one batch,
exactly as it answers a robot. Each answer is printed as a user reads it (status, target,
score against the no-target threshold, why it was or was not taken as time-sensitive, active
spans, the engine's message), or as JSON. With a camera, each answer also becomes files in the
output folder: ``NN_SLUG_mask.png``, ``NN_SLUG_overlay.png`` (the target marked on the view's
colour, as the node's overlay topic marks it) and, with a target, ``NN_SLUG_cloud.ply``;
``index.json`` lists them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from rich.console import Console
from rich.table import Table
from rich.text import Text
from st4r_ros.answer_files import answer_stem, write_cloud_ply
from st4r_ros.command_text import referring_part
from st4r_ros.engine import (QueryEngine, QueryMode, QueryRequest, QueryResult, QueryStatus,
                             TargetCloud, TimeSpan)
from st4r_ros.errors import St4rError
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import highlight, save_png
from st4r_ros.scene.scene4d import check_time
import torch

# --mode's words: where/when are what a user asks, the engine's modes what ReferringResult says.
MODES = {'auto': QueryMode.AUTO, 'where': QueryMode.TIME_AGNOSTIC,
         'when': QueryMode.TIME_SENSITIVE}
DEFAULT_OUT = 'out/query'
INDEX_FILE = 'index.json'
# Statuses that refuse the text (or failed on it) rather than answer it: the command fails.
FAILED = (QueryStatus.INVALID, QueryStatus.ERROR)
STATUS_STYLES = {QueryStatus.OK: 'green', QueryStatus.NO_TARGET: 'yellow'}

Record = Dict[str, object]


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `st4r query`'s arguments to ``parser`` (a subcommand's); ``run`` is query_from_args."""
    parser.add_argument('scene', help='the scene (any `st4r scene` format) with its layers')
    parser.add_argument('text', nargs='+', help='referring expression(s); several share the '
                                                'loaded scene')
    parser.add_argument('--time', type=float, default=0.0,
                        help='normalised scene time in [0, 1] (default 0)')
    parser.add_argument('--camera', help='camera JSON (see README): also write masks, '
                                         'overlays and target clouds')
    parser.add_argument('--layer', help='referring layer folder (default: in the bundle)')
    parser.add_argument('--mode', choices=list(MODES), default='auto',
                        help='where: time-agnostic, when: time-sensitive, auto: the router '
                             'decides')
    parser.add_argument('--out', default=DEFAULT_OUT,
                        help=f'folder of the files a camera gives (default {DEFAULT_OUT})')
    parser.add_argument('--json', action='store_true', help='print one JSON list of answers')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:1 ...')
    parser.set_defaults(run=query_from_args)


def query_from_args(args: argparse.Namespace) -> List[Record]:
    """
    Answer ``args.text`` over ``args.scene``, print the answers, write the camera's files.

    Returns the answers' records (as printed with --json).

    :raises St4rError: a bad time, camera file or scene (before any answer), or, once the
        answers are out, a text the engine refused (INVALID) or failed on (ERROR).
    """
    time = check_time(args.time)  # before the scene is loaded: a typo fails at once
    camera = Camera.load(args.camera) if args.camera else None
    engine = open_engine(args.scene, args.layer, args.device)
    requests = [QueryRequest(text, MODES[args.mode], time, camera) for text in args.text]
    results = engine.query_batch(requests, colour=camera is not None)
    out, records = Path(args.out), []
    for index, (text, result) in enumerate(zip(args.text, results)):
        files = {} if camera is None else write_answer(engine, out, index, text, result, camera)
        records.append(answer_record(index, text, result, files))
    if camera is not None:
        write_json(out / INDEX_FILE, records)
    print_answers(records, args.json)
    raise_on_failure(records)
    return records


def print_answers(records: List[Record], as_json: bool) -> None:
    """Print the answers on stdout: one table each, or one JSON list."""
    if as_json:
        print(json.dumps(records, indent=2))
        return
    console = Console(highlight=False)
    for record in records:
        console.print(answer_table(record))


def open_engine(scene: str, layer: Optional[str], device: str) -> QueryEngine:
    """
    Open the engine of ``scene`` with its referring layer (``layer``: another folder).

    :raises St4rError: the scene cannot be read, or it has no referring layer to answer from.
    """
    engine = QueryEngine.open(scene, layer, device)
    if engine.field is None:  # every answer would be NO_SCENE: say what to do instead
        raise St4rError(f'{scene}: no referring layer to answer from; train one with '
                        '`st4r train SCENE SUPERVISION`, or name its folder with --layer')
    return engine


def write_answer(engine: QueryEngine, out: Path, index: int, text: str, result: QueryResult,
                 camera: Camera) -> Dict[str, str]:
    """
    Write an answer's mask and overlay PNGs, and its target cloud as a PLY when it has one.

    Refused texts (INVALID, ERROR) write nothing. Returns {kind: path}.

    :raises St4rError: a file cannot be written.
    """
    if result.status in FAILED:
        return {}
    mask, image = result.mask, result.image
    if image is None:  # an answer the engine did not render (NO_STATE_CACHE): its view alone
        mask, image = engine.render_views(result, camera)
    if mask is None:  # [H, W]: no target, nothing marked
        mask = torch.zeros(camera.height, camera.width, dtype=torch.bool)
    stem = out / answer_stem(index, text)
    files = {'mask': Path(f'{stem}_mask.png'), 'overlay': Path(f'{stem}_overlay.png')}
    try:
        save_png(files['mask'], mask.float()[..., None])
        save_png(files['overlay'], highlight(image, mask))
        if result.cloud is not None and len(result.cloud.xyz):
            files['cloud'] = save_cloud(Path(f'{stem}_cloud.ply'), result.cloud)
    except OSError as err:
        raise St4rError(f'{err.filename or out}: cannot write ({err.strerror or err})') from None
    return {kind: str(path) for kind, path in files.items()}


def save_cloud(path: Path, cloud: TargetCloud) -> Path:
    """Write a target cloud of M points as a PLY point cloud (answer_files.write_cloud_ply)."""
    rgb = (cloud.rgb.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return write_cloud_ply(path, cloud.xyz.detach().float().cpu().numpy(), rgb.cpu().numpy(),
                           cloud.score.detach().float().cpu().numpy())


def write_json(path: Path, records: List[Record]) -> Path:
    """Write the answers' records as ``path`` (the index of the files beside it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=2) + '\n')
    except OSError as err:
        raise St4rError(f'{path}: cannot write ({err.strerror or err})') from None
    return path


def answer_record(index: int, text: str, result: QueryResult, files: Dict[str, str]) -> Record:
    """
    Return what the command tells about one answer, as JSON values.

    ReferringResult's field names; unknown numbers (NaN) are null. ``text`` is the text as
    given, ``query`` as the engine read it, ``referring`` the part of it the where branch
    answered (command_text.py: a request frame set aside).
    """
    return {
        'index': index, 'text': text, 'query': result.query,
        'referring': referring_part(result.query), 'status': result.status.name,
        'mode': result.mode.name, 'time_sensitive': result.time_sensitive,
        'time_sensitivity_reason': result.time_sensitivity_reason,
        'target_instance_id': result.target_instance_id, 'score': _number(result.score),
        'no_target_threshold': _number(result.no_target_threshold),
        'scene_time': _number(result.scene_time), 'scene_time_s': _number(result.scene_time_s),
        'active_spans': [_span(span) for span in result.active_spans],
        'num_gaussians': result.num_gaussians,
        'centroid': [_number(v) for v in result.centroid],
        'bbox_min': [_number(v) for v in result.bbox_min],
        'bbox_max': [_number(v) for v in result.bbox_max],
        'message': result.message, 'files': files,
    }


def _span(span: TimeSpan) -> Dict[str, Optional[float]]:
    return {'start': span.start, 'end': span.end, 'start_s': _number(span.start_s),
            'end_s': _number(span.end_s), 'score': _number(span.score)}


def _number(value: float) -> Optional[float]:
    """Return ``value`` as a JSON number, None when it is unknown (NaN) or infinite."""
    return float(value) if math.isfinite(value) else None


def answer_table(record: Record) -> Table:
    """
    Make the table of one answer's record, as a user reads it.

    Every cell is Text, never markup: a query or a path with brackets prints verbatim.
    """
    table = Table(title=Text(f"{record['index']}: {record['text']}"), show_header=False,
                  title_justify='left')
    table.add_column('field', no_wrap=True)
    table.add_column('value', overflow='fold')  # a long path wraps whole, not cut to '...'
    status = str(record['status'])
    rows: List[Tuple[str, Union[str, Text]]] = [
        ('status', Text(status, style=STATUS_STYLES.get(QueryStatus[status], 'red'))),
        *([('read as', str(record['referring']))] if record['referring'] != record['query']
          else []),
        ('target', _target(record)),
        ('score', f"{_shown(record['score'])} (no-target threshold "
                  f"{_shown(record['no_target_threshold'])})"),
        ('scene time', _time(record['scene_time'], record['scene_time_s'])),
        ('routing', f"{'time-sensitive' if record['time_sensitive'] else 'time-agnostic'}"
                    f" ({record['mode']}): {record['time_sensitivity_reason'] or '-'}")]
    if record['time_sensitive']:
        rows.append(('active spans', _spans(record['active_spans'])))
    rows.append(('message', str(record['message'])))
    files = record['files']
    if isinstance(files, dict) and files:
        rows.append(('files', '\n'.join(str(path) for path in files.values())))
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(value))
    return table


def _target(record: Record) -> str:
    instance = record['target_instance_id']
    if not isinstance(instance, int) or instance < 0:
        return 'none'
    return f"instance {record['target_instance_id']} ({record['num_gaussians']} Gaussians)"


def _shown(value: object, digits: int = 3) -> str:
    return f'{value:.{digits}f}' if isinstance(value, float) else 'n/a'


def _time(t: object, seconds: object) -> str:
    known = f' ({_shown(seconds, 2)} s)' if isinstance(seconds, float) else ''
    return f't = {_shown(t, 2)}{known}' if isinstance(t, float) else 'n/a'


def _spans(spans: object) -> str:
    """Return 'start-end (start_s-end_s s)' of each span, normalised time first."""
    if not isinstance(spans, list) or not spans:
        return 'none'
    shown = []
    for span in spans:
        seconds = (f" ({_shown(span['start_s'], 2)}-{_shown(span['end_s'], 2)} s)"
                   if isinstance(span['start_s'], float) else '')
        shown.append(f"{span['start']:.2f}-{span['end']:.2f}{seconds}")
    return ', '.join(shown)


def raise_on_failure(records: Sequence[Record]) -> None:
    """
    Refuse the run when the engine refused or failed on a text (INVALID, ERROR).

    NO_TARGET and the time-sensitive statuses are answers; these are not.

    :raises St4rError: naming the first such text and how many there were.
    """
    failed = [r for r in records if r['status'] in {s.name for s in FAILED}]
    if failed:
        first = failed[0]
        more = f' ({len(failed) - 1} more failed)' if len(failed) > 1 else ''
        raise St4rError(f"query {first['index']} ({first['text']!r}): {first['status']}: "
                        f"{first['message']}{more}")
