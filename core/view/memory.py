"""Process-wide memory tuning for tile-heavy work."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc reuse freed tile-sized blocks instead of unmapping and re-faulting them.

    By default glibc serves each ~1 MB tile buffer with a fresh ``mmap`` and
    returns it on free, so every decoded tile pays for zero-filled page faults
    (several milliseconds per tile on virtual machines). Raising the mmap and
    trim thresholds keeps such blocks in the heap for reuse. Returns whether
    the allocator was tuned (only on glibc).
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except (OSError, AttributeError):
        return False
    _tuned = ok
    return ok
