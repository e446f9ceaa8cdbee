#!/usr/bin/env python3
"""Whole-slide prediction throughput: end to end against pure reading and pure compute, in one run.

On the cached 70,000 x 56,000 synthetic resection slide at 20x (the dataset benchmark's, made on first
use), with a compact CNN bundle for 128 px tiles at 1 µm/px (the demo model when present, else a
randomly initialised one: speed does not depend on the weights). Measures, in tiles per second:

* ``read``: reading, resizing and batching every tissue tile, with no network (prediction's readers also
  normalise the batches);
* ``compute``: the network alone on batches already in memory and normalised;
* ``end_to_end``: `core.inference.predict.predict_slide` over the whole slide.

Goal: end to end at least 85 % of the slower of read and compute. Prints JSON.

    .venv/bin/python bench/predict.py [--batch 64] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
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

from core.models.bundle import read_info  # noqa: E402

from core.models.loading import load_bundle  # noqa: E402
from core.models.engine import describe_device, engine, parse_device  # noqa: E402
from core.inference.predict import PREDICT_TISSUE_MIN, predict_slide  # noqa: E402
from core.slide import open_slide  # noqa: E402
from core.tiles.grid import BACKGROUND, LOW_TISSUE, PEN, TileSpec, plan_tiles, read_tiles  # noqa: E402
from core.tiles.tissue import detect_tissue  # noqa: E402
from dataset import big_slide  # noqa: E402

DEMO_MODEL = ROOT / "resources" / "demo-model"


def random_bundle(folder: Path) -> Path:
    def make():
        import mxnet as mx

        from core.models.bundle import ModelInfo, save_bundle
        from core.models.zoo import build

        net = build("cnn", 2)
        net.initialize(mx.init.Xavier(), ctx=mx.cpu())
        net.hybridize()
        net(mx.nd.zeros((1, 3, 128, 128)))
        return save_bundle(folder, net, ModelInfo("cnn", ["Non-tumour", "Tumour"], 128, 1.0))
    return engine().run(make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    slide = big_slide()
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-") as tmp:
        model = DEMO_MODEL if (DEMO_MODEL / "model.json").is_file() else random_bundle(Path(tmp) / "model")
        info = read_info(model)
        with open_slide(slide) as reader:
            tissue = detect_tissue(reader)
            plan = plan_tiles(reader, TileSpec(info.tile_px, info.mpp), tissue, (), tissue_min=PREDICT_TISSUE_MIN)
            order = np.flatnonzero(~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN)))
            batches = [order[i:i + args.batch] for i in range(0, order.size, args.batch)]

            # pure reading, on the same thread pool size prediction uses
            workers = min(8, 2 * (os.cpu_count() or 2))
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                kept = list(pool.map(lambda b: read_tiles(reader, plan, b), batches[:8]))
                for _ in pool.map(lambda b: read_tiles(reader, plan, b), batches[8:]):
                    pass
            read_rate = order.size / (time.perf_counter() - start)

            # pure compute on batches already in memory
            def compute():
                loaded = load_bundle(model, parse_device(args.device))
                ready = [loaded.prepare(batch) for batch in kept]  # normalised, as the readers hand them over
                loaded.predict_prepared(ready[0])  # warm-up
                t0 = time.perf_counter()
                n = 0
                for _ in range(3):
                    for batch in ready:
                        loaded.predict_prepared(batch)
                        n += batch.shape[0]
                return n / (time.perf_counter() - t0), describe_device(loaded.ctx)
            compute_rate, device = engine().run(compute)

            start = time.perf_counter()
            grid = predict_slide(reader, model, device=args.device, batch_size=args.batch, tissue=tissue)
            end_to_end = grid.done.sum() / (time.perf_counter() - start)
    slower = min(read_rate, compute_rate)
    print(json.dumps({
        "slide": slide.name, "model": "demo" if model == DEMO_MODEL else "random weights",
        "device": device, "tiles": int(order.size), "tile_px": info.tile_px, "mpp": info.mpp, "batch": args.batch,
        "read_tiles_per_s": round(read_rate, 1), "compute_tiles_per_s": round(compute_rate, 1),
        "end_to_end_tiles_per_s": round(float(end_to_end), 1),
        "end_to_end_s": round(float(grid.seconds), 1),
        "end_to_end_over_slower": round(float(end_to_end / slower), 3), "goal": 0.85,
    }, indent=1))


if __name__ == "__main__":
    main()
