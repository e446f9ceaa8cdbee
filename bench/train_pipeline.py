#!/usr/bin/env python3
"""Training throughput: does the data pipeline keep the network busy?

Measured in one run, in tiles per second, on 128 px tiles cut from the cached 40,000 x 30,000 synthetic
slide (the viewer benchmark's):

* ``pipeline``: the training batch pipeline alone (augmentation: flips, rotations, stain jitter, then
  normalisation), on its thread pool, as training runs it;
* ``compute``: the network alone (forward, backward, optimizer step) on batches already in memory;
* ``end_to_end``: real training batches (pipeline and network together), from `core.models.train.train`.

The pipeline keeps up when ``end_to_end / compute`` is near 1. Prints JSON.

    .venv/bin/python bench/train_pipeline.py [--arch cnn] [--tiles 2048] [--batch 64] [--device auto]
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
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from core.tiles.dataset import load_tiles, plan_dataset, sources_from_paths  # noqa: E402
from core.models.bundle import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from core.models.engine import describe_device, engine, parse_device  # noqa: E402
from core.models.zoo import build  # noqa: E402
from core.tiles.grid import TileSpec  # noqa: E402
from core.models.train import _batches, train  # noqa: E402
from core.tiles.arrays import TileArrays  # noqa: E402
from tissue import synthetic_slide  # noqa: E402


def tiles(n: int) -> TileArrays:
    plan = plan_dataset(sources_from_paths([synthetic_slide()]), TileSpec(128, 1.0), split="random", ratio=1.0)
    data = load_tiles(plan, "train")
    pick = np.random.default_rng(0).permutation(len(data))[:n]
    return TileArrays(data.images[pick], data.labels[pick], data.classes)


def pipeline_rate(data: TileArrays, batch: int) -> float:
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 2))) as pool:
        start = time.perf_counter()
        n = sum(x.shape[0] for x, _ in _batches(data, np.arange(len(data)), batch, 0, 0, True, mean, std, pool))
    return n / (time.perf_counter() - start)


def compute_rate(arch: str, batch: int, device: str, batches: int = 20) -> tuple[float, str]:
    def run():
        import mxnet as mx
        from mxnet import autograd, gluon

        ctx = parse_device(device)
        net = build(arch, 2)
        net.initialize(mx.init.Xavier(magnitude=2.0), ctx=ctx)
        net.hybridize(static_alloc=True)
        trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        x = mx.nd.random.normal(shape=(batch, 3, 128, 128), ctx=ctx)
        y = mx.nd.array(np.arange(batch) % 2, ctx=ctx)

        def step():
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(batch)
            return loss
        for _ in range(3):  # warm-up: graph building, memory
            step().wait_to_read()
        start = time.perf_counter()
        for _ in range(batches):
            loss = step()
        loss.wait_to_read()
        mx.nd.waitall()
        return batch * batches / (time.perf_counter() - start), describe_device(ctx)
    return engine().run(run)


def end_to_end_rate(data: TileArrays, arch: str, batch: int, device: str) -> float:
    times = []
    val = TileArrays(data.images[:2 * batch], data.labels[:2 * batch], data.classes)
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-") as out:
        train(data, val, out, arch=arch, epochs=1, batch_size=batch, device=device,
              progress=lambda e: times.append(time.perf_counter()) if e.metrics is None else None)
    # from the end of the 3rd batch (warm-up done) to the last
    return batch * (len(times) - 3) / (times[-1] - times[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--tiles", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    data = tiles(args.tiles)
    pipeline = pipeline_rate(data, args.batch)
    compute, device = compute_rate(args.arch, args.batch, args.device)
    end_to_end = end_to_end_rate(data, args.arch, args.batch, args.device)
    print(json.dumps({
        "arch": args.arch, "device": device, "batch": args.batch, "tiles": len(data), "tile_px": 128,
        "pipeline_tiles_per_s": round(pipeline, 1), "compute_tiles_per_s": round(compute, 1),
        "end_to_end_tiles_per_s": round(end_to_end, 1),
        "pipeline_over_compute": round(pipeline / compute, 2),
        "end_to_end_over_compute": round(end_to_end / compute, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
