#!/usr/bin/env python3
"""Tissue-detection and tile-planning benchmark on a 40,000 x 30,000 synthetic slide and the CMU slide.

Prints JSON with, per slide: the time to detect tissue (best and median of ``--repeat`` runs on an
open slide, plus the first run, which includes decoding the level), the mask size and tissue
fraction, and the time to plan the labelled tile grid (128 px at 1 µm/px) from the slide's marks.

    .venv/bin/python bench/tissue.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.annotations.formats import read_annotations  # noqa: E402
from core.paths import cache_dir  # noqa: E402
from core.slide import open_slide  # noqa: E402
from core.tiles.grid import TileSpec, plan_tiles  # noqa: E402
from core.tiles.tissue import detect_tissue  # noqa: E402

CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"


def synthetic_slide() -> Path:
    """The viewer benchmark's slide, generated in another process if missing."""
    path = cache_dir() / "bench" / "synth-40000x30000-seed1.tiff"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "synth", str(path), "--seed", "1"], check=True)
    return path


def bench(path: Path, repeat: int) -> dict:
    with open_slide(path) as reader:
        start = time.perf_counter()
        tissue = detect_tissue(reader)
        first = time.perf_counter() - start
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            tissue = detect_tissue(reader)
            times.append(time.perf_counter() - start)
        geojson = path.with_suffix(".geojson")
        marks = read_annotations(geojson).annotations if geojson.exists() else []
        start = time.perf_counter()
        plan = plan_tiles(reader, TileSpec(), tissue, marks)
        plan_s = time.perf_counter() - start
        start = time.perf_counter()
        polygons = tissue.to_polygons()
        polygons_s = time.perf_counter() - start
        return {
            "slide": path.name,
            "dimensions": list(reader.dimensions),
            "detect_first_s": round(first, 4),
            "detect_best_s": round(min(times), 4),
            "detect_median_s": round(statistics.median(times), 4),
            "mask_shape": list(tissue.mask.shape),
            "downsample": round(tissue.downsample, 3),
            "tissue_fraction": round(tissue.fraction, 4),
            "pen_fraction": round(float(tissue.pen.mean()), 5),
            "to_polygons_s": round(polygons_s, 4),
            "tissue_pieces": len(polygons),
            "plan_tiles_s": round(plan_s, 4),
            "marks": len(marks),
            "tiles": plan.counts,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = [bench(synthetic_slide(), args.repeat), bench(CMU, args.repeat)]
    print(json.dumps({"goal_detect_s": 0.3, "slides": results}, indent=2))


if __name__ == "__main__":
    main()
