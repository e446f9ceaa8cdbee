"""The Dask cluster a cohort runs on: a local one of N worker processes, or an existing scheduler.

Workers are processes started by *spawn*, never by fork: a process forked after MXNet loaded its engine
inherits locked mutexes and hangs (apache/mxnet issue 12756 and the Dask docs on worker start methods).
Each worker has one thread for tasks; MXNet's own thread pools are sized so that N workers share the
cores instead of each taking all of them.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from core.errors import BiopsiaError


@dataclass(frozen=True)
class ClusterInfo:
    """What the client is connected to: the scheduler's address, its dashboard, how many workers."""

    scheduler: str
    dashboard: str | None
    workers: int
    local: bool


def worker_environment(workers: int, cores: int | None = None) -> dict[str, str]:
    """Environment of each local worker process: the cores split between the workers (at least 1 each)."""
    share = str(max(1, (cores or os.cpu_count() or 1) // max(1, workers)))
    return {"OMP_NUM_THREADS": share, "MXNET_CPU_WORKER_NTHREADS": "1", "MKL_NUM_THREADS": share,
            "OPENBLAS_NUM_THREADS": share}


@contextmanager
def cohort_client(workers: int | None = None, scheduler: str | None = None,
                  timeout: float = 30.0) -> Iterator[tuple[object, ClusterInfo]]:
    """A `distributed.Client` on a new local cluster or an existing scheduler, closed on leaving.

    Parameters
    ----------
    workers : int, optional
        Worker processes of a local cluster (one thread each); ignored with ``scheduler``.
    scheduler : str, optional
        ``tcp://host:port`` of a running scheduler (``dask scheduler``, dask-jobqueue, dask-kubernetes).
        An empty string starts a local cluster, as HistomicsTK's ``--scheduler`` does.
    timeout : float
        Seconds to wait for the scheduler and the first worker.

    Yields
    ------
    (Client, ClusterInfo)

    Raises
    ------
    BiopsiaError
        The scheduler cannot be reached, or no worker joined it in time.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise BiopsiaError(f"a cluster needs Dask ({err}); install it with 'pip install dask distributed' "
                           "(requirements.txt pins the versions)") from None

    cluster = None
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn",
                          "distributed.nanny.pre-spawn-environ": worker_environment(workers or 1),
                          "distributed.worker.daemon": False}):
        if scheduler:
            try:
                client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError) as err:
                raise BiopsiaError(f"{scheduler}: cannot reach the Dask scheduler ({err}); start one with "
                                   "'dask scheduler', or leave out --scheduler for a local cluster") from None
        else:
            # env= too: pre-spawn-environ leaves a variable the client already has (biopsia sets
            # OMP_NUM_THREADS to every core at start), so each worker would take all the cores
            cluster = LocalCluster(n_workers=max(1, workers or 1), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                   silence_logs=logging.ERROR, env=worker_environment(workers or 1))
            client = Client(cluster)
        try:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise BiopsiaError(f"{client.scheduler.address}: no Dask worker joined in {timeout:g} s; "
                                   "start some with 'dask worker ADDRESS'") from None
            info = ClusterInfo(scheduler=client.scheduler.address, dashboard=client.dashboard_link,
                               workers=len(client.scheduler_info()["workers"]), local=cluster is not None)
            yield client, info
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
