"""A slide held in memory: the test double, and the base of the plain-image reader."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from core.slide.base import SlideReader, composite_on_white, paste_clipped, white_canvas

#: Stop adding pyramid levels once the longest side is this small.
_SMALLEST_LEVEL = 512


def build_pyramid(l0_rgb: np.ndarray) -> list[np.ndarray]:
    """Halve the image repeatedly (area averaging) until it is small."""
    levels = [l0_rgb]
    while max(levels[-1].shape[:2]) > _SMALLEST_LEVEL:
        prev = levels[-1]
        lv_h, lv_w = max(1, prev.shape[0] // 2), max(1, prev.shape[1] // 2)
        levels.append(cv2.resize(prev, (lv_w, lv_h), interpolation=cv2.INTER_AREA))
    return levels


class ArrayReader(SlideReader):
    """A slide whose pixels are a numpy array, with a pyramid computed at creation.

    Parameters
    ----------
    rgb : ndarray
        Level-0 pixels, (h, w, 3) uint8 (grey or RGBA are converted).
    mpp : (float, float), optional
        Micrometres per pixel (x, y); None when unknown.
    objective_power : float, optional
    vendor : str
    properties : mapping, optional
    associated : mapping of name to ndarray, optional
    path : path-like, optional
        The file the pixels came from, if any.
    """

    backend = "array"

    def __init__(
        self,
        rgb: np.ndarray,
        mpp: tuple[float, float] | None = None,
        objective_power: float | None = None,
        vendor: str = "array",
        properties: Mapping[str, str] | None = None,
        associated: Mapping[str, np.ndarray] | None = None,
        path: str | Path | None = None,
        icc_profile: bytes | None = None,
    ):
        super().__init__(path)
        self._levels = build_pyramid(as_rgb(rgb))
        # Sizes are kept apart from the pixels so that a closed reader still reports its shape.
        self._level_dimensions = tuple((lv.shape[1], lv.shape[0]) for lv in self._levels)
        l0_w, l0_h = self._level_dimensions[0]
        self._level_downsamples = tuple((l0_w / lv_w + l0_h / lv_h) / 2 for lv_w, lv_h in self._level_dimensions)
        self._mpp = mpp
        self._objective = objective_power
        self._vendor = vendor
        self._properties = dict(properties or {})
        self._associated = {k: as_rgb(v) for k, v in (associated or {}).items()}
        self._icc = icc_profile

    @property
    def associated_image_names(self):
        return tuple(self._associated)

    def associated_image(self, name):
        return self._associated[name]

    def _read_region_raw(self, l0_x, l0_y, level, lv_w, lv_h):
        ds = self.level_downsamples[level]
        canvas = white_canvas(lv_w, lv_h)
        paste_clipped(canvas, self._levels[level], int(l0_x // ds), int(l0_y // ds))
        return canvas

    def _close(self):
        self._levels = []


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any 8-bit grey, RGB or RGBA array as contiguous (h, w, 3) uint8 RGB (RGBA blended onto white)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = composite_on_white(image)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image)
