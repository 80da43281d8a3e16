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

"""st4r_ros: spatio-temporal referring queries over 4D Gaussian Splatting scenes."""

from pkgutil import extend_path

__version__ = '0.1.0'

# The generated interfaces (st4r_ros.msg, st4r_ros.srv) live in a colcon install space, beside a
# copy of these sources; a checkout imported first (tests, editable installs) still finds them
# there when the install space is on the path (source ros_ws/install/setup.bash).
__path__ = extend_path(__path__, __name__)
