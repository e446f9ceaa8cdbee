"""Running a cohort: one task per slide on a Dask cluster, results as they finish, skip, retry and cancel.

The client plans (which slides are done already for this model), submits one `core.cohort.task.predict_job`
per slide with ``client.map(..., pure=False, retries=1)`` and reports each as it finishes
(``as_completed``). A slide that fails is reported by name and the others go on; a worker that dies takes
its slide to another worker (the scheduler reschedules it). Ctrl+C sets the run's cancel event (tasks stop
between batches and write nothing), cancels the futures and re-raises.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from core.cohort.outputs import PredictOptions, unique_names
from core.cohort.results import done_with, remove_leftovers, weights_sha256
from core.cohort.task import SlideJob, predict_job


@dataclass
class CohortPlan:
    """The slides to run (``jobs``) and those skipped as done for this model (``skipped``: name, folder)."""

    jobs: list[SlideJob]
    skipped: list[tuple[str, Path]]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class CohortResult:
    """What came back: each finished slide's summary, each failed slide's name and message."""

    done: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, Path]] = field(default_factory=list)


def plan_cohort(slides, out_root, model_folder, options: PredictOptions, force: bool = False) -> CohortPlan:
    """One job per slide into ``out_root/<name>/``; slides done already with these weights are skipped.

    Parameters
    ----------
    slides : list of path-like
    out_root : path-like
    model_folder : path-like
        A resolved bundle (`core.models.bundle.resolve_bundle`).
    options : PredictOptions
        A slide without ``options.slide_mpp`` gets the µm/px stored for it here (`core.project.mpp`), if any:
        workers on other machines do not see this user's settings.
    force : bool
        Redo slides that are done already.
    """
    from core.project.mpp import resolve_file_mpp

    slides = [Path(s) for s in slides]
    sha = weights_sha256(model_folder)
    run_id = uuid.uuid4().hex[:12]
    jobs, skipped = [], []
    for slide, name in zip(slides, unique_names(slides)):
        folder = Path(out_root) / name
        if not force and done_with(folder, sha, options.engine, options.precision):
            skipped.append((name, folder))
            continue
        stored = None if options.slide_mpp else resolve_file_mpp(slide, None).mpp
        # absolute paths: a worker's working folder is its own
        jobs.append(SlideJob(slide=str(slide.absolute()), folder=str(folder.absolute()), name=name,
                             model=str(Path(model_folder).absolute()),
                             options=replace(options, slide_mpp=tuple(stored)) if stored else options,
                             cancel_event=f"biopsia-cancel-{run_id}", topic=f"biopsia-tiles-{run_id}"))
    return CohortPlan(jobs, skipped, run_id)


def run_cohort(client, plan: CohortPlan,
               on_done: Callable[[dict], None] | None = None,
               on_failed: Callable[[str, str], None] | None = None,
               on_tiles: Callable[[dict], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> CohortResult:
    """Run ``plan``'s jobs on ``client``'s cluster and report each slide as it finishes.

    Parameters
    ----------
    client : distributed.Client
    plan : CohortPlan
    on_done : callable, optional
        ``on_done(summary)`` for each finished slide (`core.cohort.task.predict_job`'s dict).
    on_failed : callable, optional
        ``on_failed(name, message)`` for each slide that could not be done.
    on_tiles : callable, optional
        ``on_tiles({"name", "done", "total", "worker"})`` as tasks report their tiles (on the client's
        event-loop thread, about once a second per slide).
    should_stop : callable, optional
        Checked about four times a second (the window's Cancel); when true the run is cancelled as on Ctrl+C.

    Returns
    -------
    CohortResult

    Raises
    ------
    KeyboardInterrupt
        After cancelling: the tasks stop between batches and write nothing; finished slides stay.
    Cancelled
        ``should_stop()`` became true; cancelled the same way.
    """
    from distributed import as_completed

    from core.errors import Cancelled

    result = CohortResult(skipped=list(plan.skipped))
    if not plan.jobs:
        return result
    if on_tiles is not None:
        client.subscribe_topic(plan.jobs[0].topic, lambda event: on_tiles(event[1]))
    futures = client.map(predict_job, plan.jobs, pure=False, retries=1,
                         key=[f"biopsia-slide-{plan.run_id}-{i}" for i in range(len(plan.jobs))])
    by_key = {future.key: job for future, job in zip(futures, plan.jobs)}
    try:
        for future in _finished(as_completed(futures), should_stop):
            if future is None:
                _cancel(client, plan, futures)
                raise Cancelled(f"predicting {len(plan.jobs)} slides cancelled; the slides that finished stay")
            job = by_key[future.key]
            if future.status == "finished":
                summary = future.result()
                result.done.append(summary)
                if on_done is not None:
                    on_done(summary)
            else:
                err = future.exception()
                message = str(err) if str(err).startswith(job.slide) else f"{job.slide}: {_describe(err)}"
                result.failed.append((job.name, message))
                if on_failed is not None:
                    on_failed(job.name, message)
    except KeyboardInterrupt:
        _cancel(client, plan, futures)
        raise
    finally:
        if on_tiles is not None:
            client.unsubscribe_topic(plan.jobs[0].topic)
    for job in plan.jobs:  # every task has ended: what a killed worker half wrote can go
        remove_leftovers(job.folder)
    return result


def _finished(completed, should_stop):
    """The futures of ``completed`` (an ``as_completed``) as they finish; None once ``should_stop()`` is true."""
    if should_stop is None:
        yield from completed
        return
    while not completed.is_empty():
        if should_stop():
            yield None
            return
        ready = completed.next_batch(block=False)
        if not ready:
            time.sleep(0.25)
        for future in ready:  # a stop asked for while one slide is reported holds before the next
            yield future
            if should_stop():
                yield None
                return


def _cancel(client, plan: CohortPlan, futures) -> None:
    """Tell the running tasks to stop (they write nothing) and drop the futures not started."""
    from distributed import Event

    Event(plan.jobs[0].cancel_event, client=client).set()
    client.cancel(futures)


def _describe(err: BaseException) -> str:
    """A failed task's error for the user: Biopsia's own message, else the error's kind and text."""
    from distributed import KilledWorker

    from core.errors import BiopsiaError

    if isinstance(err, BiopsiaError):
        return str(err)
    if isinstance(err, OSError) and not isinstance(err, ConnectionError):
        detail = f"{Path(err.filename).name}: {err.strerror or err}" if err.filename else (err.strerror or err)
        return f"cannot write its results ({detail}); nothing of this run was kept there"
    if isinstance(err, KilledWorker):
        return "the slide took down every worker that tried it (out of memory, or a crash in a reader)"
    return f"{type(err).__name__}: {err}"
