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
The annotation factory: `st4r annotate VIDEO_OR_FRAMES SCENE --out SUPERVISION`.

Open-vocabulary detection and SAM 2 tracking into instance trajectories, description and
temporal state captions from a vision-language model, mapped onto the scene's training views
and written in the supervision format `st4r train` reads. docs/annotation.md is the guide.
"""

from st4r_ros.annotate.config import AnnotateConfig, config_from_dict, load_config
from st4r_ros.annotate.pipeline import annotate, annotate_main, AnnotateResult

__all__ = ['AnnotateConfig', 'AnnotateResult', 'annotate', 'annotate_main', 'config_from_dict',
           'load_config']
