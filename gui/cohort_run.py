"""*Model ▸ Predict all slides…*: the project's slides through the cohort code the CLI uses, off the GUI thread.

The run is `core.cohort`'s (`plan_cohort`, `run_cohort` on `core.cohort.cluster.cohort_client`): a local Dask
cluster of ``prefs.cohort_workers`` processes, or the scheduler at ``prefs.cohort_scheduler``. Each slide's
folder goes to ``<project>/cohort/<model>/<slide>/``, as ``biopsia predict --out`` writes it. A finished slide's
grid is also kept as the slide's saved prediction in its project (`core.inference.predict.prediction_path`), and
the Prediction dock's own `load_saved` shows it in the slide's open view: the window's one way of loading a
saved heatmap. Cancel goes through ``run_cohort``'s ``should_stop``: the slides that finished stay, the others
write nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PyQt5.QtCore import QObject, QThreadPool, pyqtSignal
from PyQt5.QtWidgets import QAction, QInputDialog, QProgressDialog

from core.errors import BiopsiaError, Cancelled
from core.models.folder import model_name
from core.project.document import PredictionState
from gui.run_dialog import alive, close_run_dialog, open_run_dialog, say
from gui.worker import Worker

if TYPE_CHECKING:
    from gui.main_window import MainWindow

#: Where a project keeps what *Predict all slides* writes: ``<project>/COHORT_DIR/<model>/<slide>/``.
COHORT_DIR = "cohort"


@dataclass(frozen=True)
class CohortSlide:
    """One slide to run: its file, and the project and slide id its prediction is kept under (or None)."""

    path: Path
    project: object | None
    slide_id: str | None


def project_slides(win: "MainWindow") -> list[CohortSlide]:
    """The window's project's slides, then the open slides not among them (each file once)."""
    found: dict[str, CohortSlide] = {}
    if win.project is not None:
        for entry in win.project.slides:
            found.setdefault(os.path.abspath(entry.path), CohortSlide(Path(entry.path), win.project, entry.id))
    for doc in win.documents:
        found.setdefault(os.path.abspath(doc.reader.path), CohortSlide(Path(doc.reader.path), doc.project,
                                                                        doc.slide_id))
    return list(found.values())


def output_root(project, model: Path) -> Path:
    """``<project>/cohort/<model name>``: a training folder's name, not its ``best``."""
    return Path(project.folder) / COHORT_DIR / model_name(model)


def run_all(slides: list[CohortSlide], out_root: Path, model: Path, threshold: float, scheduler: str,
            workers: int, tiff: bool = True, device: str = "auto", batch: int = 64, engine: str = "mxnet",
            precision: str = "fp32", *, partial: Callable[[tuple], None], should_stop: Callable[[], bool]):
    """Plan, connect and run (on a pool thread); reports ``partial((kind, ...))`` tuples as slides go.

    Kinds: ``("engine", why)`` (when ``engine`` ``"auto"`` took ONNX Runtime), ``("planned", jobs, skipped)``,
    ``("cluster", ClusterInfo)``, ``("tiles", report)``, ``("done", summary)``, ``("failed", name, message)``.
    ``engine`` and ``precision`` are the Prediction panel's; ``"auto"`` is decided by this computer's GPU
    before the cluster starts, as ``biopsia predict`` does, and every worker is asked for the same. Returns
    the `core.cohort.CohortResult`.
    """
    from core.cohort import CohortResult, PredictOptions, plan_cohort, run_cohort, unique_names
    from core.cohort.cluster import cohort_client
    from core.cohort.results import remove_leftovers
    from core.inference.engines import check_engine, choose_engine
    from core.models.bundle import read_info, resolve_bundle

    model = resolve_bundle(model)
    info = read_info(model)
    engine, why = choose_engine(engine, device, info, precision)
    if why:
        partial(("engine", why))
    check_engine(info, model, engine, precision)  # a variant the model lacks: refused before any slide
    options = PredictOptions(threshold=threshold, device=device, engine=engine, precision=precision, tiff=tiff,
                             batch=batch)
    plan = plan_cohort([s.path for s in slides], out_root, model, options)
    by_path = {os.path.abspath(s.path): s for s in slides}
    by_name = dict(zip(unique_names([s.path for s in slides]), slides))
    for name, folder in plan.skipped:  # done already with these weights: kept and shown as if just finished
        keep_in_project(folder, by_name.get(name))
    partial(("planned", len(plan.jobs), [str(by_name[name].path) for name, _ in plan.skipped]))
    if not plan.jobs:
        return CohortResult(skipped=list(plan.skipped))
    if should_stop():
        raise Cancelled("predicting all slides cancelled before any slide started")

    def done(summary: dict) -> None:
        try:
            kept = keep_in_project(summary["folder"], by_path.get(summary["slide"]))
        except (BiopsiaError, OSError) as err:  # its folder is written: the others go on
            kept = None
            partial(("failed", summary["name"], f"{summary['folder']}: predicted, but not kept in the project "
                                                 f"({err})"))
        partial(("done", dict(summary, kept=kept)))

    try:
        with cohort_client(workers=workers, scheduler=scheduler or None) as (client, info):
            partial(("cluster", info))
            return run_cohort(client, plan, on_done=done, on_failed=lambda n, m: partial(("failed", n, m)),
                              on_tiles=lambda report: partial(("tiles", report)), should_stop=should_stop)
    except Cancelled:
        if not scheduler:  # the local workers are gone with the cluster: nothing writes these folders now
            for job in plan.jobs:
                remove_leftovers(job.folder)
        raise


