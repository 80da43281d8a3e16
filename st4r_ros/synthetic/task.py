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
A synthetic scene's task: everything written beside it to train on and to score with.

From one reading of the scene's ground truth (and one search of where each reference holds,
the costly part): the training supervision (family A captions and state captions), the
held-out benchmark (family B) and the planner's request sets (family C). language.py and
planner.py each write their own; this module is the one place that writes all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from st4r_ros.synthetic.language import (holding_referents, load_scene_truth,
                                         write_captions_and_benchmark)
from st4r_ros.synthetic.planner import write_planner_sets


def build_synthetic_task(synthetic_dir: str | Path, seed: int = 0) -> Tuple[Path, Path]:
    """
    Write ``supervision/``, ``bench.json`` and the planner sets into ``synthetic_dir``.

    The planner sets (planner.json, planner_held_out.json) lie beside bench.json.

    :return: the supervision folder and the benchmark file.
    """
    scene = load_scene_truth(synthetic_dir)
    holding = holding_referents(scene)
    paths = write_captions_and_benchmark(scene, holding, seed)
    write_planner_sets(scene, holding, seed)
    return paths
