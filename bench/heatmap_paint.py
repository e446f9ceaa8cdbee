#!/usr/bin/env python3
"""Heatmap layer benchmark: paint time of a 300 x 300-cell map (a 76,800 px slide) on a 1600 x 1000 view.

For each mode (tiles, smooth) and scale: the first paint after a partial result (caches rebuilt) and a
pan (the screen image redrawn from the caches). Prints JSON; the goal is a pan well under 100 ms on
one shared core (a few ms on a desktop).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/heatmap_paint.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def slide_like_grid():
    """Smooth probabilities with blobs of tumour, no tissue outside a disc (as the layer test uses)."""
    from core.inference.predict import ProbabilityGrid

    rng = np.random.default_rng(0)
    probs = cv2.GaussianBlur(rng.random((300, 300)).astype(np.float32), (0, 0), 6)
    probs = (probs - probs.min()) / (probs.max() - probs.min())
    ys, xs = np.mgrid[0:300, 0:300]
    probs[(ys - 150) ** 2 + (xs - 150) ** 2 > 140 ** 2] = np.nan
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=256, tile_l0=256, tile_px=256, mpp=0.5,
                           slide_size=(76800, 76800))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from PyQt5.QtGui import QImage, QPainter

    from core.view.viewport import Viewport
    from gui.app import ensure_app
    from gui.layers.heatmap_layer import HeatmapLayer

    ensure_app(offscreen=True)
    layer = HeatmapLayer()
    layer.set_grid(slide_like_grid())
    layer.set_threshold(0.4)
    layer.set_outlines(True)
    target = QImage(1600, 1000, QImage.Format_ARGB32_Premultiplied)

    def paint(vp) -> float:
        start = time.perf_counter()
        painter = QPainter(target)
        layer.paint(painter, vp)
        painter.end()
        return (time.perf_counter() - start) * 1000

    results = []
    for mode in ("tiles", "smooth"):
        layer.set_mode(mode)
        for scale in (0.012, 0.1, 1.0):
            first, pan = [], []
            for i in range(args.repeat):
                layer.state.touch()  # as after a partial result: nothing cached but the smooth map
                first.append(paint(Viewport(76800, 76800, 1600, 1000, 30000.5, 40000.5, scale)))
                pan.append(paint(Viewport(76800, 76800, 1600, 1000, 30100.5 + i, 40100.5, scale)))
            results.append({"mode": mode, "scale": scale, "first_paint_ms": round(float(np.median(first)), 2),
                            "pan_ms_median": round(float(np.median(pan)), 2), "pan_ms_worst": round(max(pan), 2)})
    print(json.dumps({"benchmark": "heatmap_paint", "cells": "300x300", "screen": "1600x1000",
                      "repeat": args.repeat, "results": results,
                      "pan_ms_worst": max(r["pan_ms_worst"] for r in results)}, indent=1))


if __name__ == "__main__":
    main()
