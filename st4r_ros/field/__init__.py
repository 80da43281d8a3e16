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
Where: the instance-aware 4D Gaussian referring field (ST4R-Splat).

Also its losses, the instance assignment from 2D masks, training and the 'referring' semantic
layer on disk.
"""

from st4r_ros.field.layer import load_referring_layer, save_referring_layer
from st4r_ros.field.model import best_scores, FieldConfig, ReferringField, render_relevance

__all__ = ['FieldConfig', 'ReferringField', 'best_scores', 'load_referring_layer',
           'render_relevance', 'save_referring_layer']
