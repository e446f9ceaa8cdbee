"""The one model thread: every MXNet call runs here (MXNet expects one long-lived thread, apache/mxnet#12756).

Usage::

    future = engine().submit(fn, *args)   # fn runs on the model thread
    result = future.result()
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future

from core.errors import ModelError
from core.threads import lower_this_thread

_STOP = object()


# MXNet is imported inside the functions that use it: the window imports this module at start-up and
# MXNet costs 2 to 4 s to import (python -X importtime), so it loads on the model thread's first job.
def _gpu_count() -> int:
    import mxnet as mx

    try:
        return int(mx.context.num_gpus())
    except Exception:  # a CPU build raises MXNetError here; means "no GPU"
        return 0


def usable_by_mxnet(index: int) -> bool:
    """Whether MXNet 1.9.1 has kernels for GPU ``index`` (compute capability 5.x to 8.x).

    Its GPU build has no PTX, so on Hopper (9.0) and newer every kernel launch fails: ``auto`` takes the
    CPU there rather than fail mid-run (ONNX Runtime's CUDA provider can use such a GPU). True when the
    driver cannot say (MXNet found the GPU, so let it try).
    """
    from core.inference.gpu_check import driver_gpus, mxnet_has_kernels

    gpus, _ = driver_gpus()
    found = next((g for g in gpus if g.index == index), None)
    return found is None or mxnet_has_kernels(found.compute_capability)


def parse_device(device: str = "auto"):
    """Turn ``"auto"``, ``"cpu"`` or ``"gpu"``/``"gpu:N"`` into an MXNet context.

    Parameters
    ----------
    device : str
        ``"auto"`` picks GPU 0 when MXNet finds one, else the CPU.

    Returns
    -------
    mxnet.Context

    Raises
    ------
    ModelError
        If a GPU is asked for and none is available, or the string is not understood.
    """
    import mxnet as mx

    text = str(device or "auto").strip().lower()
    if text == "auto":
        return mx.gpu(0) if _gpu_count() > 0 and usable_by_mxnet(0) else mx.cpu()
    if text == "cpu":
        return mx.cpu()
    if text.startswith("gpu"):
        index_text = text[3:].lstrip(":") or "0"
        if not index_text.isdigit():
            raise ModelError(f"device {device!r} not understood; use 'auto', 'cpu' or 'gpu:0'")
        index, count = int(index_text), _gpu_count()
        if index >= count:
            found = f"{count} GPU(s) found" if count else "this MXNet build finds no GPU"
            raise ModelError(f"GPU {index} is not available ({found}); use device 'cpu' or 'auto'")
        return mx.gpu(index)
    raise ModelError(f"device {device!r} not understood; use 'auto', 'cpu' or 'gpu:0'")


def describe_device(ctx) -> str:
    """Words for the status bar, e.g. ``"CPU (2 cores, OMP_NUM_THREADS=2)"`` or ``"GPU 0"``."""
    if ctx.device_type == "gpu":
        return f"GPU {ctx.device_id}"
    return cpu_description()


def cpu_description() -> str:
    """``"CPU (2 cores, OMP_NUM_THREADS=2)"``: the CPU as MXNet will use it (no MXNet needed to say so)."""
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"CPU ({os.cpu_count()} cores, OMP_NUM_THREADS={omp})"


class ModelThread:
    """A single long-lived daemon thread that runs every MXNet job, in submission order.

    Parameters
    ----------
    name : str
        Thread name (shows in debuggers).
    """

    def __init__(self, name: str = "biopsia-model"):
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        """``threading.get_ident()`` of the model thread."""
        return self._thread.ident

    def on_thread(self) -> bool:
        """True when called from the model thread itself."""
        return threading.get_ident() == self._thread.ident

    def submit(self, fn, *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` for the model thread.

        Returns
        -------
        concurrent.futures.Future
            Holds the result, or the exception ``fn`` raised.
        """
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise ModelError("the model thread has been shut down; restart Biopsia")
            self._queue.put((future, fn, args, kwargs))
        return future

    def run(self, fn, *args, **kwargs):
        """Run ``fn`` on the model thread and wait for its result (directly when already there)."""
        if self.on_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def device(self, device: str = "auto"):
        """The MXNet context for ``device`` (see `parse_device`)."""
        return parse_device(device)

    def describe_device(self, device: str = "auto") -> str:
        """Words for the context ``device`` resolves to."""
        return describe_device(parse_device(device))

    def _run(self) -> None:
        lower_this_thread()  # in the window: the model thread yields the cores to the window's thread
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller through the Future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop after the jobs already queued; later `submit` calls raise ModelError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if wait and not self.on_thread():
            self._thread.join(timeout)


_ENGINE: ModelThread | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> ModelThread:
    """The process-wide model thread, started on first use."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None or _ENGINE._closed:
            _ENGINE = ModelThread()
        return _ENGINE


def shutdown() -> None:
    """Stop the process-wide model thread (at exit)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is not None:
            _ENGINE.shutdown()
            _ENGINE = None
