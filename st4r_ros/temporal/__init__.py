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

"""The 'when' branch: per-instance state caches, interval search and query routing."""

from st4r_ros.temporal.intervals import find_intervals, IntervalParams, Intervals
from st4r_ros.temporal.layer import (build_temporal_layer, load_temporal_layer,
                                     save_temporal_layer, TemporalLayer)
from st4r_ros.temporal.routing import fit_router, Router
from st4r_ros.temporal.state_cache import build_state_cache, StateCache

__all__ = [
    'build_state_cache', 'build_temporal_layer', 'find_intervals', 'fit_router',
    'IntervalParams', 'Intervals', 'load_temporal_layer', 'Router', 'save_temporal_layer',
    'StateCache', 'TemporalLayer',
]