def keep_in_project(folder, slide: CohortSlide | None) -> Path | None:
    """A slide folder's grid as the slide's saved prediction in its project (where reopening finds it)."""
    from core.cohort import GRID_FILE
    from core.inference.predict import ProbabilityGrid, prediction_path

    if slide is None or slide.project is None or slide.slide_id is None:
        return None
    grid = ProbabilityGrid.load(Path(folder) / GRID_FILE)
    return grid.save(prediction_path(slide.project, slide.slide_id, grid.model))


class CohortRun(QObject):
    """Model ▸ Predict all slides… and Model ▸ Cluster for all slides…; the run, its progress and its report.

    Signals: ``slide_done(name)``, ``slide_failed(name, message)``, ``ended(how)`` (``"finished"``,
    ``"cancelled"``, ``"failed"``).
    """

    slide_done = pyqtSignal(str)
    slide_failed = pyqtSignal(str, str)
    ended = pyqtSignal(str)

    def __init__(self, win: "MainWindow"):
        super().__init__(win)
        self.win = win
        self.worker: Worker | None = None
        self.tiff = True  # the overlay TIFF, as ``biopsia predict`` writes by default
        self.device = "auto"  # each worker takes its GPU if it has one
        self.batch = 64  # tiles per batch; a cancelled task stops between two
        self.report = ""  # the last run's closing words (also shown)
        self.engine_note: str | None = None  # why the panel's Automatic engine took ONNX Runtime, if it did
        self.failed: list[tuple[str, str]] = []
        self.finished: list[str] = []
        self.dialog: QProgressDialog | None = None
        self._jobs, self._tiles = 0, {}
        self._pool = QThreadPool(self)  # its own thread: the run lasts, the shared pool opens slides
        self._pool.setMaxThreadCount(1)
        self.actions = self._build_actions()  # the window's closeEvent cancels a run once closing is confirmed

    def _build_actions(self) -> dict[str, QAction]:
        predict = QAction("Predict all &slides…", self.win, triggered=lambda _c=False: self.start(),
                          statusTip="Every slide of the project with the Prediction panel's model, on a Dask "
                                    "cluster (local, or the one set in Cluster for all slides…)")
        cluster = QAction("Cl&uster for all slides…", self.win, triggered=lambda _c=False: self.cluster_dialog(),
                          statusTip="Where Predict all slides runs: a local cluster, or a Dask scheduler's address")
        menu, acts = self.win.model_menu, self.win.model_menu.actions()
        single = self.win.actions.get("predict")  # beside Predict… (one slide), which they extend
        after = acts[acts.index(single) + 1] if single in acts and acts.index(single) + 1 < len(acts) else None
        for act in (predict, cluster):
            menu.insertAction(after, act) if after is not None else menu.addAction(act)
        return {"predict": predict, "cluster": cluster}

    @property
    def running(self) -> bool:
        return self.worker is not None

    def cluster_dialog(self) -> None:
        prefs = self.win.prefs
        text, ok = QInputDialog.getText(self.win, "Cluster for all slides",
                                        "Dask scheduler address (tcp://host:8786); empty: a local cluster of "
                                        f"{prefs.cohort_workers} worker processes on this computer:",
                                        text=prefs.cohort_scheduler)
        if ok:
            prefs.cohort_scheduler = text

    # -- running ----------------------------------------------------------------------------
    def start(self) -> Worker | None:
        """Run every slide with the Prediction panel's model; refuses, saying why, without model or slides."""
        win, title = self.win, "Predict all slides"
        if self.running:
            win.statusBar().showMessage("Predict all slides is running already", 5000)
            return None
        model = win.prediction_dock.model_path()
        if model is None:
            win.show_error(title, "No model chosen: pick one in the Prediction panel (Model), then try again.")
            return None
        slides = project_slides(win)
        if not slides:
            win.show_error(title, "No slides: open a project (File ▸ Open project) or some slides first.")
            return None
        project = win.project or next((s.project for s in slides if s.project is not None), None) or win.working_project()
        scheduler, workers = win.prefs.cohort_scheduler, win.prefs.cohort_workers
        self.out_root = output_root(project, model)
        engine, precision = win.prediction_dock.engine_choice()
        worker = Worker(run_all, slides, self.out_root, model, win.prediction_dock.threshold(), scheduler, workers,
                        self.tiff, self.device, self.batch, engine, precision, pool=self._pool)
        worker.partial.connect(lambda report, w=worker: self._on_report(w, report))
        worker.finished.connect(lambda result, w=worker: self._on_finished(w, result))
        worker.cancelled.connect(lambda w=worker: self._on_ended(w, "cancelled", "Cancelled: the slides that "
                                                                 "finished are kept, the others were not written."))
        worker.failed.connect(lambda err, w=worker: self._on_ended(w, "failed", str(err)))
        self.worker, self.failed, self.finished, self._jobs, self._tiles = worker, [], [], len(slides), {}
        self.engine_note = None
        where = scheduler or f"a local cluster of {workers} worker processes"
        self.dialog = open_run_dialog(win, "Predict all slides", f"{len(slides)} slides on {where}: starting the "
                                      "cluster…", max(self._jobs, 1), self.cancel)
        win.statusBar().showMessage(f"Predicting {len(slides)} slides on {where}…")
        return worker.start()

    def cancel(self) -> None:
        """Stop the run: slides being predicted stop and write nothing; finished ones stay."""
        if self.worker is not None:
            self.worker.cancel()
            self._say("Cancelling: the slides being predicted stop and write nothing…")

    def _say(self, text: str) -> None:
        say(self.win, self.dialog, text)

    def _progress_text(self) -> str:
        ended = len(self.finished) + len(self.failed)
        done = sum(d for d, _ in self._tiles.values())
        total = sum(t for _, t in self._tiles.values())
        tiles = f" · tiles {done:,} / {total:,} of the slides started" if total else ""
        failed = f" ({len(self.failed)} failed)" if self.failed else ""
        return f"Slides {ended} / {self._jobs}{failed}{tiles}"

    def _on_report(self, worker, report: tuple) -> None:
        if worker is not self.worker:
            return
        kind = report[0]
        if kind == "engine":
            self.engine_note = report[1]
            self._say(report[1])
        elif kind == "planned":
            jobs, skipped = report[1], report[2]
            self._jobs = jobs
            for slide in skipped:
                self._show_heatmap(slide)
            if alive(self.dialog) is not None:
                self.dialog.setMaximum(max(jobs, 1))
            self._say(f"{jobs} slides to predict" + (f", {len(skipped)} done already with this model"
                                                     if skipped else "") + ": starting the cluster…")
        elif kind == "cluster":
            info = report[1]
            where = "a local cluster" if info.local else f"the cluster at {info.scheduler}"
            self._say(f"{self._jobs} slides on {where} ({info.workers} workers)…")
        elif kind == "tiles":
            tiles = report[1]
            self._tiles[tiles["name"]] = (int(tiles["done"]), int(tiles["total"]))
            self._say(self._progress_text())
        elif kind == "done":
            summary = report[1]
            self.finished.append(summary["name"])
            self._tiles[summary["name"]] = (summary["tiles"], summary["tiles"])
            self._show_heatmap(summary["slide"])
            self._step()
            self.slide_done.emit(summary["name"])
        elif kind == "failed":
            name, message = report[1], report[2]
            self.failed.append((name, message))
            self._step()
            self.win.statusBar().showMessage(f"{name} failed: {message}", 10000)
            self.slide_failed.emit(name, message)

    def _step(self) -> None:
        if alive(self.dialog) is not None:
            self.dialog.setValue(len(self.finished) + len(self.failed))
        self._say(self._progress_text())

    def _show_heatmap(self, slide: str) -> None:
        """The slide's open view shows its new prediction, through the Prediction dock's own loading."""
        path = os.path.abspath(slide)
        for view in self.win.views():
            if os.path.abspath(view.reader.path) != path:
                continue
            state = view.document.prediction
            if state.state == PredictionState.RUNNING or view.document.slide_id is None:
                continue  # a run of the dock's own owns it; a slide in no project has nowhere it is kept
            state.grid = None  # load_saved reads the newest saved grid: the one just kept
            self.win.prediction_dock.load_saved(view)

    def _on_finished(self, worker, result) -> None:
        if worker is not self.worker:
            return
        skipped = f", {len(result.skipped)} done already" if result.skipped else ""
        text = f"Predict all slides: {len(result.done)} slides done, {len(result.failed)} failed{skipped}."
        if result.failed:
            text += "\n\n" + "\n".join(f"{name}: {message}" for name, message in result.failed)
        text += f"\n\nEach slide's outputs are in {self.out_root}."
        if self.engine_note:
            text += f"\n\n{self.engine_note}."
        self._on_ended(worker, "finished", text, failed=bool(result.failed))

    def _on_ended(self, worker, how: str, text: str, failed: bool | None = None) -> None:
        if worker is not self.worker:
            return
        self.worker, self.report = None, text
        close_run_dialog(self.dialog, self.cancel)
        self.dialog = None
        self.win.statusBar().showMessage(text.split("\n")[0], 15000)
        if how == "failed" or failed:
            self.win.show_error("Predict all slides", text)
        self.ended.emit(how)
