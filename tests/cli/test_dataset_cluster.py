"""`biopsia dataset --scheduler ADDRESS` reads and encodes on a Dask cluster and writes the one-process bytes.

The cluster is the suite's real scheduler and two worker processes (`tests/core/cohort/dask_cluster.py`);
``--workers N`` reaches the same code through a local cluster (`core.cohort.cluster.cohort_client`, tested
in `tests/core/cohort/test_cohort.py`).
"""

from __future__ import annotations

from tests.cli.test_cli import biopsia

FILES = ["train.rec", "train.idx", "train.lst", "test.rec", "test.idx", "test.lst", "tiles.csv"]


def test_dataset_on_a_cluster_writes_the_same_files(slide_pair, dask_cluster, tmp_path):  # noqa: F811
    paths = [s.slide_path for s in slide_pair]
    common = ("--tile", "64", "--mpp", "2", "--test-slide", "pair29")
    alone = biopsia("dataset", *paths, "--out", tmp_path / "alone", *common, "--threads", "2", timeout=600)
    assert alone.returncode == 0, alone.stderr
    cluster = biopsia("dataset", *paths, "--out", tmp_path / "cluster", *common, "--scheduler", dask_cluster.address,
                      timeout=900)
    assert cluster.returncode == 0, cluster.stderr
    assert f"2 slides on the cluster at {dask_cluster.address} of 2 worker processes" in cluster.stderr
    assert "pair29: " in cluster.stderr and " tiles on tcp://127.0.0.1:" in cluster.stderr
    for name in FILES:
        assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name


def test_an_unreachable_scheduler_is_one_clear_error(slide_pair, tmp_path):
    done = biopsia("dataset", slide_pair[0].slide_path, "--out", tmp_path / "x", "--tile", "64", "--mpp", "2",
                   "--ratio", "1", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "2", timeout=300)
    assert done.returncode == 1 and "cannot reach the Dask scheduler" in done.stderr and "Traceback" not in done.stderr
    assert "tcp://127.0.0.1:9" in done.stderr and "2 s" in done.stderr, done.stderr
    assert not (tmp_path / "x" / "train.rec").exists()
