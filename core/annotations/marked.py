"""Pen-marked images: a doctor outlines tumour with a coloured pen on an exported copy of the slide;
the outlines are found by comparing with the original, filled, and turned into level-0 annotations.

Steps (:func:`find_marked_regions`): colour difference between the two images, kept where the marked
copy is strongly coloured in a pen hue (not H&E pink or purple) or near black; JPEG noise removed
(opening, small pieces dropped); gaps in the pen line closed (closing with a kernel scaled to the
image); enclosed outlines filled; small regions dropped. :func:`import_marked_arrays` vectorises the
result, moves the outline to the middle of the pen line and scales it to level-0 pixels.

Limits: a red pen is not told apart from eosin (its hue is H&E's), so red ink on tissue is missed;
an outline that is not closed (gap wider than the closing kernel) yields nothing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from shapely import affinity

from core.annotations.formats import AnnotationSet
from core.annotations.geometry import clean
from core.annotations.masks import vectorise
from core.annotations.model import TUMOUR, Annotation, AnnotationClass
from core.errors import AnnotationFormatError
from core.slide import open_slide

#: Largest relative difference in aspect ratio between the original and the marked copy.
MAX_ASPECT_MISMATCH = 0.02
#: OpenCV hues (0-180) of H&E: eosin pinks and reds (wrapping past 0) and haematoxylin purples.
HE_HUES = ((125, 180), (0, 12))
#: Marked images larger than this on their long side are analysed downscaled (the pen line is wide).
MAX_ANALYSIS_SIDE = 4000


def pen_mask(original_rgb: np.ndarray, marked_rgb: np.ndarray, difference: int = 45, saturation: int = 90,
             black: int = 70) -> np.ndarray:
    """Boolean mask of pen ink: pixels changed by more than ``difference`` whose colour in the marked
    copy is a saturated non-H&E hue (saturation above ``saturation``) or near black (value below ``black``)."""
    a = cv2.GaussianBlur(original_rgb, (3, 3), 0).astype(np.int16)
    b = cv2.GaussianBlur(marked_rgb, (3, 3), 0).astype(np.int16)
    changed = np.abs(b - a).max(axis=2) > difference
    hsv = cv2.cvtColor(marked_rgb, cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    he = np.zeros(hue.shape, bool)
    for lo, hi in HE_HUES:
        he |= (hue >= lo) & (hue <= hi)
    coloured = (sat > saturation) & ~he
    dark = val < black
    return changed & (coloured | dark)


def find_marked_regions(original_rgb: np.ndarray, marked_rgb: np.ndarray, min_area_frac: float = 2e-4,
                        gap_frac: float = 0.008) -> tuple[np.ndarray, float]:
    """The filled pen outlines of a marked copy, and the pen line's width (pixels of the marked copy).

    Parameters
    ----------
    original_rgb, marked_rgb : numpy.ndarray
        (h, w, 3) uint8 RGB images of the same size.
    min_area_frac : float
        Regions smaller than this fraction of the image are dropped.
    gap_frac : float
        Gaps in the pen line up to this fraction of the image's long side are closed.

    Returns
    -------
    (mask, pen_width)
        uint8 mask (1 inside outlined regions, pen line included) and the estimated line width.
    """
    if original_rgb.shape != marked_rgb.shape:
        raise ValueError(f"images differ in size: {original_rgb.shape} and {marked_rgb.shape}")
    h, w = marked_rgb.shape[:2]
    ink = pen_mask(original_rgb, marked_rgb).astype(np.uint8)
    ink = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    ink = _drop_small(ink, max(4, int(2e-5 * h * w)))
    if not ink.any():
        return np.zeros((h, w), np.uint8), 0.0
    dist = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    pen_width = float(max(1.0, 4.0 * dist[ink > 0].mean()))  # a band of width w has mean distance w / 4
    gap = max(3, int(round(gap_frac * max(h, w))) | 1)
    closed = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap, gap)))
    filled = ndimage.binary_fill_holes(closed > 0).astype(np.uint8)
    # open strokes (writing, ticks) fill nothing: keep only what lies inside an outline
    inside = filled & ~closed.astype(bool)
    keep = _components_touching(filled, inside.astype(np.uint8))
    return _drop_small(keep, int(min_area_frac * h * w)), pen_width


def _drop_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    good = np.zeros(count, bool)
    good[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return good[labels].astype(np.uint8)


def _components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    good = np.zeros(count, bool)
    good[np.unique(labels[seeds > 0])] = True
    good[0] = False
    return good[labels].astype(np.uint8)


def import_marked_arrays(original_rgb: np.ndarray, marked_rgb: np.ndarray, l0_size: tuple[int, int],
                         class_name: str = TUMOUR.name, color: tuple[int, int, int] = TUMOUR.color,
                         source: str = "marked image", min_area_frac: float = 2e-4) -> AnnotationSet:
    """Annotations (level-0 pixels of a slide of ``l0_size``) from an original and its marked copy.

    Both arrays must have the same size (resize the original to the marked copy first). ``source``
    names the marked file in warnings.
    """
    l0_w, l0_h = l0_size
    h, w = marked_rgb.shape[:2]
    regions, pen_width = find_marked_regions(original_rgb, marked_rgb, min_area_frac=min_area_frac)
    cls = AnnotationClass(class_name, tuple(color))
    annotations = []
    for polygon in vectorise(regions, 1.0, min_area_l0=1.0):
        # the outline is the middle of the pen line; the filled region reaches its outer edge
        polygon = clean(polygon.buffer(-pen_width / 2, join_style="round").simplify(0.5))
        if polygon is None:
            continue
        polygon = clean(affinity.scale(polygon, l0_w / w, l0_h / h, origin=(0, 0)))
        if polygon is not None:
            annotations.append(Annotation(polygon, class_name, "imported from pen marks"))
    warnings = [] if annotations else [f"{source}: no pen marks found"]
    return AnnotationSet(annotations, [cls] if annotations else [], warnings)


def read_rgb(path) -> np.ndarray:
    """A PNG/JPEG/TIFF image as RGB (alpha dropped), or AnnotationFormatError naming the file."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read the image: {err.strerror or err}") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise AnnotationFormatError(f"{path}: not an image OpenCV can read (PNG, JPEG or TIFF expected)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def import_marked(original_path, marked_path, class_name: str = TUMOUR.name,
                  color: tuple[int, int, int] = TUMOUR.color, min_area_frac: float = 2e-4) -> AnnotationSet:
    """Annotations from a copy of a slide that a doctor marked with a pen.

    Parameters
    ----------
    original_path : path-like
        The slide (any format :func:`core.slide.open_slide` reads) or the unmarked image.
    marked_path : path-like
        The marked copy: a PNG/JPEG export of the whole slide, possibly downscaled.
    class_name, color
        Class given to the regions found.
    min_area_frac : float
        Regions smaller than this fraction of the marked image are ignored.

    Returns
    -------
    AnnotationSet
        Annotations in level-0 pixels of the original; empty, with the warning "no pen marks
        found", when there are none.

    Raises
    ------
    AnnotationFormatError
        When the marked image cannot be read, or its aspect ratio differs from the original's by
        more than 2 % (not a copy of that slide).
    SlideError
        When the original cannot be opened.
    """
    marked_path, original_path = Path(marked_path), Path(original_path)
    marked = read_rgb(marked_path)
    h, w = marked.shape[:2]
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(h, w))
    if scale < 1.0:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        marked = cv2.resize(marked, (w, h), interpolation=cv2.INTER_AREA)
    with open_slide(original_path) as reader:
        l0_w, l0_h = reader.dimensions
        ratio_l0, ratio_marked = l0_w / l0_h, w / h
        if abs(ratio_marked / ratio_l0 - 1) > MAX_ASPECT_MISMATCH:
            raise AnnotationFormatError(
                f"{marked_path}: its shape ({w} x {h}) does not match the slide {original_path} ({l0_w} x {l0_h}); "
                "is it a marked copy of that slide?")
        original = reader.get_thumbnail((w, h))
    if original.shape[:2] != (h, w):
        original = cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA)
    return import_marked_arrays(original, marked, (l0_w, l0_h), class_name, color, str(marked_path), min_area_frac)
