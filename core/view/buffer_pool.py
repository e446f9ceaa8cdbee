"""Recycled fixed-size pixel buffers carved from pre-populated memory slabs.

Decoded display tiles are ~1 MB each and the tile cache churns through
thousands of them. Fresh memory costs a page fault per 4 KB page, which on
virtual machines makes a new tile buffer cost more than decoding the JPEG.
Slabs mapped with ``MAP_POPULATE`` are faulted in one system call (about ten
times cheaper), and released buffers are reused as they are.
"""

from __future__ import annotations

import mmap
import threading

import numpy as np

_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class BufferSlot:
    """One buffer of a :class:`SlabPool`; ``array`` is valid until :meth:`release`."""

    __slots__ = ("array", "_pool", "_index")

    def __init__(self, array: np.ndarray, pool: "SlabPool", index: int):
        self.array, self._pool, self._index = array, pool, index

    def release(self) -> None:
        if self._pool is not None:
            self._pool._free(self._index)
            self._pool = None


class SlabPool:
    """Buffers of ``slot_shape`` (uint8) handed out and taken back, thread-safe.

    Parameters
    ----------
    slot_shape : tuple of int
        Shape of every buffer, e.g. ``(512, 512, 4)`` for a BGRA tile.
    slots_per_slab : int
        Buffers mapped together; a slab is never returned to the system.
    """

    def __init__(self, slot_shape: tuple[int, ...], slots_per_slab: int = 32):
        self.slot_shape = tuple(slot_shape)
        self.slot_bytes = int(np.prod(slot_shape))
        self.slots_per_slab = slots_per_slab
        self._slabs: list[np.ndarray] = []
        self._maps: list[mmap.mmap] = []
        self._free_slots: list[int] = []
        self._lock = threading.Lock()

    def acquire(self) -> BufferSlot:
        with self._lock:
            if not self._free_slots:
                self._grow()
            index = self._free_slots.pop()
            slab, offset = divmod(index, self.slots_per_slab)
            return BufferSlot(self._slabs[slab][offset], self, index)

    def _free(self, index: int) -> None:
        with self._lock:
            self._free_slots.append(index)

    def _grow(self) -> None:
        size = self.slot_bytes * self.slots_per_slab
        try:
            mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE)
            slab = np.frombuffer(mem, np.uint8).reshape((self.slots_per_slab,) + self.slot_shape)
            self._maps.append(mem)
        except (OSError, ValueError, AttributeError):  # no anonymous mmap: plain numpy memory
            slab = np.empty((self.slots_per_slab,) + self.slot_shape, np.uint8)
        first = len(self._slabs) * self.slots_per_slab
        self._slabs.append(slab)
        self._free_slots.extend(range(first + self.slots_per_slab - 1, first - 1, -1))

    @property
    def allocated_bytes(self) -> int:
        return len(self._slabs) * self.slots_per_slab * self.slot_bytes

    @property
    def free_count(self) -> int:
        with self._lock:
            return len(self._free_slots)
