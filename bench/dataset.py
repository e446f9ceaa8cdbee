#!/usr/bin/env python3
"""Dataset benchmark: a 30,000-tile RecordIO dataset from a 20x synthetic slide, timed end to end.

The slide (70,000 x 56,000 px at 0.5 µm/px, seed 1: one large resection section) is generated into
the cache on first use (a few minutes). The timed part is what ``biopsia dataset`` does: tissue detection, the labelled grid
(128 px tiles at 1 µm/px from the marks), then reading, resizing and JPEG-encoding 30,000 kept tiles
and writing train/test .rec/.idx/.lst, tiles.csv and the manifest. Prints JSON.

    .venv/bin/python bench/dataset.py [--tiles 30000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core

import numpy as np  # noqa: E402

from core.tiles.dataset import ordered_positions, plan_dataset, sources_from_paths, write_dataset  # noqa: E402
from core.paths import cache_dir  # noqa: E402
from core.tiles.grid import TileSpec  # noqa: E402

WIDTH, HEIGHT, SEED = 70000, 56000, 1


def big_slide() -> Path:
    path = cache_dir() / "bench" / f"synth-resection-{WIDTH}x{HEIGHT}-seed{SEED}.tiff"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "synth", str(path), "--seed", str(SEED),
                        "--width", str(WIDTH), "--height", str(HEIGHT), "--resection"], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=30000)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    slide = big_slide()

    start = time.perf_counter()
    sources = sources_from_paths([slide])
    plan = plan_dataset(sources, TileSpec(128, 1.0), split="random", ratio=0.7, seed=0)
    planned = time.perf_counter() - start
    kept = plan.label.size
    if kept < args.tiles:
        raise SystemExit(f"the slide gives only {kept} labelled tiles, fewer than {args.tiles}")
    # the first N tiles in reading order: one band of the slide, as a smaller slide would give
    chosen = np.sort(ordered_positions(plan, np.arange(kept))[:args.tiles])
    for name in ("slide", "index", "label", "split"):
        setattr(plan, name, getattr(plan, name)[chosen])

    with tempfile.TemporaryDirectory(prefix="biopsia-bench-", dir=cache_dir()) as out:
        t0 = time.perf_counter()
        manifest = write_dataset(plan, out, workers=args.workers)
        written = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(out).iterdir())
    total = planned + written
    print(json.dumps({
        "slide": f"{slide.name} ({WIDTH} x {HEIGHT} px, 0.5 µm/px, resection)",
        "cores": os.cpu_count(), "workers": args.workers or "default",
        "labelled_tiles_on_slide": int(kept), "tiles_written": int(plan.label.size),
        "counts": manifest["counts"],
        "tissue_and_labels_s": round(planned, 2), "read_encode_write_s": round(written, 2),
        "total_s": round(total, 2), "tiles_per_s": round(plan.label.size / written, 1),
        "dataset_mb": round(size / 2**20, 1), "goal_s": 60, "met": total < 60,
    }, indent=1))


if __name__ == "__main__":
    main()
