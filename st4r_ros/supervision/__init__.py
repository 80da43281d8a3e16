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
The annotation factory's side of training and evaluation.

The supervision and benchmark formats (format.py). The synthetic scenes' captions and
benchmark, which write these formats, are in the test bed (st4r_ros/synthetic/language.py).
"""

from st4r_ros.supervision.format import (Benchmark, Caption, Expression, InstanceCaptions,
                                         load_benchmark, load_supervision, save_benchmark,
                                         save_supervision, Supervision, SupervisionView)

__all__ = [
    'Benchmark', 'Caption', 'Expression', 'InstanceCaptions', 'Supervision', 'SupervisionView',
    'load_benchmark', 'load_supervision', 'save_benchmark', 'save_supervision',
]
