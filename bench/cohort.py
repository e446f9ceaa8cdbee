#!/usr/bin/env python3
"""A cohort in one process against a local Dask cluster, in one run: slides/hour and the ratio.

Makes ``--slides`` synthetic slides (``--size``, default 6144 x 4608 at 0.5 µm/px, cached) and predicts them
with the demo model, writing every slide's folder as ``biopsia predict`` does (``--no-tiff``):

* ``single_slide_tiles_per_s``: `core.inference.predict.predict_slide` on one slide, model warm;
* ``one_process``: the slides one after another in this process (`core.cohort.outputs.predict_to_folder`),
  model warm: seconds, slides/hour, tiles/s;
* ``cluster``: the same slides on ``LocalCluster`` (``--workers`` processes of one thread, spawned; each
  worker warmed with one slide first, so MXNet's import is not counted): seconds, slides/hour, tiles/s;
  ``start_s`` is the cluster's start and the warm-up;
* ``cluster_over_one_process`` (slides/s) and ``overhead`` (1 - that ratio);
* ``one_process_over_single_slide`` and ``cluster_over_single_slide`` (tiles/s): what the work around the
  network (tissue, thumbnail, writing the folder) and the cluster cost against one slide's prediction alone
  (the goal: the cluster's cost under 10 %). On the same cores the workers overlap one slide's serial
  parts with another's network, so the cluster can beat one process even on 2 cores.

Prints JSON.

    .venv/bin/python bench/cohort.py [--slides 8] [--size 6144x4608] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core

from core.cohort import PredictOptions, plan_cohort, predict_to_folder, run_cohort  # noqa: E402
from core.cohort.cluster import cohort_client  # noqa: E402
from core.cohort.task import SlideJob, predict_job  # noqa: E402
from core.inference.predict import predict_slide  # noqa: E402
from core.paths import cache_dir  # noqa: E402

DEMO_MODEL = ROOT / "resources" / "demo-model"


def slides(n: int, width: int, height: int) -> list[Path]:
    from core.synth import write_synthetic_slide

    folder = cache_dir() / "bench" / "cohort"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n):
        path = folder / f"cohort-{width}x{height}-seed{seed}.tiff"
        if not path.exists():
            write_synthetic_slide(path, seed=seed, width=width, height=height)
        paths.append(path)
    return paths


def rates(seconds: float, n_slides: int, tiles: int) -> dict:
    return {"seconds": round(seconds, 2), "slides_per_hour": round(3600 * n_slides / seconds, 1),
            "tiles_per_s": round(tiles / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--size", default="6144x4608")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    paths = slides(args.slides, width, height)
    options = PredictOptions(threshold=0.5, device="cpu", tiff=False)
    out = Path(tempfile.mkdtemp(prefix="biopsia-bench-cohort-"))
    try:
        predict_slide(paths[0], DEMO_MODEL, device="cpu")  # warm: MXNet loaded, graph cached
        grid = predict_slide(paths[0], DEMO_MODEL, device="cpu")
        single = int(grid.done.sum()) / grid.seconds

        start = time.perf_counter()
        tiles = sum(int(predict_to_folder(p, out / "one" / p.stem, DEMO_MODEL, options).done.sum()) for p in paths)
        one = rates(time.perf_counter() - start, len(paths), tiles)

        start = time.perf_counter()
        with cohort_client(workers=args.workers, timeout=300) as (client, info):
            warm = [client.submit(predict_job, SlideJob(str(paths[0]), str(out / f"warm-{i}"), f"warm-{i}",
                                                        str(DEMO_MODEL), options), workers=[address], pure=False)
                    for i, address in enumerate(client.scheduler_info()["workers"])]
            client.gather(warm)
            started = time.perf_counter() - start
            plan = plan_cohort(paths, out / "cluster", DEMO_MODEL, options)
            start = time.perf_counter()
            result = run_cohort(client, plan)
            seconds = time.perf_counter() - start
        assert not result.failed, result.failed
        cluster = rates(seconds, len(paths), sum(s["tiles"] for s in result.done)) | {
            "workers": info.workers, "threads_per_worker": 1, "start_s": round(started, 1),
            "slides_per_worker": {w: sum(s["worker"] == w for s in result.done)
                                  for w in sorted({s["worker"] for s in result.done})}}
        ratio = (len(paths) / seconds) / (len(paths) / one["seconds"])
        print(json.dumps({
            "slides": len(paths), "size": [width, height], "tiles": tiles, "cores": os.cpu_count(),
            "model": "demo (compact CNN, 128 px at 1 µm/px)",
            "single_slide_tiles_per_s": round(single, 1), "one_process": one, "cluster": cluster,
            "cluster_over_one_process": round(ratio, 3), "overhead": round(1 - ratio, 3),
            "one_process_over_single_slide": round(one["tiles_per_s"] / single, 3),
            "cluster_over_single_slide": round(cluster["tiles_per_s"] / single, 3),
            "command": "bench/cohort.py " + " ".join(sys.argv[1:])}, indent=1, ensure_ascii=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
