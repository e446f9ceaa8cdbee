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


def group_pick(labels: np.ndarray, groups: np.ndarray, share: float, rng: np.random.Generator,
               at_least: int = 1) -> np.ndarray:
    """A random ``share`` of the tiles of every class, whole groups at a time, as a boolean mask.

    Each group belongs to the class most of its tiles have (the lowest label on a tie). Within each
    class (ascending), groups are taken in one ``rng.permutation`` order while that brings the picked
    tiles of the class closer to ``share`` of them, and at least ``at_least`` groups are taken, but
    never every group of a class that has two or more (a class with one group stays wholly unpicked).
    So the share is met as closely as the group sizes allow, and no group is split.

    Parameters
    ----------
    labels, groups : ndarray of int
        Per tile: its class and its group (any integers).
    share : float
        Share of each class's tiles wanted in the picked part (0 picks nothing).
    """
    labels, groups = np.asarray(labels).ravel(), np.asarray(groups).ravel()
    if labels.shape != groups.shape:
        raise ValueError(f"{labels.size} labels but {groups.size} group ids")
    picked = np.zeros(labels.size, bool)
    if share <= 0 or labels.size == 0:
        return picked
    ids, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse, minlength=ids.size)
    majority = np.array([np.bincount(labels[inverse == g]).argmax() for g in range(ids.size)])
    take = np.zeros(ids.size, bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(majority == c))
        if members.size < 2:
            continue
        want = share * sizes[members].sum()
        have = 0
        for n, g in enumerate(members[:-1]):
            if n >= at_least and abs(have + sizes[g] - want) >= abs(have - want):
                break
            take[g] = True
            have += sizes[g]
    picked[take[inverse]] = True
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
