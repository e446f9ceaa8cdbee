"""Background threads yield the processor to the thread that draws the window.

On a machine whose cores are all busy (two cores, a prediction running, tiles decoding), the window's
thread waits for a core like any other, and the event loop stalls. Every thread Biopsia starts for
background work lowers its own scheduling priority (Linux nice value, per thread) at its start, so the
window's thread, left at the process's priority, is served first. Threads those threads start inherit the
lower priority (MXNet's and OpenMP's workers included).
"""

from __future__ import annotations

import os
import threading

#: How much lower than the process background threads run (Linux niceness; 0 to 19, higher is lower).
BACKGROUND_NICENESS = 5
_enabled = False


def enable_background_priority() -> None:
    """From now on `lower_this_thread` lowers (the window turns it on; a headless batch keeps full speed)."""
    global _enabled
    _enabled = True


def lower_this_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's priority by ``niceness`` below the process's; False where not possible.

    Only once `enable_background_priority` was called, and never on the main thread (the window's): that
    one stays as it is. Safe to call more than once: the thread ends at the process's niceness plus
    ``niceness``, not lower.
    """
    if not _enabled or threading.current_thread() is threading.main_thread() or not hasattr(os, "setpriority"):
        return False
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)  # the main thread's
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)  # on Linux a thread id names one thread
        return True
    except OSError:  # not Linux, or not allowed: the thread runs as it is
        return False


def background_thread(target, *args, name: str | None = None, **kwargs) -> threading.Thread:
    """A daemon thread that runs ``target(*args, **kwargs)`` at background priority (not started)."""
    def run():
        lower_this_thread()
        target(*args, **kwargs)

    return threading.Thread(target=run, name=name, daemon=True)
