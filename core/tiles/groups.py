"""Groups of patches that must stay on one side of a split: near-copies found in the pixels, or a ``groups.csv``.

Public patch sets are often made by augmenting a few originals: LC25000 rotated (by up to 25°, then cropped
and resized back) and flipped each original into many patches. Split at random, copies of one original
land in both training and validation, and the validation score says more about memory than about tissue.
`find_near_copies` groups such copies so that `core.tiles.splits.group_pick` can split whole groups.

How near-copies are found (all on a 96 px grey thumbnail, normalised to zero mean):

1. Each thumbnail's central disk is unrolled in log-polar coordinates (angle x log radius): a rotation
   becomes a circular shift along the angle axis, a rescaled crop a shift along the radius axis, a flip
   a reversal of the angle axis. The magnitude of its Fourier transform along the angle axis does not
   change with rotation or flip; comparing those over a few radius shifts gives every patch its
   `CANDIDATES` likeliest partners cheaply (all pairs, one matrix product per shift).
2. Each candidate pair is registered: the circular cross-correlation in log-polar coordinates gives the
   rotation, scale and flip that best map one onto the other.
3. The second patch is warped by that rotation, scale and flip, and the Pearson correlation of the two
   central regions' detail (the thumbnail less its blur, so that nuclei rather than large pale spaces
   must line up) is the pair's similarity; pairs whose log-polar correlation is below `PREFILTER`, or
   whose central mean colours differ by more than `COLOUR_LIMIT`, get -1. Pairs at or above `THRESHOLD`
   are joined (union-find), so a group also takes in copies that only match through a third patch.

`THRESHOLD` and `COLOUR_LIMIT` were set by eye on ``../shared/data/patches/lc25000-lung`` (900 patches,
12,000 candidate pairs): the detail correlations are bimodal (around 0.1 and 0.6); of 8 pairs looked at
between 0.34 and 0.42, 7 were copies, between 0.26 and 0.34, 2; above 0.42 all were. The colour limit
parts the one lung_aca / lung_scc pair and two chained lung_n pairs that passed; 576 groups result
(`tests/core/tiles/test_groups.py` holds the range).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from core.errors import Cancelled, DatasetError

#: Side of the grey thumbnail everything is computed on.
THUMB_PX = 96
#: Log-polar samples: angles around the centre, and radii (the inner ones, a few pixels wide, are dropped).
ANGLES, RADII, INNER = 64, 48, 16
#: Radius shifts tried (each one a rescale of about 8 %: up to 0.72 x to 1.38 x).
RADIUS_SHIFTS = 4
#: Partners checked per patch after the cheap first look.
CANDIDATES = 10
#: Pairs whose log-polar correlation (step 2) is below this are not checked further.
PREFILTER = 0.45
#: Degrees either side of the registered angle tried in step 3.
ANGLE_NUDGE = 2.8
#: Copies of one original share its stain: pairs whose central regions' mean colours differ by more than
#: this (0-255, in any of R, G, B) are not joined, however well their detail lines up.
COLOUR_LIMIT = 25.0
#: Blur (in thumbnail pixels) removed before step 3, so that nuclei, not large pale spaces, must line up.
DETAIL_SIGMA = 2.5
#: Pearson correlation of the registered central regions' detail at which two patches are near-copies.
THRESHOLD = 0.32


def grey_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A float32 ``THUMB_PX`` square grey thumbnail of an RGB image, zero mean."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
    return small - small.mean()


def _log_polar(thumbs: np.ndarray) -> np.ndarray:
    """``(N, ANGLES, RADII - INNER)`` log-polar samples of each thumbnail's central disk, zero mean."""
    centre = (THUMB_PX / 2, THUMB_PX / 2)
    flags = cv2.WARP_POLAR_LOG + cv2.INTER_LINEAR
    polar = np.stack([cv2.warpPolar(t, (RADII, ANGLES), centre, THUMB_PX / 2, flags) for t in thumbs])[:, :, INNER:]
    return polar - polar.mean(axis=(1, 2), keepdims=True)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows - rows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norm > 0, norm, 1)


