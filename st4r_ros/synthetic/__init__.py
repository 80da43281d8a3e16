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
The test bed: synthetic dynamic scenes whose every answer is known.

Not a loader: it generates data, rendering ground truth through render/ and writing it in the
formats that scene/ and supervision/ read, for the demo, the tests and the benchmarks.

- scene.py: the scenes, an st4r bundle with objects, events, cameras and instance masks;
- language.py: their training captions and held-out benchmark, made from that ground truth;
- planner.py: the requests a task planner sends about them (a third family of sentences);
- task.py: all of those written beside a scene at once (build_synthetic_task).
"""
