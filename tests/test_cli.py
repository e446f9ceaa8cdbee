"""The command line, run as a user runs it: a subprocess of main.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def biopsia(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_info_on_the_cmu_slide(cmu_svs):
    result = biopsia("info", cmu_svs, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["dimensions"] == [2220, 2967]
    assert info["mpp"][0] == pytest.approx(0.499, abs=0.001)
    assert info["objective_power"] == 20
    assert info["vendor"] == "aperio"
    assert {"label", "macro", "thumbnail"} <= set(info["associated_images"])
    text = biopsia("info", cmu_svs)
    assert text.returncode == 0
    assert "2220 x 2967 px" in text.stdout and "20x" in text.stdout and "aperio" in text.stdout


@pytest.mark.parametrize("content", [None, b"garbage bytes, not a slide"])
def test_info_on_bad_files_fails_clearly(tmp_path, content):
    path = tmp_path / "broken.svs"
    if content is not None:
        path.write_bytes(content)
    result = biopsia("info", path)
    assert result.returncode == 1
    assert "broken.svs" in result.stderr and "Traceback" not in result.stderr


def test_info_on_unreadable_vendor_files(shared_slides):
    result = biopsia("info", shared_slides / "unopenable.tiff")
    assert result.returncode == 1 and "unopenable.tiff" in result.stderr and "tried" in result.stderr


def test_screenshot_of_the_cmu_slide(tmp_path, cmu_svs):
    out = tmp_path / "shot.png"
    result = biopsia("screenshot", cmu_svs, "--out", out, "--size", "1200x800", "--mag", "5")
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image.shape[:2] == (800, 1200)
    # real H&E on screen: plenty of pink/purple pixels (red and blue above green)
    b, g, r = image[..., 0].astype(int), image[..., 1].astype(int), image[..., 2].astype(int)
    stained = (r - g > 25) & (b - g > 10)
    assert stained.mean() > 0.08


def test_screenshot_of_a_bad_slide_fails_clearly(tmp_path):
    bad = tmp_path / "bad.ndpi"
    bad.write_bytes(b"\x00" * 100)
    result = biopsia("screenshot", bad, "--out", tmp_path / "x.png")
    assert result.returncode == 1 and "bad.ndpi" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_screenshot_without_resolution_cannot_use_magnification(tmp_path):
    png = tmp_path / "plain.png"
    cv2.imwrite(str(png), np.full((300, 400, 3), 180, np.uint8))
    result = biopsia("screenshot", png, "--out", tmp_path / "y.png", "--mag", "20")
    assert result.returncode == 1 and "plain.png" in result.stderr and "µm/px" in result.stderr
