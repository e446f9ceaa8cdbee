#!/usr/bin/env python3
"""Viewer benchmark: drives the real window offscreen on a 40,000 x 30,000 synthetic slide.

Prints JSON with: time to open and show the first full view; per-frame paint time with a warm
cache (p50/p95); time until a cold viewport is sharp after a jump (p50/p95); peak memory; and the
raw ``read_region`` throughput of the reader alone, so the viewer's overhead is visible.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/viewer.py [--size 40000x30000] [--jumps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from core.paths import cache_dir  # noqa: E402
from core.slide import open_slide  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_slide(width: int, height: int) -> Path:
    path = cache_dir() / "bench" / f"synth-{width}x{height}-seed1.tiff"
    if not path.exists():  # in another process, so its memory does not count as the viewer's
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "synth", str(path), "--seed", "1",
                        "--width", str(width), "--height", str(height)], check=True)
    return path


def raw_reads(path: Path, n: int, threads: int) -> float:
    """Tiles/s of 512 x 512 level-0 reads at random tissue-or-not positions, without the viewer."""
    rng = random.Random(5)
    with open_slide(path) as reader:
        w, h = reader.dimensions
        spots = [(rng.randrange(0, w // 512) * 512, rng.randrange(0, h // 512) * 512) for _ in range(n + 50)]
        for x, y in spots[n:]:  # warm up on other tiles (the reader keeps a small cache of its own)
            reader.read_region(x, y, 0, 512, 512)
        spots = spots[:n]
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda p: reader.read_region(p[0], p[1], 0, 512, 512), spots))
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="40000x30000")
    parser.add_argument("--jumps", type=int, default=80)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    path = bench_slide(width, height)

    from gui.app import ensure_app, wait_until
    from gui.main_window import MainWindow

    ensure_app(offscreen=True)
    window = MainWindow()
    threads = window.prefs.loader_threads
    cache_bound = window.cache.max_bytes
    window.resize(1600, 1000)
    window.show()
    wait_until(lambda: False, 0.2)

    # 1. open and first full view (fit): from the open request to every visible tile drawn
    opened = {}
    window.slide_opened.connect(lambda v: opened.setdefault("view", v))
    t0 = time.perf_counter()
    window.open_slide(path)
    wait_until(lambda: "view" in opened, 30)
    view = opened["view"]
    wait_until(lambda: view.slide_layer.is_sharp(), 30)
    view.repaint()
    open_s = time.perf_counter() - t0

    # 2. cold jumps: random places at 10x and 20x, time until sharp
    rng = random.Random(1)
    cold = []
    for i in range(args.jumps):
        scale = 1.0 if i % 2 else 0.5
        target = view.viewport.centred_on(rng.uniform(0, width), rng.uniform(0, height), scale)
        t = time.perf_counter()
        view.set_viewport(target)
        view.repaint()
        if not wait_until(view.slide_layer.is_sharp, 10):
            raise SystemExit("viewport never became sharp")
        view.repaint()
        cold.append(time.perf_counter() - t)

    # 3. warm frames: pan and zoom around a loaded area (paint only, cache warm)
    centre = view.viewport.centred_on(width / 2, height / 2, 0.7)
    view.set_viewport(centre.zoomed_about(800, 500, 0.8))
    wait_until(view.slide_layer.is_sharp, 10)
    view.set_viewport(centre)
    wait_until(view.slide_layer.is_sharp, 10)
    frames = []
    for i in range(args.frames):
        phase = i % 40
        if phase < 20:
            vp = centre.panned(8 * (phase - 10), 5 * (phase - 10))
        else:
            vp = centre.zoomed_about(800, 500, 1.0 - 0.01 * (phase - 20))
        view.set_viewport(vp)
        wait_until(view.slide_layer.is_sharp, 5)
        t = time.perf_counter()
        view.repaint()
        frames.append(time.perf_counter() - t)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cache_used = window.cache.nbytes
    window.close()  # stop its loader threads before timing the reader alone
    raw_1 = raw_reads(path, 300, 1)
    raw_n = raw_reads(path, 300, threads)
    result = {
        "slide": f"{width}x{height} synthetic, JPEG tiles 512",
        "window": "1600x1000 offscreen",
        "loader_threads": threads,
        "cpu_count": os.cpu_count(),
        "open_to_first_full_view_s": round(open_s, 3),
        "warm_frame_ms": {"p50": round(1000 * statistics.median(frames), 2),
                          "p95": round(1000 * percentile(frames, 95), 2)},
        "cold_jump_to_sharp_ms": {"p50": round(1000 * statistics.median(cold), 1),
                                  "p95": round(1000 * percentile(cold, 95), 1), "jumps": len(cold)},
        "peak_rss_mb": round(peak_mb, 1),
        "cache_bound_mb": cache_bound // (1024 * 1024),
        "cache_used_mb": round(cache_used / 2**20, 1),
        "raw_read_region_tiles_per_s": {"1_thread": round(raw_1, 1), f"{threads}_threads": round(raw_n, 1)},
        "goals": {"open_s": 0.5, "warm_frame_p95_ms": 16, "cold_sharp_p95_ms": 150,
                  "peak_rss_mb": cache_bound // (1024 * 1024) + 300},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
