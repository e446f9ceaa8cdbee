"""The network helps annotate: its calls as draft marks the doctor accepts (A), rejects (R) or edits then accepts.

*Model ▸ Propose marks* turns the shown prediction's calls at the model's threshold into drafts
(`core.annotations.proposals.propose_marks`, off the GUI thread). A draft is an ordinary entry of the slide's
store whose GeoJSON properties say ``"biopsia_draft": true``, so autosave keeps it and undo covers every
decision; it is drawn dashed (`gui.layers.annotation_layer`) and not counted as a mark. Accepting replaces it
with the mark `accept_draft` makes (its origin, when, and whether its outline was changed since it was
proposed); rejecting with the Benign mark `reject_draft` makes. The Review panel is `gui.docks.review_dock`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt5 import sip
from PyQt5.QtCore import QObject, Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QAction
from shapely.geometry import box

from core.annotations.proposals import accept_draft, is_draft, propose_marks, reject_draft
from core.annotations.store import Edit
from core.evaluation.compare import threshold_for_grids
from gui.docks.review_dock import ReviewDock
from gui.worker import Worker

if TYPE_CHECKING:
    from gui.main_window import MainWindow
    from gui.slide_view import SlideView

ACCEPT_KEY, REJECT_KEY = "A", "R"  # the keys the assisted-annotation workflow uses


def drafts_of(view: "SlideView", ids=None) -> list:
    """The drafts of ``view`` (those among ``ids`` when given)."""
    store = view.annotations
    items = store if ids is None else (store.get(i) for i in ids if i in store)
    return [a for a in items if is_draft(a)]


def proposal_edit(view: "SlideView", drafts) -> Edit:
    """One undoable edit: the new drafts in, the drafts nobody decided on yet out."""
    return Edit(tuple(drafts_of(view)), tuple(drafts), "Propose marks")


def accept_edit(drafts, label: str = "Accept draft") -> Edit:
    """Accept ``drafts``: ``edited_by_doctor`` says whether the outline differs from the one proposed (kept in
    each draft's origin, so it holds after a reopen too)."""
    return Edit(tuple(drafts), tuple(accept_draft(draft) for draft in drafts), label)


def reject_edit(drafts) -> Edit:
    return Edit(tuple(drafts), tuple(reject_draft(d) for d in drafts), "Reject draft")


class DraftController(QObject):
    """Model ▸ Propose marks, Accept (A), Reject (R), Accept all in view, and the Review panel (N / Shift+N)."""

    def __init__(self, win: "MainWindow"):
        super().__init__(win)
        self.win = win
        self._worker: Worker | None = None
        self.review = ReviewDock(win)
        self.actions = self._build_actions()

    def _build_actions(self) -> dict[str, QAction]:
        win, a = self.win, {}
        specs = (("propose", "&Propose marks", None, self.propose,
                  "The shown prediction's calls at the model's threshold as draft marks to accept or reject"),
                 ("accept", "&Accept draft", ACCEPT_KEY, self.accept_selected,
                  "Make the selected drafts marks (edit a draft first with any tool if it needs it)"),
                 ("reject", "&Reject draft", REJECT_KEY, self.reject_selected,
                  "Not tumour: the selected drafts become Benign marks recording the rejection"),
                 ("accept_view", "Accept all drafts in &view", "Shift+A", self.accept_in_view,
                  "Accept every draft the view shows"),
                 ("review_next", "&Next region to review", "N", self.review_next,
                  "Centre the next region worth a look; the one shown counts as reviewed"),
                 ("review_back", "Pre&vious region to review", "Shift+N", self.review_back,
                  "Back to the region reviewed before"))
        for name, text, shortcut, slot, tip in specs:
            act = QAction(text, win, toolTip=tip, statusTip=tip)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
                act.setShortcutContext(Qt.WindowShortcut)
            act.triggered.connect(lambda _c=False, f=slot: f())
            a[name] = act
            win.addAction(act)
        menu = win.model_menu
        menu.addSeparator()
        for name in ("propose", "accept", "reject", "accept_view", None, "review_next", "review_back"):
            menu.addAction(a[name]) if name else menu.addSeparator()
        menu.addAction(self.review.toggleViewAction())
        return a

    @property
    def view(self) -> "SlideView | None":
        return self.win.current_view()

    def set_view(self, view) -> None:
        self.review.set_view(view)

    # -- reviewing ----------------------------------------------------------------------------
    def review_next(self) -> None:
        """N: step on; the region stepped past is recorded in the slide's document (saved beside its marks)."""
        view, history = self.view, self.review.reviewed()
        before = len(history)
        self.review.step_next()
        if view is not None and len(history) > before:
            self._record_review(view.document.mark_reviewed, history[-1])

    def review_back(self) -> None:
        """Shift+N: the region brought back is no longer recorded as reviewed."""
        view, history = self.view, self.review.reviewed()
        item = history[-1] if history else None
        self.review.step_back()
        if view is not None and item is not None and item not in history:
            self._record_review(view.document.unmark_reviewed, item)

    def _record_review(self, change, item) -> None:
        x, y, w, h = item.bbox_l0
        try:
            change(box(x, y, x + w, y + h))
        except OSError as err:
            self.win.show_error("Review", f"Could not save the reviewed regions: {err}")

    # -- proposing ----------------------------------------------------------------------------
    def propose(self) -> Worker | None:
        """Drafts from the current view's prediction, at its model's threshold (off the GUI thread)."""
        view = self.view
        grid = view.document.prediction.grid if view is not None else None
        if grid is None or not grid.done.any():
            self.win.show_error("Propose marks", "No prediction for this slide: run one in the Prediction panel "
                                "(or open a saved one), then propose its calls as draft marks.")
            return None
        threshold, _source = threshold_for_grids([grid.model])
        worker = Worker(propose_marks, grid, threshold)
        worker.finished.connect(lambda drafts, v=view, w=worker: self._proposed(w, v, drafts, threshold))
        worker.failed.connect(lambda err: self.win.show_error("Propose marks", str(err)))
        self._worker = worker
        self.win.statusBar().showMessage("Proposing marks from the prediction…")
        return worker.start()

    def _proposed(self, worker, view, drafts, threshold: float) -> None:
        if worker is not self._worker or sip.isdeleted(view) or view not in self.win.views():
            return
        self._worker = None
        view.apply_edit(proposal_edit(view, drafts))
        self.win.statusBar().showMessage(
            f"{len(drafts)} draft marks at threshold {threshold:.3g}: select one, then A accepts, R rejects", 10000)

    # -- deciding -----------------------------------------------------------------------------
    def accept_selected(self) -> bool:
        view = self.view
        drafts = drafts_of(view, view.selection) if view is not None else []
        return bool(drafts) and view.apply_edit(accept_edit(drafts))

    def reject_selected(self) -> bool:
        view = self.view
        drafts = drafts_of(view, view.selection) if view is not None else []
        return bool(drafts) and view.apply_edit(reject_edit(drafts))

    def accept_in_view(self) -> int:
        view = self.view
        if view is None:
            return 0
        x, y, w, h = view.viewport.visible_l0_rect()
        drafts = [a for a in view.annotations.query(x, y, x + w, y + h) if is_draft(a)]
        if drafts:
            view.apply_edit(accept_edit(drafts, f"Accept {len(drafts)} drafts in view"))
        return len(drafts)
