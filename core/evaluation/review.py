"""Where a doctor's look is worth most next: regions ranked by uncertainty, disagreement with the marks and size.

A tile is worth looking at when the network is unsure of it (its probability near the threshold) or
when the network and the doctors' marks disagree about it. Tiles worth a look that touch (8-connected)
make one region; a region's score is the sum of its tiles' worth, so larger regions of doubt come first.
Regions the doctor has reviewed (their centres inside a reviewed area) drop off the list.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely import contains_xy
from shapely.ops import unary_union

from core.evaluation.compare import truth_for_grid

#: Probabilities within this distance of the threshold count as uncertain (fully so at the threshold).
UNCERTAIN_BAND = 0.15


@dataclass(frozen=True)
class ReviewItem:
    """One region to look at: where it is (level-0), how much it is worth and why."""

    bbox_l0: tuple[float, float, float, float]  # x, y, w, h
    centre_l0: tuple[float, float]
    score: float
    tiles: int
    uncertain_tiles: int
    disagreeing_tiles: int

    @property
    def reason(self) -> str:
        parts = []
        if self.disagreeing_tiles:
            n = self.disagreeing_tiles
            parts.append(f"{n} tile{'s' if n != 1 else ''} disagree{'s' if n == 1 else ''} with the marks")
        if self.uncertain_tiles:
            n = self.uncertain_tiles
            parts.append(f"{n} tile{'s' if n != 1 else ''} near the threshold")
        return "; ".join(parts) or "worth a look"


def tile_worth(grid, threshold: float, marks=(), band: float = UNCERTAIN_BAND) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grid cell: its worth (uncertainty + disagreement, 0 where not predicted), and the two parts.

    Disagreement counts only where the marks say something: a Tumour mark the network misses, or a Benign
    mark (a rejected draft, say) where the network calls tumour. Unmarked tissue of a new case is unknown,
    not non-tumour.
    """
    probs = np.asarray(grid.probs, np.float32)
    done = np.isfinite(probs)
    p = np.where(done, probs, threshold + 10)
    uncertain = np.clip(1 - np.abs(p - threshold) / band, 0, 1) * done
    truth = truth_for_grid(grid, list(marks), fully_annotated=False) if marks else np.full(probs.shape, -1)
    called = done & (p >= threshold)
    disagree = (done & (((truth == 1) & ~called) | ((truth == 0) & called))).astype(np.float32)
    return uncertain + disagree, uncertain, disagree


def review_queue(grid, threshold: float, marks=(), reviewed=(), band: float = UNCERTAIN_BAND,
                 min_score: float = 0.5) -> list[ReviewItem]:
    """The regions worth a look, best first.

    Parameters
    ----------
    grid : ProbabilityGrid
    threshold : float
        The threshold calls are made at (the model's).
    marks : sequence of Annotation
        The doctors' marks (accepted drafts and rejected ones included).
    reviewed : sequence of shapely geometries
        Level-0 areas the doctor has looked at; regions centred in them are left out.
    band : float
        How near the threshold counts as uncertain.
    min_score : float
        Regions worth less than this are left out.
    """
    worth, uncertain, disagree = tile_worth(grid, threshold, marks, band)
    n, labels = cv2.connectedComponents((worth > 0).astype(np.uint8), connectivity=8)
    seen = unary_union(list(reviewed)) if reviewed else None
    offset = (grid.tile_l0 - grid.stride) / 2
    items = []
    for k in range(1, n):
        rows, cols = np.nonzero(labels == k)
        score = float(worth[rows, cols].sum())
        if score < min_score:
            continue
        x0 = grid.origin[0] + offset + cols.min() * grid.stride
        y0 = grid.origin[1] + offset + rows.min() * grid.stride
        w, h = (cols.max() - cols.min() + 1) * grid.stride, (rows.max() - rows.min() + 1) * grid.stride
        weights = worth[rows, cols]
        cx = grid.origin[0] + offset + (float(np.average(cols, weights=weights)) + 0.5) * grid.stride
        cy = grid.origin[1] + offset + (float(np.average(rows, weights=weights)) + 0.5) * grid.stride
        if seen is not None and contains_xy(seen, cx, cy):
            continue
        items.append(ReviewItem((float(x0), float(y0), float(w), float(h)), (cx, cy), round(score, 3), int(rows.size),
                                int(np.count_nonzero(uncertain[rows, cols] > 0)),
                                int(np.count_nonzero(disagree[rows, cols] > 0))))
    items.sort(key=lambda item: -item.score)
    return items
