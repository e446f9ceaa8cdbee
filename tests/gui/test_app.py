"""Starting the app as `make run` does: without a display it renders the demo window to a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from core.inference.predict import ProbabilityGrid

ROOT = Path(__file__).resolve().parents[2]


def test_run_without_display_renders_a_screenshot_and_says_where(tmp_path, synthetic_slide):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), str(synthetic_slide.slide_path)], env=env,
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "No display found" in result.stdout
    shot = Path(result.stdout.strip().split()[-1])
    assert shot.exists() and shot.is_relative_to(tmp_path / "cache")
    image = cv2.imread(str(shot))
    assert image.shape[0] >= 600 and image.shape[1] >= 1000


def test_demo_case_is_made_on_first_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo"], env=env, capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Making the demo slide" in result.stderr
    demo = list((tmp_path / "cache" / "biopsia" / "demo").glob("*.tiff"))
    assert len(demo) == 1 and demo[0].with_suffix(".geojson").exists()
    shot = Path(result.stdout.strip().split()[-1])
    assert shot.exists()
    # the demo model predicted the slide, and the grid is kept in the default project
    saved = list(Path(env["XDG_DATA_HOME"]).glob("biopsia/default-project/predictions/*/demo-model-*.npz"))
    assert len(saved) == 1
    grid = ProbabilityGrid.load(saved[0])
    assert grid.complete and grid.done.sum() > 1000 and np.nanmax(grid.probs) > 0.9
    stamp = saved[0].stat().st_mtime_ns
    # a second run reuses the slide and shows the saved prediction without computing it again
    again = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo"], env=env, capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "Making the demo slide" not in again.stderr
    assert saved[0].stat().st_mtime_ns == stamp
