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
A trained 4DGaussians (hustvl, CVPR 2024) output folder as a Scene4D.

Folder layout, as the public trainer writes it (``Scene.save``):

    cfg_args                                      Namespace(...) text of every training argument
    point_cloud/iteration_N/point_cloud.ply       canonical Gaussians, Inria 3DGS PLY
    point_cloud/iteration_N/deformation.pth       state_dict of deform_network
    point_cloud/iteration_N/deformation_table.pth, deformation_accum.pth   (training only)
    point_cloud/coarse_iteration_N/...            coarse stage, not deformed: ignored

`save_fourdgaussians` writes the same layout (cfg_args, the PLY, deformation.pth), so a scene
fitted here (synthetic/fourdgs_fit.py) is read back as the trainer's would be.

The Gaussians at time t are the canonical pre-activation values deformed by the network, then
activated (exp scales, sigmoid opacities, normalised quaternions), as the public renderer does.
"""

from __future__ import annotations

from dataclasses import asdict
import os
from pathlib import Path
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from st4r_ros.errors import SceneFormatError
from st4r_ros.scene.deformation import DeformationConfig, DeformationNetwork
from st4r_ros.scene.deformation_fused import AutoDeformation
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.ply import RawGaussians, read_ply, write_ply
from st4r_ros.scene.scene4d import check_time, Scene4D, SceneInfo
import torch

# (canonical pre-activation Gaussians, t) -> deformed pre-activation Gaussians.
DeformFn = Callable[[RawGaussians, float], RawGaussians]

# ASCII digits only: int() also reads other scripts' digits, naming a folder that is not there.
_ITERATION_DIR = re.compile(r'iteration_(\d+)$', re.ASCII)


class FourDGaussiansScene(Scene4D):
    """
    Canonical Gaussians + the 4DGaussians deformation network; `load` reads an output folder.

    :param canonical: the undeformed pre-activation Gaussians, [N] each.
    :param network: the loaded `DeformationNetwork`.
    :param path: where the scene came from (for messages and `info`).
    :param iteration, iterations: the ``point_cloud/iteration_N`` loaded and those available.
    :param deformation_factory: builds the deformation from ``network``; by default
        `AutoDeformation` (fused kernels on CUDA, the network elsewhere);
        ``lambda net: net`` forces the reference. The ``deformation`` attribute can also
        be replaced later.

    The canonical tensors, the network and the deformation live on the device of the last
    query; they move only when the device changes.
    """

    def __init__(
        self,
        canonical: RawGaussians,
        network: DeformationNetwork,
        path: str = '<memory>',
        iteration: Optional[int] = None,
        iterations: Sequence[int] = (),
        deformation_factory: Optional[Callable[[DeformationNetwork], DeformFn]] = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.config = network.config
        self.iteration = iteration
        self.iterations = list(iterations)
        self._canonical = canonical
        self.network = network.eval()
        self._device = canonical.device
        self.network.to(self._device)
        factory = deformation_factory or AutoDeformation.from_network
        self._deformation: DeformFn = factory(self.network)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        iteration: Optional[int] = None,
        deformation_factory: Optional[Callable[[DeformationNetwork], DeformFn]] = None,
    ) -> 'FourDGaussiansScene':
        """
        Read a 4DGaussians output folder (the one holding ``cfg_args``).

        ``iteration`` picks ``point_cloud/iteration_N``, the highest N when None.
        """
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise SceneFormatError(f'{path}: 4DGaussians output folder not found')
        config = DeformationConfig.from_cfg_args(os.path.join(path, 'cfg_args'))
        iterations = find_iterations(path)
        chosen = _choose_iteration(path, iterations, iteration)
        folder = os.path.join(path, 'point_cloud', f'iteration_{chosen}')
        canonical = _read_canonical(os.path.join(folder, 'point_cloud.ply'), config)
        weights_path = os.path.join(folder, 'deformation.pth')
        network = DeformationNetwork.from_state(config, load_deformation_state(weights_path),
                                                weights_path)
        return cls(canonical, network, path, chosen, iterations, deformation_factory)

    @property
    def deformation(self) -> DeformFn:
        """Return the callable (canonical RawGaussians, t) -> deformed RawGaussians in use."""
        return self._deformation

    @deformation.setter
    def deformation(self, deformation: DeformFn) -> None:
        self._deformation = deformation
        self._last = None  # Scene4D.at's cached state came from the previous deformation.
        if isinstance(deformation, torch.nn.Module):
            deformation.to(self._device)

    @property
    def canonical(self) -> RawGaussians:
        """Return the undeformed pre-activation Gaussians, [N] each, on the last used device."""
        return self._canonical

    def static_means(self) -> torch.Tensor:
        """Return the canonical cloud's centres, [N, 3] (the means need no activation)."""
        return self._canonical.means.detach()

    def deform_raw(self, t: float, device: torch.device | str | None = None) -> RawGaussians:
        """
        Pre-activation Gaussians at normalised time t in [0, 1] (e.g. for PLY export).

        ``device``: where to compute; the last used device when None.
        """
        t = check_time(t)
        self._use_device(self._device if device is None else torch.device(device))
        with torch.no_grad():
            return self._deformation(self._canonical, t)

    def _at(self, t: float, device: torch.device) -> Gaussians:
        return self.deform_raw(t, device).activate()

    def _use_device(self, device: torch.device) -> None:
        if device == self._device:
            return
        self._canonical = self._canonical.to(device)
        self.network.to(device)
        if isinstance(self._deformation, torch.nn.Module):
            self._deformation.to(device)
        self._device = device

    def info(self) -> SceneInfo:
        config = self.config
        deltas = [name for name, off in (('means', config.no_dx), ('scales', config.no_ds),
                                         ('rotations', config.no_dr), ('opacities', config.no_do),
                                         ('sh', config.no_dshs)) if not off]
        return SceneInfo(
            path=self.path,
            format='4dgaussians',
            num_gaussians=len(self._canonical),
            sh_degree=self._canonical.sh_degree,
            time_range=(0.0, 1.0),
            details={
                'iteration': self.iteration,
                'iterations': list(self.iterations),
                'config': config.name,
                'preset': config.matching_preset() or 'custom',
                'deformed': deltas,
                'multires': list(config.multires),
                'grid_resolution': list(config.kplanes_config.resolution),
                'grid_channels': config.kplanes_config.output_coordinate_dim,
                'net_width': config.net_width,
                'aabb': self.network.deformation_net.grid.aabb.tolist(),
                'deformation': getattr(self._deformation, 'backend',
                                       type(self._deformation).__name__),
            },
        )


