"""One worker pattern for everything long: run a callable off the GUI thread, report by signals.

Workers never touch widgets: they emit, and slots on the GUI thread apply.
"""

from __future__ import annotations

import inspect
import threading
import traceback
from typing import Any, Callable

from PyQt5.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal

from core.errors import BiopsiaError, Cancelled
from core.threads import lower_this_thread


class Worker(QObject):
    """Runs ``fn(*args, **kwargs)`` on a pool thread.

    If ``fn`` accepts ``progress``, ``partial`` or ``should_stop`` keyword
    arguments they are supplied: ``progress(done, total)`` and
    ``partial(obj)`` emit signals, ``should_stop()`` says whether
    :meth:`cancel` was called. A job that raises `core.errors.Cancelled`
    ends on ``cancelled``, as does one that returns after :meth:`cancel`.
    """

    progress = pyqtSignal(int, int)
    partial = pyqtSignal(object)
    finished = pyqtSignal(object)
    failed = pyqtSignal(object)  # the exception
    cancelled = pyqtSignal()
    done = pyqtSignal()  # after any of finished / failed / cancelled

    _alive: set["Worker"] = set()  # keeps running workers from being garbage-collected

    def __init__(self, fn: Callable[..., Any], *args, pool: QThreadPool | None = None, **kwargs):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, dict(kwargs)
        self._pool = pool or QThreadPool.globalInstance()
        self._stop = threading.Event()
        params = inspect.signature(fn).parameters
        if "progress" in params:
            self._kwargs["progress"] = lambda done, total: self.progress.emit(int(done), int(total))
        if "partial" in params:
            self._kwargs["partial"] = self.partial.emit
        if "should_stop" in params:
            self._kwargs["should_stop"] = self._stop.is_set

    def start(self) -> "Worker":
        Worker._alive.add(self)
        self._pool.start(_Runnable(self))
        return self

    def cancel(self) -> None:
        self._stop.set()

    @property
    def is_cancelled(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            result = self._fn(*self._args, **self._kwargs)
        except Cancelled:
            self.cancelled.emit()
        except BiopsiaError as err:
            self.failed.emit(err)
        except Exception as err:  # noqa: BLE001 - a worker must report, never die silently
            err.details = traceback.format_exc()
            self.failed.emit(err)
        else:
            if self._stop.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(result)
        self.done.emit()
        Worker._alive.discard(self)


class _Runnable(QRunnable):
    def __init__(self, worker: Worker):
        super().__init__()
        self.worker = worker
        self.setAutoDelete(True)

    def run(self) -> None:
        lower_this_thread()  # pool threads are all background work
        self.worker._run()
