"""A real Dask cluster on loopback for the cohort tests: ``dask scheduler`` and two ``dask worker`` processes
from the venv's ``dask`` command, one thread each, as a user starts them on two shells.

Also the small cohort they run: three synthetic slides and the bundled demo model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DASK = Path(sys.executable).with_name("dask")
DEMO_MODEL = REPO / "resources" / "demo-model"
#: Starting a worker imports Biopsia and MXNet; on two busy cores that can take a while.
START_S = 120


@dataclass
class Cluster:
    address: str
    processes: list
    env: dict

    def client(self):
        from distributed import Client

        client = Client(self.address, timeout=START_S)
        client.wait_for_workers(2, timeout=START_S)
        return client


def _tasks_held(dask_worker) -> int:
    return len(dask_worker.state.tasks)


def wait_until_idle(client, timeout: float = 120.0) -> None:
    """Wait until no worker holds a task: a cancelled task's thread runs on (a thread cannot be stopped),
    and the worker keeps it, as cancelled, until the thread returns; the scheduler forgets it at once."""
    deadline = time.monotonic() + timeout
    while any(client.processing().values()) or any(client.run(_tasks_held).values()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the workers are still busy after {timeout:g} s: {client.run(_tasks_held)}")
        time.sleep(0.1)


def worker_env(home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[var] = str(home / var.lower())
    return env


def _stop(processes) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    if not DASK.exists():
        pytest.skip(f"no dask command beside {sys.executable} (pip install -r requirements.txt)")
    folder = tmp_path_factory.mktemp("dask")
    env = worker_env(folder / "home")
    info = folder / "scheduler.json"
    log = open(folder / "cluster.log", "wb")
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)],
                                  cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)]
    try:
        deadline = time.monotonic() + START_S
        while not info.is_file() or not info.read_text().strip():
            if time.monotonic() > deadline or processes[0].poll() is not None:
                raise RuntimeError(f"the dask scheduler did not start: {(folder / 'cluster.log').read_text()}")
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for i in range(2):
            processes.append(subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--local-directory", str(folder / f"w{i}")],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        cluster = Cluster(address, processes, env)
        with cluster.client() as client:  # both workers are up before any test starts
            assert len(client.scheduler_info()["workers"]) == 2
        yield cluster
    finally:
        _stop(processes[1:])
        _stop(processes[:1])
        log.close()


@pytest.fixture(scope="session")
def cohort_slides(tmp_path_factory):
    """Three small synthetic slides (2048 x 1536 at 0.5 µm/px: 13 to 21 tissue tiles of the demo model)."""
    from core.synth import write_synthetic_slide

    folder = tmp_path_factory.mktemp("cohort-slides")
    paths = []
    for seed in range(3):
        path = folder / f"case-{seed}.tiff"
        write_synthetic_slide(path, seed=seed, width=2048, height=1536)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def plain_run(cohort_slides, tmp_path_factory):
    """The cohort predicted in this process, one slide after another, as ``biopsia predict`` does."""
    from core.cohort.outputs import PredictOptions, predict_to_folder

    out = tmp_path_factory.mktemp("plain")
    options = PredictOptions(threshold=0.5, device="cpu", tiff=False)
    for path in cohort_slides:
        predict_to_folder(path, out / path.stem, DEMO_MODEL, options)
    return out


def copy_slides(slides, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(s, folder / s.name)) for s in slides]