def find_iterations(path: str) -> List[int]:
    """List the N of every ``point_cloud/iteration_N`` folder under ``path``, ascending."""
    cloud_dir = os.path.join(path, 'point_cloud')
    if not os.path.isdir(cloud_dir):
        raise SceneFormatError(f'{cloud_dir}: folder not found; expected point_cloud/iteration_N')
    entries = os.listdir(cloud_dir)
    iterations = sorted(
        int(match.group(1))
        for match in map(_ITERATION_DIR.match, entries)
        if match and os.path.isdir(os.path.join(cloud_dir, match.group(0)))
    )
    if not iterations:
        raise SceneFormatError(
            f'{cloud_dir}: no iteration_N folder (found {sorted(entries)}); expected the fine '
            'stage output point_cloud/iteration_N (coarse_iteration_N is not deformed)'
        )
    return iterations


def _choose_iteration(path: str, iterations: List[int], wanted: Optional[int]) -> int:
    if wanted is None:
        return iterations[-1]
    if wanted not in iterations:
        raise SceneFormatError(
            f'{path}: iteration {wanted} not found; available iterations {iterations}'
        )
    return wanted


def _read_canonical(ply_path: str, config: DeformationConfig) -> RawGaussians:
    canonical = read_ply(ply_path)
    # The public loader asserts this count; a mismatch means the PLY is from another run.
    if canonical.sh_degree != config.sh_degree:
        raise SceneFormatError(
            f'{ply_path}: SH degree {canonical.sh_degree} '
            f'({3 * (canonical.sh.shape[1] - 1)} f_rest properties), but cfg_args has '
            f'sh_degree={config.sh_degree}'
        )
    return canonical


def load_deformation_state(path: str) -> Dict[str, Any]:
    """
    Load the state_dict in a ``deformation.pth`` on the CPU with ``weights_only=True``.

    weights_only refuses any pickled global that is not a tensor type, so a file crafted to
    run code when unpickled fails here without running it.
    """
    if not os.path.isfile(path):
        raise SceneFormatError(
            f'{path}: deformation.pth not found; the trainer saves it next to point_cloud.ply'
        )
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    # torch reports refused globals and corrupt archives through several types
    # (UnpicklingError, RuntimeError, EOFError, ValueError, ...).
    except Exception as exc:
        raise SceneFormatError(
            f'{path}: not a loadable weights-only state_dict (corrupt, or pickles objects other '
            f'than tensors, which are refused): {exc}'
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(key, str) for key in state):
        raise SceneFormatError(
            f'{path}: holds a {type(state).__name__}; expected a state_dict (str -> tensor)'
        )
    return dict(state)


def save_fourdgaussians(folder: str | os.PathLike, canonical: RawGaussians,
                        network: DeformationNetwork, iteration: int,
                        extra_args: Optional[Mapping[str, Any]] = None) -> Path:
    """
    Write a 4DGaussians output folder: cfg_args, the PLY and deformation.pth of iteration N.

    The layout is the module docstring's. Everything is written into a temporary folder beside
    ``folder`` and moved into place at the end, so an error leaves no half-written scene; an
    existing ``folder`` is replaced.
    ``extra_args`` join cfg_args (a trainer records every argument; these are informative).
    """
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', dir=target.parent))
    try:
        args = {**asdict(network.config), **dict(extra_args or {})}
        (staging / 'cfg_args').write_text(
            'Namespace(' + ', '.join(f'{k}={v!r}' for k, v in args.items()) + ')')
        cloud = staging / 'point_cloud' / f'iteration_{iteration}'
        write_ply(cloud / 'point_cloud.ply', canonical)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        torch.save(state, cloud / 'deformation.pth')
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
