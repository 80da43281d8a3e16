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
How large a scene file may say its contents are: every bound st4r_ros checks, declared once.

A file names sizes (a vertex count, a network width, a plane resolution) that the reader would
otherwise allocate or loop over before it reads a byte of the data; each bound is checked
first, so that a hostile or damaged file is refused with an error naming the bound instead of
exhausting the machine. Every bound sits far above what the public trainers write.
"""

# --- Gaussians -----------------------------------------------------------------------------

# Gaussians in a PLY: indices stay exact in float32 below 2^24; such a file is already gigabytes.
MAX_GAUSSIANS = 1 << 24
# Bytes of a PLY header: a few lines per property fit many times over (plyfile lists each byte).
MAX_PLY_HEADER_BYTES = 1 << 20
# |log scale| of a Gaussian: scale^2, the covariance a renderer forms, stays a normal float32.
MAX_ABS_LOG_SCALE = 40.0
# How far from 1 an activated quaternion's norm may be: float32 round trips stay far inside.
QUAT_NORM_TOLERANCE = 1e-3

# --- 4DGaussians cfg_args and deformation network ------------------------------------------

# Characters of cfg_args: a trainer's Namespace fits many times over; ast.parse stays shallow.
MAX_CFG_ARGS_CHARS = 1 << 16
# net_width, timenet_width, timenet_output: many times the public configs'; W^2 weights a layer.
MAX_NET_WIDTH = 1024
# defor_depth: the public configs use a few layers; each adds W^2 weights and a module object.
MAX_DEFOR_DEPTH = 16
# Scales in multires: twice the public configs' most; each adds a full set of planes.
MAX_MULTIRES = 8
# kplanes_config.output_coordinate_dim C: many times the public configs'; every plane is C deep.
MAX_GRID_CHANNELS = 256
# Cells along one plane axis (resolution x multires factor): four times the public configs' most.
MAX_PLANE_RESOLUTION = 2048
# Cells x channels of all planes: 512 MiB of float32, held by the loaded file and the network.
MAX_PLANE_PARAMETERS = 1 << 27
# Octaves of a positional encoding: sin(2^k x) of a float32 x is noise long before 2^128 (inf).
MAX_PE_FREQUENCIES = 32
# grid_pe, the factor on features before sin / cos: past 2^24 a float32 product has no fraction.
MAX_GRID_PE = 1 << 24

# --- semantic layers -----------------------------------------------------------------------

# Frames of the temporal moving average: smoothing means a few frames; the kernel holds this many.
MAX_SMOOTHING_WINDOW = 1023
# Feature widths a layer declares (text_dim, embed_dim, hidden_dim): above any sentence encoder's.
MAX_FEATURE_DIM = 1 << 16
# Distinct caption words a layer's vocabulary lists: a large scene's captioner uses thousands.
MAX_VOCABULARY_WORDS = 1 << 16
