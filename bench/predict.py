#!/usr/bin/env python3
"""Whole-slide prediction in FP32, INT8 and ONNX Runtime: compute, end to end and AUC, in one run.

On a synthetic resection slide with known tumour (by default the dataset benchmark's 70,000 x 56,000 slide
at 20x, about 35,000 tissue tiles, made on first use; ``--size 24576x18432`` for a shorter run), with the
demo model (compact CNN, 128 px tiles at 1 µm/px) copied to a temporary folder, its INT8 variant made there
by `core.models.quantize` (calibrated on another synthetic slide) and its ``model.onnx``. On the same tiles,
for each of ``fp32`` (MXNet), ``int8`` (MXNet oneDNN) and ``onnxruntime`` (CPU execution provider):

* ``compute_tiles_per_s``: the network alone on batches already in memory and preprocessed;
* ``end_to_end_tiles_per_s``: `core.inference.predict.predict_slide` over the whole slide;
* ``bound_tiles_per_s``: what reading and computing can reach sharing the same cores,
  1 / (1 / compute + 1 / read), with ``read_tiles_per_s`` (reading, resizing and batching every tissue tile,
  no network) measured in the same run, and ``end_to_end_over_bound``;
* ``auc``: tile-level AUC of the grid against the slide's known tumour (`core.evaluation.compare`);
* ``peak_rss_mb``: the process's peak resident memory after that variant.

Goals: INT8 compute at least 2.5x FP32, |AUC change| at most 0.005, end to end at least 0.9 of
the bound. Prints JSON.

    .venv/bin/python bench/predict.py [--size WxH | --slide SLIDE] [--batch 64] [--calib-mode naive]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core

import numpy as np  # noqa: E402

from core.annotations.formats import read_annotations  # noqa: E402
from core.evaluation.compare import compare, truth_for_grid  # noqa: E402
from core.inference.engines import load_model  # noqa: E402
from core.inference.predict import PREDICT_TISSUE_MIN, predict_slide  # noqa: E402
from core.models.bundle import read_info  # noqa: E402
from core.models.engine import engine  # noqa: E402
from core.models.onnx_export import export_onnx  # noqa: E402
from core.models.quantize import quantize_bundle  # noqa: E402
from core.paths import cache_dir  # noqa: E402
from core.slide import open_slide  # noqa: E402
from core.tiles.grid import BACKGROUND, LOW_TISSUE, PEN, TileSpec, plan_tiles, read_tiles  # noqa: E402
from core.tiles.tissue import detect_tissue  # noqa: E402
from dataset import big_slide  # noqa: E402

DEMO_MODEL = ROOT / "resources" / "demo-model"
VARIANTS = {"fp32": ("mxnet", "fp32"), "int8": ("mxnet", "int8"), "onnxruntime": ("onnx", "fp32")}


def synthetic(width: int, height: int, seed: int, resection: bool) -> Path:
    """A cached synthetic slide (with its tumour in a .geojson beside it) made by `biopsia synth`."""
    kind = "resection" if resection else "biopsy"
    path = cache_dir() / "bench" / f"synth-{kind}-{width}x{height}-seed{seed}.tiff"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "synth", str(path), "--seed", str(seed), "--width",
                        str(width), "--height", str(height)] + (["--resection"] if resection else []), check=True,
                       stdout=sys.stderr)  # stdout holds the JSON only
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", help="a synthetic resection slide WxH instead of the 70,000 x 56,000 one")
    parser.add_argument("--slide", help="a slide with its tumour marks in SLIDE.geojson beside it")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--calib-mode", default="naive", choices=("naive", "entropy"))
    parser.add_argument("--calib-tiles", type=int, default=256)
    args = parser.parse_args()
    if args.slide:
        slide = Path(args.slide)
    elif args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        slide = synthetic(width, height, 7, resection=True)
    else:
        slide = big_slide()
    marks = read_annotations(slide.with_suffix(".geojson")).annotations
    calib_slide = synthetic(12288, 9216, 31, resection=False)  # not the measured slide
    result = {"slide": slide.name, "batch": args.batch, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-") as tmp:
        model = Path(tmp) / "demo"
        shutil.copytree(DEMO_MODEL, model)
        start = time.perf_counter()
        if read_info(model).variant_file("onnx") is None:
            export_onnx(model, [calib_slide])
        summary = quantize_bundle(model, [calib_slide], calib_mode=args.calib_mode, calib_tiles=args.calib_tiles,
                                  check_tiles=args.calib_tiles)
        result["quantize"] = {k: summary[k] for k in ("calib_mode", "calibration_tiles", "quantize_head",
                                                       "head_tiles_per_s", "check", "processor")}
        result["quantize_s"] = round(time.perf_counter() - start, 1)
        info = read_info(model)
        with open_slide(slide) as reader:
            tissue = detect_tissue(reader)
            plan = plan_tiles(reader, TileSpec(info.tile_px, info.mpp), tissue, (), tissue_min=PREDICT_TISSUE_MIN)
            order = np.flatnonzero(~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN)))
            batches = [order[i:i + args.batch] for i in range(0, order.size, args.batch)]
            result["tiles"] = int(order.size)

            # pure reading, on the pool size prediction uses
            workers = min(8, 2 * (os.cpu_count() or 2))
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                kept = list(pool.map(lambda b: read_tiles(reader, plan, b), batches[:8]))
                for _ in pool.map(lambda b: read_tiles(reader, plan, b), batches[8:]):
                    pass
            read_rate = order.size / (time.perf_counter() - start)
            result["read_tiles_per_s"] = round(read_rate, 1)

            for name, (eng, precision) in VARIANTS.items():
                def compute():
                    loaded = load_model(model, "cpu", eng, precision)
                    ready = [loaded.prepare(batch) for batch in kept]  # as the readers hand them over
                    loaded.predict_prepared(ready[0])  # warm-up
                    t0, n = time.perf_counter(), 0
                    for _ in range(3):
                        for batch in ready:
                            loaded.predict_prepared(batch)
                            n += batch.shape[0]
                    return n / (time.perf_counter() - t0), loaded.describe()

                compute_rate, device = engine().run(compute)
                start = time.perf_counter()
                grid = predict_slide(reader, model, device="cpu", batch_size=args.batch, tissue=tissue, engine=eng,
                                     precision=precision)
                seconds = time.perf_counter() - start
                end_to_end = float(grid.done.sum()) / seconds
                bound = 1 / (1 / compute_rate + 1 / read_rate)
                auc = compare(grid, truth_for_grid(grid, marks), 0.5).metrics.auc
                result[name] = {"device": device, "compute_tiles_per_s": round(compute_rate, 1),
                                "end_to_end_tiles_per_s": round(end_to_end, 1), "end_to_end_s": round(seconds, 1),
                                "bound_tiles_per_s": round(bound, 1),
                                "end_to_end_over_bound": round(end_to_end / bound, 3),
                                "auc": None if auc is None else round(float(auc), 4),
                                "peak_rss_mb": round(peak_mb())}
    fp32, int8 = result["fp32"], result["int8"]
    result["int8_compute_over_fp32"] = round(int8["compute_tiles_per_s"] / fp32["compute_tiles_per_s"], 2)
    if fp32["auc"] is not None and int8["auc"] is not None:
        result["int8_auc_change"] = round(int8["auc"] - fp32["auc"], 4)
    result["goals"] = {"int8_compute_over_fp32": 2.5, "abs_auc_change": 0.005, "end_to_end_over_bound": 0.9}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
