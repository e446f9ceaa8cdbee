"""Label masks back to marks: read a label image, map its values to classes, and vectorise.

Frames: the mask at downsample ``d`` has pixel ``j`` covering level-0 ``[j * d, (j + 1) * d)``,
as in :mod:`core.annotations.masks`; the marks are in level-0 pixels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from core.annotations.formats import DEFAULT_COLOR
from core.annotations.masks import vectorise
from core.annotations.model import DEFAULT_CLASSES, Annotation, AnnotationClass
from core.annotations.text import is_clean
from core.errors import BiopsiaError

#: Specks smaller than this are dropped by default, in µm² (about a small cell) when the slide has a µm/px ...
DEFAULT_MIN_AREA_UM2 = 100.0
#: ... else in square level-0 pixels (the same area at 0.5 µm/px).
DEFAULT_MIN_AREA_PX = 400.0
#: Largest label value a mask can hold (16-bit masks).
MAX_LABEL = 65535
#: Coarsest downsample accepted (a mask coarser than this is not a useful outline).
MAX_DOWNSAMPLE = 4096.0
#: How far the size ratio may stray from a whole factor and still count as that factor.
NEAR_WHOLE = 0.02


class MaskError(BiopsiaError):
    """A label mask, its value map or its downsample is unusable; the message names the file."""


@dataclass
class MaskMarks:
    """Marks found in a label mask, with what was decided on the way."""

    annotations: list[Annotation]
    classes: list[AnnotationClass]
    downsample: float
    min_area_l0: float
    #: Level-0 area per class name, in square pixels.
    areas_l0: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_value_map(text: str) -> dict[int, str]:
    """``"0=Tumour,1=Tumour,2=Benign"`` -> ``{0: 'Tumour', 1: 'Tumour', 2: 'Benign'}``.

    Raises
    ------
    MaskError
        For an entry without ``=``, a value that is not a whole number from 0 to 65535, an empty
        or unprintable class name, or a value given twice.
    """
    out: dict[int, str] = {}
    entries = [e.strip() for e in (text or "").split(",")]
    if not any(entries):
        raise MaskError("--map: empty (expected VALUE=CLASS pairs such as 1=Tumour,2=Benign)")
    for entry in entries:
        if not entry:
            continue
        value_text, eq, name = entry.partition("=")
        value_text, name = value_text.strip(), name.strip()
        if not eq or not name:
            raise MaskError(f"--map: {entry!r} is not VALUE=CLASS (for example 1=Tumour,2=Benign)")
        if not re.fullmatch(r"[0-9]+", value_text):
            raise MaskError(f"--map: {entry!r}: the value must be a whole number from 0 to {MAX_LABEL}")
        value = int(value_text)
        if value > MAX_LABEL:
            raise MaskError(f"--map: {entry!r}: value {value} is out of range (a mask holds 0 to {MAX_LABEL})")
        if not is_clean(name) or "=" in name:
            raise MaskError(f"--map: {entry!r}: the class name holds characters an annotation file cannot keep")
        if value in out:
            raise MaskError(f"--map: value {value} is given twice")
        out[value] = name
    return out


def classes_for(names) -> list[AnnotationClass]:
    """A class per name: the project's default classes by name (any case), new ones in the default colour."""
    known = {c.name.lower(): c for c in DEFAULT_CLASSES}
    out: dict[str, AnnotationClass] = {}
    for name in names:
        cls = known.get(name.lower(), AnnotationClass(name, DEFAULT_COLOR))
        out.setdefault(cls.name, cls)
    return list(out.values())


