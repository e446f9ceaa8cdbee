"""How labelled tiles are split: the classes and splits a dataset has, stratified and by-slide splitting.

The same seed on the same tiles always gives the same split.
"""

from __future__ import annotations

import numpy as np

#: Class names of a tile dataset, indexed by label (`core.tiles.labels.NON_TUMOUR_LABEL`, `TUMOUR_LABEL`).
CLASSES = ["Non-tumour", "Tumour"]
#: Split names, indexed by split code.
SPLITS = ("train", "test")


def split_code(split: str) -> int:
    """The code (index into `SPLITS`) of a split name.

    Raises
    ------
    ValueError
        When ``split`` is not one of `SPLITS`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def stratified_pick(labels: np.ndarray, share: float, rng: np.random.Generator, at_least: int = 0) -> np.ndarray:
    """A random ``share`` of the tiles of every class (at least ``at_least`` of each), as a boolean mask.

    Classes are drawn in ascending label order, each by one ``rng.permutation``.
    """
    labels = np.asarray(labels)
    picked = np.zeros(labels.size, bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        picked[members[:max(at_least, round(share * members.size))]] = True
    return picked


def pick_test_slides(sizes: list[int], ratio: float, rng: np.random.Generator) -> set[int]:
    """Slides (in a seeded order) go to test until train keeps about ``ratio`` of the tiles.

    Parameters
    ----------
    sizes : list of int
        Labelled tiles per slide.
    ratio : float
        Share of the tiles wanted in train.
    rng : numpy.random.Generator

    Returns
    -------
    set of int
        Indices of the test slides. With two or more slides and ``ratio < 1`` both splits get at least one.
    """
    total = sum(sizes)
    if ratio >= 1 or len(sizes) < 2 or total == 0:
        return set()
    order = rng.permutation(len(sizes))
    test, in_test = set(), 0
    want_test = (1 - ratio) * total
    for i in order:
        if len(test) == len(sizes) - 1:
            break
        if not test or abs(in_test + sizes[i] - want_test) < abs(in_test - want_test):
            test.add(int(i))
            in_test += sizes[i]
    return test
