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
Many videos over many GPUs or machines: one `st4r annotate` job per video, spread by torchrun.

``python -m st4r_ros.annotate.distributed JOBS [--config FILE]`` reads a jobs file (one job per
line: ``SOURCE SCENE OUT [CAMERAS]``, ``#`` starts a comment) and runs the jobs whose line
number is congruent to its ``RANK`` modulo ``WORLD_SIZE``, on GPU ``LOCAL_RANK``: the
variables torchrun sets for every process it starts, on one machine or several. The processes
never talk to each other (no process group), so a failed or killed job is simply run again:
every job resumes from its own output folder, and all may share one cache folder.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import sys
from typing import List, Mapping, Optional, Sequence

from st4r_ros.annotate.config import load_config
from st4r_ros.annotate.pipeline import annotate
from st4r_ros.errors import AnnotationError, St4rError
import torch


@dataclass(frozen=True)
class Job:
    """One video to annotate."""

    source: str
    scene: str
    out: str
    cameras: Optional[str] = None


def read_jobs(path: str | Path) -> List[Job]:
    """
    Parse a jobs file.

    :raises AnnotationError: a line without 3 or 4 fields (named by its number).
    """
    jobs = []
    for number, line in enumerate(Path(path).read_text(encoding='utf-8').splitlines(), 1):
        fields = line.split('#', 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise AnnotationError(f'{path}:{number}: expected SOURCE SCENE OUT [CAMERAS], got '
                                  f'{len(fields)} fields')
        jobs.append(Job(*fields))
    return jobs


def my_jobs(jobs: Sequence[Job], env: Mapping[str, str]) -> List[Job]:
    """Return the jobs of this process: every WORLD_SIZE-th one from RANK (defaults 0 of 1)."""
    rank, world = int(env.get('RANK', 0)), int(env.get('WORLD_SIZE', 1))
    if not 0 <= rank < world:
        raise AnnotationError(f'RANK {rank} outside [0, WORLD_SIZE {world})')
    return list(jobs[rank::world])


def device_for(env: Mapping[str, str]) -> str:
    """Return ``cuda:LOCAL_RANK`` when CUDA is present, else ``cpu``."""
    return f"cuda:{int(env.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else 'cpu'


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m st4r_ros.annotate.distributed',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('jobs', help='jobs file: SOURCE SCENE OUT [CAMERAS] per line')
    parser.add_argument('--config', help='annotation config (YAML); defaults otherwise')
    args = parser.parse_args(argv)
    env = os.environ
    try:
        config = load_config(args.config).with_device(device_for(env))
        for job in my_jobs(read_jobs(args.jobs), env):
            result = annotate(job.source, job.scene, job.out, config, cameras=job.cameras)
            print(f"[rank {env.get('RANK', 0)}] {job.out}: {result.instances} instances, "
                  f'{result.captions} captions, {result.state_captions} state captions',
                  flush=True)
    except St4rError as err:
        print(f"[rank {env.get('RANK', 0)}] st4r: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