def _candidates(polar: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """``(N, k)`` likeliest partners of each patch by rotation- and flip-free spectra (step 1).

    Rows are scored ``block`` at a time, so memory grows with N x block, not N x N.
    """
    n, _, radii = polar.shape
    spectra = np.abs(np.fft.rfft(polar, axis=1))[:, 1:9, :]
    width = radii - 2 * RADIUS_SHIFTS
    a = _unit(spectra[:, :, RADIUS_SHIFTS:RADIUS_SHIFTS + width].reshape(n, -1)).astype(np.float32)
    shifted = [_unit(spectra[:, :, RADIUS_SHIFTS + d:RADIUS_SHIFTS + d + width].reshape(n, -1)).astype(np.float32)
               for d in range(-RADIUS_SHIFTS, RADIUS_SHIFTS + 1)]
    k = min(k, n - 1)
    out = np.zeros((n, max(k, 0)), np.int64)
    if k <= 0:
        return out
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        best = np.max([a[rows] @ b.T for b in shifted], axis=0)
        best[np.arange(best.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf
        out[rows] = np.argpartition(-best, k - 1, axis=1)[:, :k]
    return out


def _register(polar: np.ndarray, pairs_a: np.ndarray, pairs_b: np.ndarray):
    """Best (angle shift, radius shift, mirror) mapping patch b onto patch a, and its normalised log-polar
    correlation, per pair (step 2)."""
    radii = polar.shape[2]
    width = radii - 2 * RADIUS_SHIFTS
    inner = polar[:, :, RADIUS_SHIFTS:RADIUS_SHIFTS + width]
    fa = np.fft.rfft(inner, axis=1).astype(np.complex64)[pairs_a]
    norm_a = np.linalg.norm(inner.reshape(len(polar), -1), axis=1)[pairs_a]
    best = np.full(pairs_a.size, -np.inf)
    how = np.zeros((pairs_a.size, 3), np.int64)
    for mirror in (0, 1):
        source = np.roll(polar[:, ::-1], 1, axis=1) if mirror else polar  # angle a -> -a: a mirror
        for d in range(-RADIUS_SHIFTS, RADIUS_SHIFTS + 1):
            window = source[:, :, RADIUS_SHIFTS + d:RADIUS_SHIFTS + d + width]
            fb = np.fft.rfft(window, axis=1).astype(np.complex64)
            norm_b = np.linalg.norm(window.reshape(len(polar), -1), axis=1)[pairs_b]
            corr = np.fft.irfft(np.einsum("pkr,pkr->pk", fa, np.conj(fb)[pairs_b]), n=ANGLES, axis=1)
            shift = corr.argmax(axis=1)
            value = corr[np.arange(pairs_a.size), shift] / np.maximum(norm_a * norm_b, 1e-9)
            better = value > best
            best[better] = value[better]
            how[better] = np.stack([shift, np.full(shift.size, d), np.full(shift.size, mirror)], axis=1)[better]
    return how, best


def _verified(thumbs: np.ndarray, a: int, b: int, how) -> float:
    """Pearson correlation of a's central region and b's registered onto it (step 3)."""
    shift, d, mirror = (int(v) for v in how)
    centre = THUMB_PX / 2
    angle = -360.0 * shift / ANGLES
    scale = float(np.exp(-d * np.log(THUMB_PX / 2) / RADII))
    c = THUMB_PX // 4
    target = thumbs[a][c:-c, c:-c].ravel()
    best = -1.0
    for nudge in (-ANGLE_NUDGE, 0.0, ANGLE_NUDGE):  # the log-polar angle step is 5.6 degrees: refine it
        m = cv2.getRotationMatrix2D((centre, centre), angle + nudge, scale)
        if mirror:  # first y -> 2 centre - y (the mirror of the log-polar angle axis), then the rotation
            m = np.concatenate([m[:, :1], -m[:, 1:2], m[:, 2:] + 2 * centre * m[:, 1:2]], axis=1)
        warped = cv2.warpAffine(thumbs[b], m, (THUMB_PX, THUMB_PX), flags=cv2.INTER_LINEAR)
        best = max(best, _pearson(target, warped[c:-c, c:-c].ravel()))
    return best


def _centre_colour(rgb: np.ndarray) -> np.ndarray:
    """Mean R, G, B of the central half of an image (the part every rotated crop of one original keeps)."""
    h, w = rgb.shape[:2]
    return rgb[h // 4:h - h // 4, w // 4:w - w // 4].reshape(-1, rgb.shape[2])[:, :3].mean(axis=0)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x @ x) * (y @ y)))
    return float(x @ y) / denom if denom > 0 else -1.0


def near_copy_pairs(images: Sequence[np.ndarray], candidates: int = CANDIDATES,
                    should_stop: Callable[[], bool] | None = None) -> list[tuple[int, int, float]]:
    """Every checked pair ``(i, j, similarity)`` with ``i < j`` (similarity: see the module docstring)."""
    if len(images) < 2:
        return []
    thumbs = np.stack([grey_thumbnail(img) for img in images])
    colours = np.stack([_centre_colour(img) for img in images])
    polar = _log_polar(thumbs)
    partners = _candidates(polar, candidates)
    a = np.repeat(np.arange(len(images)), partners.shape[1])
    b = partners.ravel()
    keep = a != b
    pairs = {(int(min(i, j)), int(max(i, j))) for i, j in zip(a[keep], b[keep])}
    pa, pb = (np.array(side, np.int64) for side in zip(*sorted(pairs)))
    parts = [_register(polar, pa[at:at + 4096], pb[at:at + 4096]) for at in range(0, pa.size, 4096)]
    how, rough = np.concatenate([h for h, _ in parts]), np.concatenate([r for _, r in parts])  # bounded memory
    detail = np.stack([t - cv2.GaussianBlur(t, (0, 0), DETAIL_SIGMA) for t in thumbs])
    out = []
    for n, (i, j) in enumerate(zip(pa.tolist(), pb.tolist())):
        if should_stop is not None and n % 256 == 0 and should_stop():
            raise Cancelled("finding near-copies cancelled")
        alike = rough[n] >= PREFILTER and np.abs(colours[i] - colours[j]).max() <= COLOUR_LIMIT
        out.append((i, j, _verified(detail, i, j, how[n]) if alike else -1.0))
    return out


def union_groups(n: int, pairs) -> np.ndarray:
    """Group ids ``0..G-1`` (numbered by first member) of ``n`` items joined by the ``(i, j)`` pairs."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = [root(i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], np.int64)


def find_near_copies(images: Sequence[np.ndarray], threshold: float = THRESHOLD,
                     should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """One group id per image: near-copies (rotated, flipped, rescaled crops of one original) share one.

    Parameters
    ----------
    images : sequence of ndarray
        uint8 RGB images, any size (each is reduced to a `THUMB_PX` grey thumbnail).
    threshold : float
        Similarity at which two images are joined (`THRESHOLD` by default).

    Returns
    -------
    ndarray of int64
        Group ids ``0..G-1``, numbered in order of first appearance.
    """
    pairs = [(i, j) for i, j, s in near_copy_pairs(images, should_stop=should_stop) if s >= threshold]
    return union_groups(len(images), pairs)


def read_groups_csv(path, files: Sequence[str]) -> np.ndarray:
    """Group ids ``0..G-1`` of ``files`` (paths relative to the patch folder) from a ``file,group`` CSV.

    A header row ``file,group`` is optional. Every file must be listed once; the group is any text.

    Raises
    ------
    DatasetError
        Unreadable file, a row without two fields, a file listed twice or not among the patches, a
        patch not listed.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: unreadable groups file ({err})") from err
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "group"]:
        rows = rows[1:]
    known = {f.replace("\\", "/"): n for n, f in enumerate(files)}
    group_of: dict[int, str] = {}
    for line, row in enumerate(rows, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DatasetError(f"{path}: row {line} must be 'file,group', found {','.join(row)[:80]!r}")
        name = row[0].strip().replace("\\", "/")
        if name not in known:
            raise DatasetError(f"{path}: row {line} names {name[:200]!r}, which is not a patch of this folder "
                               "(give the path relative to the folder, e.g. lung_aca/lungaca1.jpeg)")
        if known[name] in group_of:
            raise DatasetError(f"{path}: {name} is listed twice")
        group_of[known[name]] = row[1].strip()
    missing = [f for f, n in known.items() if n not in group_of]
    if missing:
        raise DatasetError(f"{path}: {len(missing)} patch(es) have no group, e.g. {missing[0]}; list every patch")
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(group_of[n], len(ids)) for n in range(len(files))], np.int64)
