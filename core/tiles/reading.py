"""Reading a planned dataset's tiles from its slides: streamed in batches, or all in memory.

Tiles are read in slide order, row-major on each slide, on a few threads a few chunks ahead
(`read_pipeline`, which `core.tiles.export` also uses).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from core.errors import BiopsiaError, DatasetError
from core.slide import open_slide
from core.tiles.arrays import TileArrays
from core.tiles.grid import read_tile
from core.tiles.planning import DatasetPlan
from core.tiles.splits import CLASSES


def default_workers(workers: int | None = None) -> int:
    """``workers`` when given, else reading threads for this machine (twice the cores, at most 8)."""
    return max(1, workers or min(8, 2 * (os.cpu_count() or 2)))


class PlanReaders:
    """One open reader per slide of a plan, opened on first use, shared by the reading threads."""

    def __init__(self, plan: DatasetPlan):
        self.plan, self._readers, self._lock = plan, {}, threading.Lock()

    def get(self, slide: int):
        """The open reader of source ``slide``.

        Raises
        ------
        DatasetError
            When the slide cannot be opened.
        """
        with self._lock:
            if slide not in self._readers:
                try:
                    self._readers[slide] = open_slide(self.plan.sources[slide].path)
                except BiopsiaError as err:
                    raise DatasetError(str(err)) from err
            return self._readers[slide]

    def read(self, slide: int, i: int) -> np.ndarray:
        """Pixels of tile ``i`` of source ``slide`` (`core.tiles.grid.read_tile`)."""
        return read_tile(self.get(slide), self.plan.plans[slide], i)

    def close(self) -> None:
        """Close every reader opened."""
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def ordered_positions(plan: DatasetPlan, positions: np.ndarray) -> np.ndarray:
    """``positions`` sorted by slide and then row-major on the slide, so reads stay local."""
    slides = plan.slide[positions]
    xs, ys = np.empty(positions.size, np.int64), np.empty(positions.size, np.int64)
    for s in np.unique(slides):
        mine = slides == s
        index = plan.index[positions[mine]]
        xs[mine], ys[mine] = plan.plans[s].l0_x[index], plan.plans[s].l0_y[index]
    return positions[np.lexsort((xs, ys, slides))]


def read_pipeline(plan: DatasetPlan, positions: np.ndarray, work: Callable, workers: int | None, chunk: int = 16):
    """Run ``work(readers, chunk_positions)`` on reading threads, a few chunks ahead; yield results in order.

    Yields ``(chunk_positions, work's result)``; ``readers`` is one `PlanReaders` shared by the threads.
    """
    readers = PlanReaders(plan)
    n_workers = default_workers(workers)
    chunks = [positions[i:i + chunk] for i in range(0, positions.size, chunk)]
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="biopsia-tiles")
    try:
        pending: list = []
        for part in chunks:
            pending.append((part, pool.submit(work, readers, part)))
            if len(pending) > 3 * n_workers:
                done_part, future = pending.pop(0)
                yield done_part, future.result()
        for done_part, future in pending:
            yield done_part, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        readers.close()


def _read_chunk(plan: DatasetPlan):
    tile_px = plan.spec.tile_px

    def work(readers: PlanReaders, part: np.ndarray) -> np.ndarray:
        out = np.empty((part.size, tile_px, tile_px, 3), np.uint8)
        for j, pos in enumerate(part):
            out[j] = readers.read(int(plan.slide[pos]), int(plan.index[pos]))
        return out
    return work


def iter_tiles(plan: DatasetPlan, split: str | None = None, batch_size: int = 256, workers: int | None = None,
               should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream tiles straight from the slides, without writing them.

    Yields ``(images uint8 (B, H, W, 3), labels int64 (B,), positions (B,))`` in slide order; reading runs
    on ``workers`` threads a few batches ahead. Stops early (without error) when ``should_stop()`` is true.
    """
    positions = ordered_positions(plan, plan.select(split))
    chunk = max(1, min(16, batch_size))
    images, pos_list, held = [], [], 0
    for part, tiles in read_pipeline(plan, positions, _read_chunk(plan), workers, chunk):
        if should_stop is not None and should_stop():
            return
        images.append(tiles)
        pos_list.append(part)
        held += part.size
        if held >= batch_size:
            batch, pos = np.concatenate(images), np.concatenate(pos_list)
            yield batch[:batch_size], plan.label[pos[:batch_size]].astype(np.int64), pos[:batch_size]
            images, pos_list, held = [batch[batch_size:]], [pos[batch_size:]], held - batch_size
    if held:
        batch, pos = np.concatenate(images), np.concatenate(pos_list)
        yield batch, plan.label[pos].astype(np.int64), pos


def load_tiles(plan: DatasetPlan, split: str | None = None, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None, should_stop=None):
    """All tiles of ``split`` in memory, as `core.tiles.arrays.TileArrays` (classes `CLASSES`).

    Returns None when ``should_stop()`` became true before every tile was read.
    """
    total = plan.select(split).size
    images = np.empty((total, plan.spec.tile_px, plan.spec.tile_px, 3), np.uint8)
    labels = np.empty(total, np.int64)
    done = 0
    for batch, batch_labels, _ in iter_tiles(plan, split, workers=workers, should_stop=should_stop):
        images[done:done + len(batch)] = batch
        labels[done:done + len(batch)] = batch_labels
        done += len(batch)
        if progress is not None:
            progress(done, total)
    if done < total:
        return None
    return TileArrays(images, labels, list(CLASSES))