def read_label_mask(path) -> np.ndarray:
    """A single-channel 8- or 16-bit label image (PNG, TIFF, ...) as a 2-D array.

    Grey images stored with three or four equal colour channels are accepted; colour masks are not.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"{path}: no such mask file")
    data = np.fromfile(path, np.uint8)  # np.fromfile copes with any file name, cv2.imread does not
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MaskError(f"{path}: not an image Biopsia can read (a label mask is a PNG or TIFF)")
    if image.ndim == 3:
        colour = image[:, :, :3] if image.shape[2] >= 3 else image
        if not all(np.array_equal(colour[:, :, 0], colour[:, :, c]) for c in range(1, colour.shape[2])):
            raise MaskError(f"{path}: a colour image with {image.shape[2]} channels; a label mask has one "
                            "channel of whole-number labels (save it as greyscale)")
        image = colour[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16):
        raise MaskError(f"{path}: {image.dtype} pixels; a label mask holds 8- or 16-bit whole numbers")
    return np.ascontiguousarray(image)


def binarise(mask: np.ndarray, threshold: float, path="mask") -> np.ndarray:
    """A grey or blurred mask as labels: 1 where a pixel is above ``threshold``, else 0.

    Many public masks are saved as grey levels with soft edges (blurred, or JPEG-compressed), not as
    whole-number labels: camelyon-mini's, for one, say "above 127 is tumour". Map the result with
    ``{1: "Tumour"}`` (and ``0`` for the pixels at or below the threshold, if they are a class too).

    Parameters
    ----------
    mask : numpy.ndarray
        2-D 8- or 16-bit image (see :func:`read_label_mask`).
    threshold : float
        Grey level; pixels strictly above it become 1.
    path : path-like
        The mask's file, for messages.

    Returns
    -------
    numpy.ndarray
        uint8 array of 0 and 1, the mask's shape.

    Raises
    ------
    MaskError
        When the threshold is not a finite number from 0 up to one below the bit depth's largest
        value (no pixel could be above it).
    """
    if not (isinstance(threshold, (int, float, np.integer, np.floating)) and math.isfinite(threshold)):
        raise MaskError(f"{path}: threshold {threshold!r} is not a number")
    top = int(np.iinfo(mask.dtype).max) if mask.dtype.kind in "ui" else math.inf
    if threshold < 0:
        raise MaskError(f"{path}: threshold {threshold:g} is negative: every pixel would be above it; give a "
                        "grey level from 0, such as half of the mask's white (127 for an 8-bit mask)")
    if threshold >= top:
        raise MaskError(f"{path}: threshold {threshold:g}: no pixel of an {mask.dtype.itemsize * 8}-bit mask "
                        f"(0 to {top}) can be above it; give a grey level from 0 to {top - 1}")
    return (mask > threshold).astype(np.uint8)


def _fits(l0_size: int, lv_size: int, downsample: float) -> bool:
    """Whether ``lv_size`` mask pixels cover ``l0_size`` level-0 pixels at ``downsample`` (rounded either way)."""
    exact = l0_size / downsample
    return math.floor(exact) - 1 <= lv_size <= math.ceil(exact) + 1 and abs(lv_size - exact) <= max(1.0, 0.001 * exact)


def infer_downsample(path, l0_w: int, l0_h: int, lv_w: int, lv_h: int) -> float:
    """The whole factor by which the slide was shrunk to the mask's size, or a clear refusal."""
    ratio_x, ratio_y = l0_w / lv_w, l0_h / lv_h
    factor = round((ratio_x + ratio_y) / 2)
    if factor >= 1 and abs(ratio_x - factor) <= NEAR_WHOLE * factor and abs(ratio_y - factor) <= NEAR_WHOLE * factor \
            and _fits(l0_w, lv_w, factor) and _fits(l0_h, lv_h, factor):
        return float(factor)
    raise MaskError(f"{path}: the mask is {lv_w} x {lv_h} px and the slide {l0_w} x {l0_h} px: not the slide "
                    f"shrunk by a whole factor (x {ratio_x:.3g}, y {ratio_y:.3g}); give --downsample, or a mask "
                    "of the slide's size")


def min_area_l0_for(mpp: tuple[float, float] | None, min_area_um2: float | None = None,
                    min_area_px: float | None = None) -> float:
    """The smallest mark kept, in square level-0 pixels, from µm² (needs the slide's µm/px) or pixels."""
    if min_area_px is not None:
        return float(min_area_px)
    if min_area_um2 is not None:
        if not mpp:
            raise MaskError("--min-area is in µm² but the slide has no µm/px; give --min-area-px instead")
        return float(min_area_um2) / (mpp[0] * mpp[1])
    return DEFAULT_MIN_AREA_UM2 / (mpp[0] * mpp[1]) if mpp else DEFAULT_MIN_AREA_PX


