"""*Model ▸ Retrain with new marks…*: fine-tune the Prediction panel's model on the project's decisions.

The run is `core.models.retrain.run_retrain` (the job `retrain_job` makes, run by
`core.models.training_job.run_job`) on a `gui.worker.Worker`, as the Training panel runs its jobs, so the
marks of slides not open are read off the window's thread: the parent's tile size, µm/px and architecture; the
project's marks (accepted drafts are marks, rejected ones Benign, undecided ones nothing) and, on partly
annotated slides, the reviewed regions as Non-tumour. The marks on screen are used, after they are saved.
When the run ends the new model becomes the Prediction panel's, and the current slide is predicted with it,
so its heatmap shows what the doctor's corrections changed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PyQt5.QtCore import QObject, QThreadPool, pyqtSignal
from PyQt5.QtWidgets import QAction, QProgressDialog

from core.errors import BiopsiaError
from core.models.reports import ProgressEvent, TrainResult
from core.models.training_job import Planned, Stage, TrainingJob
from core.models.folder import model_name
from core.project.document import open_marks
from gui.training_panel import flush_marks
from gui.run_dialog import alive, close_run_dialog, open_run_dialog, say
from gui.worker import Worker

if TYPE_CHECKING:
    from gui.main_window import MainWindow

TITLE = "Retrain with new marks"


class RetrainRun(QObject):
    """The Model menu's *Retrain with new marks…*, its progress dialog and what follows the run.

    Signals: ``ended(how)`` with ``"finished"``, ``"cancelled"`` or ``"failed"``.
    """

    ended = pyqtSignal(str)

    def __init__(self, win: "MainWindow"):
        super().__init__(win)
        self.win = win
        self.epochs: int | None = None  # None: core.models.retrain.RETRAIN_EPOCHS
        self.worker: Worker | None = None
        self.job = None
        self.result: TrainResult | None = None
        self.planned: Planned | None = None  # the last run's labelled tiles
        self.report = ""  # the last run's closing words (also in the status bar)
        self.dialog: QProgressDialog | None = None
        self._pool = QThreadPool(self)  # the run lasts minutes: it does not hold a thread slides open on
        self._pool.setMaxThreadCount(1)
        self.action = QAction("Re&train with new marks…", win, triggered=lambda _c=False: self.start(),
                              statusTip="Fine-tune the Prediction panel's model on this project's marks, accepted "
                                        "and rejected drafts and reviewed regions, then predict the slide again")
        menu, acts = win.model_menu, win.model_menu.actions()
        train = win.actions.get("train")  # beside Train…, which it continues
        after = acts[acts.index(train) + 1] if train in acts and acts.index(train) + 1 < len(acts) else None
        menu.insertAction(after, self.action) if after is not None else menu.addAction(self.action)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _project(self):
        view = self.win.current_view()
        return (view.document.project if view is not None else None) or self.win.project

    def start(self) -> Worker | None:
        """Start retraining; refuses, saying why, without a model, a project or anything to learn from."""
        from core.models.retrain import RETRAIN_EPOCHS, run_retrain

        win = self.win
        if self.running:
            win.statusBar().showMessage("Retraining is running already", 5000)
            return None
        model = win.prediction_dock.model_path()
        if model is None:
            win.show_error(TITLE, "No model chosen: pick the model to retrain in the Prediction panel (Model), "
                                  "then try again.")
            return None
        project = self._project()
        if project is None:
            win.show_error(TITLE, "No project: retraining learns from a project's marks; open a project first.")
            return None
        try:
            flush_marks(win.views(), [entry.id for entry in project.slides])  # reviews and marks on disk
        except BiopsiaError as err:
            win.show_error(TITLE, str(err))
            return None
        # the job is made on the worker: it reads every slide's marks and checks the parent
        worker = Worker(run_retrain, project, model, open_marks(win.documents, project),
                        self.epochs or RETRAIN_EPOCHS, win.prediction_dock.device.currentText(), pool=self._pool)
        worker.partial.connect(lambda report, w=worker: self._on_report(w, report))
        worker.finished.connect(lambda result, w=worker: self._on_ended(w, "finished", result))
        worker.cancelled.connect(lambda w=worker: self._on_ended(w, "cancelled", self.result))
        worker.failed.connect(lambda err, w=worker: self._on_failed(w, err))
        self.worker, self.job, self.result, self.planned = worker, None, None, None
        self._started = time.monotonic()
        self.dialog = open_run_dialog(win, TITLE, f"Retraining {model_name(model)}: reading the project's marks…", 0,
                                      self.cancel)  # the doctor goes on marking while it learns
        return worker.start()

    def cancel(self) -> None:
        """Stop after the current batch; the best epoch so far is kept, the panel's model stays as it was."""
        if self.worker is not None and not self.worker.is_cancelled:
            self.worker.cancel()
            self._say("Cancelling: stopping after this batch…")

    # -- the dialog ----------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        say(self.win, self.dialog, text)

    def _on_report(self, worker, report) -> None:
        if worker is not self.worker:
            return
        if isinstance(report, TrainResult):  # also reported when cancelled: the best epoch kept
            self.result = report
            return
        if isinstance(report, TrainingJob):
            self.job = report
            slides = len(report.slide_ids)
            self._say(f"Retraining into {report.out_dir.name} on {slides} slide{'s' if slides != 1 else ''}: "
                      "finding tissue and labelling tiles…")
            return
        if worker.is_cancelled:
            return  # keep saying "Cancelling"
        dialog = alive(self.dialog)
        if isinstance(report, Stage):
            self._say(f"{report.text} {report.done:,}/{report.total:,}" if report.total else f"{report.text}…")
            if dialog is not None:
                dialog.setRange(0, report.total)
                dialog.setValue(report.done)
        elif isinstance(report, Planned):
            self.planned = report
            counts = report.counts.get("train", {})
            self._say(f"Tiles: {', '.join(f'{n:,} {c}' for c, n in counts.items())}; reading them…")
        elif isinstance(report, ProgressEvent):
            text = f"Epoch {report.epoch + 1}/{report.epochs}, batch {report.batch}/{report.batches}, " \
                   f"loss {report.loss:.3f}"
            if report.metrics is not None and report.metrics.get("auc") is not None:
                text += f" · validation AUC {report.metrics['auc']:.3f}"
            self._say(text)
            if dialog is not None:
                dialog.setRange(0, report.epochs * report.batches)
                dialog.setValue(report.epoch * report.batches + report.batch)

    # -- the end -------------------------------------------------------------------------------
    def _close_dialog(self) -> None:
        close_run_dialog(self.dialog, self.cancel)
        self.dialog = None

    def _on_ended(self, worker, how: str, result: TrainResult | None) -> None:
        if worker is not self.worker:
            return
        self.worker, self.result = None, result
        self._close_dialog()
        bundle = result.bundle if result is not None else None
        if how == "finished" and bundle is not None:
            auc = f", validation AUC {result.best_score:.3f}" if result.best_score is not None else ""
            self.report = (f"Retrained into {self.job.out_dir.name} in {time.monotonic() - self._started:.0f} s"
                           f"{auc}: it is now the Prediction panel's model.")
            self.win.prediction_dock.set_model(self.job.out_dir)
            self._predict_again()
        elif bundle is not None:
            self.report = f"Retraining cancelled: the best epoch so far is kept in {bundle}; the model in use is unchanged."
        else:
            self.report = "Retraining cancelled before an epoch ended: no model was saved."
        self.win.statusBar().showMessage(self.report, 15000)
        self.ended.emit(how)

    def _predict_again(self) -> None:
        dock = self.win.prediction_dock
        if dock.view is None:
            return
        if dock.running:
            self.report += " Predict the slide again once the prediction running now ends."
            return
        dock.start()  # the heatmap follows the new model

    def _on_failed(self, worker, err: Exception) -> None:
        if worker is not self.worker:
            return
        self.worker = None
        self._close_dialog()
        self.report = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error: {err!r}"
        self.win.show_error(TITLE, self.report)
        self.ended.emit("failed")
