"""A dataset built on a real Dask cluster (one task per slide, shards merged) is byte for byte a one-process build."""

from __future__ import annotations

import json

import pytest

from core.cohort.shards import write_dataset_on_cluster
from core.errors import DatasetError
from core.tiles.dataset import write_dataset
from core.tiles.grid import TileSpec
from core.tiles.planning import plan_dataset
from core.tiles.sources import sources_from_paths

FILES = ["train.rec", "train.idx", "train.lst", "test.rec", "test.idx", "test.lst", "tiles.csv"]


def test_a_cluster_built_dataset_is_the_one_process_files(dask_cluster, cohort_slides, tmp_path):  # noqa: F811
    sources = sources_from_paths(cohort_slides, fully_annotated=True)
    plan = plan_dataset(sources, TileSpec(tile_px=32, mpp=1.0), "by-slide", test_slides=[sources[-1].name])
    assert plan is not None and plan.label.size > 50
    write_dataset(plan, tmp_path / "alone")
    seen = []
    with dask_cluster.client() as client:
        workers = set(client.scheduler_info()["workers"])
        manifest = write_dataset_on_cluster(client, plan, tmp_path / "cluster", on_slide=seen.append)
    assert manifest is not None and sorted(s["slide"] for s in seen) == sorted(s.name for s in sources)
    assert {s["worker"] for s in seen} <= workers
    for name in FILES:
        assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name
    alone = json.loads((tmp_path / "alone" / "manifest.json").read_text())
    cluster = json.loads((tmp_path / "cluster" / "manifest.json").read_text())
    assert {k: v for k, v in alone.items() if k != "created"} == {k: v for k, v in cluster.items() if k != "created"}
    assert not list(tmp_path.glob(".*shards*"))  # the shards are gone


def test_a_slide_a_worker_cannot_read_is_named_and_nothing_is_written(dask_cluster, cohort_slides, tmp_path):  # noqa: F811
    import shutil

    copies = []
    for path in cohort_slides[:2]:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        shutil.copy(path.with_suffix(".geojson"), copy.with_suffix(".geojson"))
        copies.append(copy)
    sources = sources_from_paths(copies, fully_annotated=True)
    plan = plan_dataset(sources, TileSpec(tile_px=32, mpp=1.0), "by-slide", test_slides=[sources[-1].name])
    copies[0].write_bytes(b"not a slide any more")  # damaged after planning, before the workers read it
    with dask_cluster.client() as client, pytest.raises(DatasetError, match=copies[0].name):
        write_dataset_on_cluster(client, plan, tmp_path / "out")
    assert not (tmp_path / "out" / "train.rec").exists() and not list(tmp_path.glob(".*shards*"))
