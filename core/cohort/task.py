"""The per-slide task a cohort's workers run: predict one slide into its output folder, return a summary.

Runs inside a Dask worker process (or any process: the task does not need one). MXNet keeps its rule there
as in the window: the task's thread hands the network to the process's one model thread
(`core.models.engine.engine`), which loads it lazily on the first slide. The slide is opened from its path
inside the task, since open readers do not pickle, and only a small dict travels back, never arrays.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from core.cohort.outputs import PredictOptions, predict_to_folder

#: How often a task asks the scheduler whether the run was cancelled, and sends its tile count (seconds).
POLL_S = 1.0

@dataclass(frozen=True)
class SlideJob:
    """One slide of a cohort: where it is, where its folder goes, the model and the options.

    ``cancel_event`` names a `distributed.Event` that the client sets on Ctrl+C; ``topic`` is the event
    topic the task sends its tile counts to (both None outside a cluster).
    """

    slide: str
    folder: str
    name: str
    model: str
    options: PredictOptions
    cancel_event: str | None = None
    topic: str | None = None


def _here() -> tuple[str, object]:
    """This process's worker address (or host:pid outside a cluster) and its worker, if any."""
    try:
        from distributed import get_worker

        worker = get_worker()
        return worker.address, worker
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}", None


def predict_job(job: SlideJob) -> dict:
    """Predict ``job``'s slide into ``job.folder``; the summary the client prints.

    Returns
    -------
    dict
        ``name``, ``slide``, ``folder``, ``worker`` (address), ``host``, ``pid``, ``tiles``, ``called``
        (at or above the threshold), ``seconds`` and ``tiles_per_s``.

    Raises
    ------
    BiopsiaError
        The slide cannot be read or the model does not fit it (the message names the file).
    Cancelled
        The client cancelled the run; nothing was written.
    """
    import numpy as np

    address, worker = _here()
    stop = _stop_check(job.cancel_event) if worker is not None and job.cancel_event else None
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if worker is not None and job.topic and (done >= total or now - last[0] >= POLL_S):
            last[0] = now
            worker.log_event(job.topic, {"name": job.name, "done": int(done), "total": int(total),
                                         "worker": address})

    grid = predict_to_folder(job.slide, job.folder, job.model, job.options, progress=progress, should_stop=stop)
    n = int(grid.done.sum())
    called = int(np.sum(grid.probs[grid.done] >= job.options.threshold))
    return {"name": job.name, "slide": job.slide, "folder": job.folder, "worker": address,
            "host": socket.gethostname(), "pid": os.getpid(), "tiles": n, "called": called,
            "seconds": float(grid.seconds), "tiles_per_s": n / max(grid.seconds, 1e-6)}


def _stop_check(name: str):
    """``should_stop()`` that asks the scheduler for the cancel event at most every `POLL_S` seconds."""
    from distributed import Event

    event, state = Event(name), {"at": 0.0, "set": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["set"] and now - state["at"] >= POLL_S:
            state["at"] = now
            try:
                state["set"] = bool(event.is_set())
            except (OSError, TimeoutError, RuntimeError):  # a scheduler gone quiet is no reason to stop
                return False
        return state["set"]

    return should_stop
