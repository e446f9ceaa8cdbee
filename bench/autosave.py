#!/usr/bin/env python3
"""Autosave benchmark: how long one save takes against the size of the slide's marks. Prints JSON.

For each store size (the size of the slide's GeoJSON file: marks of 30,000 vertices until it is
reached) the store is written, opened as a project opens it, and edited the way a doctor does (a
mark moved, a class changed, a small mark added, in turn), each edit followed by a save. Reported
per size, in seconds:

* ``journal``: the save as Biopsia makes it (the changes appended to the journal; the background
  compaction runs as it does in the app, so its competition for the CPU is included);
* ``full_rewrite``: the whole file re-serialised and replaced (what every save cost before);
* ``open_s``: reading the file and replaying the journal; ``close_s``: folding it into the file;
  ``compactions``: background folds that finished while saving (one starts once the journal holds
  half the file's size, so the larger stores need about 200 saves to show its effect).

    .venv/bin/python bench/autosave.py [--sizes 1 10 25 50] [--saves 200]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from shapely.geometry import Polygon, box  # noqa: E402

from core.annotations import AnnotationStore, ops  # noqa: E402
from core.annotations.journal import geojson_bytes  # noqa: E402
from core.annotations.model import Annotation  # noqa: E402
from core.project.autosave import AutoSaver, load_saved, write_snapshot  # noqa: E402

VERTICES = 30000


def big_mark(n: int, vertices: int = VERTICES) -> Annotation:
    """A wavy ring of ``vertices`` points, coordinates to 1/1000 pixel, one per grid cell."""
    t = np.linspace(0.0, 2 * np.pi, vertices, endpoint=False)
    radius = 4000 + 250 * np.sin(37 * t + n)
    l0_x, l0_y = 6000 + (n % 10) * 9000, 6000 + (n // 10) * 9000
    ring = np.round(np.c_[l0_x + radius * np.cos(t), l0_y + radius * np.sin(t)], 3)
    return Annotation(Polygon(ring), "Tumour" if n % 3 else "Benign", f"region {n}")


def store_of(megabytes: float) -> list[Annotation]:
    """Marks until the GeoJSON file holding them reaches ``megabytes``."""
    per_mark = len(geojson_bytes([big_mark(0)], ())) / 2**20
    return [big_mark(n) for n in range(max(1, math.ceil(megabytes / per_mark)))]


def summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 4), "p99": round(p99, 4),
            "max": round(ordered[-1], 4)}


def edit(store: AnnotationStore, k: int) -> None:
    marks = [a for a in store.annotations() if a.note.startswith("region")]
    target = marks[k % len(marks)]
    if k % 3 == 0:
        store.apply(ops.move(store, [target.id], 7, -3))  # 30,000 vertices change
    elif k % 3 == 1:
        store.apply(ops.set_class(store, [target.id], "Benign" if target.class_name == "Tumour" else "Tumour"))
    else:
        store.apply(ops.add(box(k * 20, 0, k * 20 + 15, 15), "Tumour", note=f"small {k}"))


def measure(megabytes: float, saves: int, rewrites: int, folder: Path) -> dict:
    marks = store_of(megabytes)
    path = folder / f"marks-{megabytes:g}MB.geojson"
    write_snapshot(path, marks, ())
    start = time.perf_counter()
    saved = load_saved(path)
    open_s = time.perf_counter() - start
    store = AnnotationStore(saved.annotations, saved.classes, saved.foreign, saved.origin)
    saver = AutoSaver(store, path, delay=3600.0)  # saved by flush() below; thresholds as in the app
    latencies, folds = [], set()
    for k in range(saves):
        edit(store, k)
        start = time.perf_counter()
        assert saver.flush(None), saver.last_error
        latencies.append(time.perf_counter() - start)
        folds.add(path.stat().st_ino)
    start = time.perf_counter()
    assert saver.close(None), saver.last_error
    close_s = time.perf_counter() - start

    rewrite = []
    whole = folder / f"rewrite-{megabytes:g}MB.geojson"
    for _ in range(rewrites):  # what every autosave did before: the whole store serialised and replaced
        start = time.perf_counter()
        write_snapshot(whole, store.annotations(), store.classes)
        rewrite.append(time.perf_counter() - start)
    return {"target_mb": megabytes, "marks": len(marks), "vertices": len(marks) * VERTICES,
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "journal": summary(latencies), "compactions": len(folds) - 1, "full_rewrite": summary(rewrite),
            "open_s": round(open_s, 3), "close_s": round(close_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 25, 50],
                        help="store sizes in MB (default: 1 10 25 50)")
    parser.add_argument("--saves", type=int, default=200, help="edits, each saved, per size")
    parser.add_argument("--rewrites", type=int, default=3, help="full rewrites timed per size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-autosave-") as tmp:
        results = [measure(size, args.saves, args.rewrites, Path(tmp)) for size in args.sizes]
    print(json.dumps({"benchmark": "autosave", "vertices_per_mark": VERTICES, "sizes": results}, indent=1))


if __name__ == "__main__":
    main()
