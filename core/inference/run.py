"""One prediction run as the window starts it: check the model, find tissue, predict, keep the grid.

The window runs `run_prediction` on a worker thread; the CLI calls `core.inference.predict.predict_slide`
itself. The model is resolved and checked once (`core.inference.predict.check_model`), before a pixel is read.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import Cancelled
from core.inference.predict import ProbabilityGrid, check_model, predict_slide, prediction_path
from core.inference.engines import check_engine, choose_engine
from core.models.engine import engine as model_thread
from core.tiles.tissue import TissueMask, detect_tissue

#: Niceness of the threads that predict (0 normal, 19 lowest): the GUI thread goes first.
BACKGROUND_NICE = 10


@dataclass(frozen=True)
class TissueFound:
    """A report of the run: the tissue mask it computed for ``key`` (kept for the next run)."""

    key: tuple
    tissue: TissueMask


@dataclass(frozen=True)
class EngineChosen:
    """A report of the run: the engine ``"auto"`` became, and why when it is not MXNet (for the window to say)."""

    engine: str
    precision: str
    why: str | None


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread; threads it starts inherit it).

    On a machine with few cores the reading threads and MXNet would otherwise take the CPU from the GUI
    thread, which must paint while the user pans during a run.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError:  # not permitted here: run at the normal priority
        pass


def run_prediction(reader, model_dir, device: str, slide_mpp, tissue: TissueMask | None, tissue_key: tuple,
                   project=None, slide_id: str | None = None, batch_size: int = 64,
                   partial: Callable[[object], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False, engine: str = "mxnet",
                   precision: str = "fp32") -> tuple[ProbabilityGrid, Path | None]:
    """Predict an open slide and save the complete grid in its project.

    Parameters
    ----------
    reader : SlideReader
        The open slide (left open).
    model_dir : path-like
        A model bundle or a training folder holding ``best/``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"gpu:N"``.
    slide_mpp : (float, float) or None
        The slide's µm/px in use (None: the file's).
    tissue : TissueMask or None
        A mask computed before for ``tissue_key``; found here when None.
    tissue_key : tuple
        Handed back with a computed mask in a `TissueFound` report.
    project, slide_id : Project, str, optional
        Where a complete grid is saved (`core.inference.predict.prediction_path`); not saved without them.
    batch_size : int
    partial : callable, optional
        Gets an `EngineChosen` when ``engine`` is ``"auto"``, a `TissueFound`, then the empty
        `ProbabilityGrid`, then a `PartialResult` per batch.
    should_stop : callable
        Checked between steps; a stopped run is never saved.
    engine, precision : str
        How the network is computed (`core.inference.engines`): ``"mxnet"``/``"fp32"``, ``"mxnet"``/``"int8"``
        or ``"onnx"``/``"fp32"``; a model without that variant is refused before any work. ``"auto"`` is made
        definite once the model is read (`core.inference.engines.choose_engine`: ONNX Runtime on a GPU MXNet
        has no kernels for, else MXNet) and reported as an `EngineChosen`.

    Returns
    -------
    (ProbabilityGrid, Path or None)
        The grid and the file it was saved to.

    Raises
    ------
    ModelError
        The model cannot be read or does not fit the slide (raised before a pixel is read).
    Cancelled
        Stopped before the prediction started.
    """
    report = partial or (lambda _obj: None)
    background_priority()  # this thread finds the tissue; the model thread and its readers predict
    model_thread().run(background_priority)
    mpp = tuple(slide_mpp) if slide_mpp else reader.mpp
    model = check_model(model_dir, mpp, reader.display_name)
    if engine == "auto":
        engine, why = choose_engine(engine, device, model.info, precision)
        report(EngineChosen(engine, precision, why))
    check_engine(model.info, model.folder, engine, precision)
    if tissue is None:
        tissue = detect_tissue(reader, slide_mpp=mpp)
        report(TissueFound(tissue_key, tissue))
    if should_stop():
        raise Cancelled(f"{reader.display_name}: prediction cancelled")
    grid = predict_slide(reader, model, device=device, batch_size=batch_size, tissue=tissue, slide_mpp=mpp,
                         partial=report, should_stop=should_stop, started=report, engine=engine, precision=precision)
    path = None
    if grid.complete and not should_stop() and project is not None and slide_id is not None:
        path = grid.save(prediction_path(project, slide_id, grid.model))
    return grid, path


__all__ = ["run_prediction", "TissueFound", "EngineChosen", "background_priority", "BACKGROUND_NICE"]
