"""Where tiles lie along one side of a slide so that the grid covers all of it, edges included.

The one rule for edge tiles, used by the tile plan (datasets, the Tiles preview, prediction), the labelling
rule and the probability grid: along a side of ``l0_len`` level-0 pixels, tiles of ``tile_l0`` start every
``stride`` pixels, and the last one, which would cross the edge, is shifted back to end exactly at it
(overlapping its neighbour). Every tile thus holds real slide pixels only: an edge tile looks to the network
like any other (no white padding it could learn as a cue) and is labelled and tissue-tested like any other.
A side shorter than one tile has no tiles. An edge tile shares pixels with its neighbour, as overlapping tiles
(a stride below the tile) always do: a random tile split may put the two on both sides; the by-slide split
cannot.

Frames: level-0 pixels throughout.
"""

from __future__ import annotations

import numpy as np


def axis_count(l0_len: int, tile_l0: int, stride: int) -> int:
    """Tiles along a side: ``ceil((l0_len - tile_l0) / stride) + 1``, or 0 when the side is shorter than a tile."""
    l0_len, tile_l0, stride = int(l0_len), int(tile_l0), int(stride)
    if stride <= 0 or tile_l0 <= 0:
        raise ValueError(f"tile side and stride must be positive, got {tile_l0} and {stride}")
    if l0_len < tile_l0:
        return 0
    return -(-(l0_len - tile_l0) // stride) + 1


def axis_starts(l0_len: int, tile_l0: int, stride: int) -> np.ndarray:
    """Level-0 starts of the tiles along a side (int64): ``i * stride``, the last one shifted to end at the edge."""
    n = axis_count(l0_len, tile_l0, stride)
    return shift_inside(np.arange(n, dtype=np.int64) * int(stride), tile_l0, l0_len)


def shift_inside(l0_pos, tile_l0: int, l0_len: int) -> np.ndarray:
    """Tile starts moved so the tiles end within ``[0, l0_len)``: clipped to ``[0, max(0, l0_len - tile_l0)]``.

    Starts already inside are unchanged, so grids laid before edge tiles existed are read the same.
    """
    return np.clip(np.asarray(l0_pos, np.int64), 0, max(0, int(l0_len) - int(tile_l0)))
