#!/usr/bin/env python3
"""Annotation files benchmark: large valid (and a few hostile) files read and written, each case timed
in a fresh interpreter so that its peak memory is its own. Prints one JSON object.

Cases (files are generated first, outside the measurement):

* ``geojson_100k_features``: 100,000 QuPath features (16-vertex polygons, a class, a name, a UUID);
* ``{geojson,asap,imagescope}_1M_vertices``: one mark of 10^6 vertices;
* ``geojson_self_intersecting_1M``: a 10^6-vertex freehand outline that crosses itself (a figure eight
  whose end overshoots its start);
* ``geojson_jittered_1M``: a 10^6-vertex outline with pixel jitter, about 10^5 self-crossings (hostile);
* ``geojson_random_2000``: a polygon of 2,000 random vertices, about 10^5 crossings (hostile, 40 KB);
* ``{asap,imagescope}_2900_holes``: Biopsia's own XML of a mark with 2,916 holes, re-imported;
* ``write_{geojson,asap,imagescope}_1M_vertices``, ``write_geojson_100k_features``: export.

Goal: every case under 5 s and 1 GB (``peak_mb`` is the process's peak resident size, interpreter and
imports included; ``baseline_mb`` is that before the case ran).

    .venv/bin/python bench/annotations.py [--case NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


# -- inputs -------------------------------------------------------------------------------------
def _ring_text(xy: np.ndarray) -> str:
    closed = np.vstack([xy, xy[:1]])
    return "[" + ",".join(f"[{x:.2f},{y:.2f}]" for x, y in closed) + "]"


def _feature(ring: str, index: int, kind: str = "annotation") -> str:
    return ('{"type":"Feature","id":"%s","geometry":{"type":"Polygon","coordinates":[%s]},'
            '"properties":{"objectType":"%s","name":"cell %d","classification":{"name":"Tumor","color":[200,0,0]},'
            '"isLocked":false}}' % (uuid.UUID(int=index + 1), ring, kind, index))


def geojson_features(path: Path, count: int = 100_000) -> None:
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    with open(path, "w") as fh:
        fh.write('{"type":"FeatureCollection","features":[\n')
        side = int(math.ceil(math.sqrt(count)))
        for i in range(count):
            cx, cy = 100 + 40 * (i % side), 100 + 40 * (i // side)
            r = 12 + rng.uniform(-2, 2, 16)
            xy = np.c_[cx + r * np.cos(angles), cy + r * np.sin(angles)]
            fh.write(("," if i else "") + _feature(_ring_text(xy), i) + "\n")
        fh.write("]}\n")


def circle(n: int = 1_000_000, radius: float = 40_000.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[radius * np.cos(t), radius * np.sin(t)] + radius + 1000.5


def figure_eight(n: int = 1_000_000) -> np.ndarray:
    t = np.linspace(0, 2.02 * np.pi, n, endpoint=False)  # the end overshoots the start: more crossings
    return np.c_[30_000 * np.sin(t), 15_000 * np.sin(2 * t) + 200 * t] + 40_000


def jittered(n: int = 1_000_000) -> np.ndarray:
    xy = circle(n)
    xy[: n // 20] += np.random.default_rng(1).normal(0, 2, (n // 20, 2))  # 5 % of the outline shakes
    return xy


def geojson_polygon(path: Path, xy: np.ndarray) -> None:
    path.write_text('{"type":"FeatureCollection","features":[' + _feature(_ring_text(xy), 0) + "]}")


def biopsia_file(path: Path, fmt: str, geometry) -> None:
    from core.annotations.formats import write_annotations
    from core.annotations.model import Annotation, AnnotationClass

    write_annotations(path, [Annotation(geometry, "Tumour", "resection margin")],
                      [AnnotationClass("Tumour", (220, 30, 30))], format=fmt)


def holed_mark():
    from shapely.geometry import Polygon, box

    holes = [box(100 + 60 * i, 100 + 60 * j, 130 + 60 * i, 130 + 60 * j).exterior.coords
             for i in range(54) for j in range(54)]  # 2,916 holes
    return Polygon(box(0, 0, 3400, 3400).exterior.coords, holes)


def make_inputs(folder: Path, cases: list[str]) -> dict[str, Path]:
    from shapely.geometry import Polygon

    makers = {
        "geojson_100k_features": ("features.geojson", lambda p: geojson_features(p)),
        "geojson_1M_vertices": ("big.geojson", lambda p: geojson_polygon(p, circle())),
        "asap_1M_vertices": ("big_asap.xml", lambda p: biopsia_file(p, "asap", Polygon(circle()))),
        "imagescope_1M_vertices": ("big_imagescope.xml", lambda p: biopsia_file(p, "imagescope", Polygon(circle()))),
        "geojson_self_intersecting_1M": ("eight.geojson", lambda p: geojson_polygon(p, figure_eight())),
        "geojson_jittered_1M": ("jitter.geojson", lambda p: geojson_polygon(p, jittered())),
        "geojson_random_2000": ("random.geojson",
                                lambda p: geojson_polygon(p, np.random.default_rng(2).uniform(0, 1e4, (2000, 2)))),
        "asap_2900_holes": ("holes_asap.xml", lambda p: biopsia_file(p, "asap", holed_mark())),
        "imagescope_2900_holes": ("holes_imagescope.xml", lambda p: biopsia_file(p, "imagescope", holed_mark())),
        "write_geojson_1M_vertices": ("big.geojson", lambda p: geojson_polygon(p, circle())),
        "write_asap_1M_vertices": ("big.geojson", lambda p: geojson_polygon(p, circle())),
        "write_imagescope_1M_vertices": ("big.geojson", lambda p: geojson_polygon(p, circle())),
        "write_geojson_100k_features": ("features.geojson", lambda p: geojson_features(p)),
    }
    paths = {}
    for case in cases:
        name, make = makers[case]
        path = folder / name
        if not path.exists():
            make(path)
        paths[case] = path
    return paths


CASES = ["geojson_100k_features", "geojson_1M_vertices", "asap_1M_vertices", "imagescope_1M_vertices",
         "geojson_self_intersecting_1M", "geojson_jittered_1M", "geojson_random_2000", "asap_2900_holes",
         "imagescope_2900_holes", "write_geojson_1M_vertices", "write_asap_1M_vertices",
         "write_imagescope_1M_vertices", "write_geojson_100k_features"]


# -- one case, in its own interpreter -------------------------------------------------------------
def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not inherit the parent's)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, path: Path) -> dict:
    from core.annotations.formats import FORMATS, read_annotations

    if case.startswith("write_"):
        fmt = case.split("_")[1]
        found = read_annotations(path)
        baseline = _peak_mb()
        start, cpu = time.perf_counter(), time.process_time()
        data = FORMATS[fmt].dump(found.annotations, found.classes)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(_peak_mb()),
                "baseline_mb": round(baseline), "output_mb": round(len(data) / 1e6, 1)}
    baseline = _peak_mb()
    start, cpu = time.perf_counter(), time.process_time()
    found = read_annotations(path)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(_peak_mb()),
            "baseline_mb": round(baseline), "file_mb": round(path.stat().st_size / 1e6, 1),
            "annotations": len(found.annotations),
            "vertices": int(sum(_vertices(a.geometry) for a in found.annotations)),
            "holes": int(sum(_holes(a.geometry) for a in found.annotations)), "warnings": found.warnings[:2]}


def _vertices(geometry) -> int:
    import shapely

    return shapely.get_num_coordinates(geometry)


def _holes(geometry) -> int:
    parts = getattr(geometry, "geoms", [geometry])
    return sum(len(p.interiors) for p in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=CASES, help="run only these cases")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per case before it counts as a hang")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child[0], Path(args.child[1]))))
        return 0
    cases = args.case or CASES
    results = {}
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-annotations-") as folder:
        paths = make_inputs(Path(folder), cases)
        for case in cases:
            try:
                done = subprocess.run([sys.executable, __file__, "--child", case, str(paths[case])],
                                      capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                results[case] = {"seconds": None, "error": f"still running after {args.timeout:g} s"}
                continue
            if done.returncode != 0:
                results[case] = {"error": done.stderr.strip().splitlines()[-1:]}
            else:
                results[case] = json.loads(done.stdout)
    results["goal"] = {"seconds": 5, "peak_mb": 1024}
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
