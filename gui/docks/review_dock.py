"""The Review panel: regions of the current slide worth the doctor's look, best first (N / Shift+N step).

The list is `core.evaluation.review.review_queue` over the shown prediction at the model's threshold and the
slide's marks (drafts left out: they are the network's, not the doctor's), computed off the GUI thread.
Stepping on (N) counts the region shown as reviewed: it drops off the list, and Shift+N brings it back. Each
region is centred at the magnification where it fills about `FILL` of the view.
"""

from __future__ import annotations

from PyQt5 import sip
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import QDockWidget, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget
from shapely.geometry import box

from core.annotations.proposals import is_draft
from core.evaluation.compare import threshold_for_grids
from core.evaluation.review import review_queue
from gui.worker import Worker

#: Share of the view's shorter side a reviewed region fills.
FILL = 0.8
#: Never closer than this (screen px per level-0 px): a one-tile region is not blown up past full resolution.
MAX_SCALE = 1.0
DEBOUNCE_MS = 400


def review_items(grid, threshold, marks, reviewed):
    """Run on a worker thread."""
    return review_queue(grid, threshold, [a for a in marks if not is_draft(a)], reviewed)


class ReviewDock(QDockWidget):
    """Signals: ``listed(list)`` when the list is recomputed; ``stepped(object)`` with the item centred."""

    listed = pyqtSignal(object)
    stepped = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__("Review", parent)
        self.setObjectName("ReviewDock")
        self.view = None
        self.items: list = []
        self.current = None  # the item the view was last centred on
        self._history: dict = {}  # per view: the items reviewed, in order (Shift+N goes back)
        self._worker: Worker | None = None
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.compute)
        self.caption = QLabel("No slide open.", wordWrap=True, styleSheet="color: #666")
        self.list = QListWidget(wordWrap=True)  # a narrow panel wraps the reasons rather than hiding their ends
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setResizeMode(QListWidget.Adjust)
        self.list.itemActivated.connect(lambda item: self.show_item(self.items[self.list.row(item)]))
        self.list.itemClicked.connect(lambda item: self.show_item(self.items[self.list.row(item)]))
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.caption)
        layout.addWidget(self.list, 1)
        layout.addWidget(QLabel("N: next (this one counts as reviewed) · Shift+N: back", wordWrap=True,
                                styleSheet="color: #666"))
        self.setWidget(body)

    def reviewed(self, view=None) -> list:
        return self._history.setdefault(id(view or self.view), [])

    def set_view(self, view) -> None:
        if self.view is not None and not sip.isdeleted(self.view):
            for signal in (self.view.annotations_edited, self.view.annotations_replaced):
                try:
                    signal.disconnect(self.schedule)
                except (TypeError, RuntimeError):
                    pass
        self.view, self.current = view, None
        if view is not None:
            view.annotations_edited.connect(self.schedule)
            view.annotations_replaced.connect(self.schedule)
        self.compute()

    def schedule(self, *_args) -> None:
        self._timer.start()

    def compute(self) -> Worker | None:
        self._timer.stop()
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        view = self.view
        grid = view.document.prediction.grid if view is not None else None
        if grid is None or not grid.done.any():
            self._show([], "No slide open." if view is None else "No prediction for this slide: the list of "
                       "regions to review follows one.")
            return None
        threshold, _source = threshold_for_grids([grid.model])
        seen = [box(x, y, x + w, y + h) for x, y, w, h in (item.bbox_l0 for item in self.reviewed())]
        saved = view.document.reviewed_regions()  # reviewed before the slide was last closed
        if not saved.is_empty:
            seen.append(saved)
        worker = Worker(review_items, grid, threshold, view.annotations.annotations(), seen)
        worker.finished.connect(lambda items, w=worker: self._on_listed(w, items, threshold))
        self._worker = worker
        return worker.start()

    def _on_listed(self, worker, items, threshold) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = None
        self._show(items, f"{len(items)} regions worth a look, at threshold {threshold:.3g}: near it, or where the "
                          "network and the marks disagree" if items else "Nothing left to review.")

    def _show(self, items, text: str) -> None:
        self.items = list(items)
        self.caption.setText(text)
        self.list.clear()
        for i, item in enumerate(self.items, start=1):
            entry = QListWidgetItem(f"{i}. {item.reason} (of {item.tiles} tile{'s' if item.tiles != 1 else ''})")
            entry.setToolTip(f"score {item.score:g}")
            self.list.addItem(entry)
        self.listed.emit(self.items)

    # -- stepping -----------------------------------------------------------------------------
    def show_item(self, item) -> None:
        """Centre the view on ``item`` at the magnification where it fills the view."""
        view = self.view
        if view is None:
            return
        x, y, w, h = item.bbox_l0
        vp = view.viewport
        scale = min(FILL * vp.screen_w / max(w, 1.0), FILL * vp.screen_h / max(h, 1.0), MAX_SCALE)
        view.set_viewport(vp.centred_on(x + w / 2, y + h / 2, scale))
        self.current = item
        if item in self.items:
            self.list.setCurrentRow(self.items.index(item))
        self.stepped.emit(item)

    def step_next(self) -> None:
        """N: the region shown so far counts as reviewed and drops off; the next best is centred."""
        if self.current is not None and self.current in self.items:
            self.reviewed().append(self.current)
            self.items.remove(self.current)
            self._show(self.items, self.caption.text())
        if self.items:
            self.show_item(self.items[0])
        else:
            self.current = None

    def step_back(self) -> None:
        """Shift+N: the last region reviewed comes back to the top of the list and is centred again."""
        history = self.reviewed()
        if history:
            item = history.pop()
            self._show([item, *[i for i in self.items if i != item]], self.caption.text())
            self.show_item(item)
