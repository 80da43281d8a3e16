"""The embedded demo: the main job of st4r_ros on a scene that ships as a few lines of config.

The scene is generated from ``models/demo/demo.json`` (a seed and sizes), written as an st4r
bundle, loaded back through `load_scene` like any user scene, rendered from a few cameras at a
few times and exported as a 3DGS PLY.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from st4r_ros.errors import St4rError
from st4r_ros.render.api import render
from st4r_ros.render.camera import Camera
from st4r_ros.render.images import depth_to_gray, save_png
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.ply import write_ply
from st4r_ros.scene.synthetic import SyntheticConfig, write_synthetic

DEMO_CONFIG = Path("models") / "demo" / "demo.json"


def find_demo_config() -> Path:
    """The demo config from a source checkout, else from the installed share folder."""
    candidates = [
        Path(__file__).resolve().parents[1] / DEMO_CONFIG,
        Path(sys.prefix) / "share" / "st4r_ros" / DEMO_CONFIG,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise St4rError("demo config not found; looked in " + ", ".join(map(str, candidates)))


def orbit_camera(center: torch.Tensor, radius: float, view: Dict, settings: Dict) -> Camera:
    """A camera on a sphere around ``center`` looking at it (z up)."""
    azimuth, elevation = math.radians(view["azimuth_deg"]), math.radians(view["elevation_deg"])
    offset = radius * torch.tensor(
        [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
         math.sin(elevation)]
    )
    return Camera.look_at((center + offset).tolist(), center.tolist(),
                          fov_x_deg=settings["fov_x_deg"], width=settings["width"],
                          height=settings["height"])


def run_demo(out: Path, console: Console) -> List[Path]:
    """Generate, load, render and export the demo scene under ``out``; returns written files."""
    config = json.loads(find_demo_config().read_text())
    settings = config["render"]
    synthetic_dir = out / "synthetic"
    console.print(f"generating the demo scene (seed {config['seed']}) in {synthetic_dir}")
    write_synthetic(synthetic_dir, config["seed"], SyntheticConfig(**config["synthetic"]),
                    progress=lambda views: track(views, description="ground-truth masks"))

    scene = load_scene(synthetic_dir / "scene")
    info = scene.info()
    first = scene.at(0.0)
    center = first.means.mean(dim=0)
    radius = 2.2 * float((first.means - center).norm(dim=1).quantile(0.95))
    cameras = {view["name"]: orbit_camera(center, radius, view, settings)
               for view in settings["views"]}

    written: List[Path] = []
    table = Table(title=f"st4r demo: {info.format}, {info.num_gaussians} Gaussians, "
                        f"{info.num_frames} frames")
    for column in ("time", "view", "coverage", "render ms", "files"):
        table.add_column(column)
    for t in settings["times"]:
        gaussians = scene.at(t)
        for name, camera in cameras.items():
            start = time.perf_counter()
            result = render(gaussians, camera, background=1.0)
            elapsed_ms = 1000 * (time.perf_counter() - start)
            stem = out / "renders" / f"t{t:.2f}_{name}"
            files = [save_png(f"{stem}_rgb.png", result.image),
                     save_png(f"{stem}_depth.png", depth_to_gray(result.depth, result.alpha))]
            written += files
            coverage = float((result.alpha > 0.5).float().mean())
            table.add_row(f"{t:.2f}", name, f"{coverage:.0%}", f"{elapsed_ms:.0f}",
                          ", ".join(f.name for f in files))
    export_path = out / f"scene_t{config['export_time']:.2f}.ply"
    write_ply(export_path, scene.at(config["export_time"]))
    written.append(export_path)
    console.print(table)
    console.print(f"renders in {out / 'renders'}; 3DGS PLY at t={config['export_time']}: "
                  f"{export_path}; ground truth in {synthetic_dir}")
    return written
