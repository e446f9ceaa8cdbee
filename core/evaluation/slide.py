"""The comparison of one open slide: its grid's tiles against the marks on screen, with the truth kept.

The window compares again after every mark edit and threshold change; the tiles' truth only depends on the
grid's geometry, the marks and the "fully annotated" setting (`truth_key`), so it is reused while those hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.evaluation.compare import SlideComparison, compare, truth_for_grid
from core.inference.predict import ProbabilityGrid


@dataclass
class Evaluation:
    """One slide's comparison and the truth it used (reused while ``key`` holds)."""

    key: tuple
    truth: np.ndarray
    comparison: SlideComparison


def truth_key(grid: ProbabilityGrid, store, fully_annotated: bool) -> tuple:
    """What the tiles' truth depends on: the grid's geometry, the marks' store and revision, the setting."""
    geometry = (grid.shape, tuple(grid.origin), grid.stride, grid.tile_l0, tuple(grid.slide_size))
    return (geometry, bool(fully_annotated), id(store), store.revision)


def evaluate(grid: ProbabilityGrid, annotations, fully_annotated: bool, threshold: float, name: str, key: tuple,
             truth: np.ndarray | None = None) -> Evaluation:
    """Compare a grid with marks at a threshold.

    Parameters
    ----------
    grid : ProbabilityGrid
    annotations : list of Annotation
        The slide's marks, level-0 pixels.
    fully_annotated : bool
        Every tumour is marked: unmarked tissue is non-tumour.
    threshold : float
        Tiles at or above it are called tumour.
    name : str
        The slide's name in the comparison.
    key : tuple
        `truth_key` of the inputs, kept with the result.
    truth : ndarray, optional
        The tiles' truth computed before for ``key``; computed when None.

    Returns
    -------
    Evaluation
    """
    if truth is None:
        truth = truth_for_grid(grid, annotations, fully_annotated=fully_annotated)
    return Evaluation(key, truth, compare(grid, truth, threshold, name=name))


__all__ = ["Evaluation", "evaluate", "truth_key"]