def marks_from_mask(mask: np.ndarray, value_map: Mapping[int, str], l0_w: int, l0_h: int,
                    downsample: float | None = None, min_area_l0: float = DEFAULT_MIN_AREA_PX,
                    path="mask", threshold: float | None = None) -> MaskMarks:
    """Marks, one class per mapped value, from a label mask of a slide.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D label image (see :func:`read_label_mask`).
    value_map : mapping of int to str
        Class name per label value; several values may share a class (their regions merge).
        Values not in the map are ignored.
    l0_w, l0_h : int
        The slide's level-0 size.
    downsample : float, optional
        Level-0 pixels per mask pixel; inferred from the sizes when not given.
    min_area_l0 : float
        Regions smaller than this many square level-0 pixels are dropped.
    path : path-like
        The mask's file, for messages.
    threshold : float, optional
        For a grey mask: pixels above it are value 1, the others value 0 (:func:`binarise`), so
        ``value_map`` may only name 0 and 1.

    Returns
    -------
    MaskMarks
        Marks in level-0 pixels (holes kept), their classes, the downsample used, and warnings
        for mapped values that never occur and unmapped non-zero values that do.

    Raises
    ------
    MaskError
        When the mask's size does not fit the slide at ``downsample``, the downsample is not
        positive or absurd, a mapped value cannot occur in the mask's bit depth, or (with a
        threshold) the threshold is unusable or the map names a value other than 0 and 1.
    """
    if threshold is not None:
        other = sorted(v for v in value_map if v not in (0, 1))
        if other:
            raise MaskError(f"{path}: with a threshold the mask holds 1 above it and 0 at or below it, but --map "
                            f"names value {other[0]}; map 1 (and 0 if you want it), e.g. 1=Tumour")
        mask = binarise(mask, threshold, path)
    lv_h, lv_w = mask.shape
    if downsample is None:
        downsample = infer_downsample(path, l0_w, l0_h, lv_w, lv_h)
    elif not (math.isfinite(downsample) and 0 < downsample <= MAX_DOWNSAMPLE):
        raise MaskError(f"{path}: downsample {downsample:g} is not usable (give a number above 0, at most "
                        f"{MAX_DOWNSAMPLE:g})")
    elif not (_fits(l0_w, lv_w, downsample) and _fits(l0_h, lv_h, downsample)):
        want = f"{math.ceil(l0_w / downsample)} x {math.ceil(l0_h / downsample)}"
        raise MaskError(f"{path}: the mask is {lv_w} x {lv_h} px but the slide ({l0_w} x {l0_h} px) at downsample "
                        f"{downsample:g} is {want} px; check --downsample and that the mask belongs to this slide")
    top = np.iinfo(mask.dtype).max
    too_big = sorted(v for v in value_map if v > top)
    if too_big:
        raise MaskError(f"{path}: --map value {too_big[0]} cannot occur in an {mask.dtype.itemsize * 8}-bit mask "
                        f"(values 0 to {top})")
    counts = np.bincount(mask.ravel(), minlength=top + 1 if mask.dtype == np.uint8 else 0)
    present = {int(v) for v in np.flatnonzero(counts)}
    warnings = [f"{path}: --map value {v} ({value_map[v]}) does not occur in the mask"
                for v in value_map if v not in present]
    unmapped = sorted(v for v in present if v and v not in value_map)
    if unmapped:
        shown = ", ".join(f"{v} ({counts[v]} px)" for v in unmapped[:8]) + (" ..." if len(unmapped) > 8 else "")
        warnings.append(f"{path}: values not in --map were left out: {shown}")
    classes = classes_for(value_map.values())
    canonical = {name: classes_for([name])[0].name for name in value_map.values()}
    annotations: list[Annotation] = []
    areas: dict[str, float] = {}
    for cls in classes:
        values = [v for v, name in value_map.items() if canonical[name] == cls.name and v in present]
        if not values:
            continue
        binary = np.isin(mask, values).astype(np.uint8)
        regions = vectorise(binary, downsample=downsample, min_area_l0=min_area_l0)
        annotations.extend(Annotation(region, cls.name) for region in regions)
        areas[cls.name] = sum(r.area for r in regions)
    return MaskMarks(annotations, classes, float(downsample), float(min_area_l0), areas, warnings)
