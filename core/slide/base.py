"""The one slide interface every backend implements.

Coordinates: ``l0_*`` are level-0 pixels, ``lv_*`` are pixels of the level read.
"""

from __future__ import annotations

import abc
import io
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from core.errors import SlideReadError

#: Largest region ``read_region`` reads at once (pixels): 8192 x 4096 RGB is 96 MB, and the
#: backends' own buffers (RGBA, premultiplied) about triple it. Views, tiles and thumbnails read far less.
MAX_REGION_PIXELS = 1 << 25
#: A thumbnail reads its level in one region when the level is at most this many pixels
#: (4096 x 4096), else block by block (``THUMBNAIL_BLOCK`` level pixels a side).
THUMBNAIL_ONE_READ_PIXELS = 1 << 24
THUMBNAIL_BLOCK = 2048
#: Level pixels a thumbnail decodes at most. A level larger than this (a slide without a
#: pyramid, or one whose size is not what it claims) is sampled: each cell of the thumbnail
#: (``_SAMPLE_CELL`` pixels a side) is drawn from a patch at its centre, of at most
#: ``_SAMPLE_PATCH`` level pixels a side and all patches together at most ``THUMBNAIL_SAMPLE_PIXELS``.
THUMBNAIL_BUDGET_PIXELS = 1 << 27
THUMBNAIL_SAMPLE_PIXELS = 1 << 24
_SAMPLE_CELL = 32
_SAMPLE_PATCH = 256
#: Side, in level pixels, of the blocks a region that failed to decode is read again in.
_DAMAGE_BLOCK = 256
#: Grey for the parts of a thumbnail whose data could not be decoded (the viewer hatches tiles).
DAMAGED_GREY = 200

#: Names of associated images, as OpenSlide spells them.
LABEL, MACRO, THUMBNAIL = "label", "macro", "thumbnail"
#: Associated images that may show a patient's name: hidden unless asked for.
PRIVATE_ASSOCIATED = frozenset({LABEL, MACRO})


@dataclass(frozen=True)
class SlideInfo:
    """Plain metadata of an open slide (what ``biopsia info`` prints)."""

    path: str
    backend: str
    vendor: str
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: tuple[float, float] | None
    objective_power: float | None
    associated_images: tuple[str, ...]
    has_icc_profile: bool
    properties: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["properties"] = dict(self.properties)
        return data


class SlideReader(abc.ABC):
    """A whole-slide image opened for reading.

    Subclasses implement the ``_read_region_raw`` primitive and the metadata
    properties; this base class adds colour management, thumbnails, level
    choice and the context-manager protocol. ``read_region`` is safe to call
    from several threads at once.
    """

    #: Short backend name: ``openslide``, ``tifffile``, ``image`` or ``array``.
    backend: str = "abstract"

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self._apply_icc = True
        self._icc_lock = threading.Lock()
        self._icc_transform = None
        self._icc_failed = False
        self._closed = False
        # Reads in progress: close() waits for them, since freeing a native handle mid-read crashes.
        self._usage = threading.Condition()
        self._active_reads = 0

    # -- metadata each backend sets in its __init__ ------------------------
    #: (width, height) of each level, level 0 first.
    _level_dimensions: tuple[tuple[int, int], ...] = ()
    #: Downsample factor of each level relative to level 0.
    _level_downsamples: tuple[float, ...] = ()
    _mpp: tuple[float, float] | None = None
    _objective: float | None = None
    _vendor: str = "unknown"
    _properties: Mapping[str, str] = {}
    _icc: bytes | None = None

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level, level 0 first."""
        return self._level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        return self._level_downsamples

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Micrometres per level-0 pixel (x, y), or None when the file does not say."""
        return self._mpp

    @property
    def objective_power(self) -> float | None:
        """Scanner objective magnification (e.g. 20 or 40), or None when unknown."""
        return self._objective

    @property
    def vendor(self) -> str:
        """Format or scanner vendor, e.g. ``aperio``, ``hamamatsu``, ``ome-tiff``, ``png``."""
        return self._vendor

    @property
    def properties(self) -> Mapping[str, str]:
        """Every metadata key/value pair the file carries."""
        return self._properties

    @property
    def associated_image_names(self) -> tuple[str, ...]:
        """Names of associated images (``label``, ``macro``, ``thumbnail``...)."""
        return ()

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image as an (h, w, 3) uint8 RGB array."""
        raise KeyError(name)

    @property
    def icc_profile(self) -> bytes | None:
        """The embedded ICC colour profile, if any."""
        return self._icc

    @abc.abstractmethod
    def _read_region_raw(self, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int) -> np.ndarray:
        """Read pixels as stored (no colour transform); outside the image is white."""

    def _close(self) -> None:
        """Release backend resources."""

    # -- derived API -----------------------------------------------------
    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def display_name(self) -> str:
        return self.path.name if self.path is not None else "(in memory)"

    @property
    def apply_icc(self) -> bool:
        """Whether ``read_region`` converts pixels from the embedded profile to sRGB."""
        return self._apply_icc and self.icc_profile is not None

    @apply_icc.setter
    def apply_icc(self, value: bool) -> None:
        self._apply_icc = bool(value)

    def read_region(self, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int) -> np.ndarray:
        """Read a region as an (lv_h, lv_w, 3) uint8 RGB array.

        Parameters
        ----------
        l0_x, l0_y : int
            Top-left corner in level-0 pixels (may lie outside the image).
        level : int
            Pyramid level to read from.
        lv_w, lv_h : int
            Size of the region in pixels of ``level``.

        Raises
        ------
        SlideReadError
            When the stored data for this region cannot be decoded.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} out of range 0..{self.level_count - 1}")
        if lv_w <= 0 or lv_h <= 0:
            raise ValueError(f"region size must be positive, got {lv_w}x{lv_h}")
        if lv_w * lv_h > MAX_REGION_PIXELS:
            raise SlideReadError(self.path, f"a region of {lv_w:,} x {lv_h:,} px is too large to read at once "
                                            f"(at most {MAX_REGION_PIXELS / 1e6:.0f} megapixels)",
                                 "read it in tiles, or from a coarser level")
        with self._usage:
            if self._closed:
                raise SlideReadError(self.path, "slide is closed")
            self._active_reads += 1
        try:
            rgb = self._read_region_raw(int(l0_x), int(l0_y), level, int(lv_w), int(lv_h))
        except MemoryError:
            raise SlideReadError(self.path, f"not enough memory to read the region at level {level} "
                                            f"({l0_x}, {l0_y}, {lv_w} x {lv_h})") from None
        finally:
            with self._usage:
                self._active_reads -= 1
                self._usage.notify_all()
        if self.apply_icc:
            rgb = self._to_srgb(rgb)
        return rgb

    def best_level_for_downsample(self, downsample: float) -> int:
        """The finest level whose downsample does not exceed ``downsample``."""
        return best_level_for_downsample(self.level_downsamples, downsample)

    def get_thumbnail(self, max_size: tuple[int, int] = (512, 512)) -> np.ndarray:
        """The whole slide fitted into ``max_size`` (width, height), aspect kept.

        Memory and work are bounded whatever size the slide claims (see ``read_downscaled``).

        Raises
        ------
        SlideReadError
            When no part of it can be decoded (damaged parts alone are drawn grey).
        """
        l0_w, l0_h = self.dimensions
        downsample = max(l0_w / max_size[0], l0_h / max_size[1], 1.0)
        out_w = max(1, round(l0_w / downsample))
        out_h = max(1, round(l0_h / downsample))
        return self.read_downscaled(out_w, out_h, downsample)

    def read_downscaled(self, out_w: int, out_h: int, downsample: float | None = None) -> np.ndarray:
        """The whole slide resized to ``out_w`` x ``out_h``, from the coarsest level at least as fine as ``downsample``.

        A level of up to ``THUMBNAIL_ONE_READ_PIXELS`` is read in one region, a
        larger one in bands of about ``THUMBNAIL_BLOCK`` squared pixels, and one
        larger than ``THUMBNAIL_BUDGET_PIXELS`` is sampled, so neither memory nor
        time follow the size a file claims. A region that cannot be decoded is
        read again in small blocks, and only the blocks that still fail are drawn
        ``DAMAGED_GREY``.

        Parameters
        ----------
        out_w, out_h : int
            Size of the result; at most ``MAX_REGION_PIXELS`` together.
        downsample : float, optional
            Level-0 pixels per result pixel used to choose the level; by default the larger of the two ratios.

        Returns
        -------
        ndarray
            (out_h, out_w, 3) uint8 RGB.

        Raises
        ------
        SlideReadError
            When no part of the slide could be decoded.
        """
        if out_w <= 0 or out_h <= 0 or out_w * out_h > MAX_REGION_PIXELS:
            raise ValueError(f"thumbnail size must be positive and at most {MAX_REGION_PIXELS} pixels, "
                             f"got {out_w}x{out_h}")
        l0_w, l0_h = self.dimensions
        if downsample is None:
            downsample = max(l0_w / out_w, l0_h / out_h, 1.0)
        level = self.best_level_for_downsample(downsample)
        lv_w, lv_h = self.level_dimensions[level]
        whole = (0, 0, out_w, out_h)
        if lv_w * lv_h <= THUMBNAIL_ONE_READ_PIXELS:
            cells = self._cells(level, whole, (out_w, out_h), out_w, out_h)
        elif lv_w * lv_h <= THUMBNAIL_BUDGET_PIXELS:
            cells = self._band_cells(level, whole, (out_w, out_h), THUMBNAIL_BLOCK * THUMBNAIL_BLOCK)
        else:
            cells = self._sample_cells(level, out_w, out_h)
        out = np.full((out_h, out_w, 3), DAMAGED_GREY, np.uint8)
        read_any, first_error = self._fill(level, out, cells, retry=True)
        if not read_any and first_error is not None:
            raise first_error
        return out

    def _cells(self, level: int, window, out_size, step_x: int, step_y: int) -> list:
        """(result rectangle, level region) pairs tiling a window of the result in steps of result pixels."""
        lv_w, lv_h = self.level_dimensions[level]
        fx, fy = lv_w / out_size[0], lv_h / out_size[1]  # level pixels per result pixel
        wx0, wy0, wx1, wy1 = window
        cells = []
        for oy0 in range(wy0, wy1, step_y):
            oy1 = min(oy0 + step_y, wy1)
            ly0 = min(int(oy0 * fy), lv_h - 1)
            ly1 = min(lv_h, max(ly0 + 1, math.ceil(oy1 * fy)))
            for ox0 in range(wx0, wx1, step_x):
                ox1 = min(ox0 + step_x, wx1)
                lx0 = min(int(ox0 * fx), lv_w - 1)
                lx1 = min(lv_w, max(lx0 + 1, math.ceil(ox1 * fx)))
                cells.append(((ox0, oy0, ox1, oy1), (lx0, ly0, lx1 - lx0, ly1 - ly0)))
        return cells

    def _band_cells(self, level: int, window, out_size, area: int) -> list:
        """Cells of about ``area`` level pixels, as wide as the level allows: a stripped file decodes each strip once."""
        lv_w, lv_h = self.level_dimensions[level]
        fx, fy = lv_w / out_size[0], lv_h / out_size[1]
        width = window[2] - window[0]
        step_x = width if width * fx <= area else max(1, int(area / fx))
        step_y = max(1, int(area / (step_x * fx) / fy))
        return self._cells(level, window, out_size, step_x, step_y)

    def _sample_cells(self, level: int, out_w: int, out_h: int) -> list:
        """Cells for a level too large to decode: one patch from the centre of each ``_SAMPLE_CELL`` square."""
        lv_w, lv_h = self.level_dimensions[level]
        fx, fy = lv_w / out_w, lv_h / out_h
        n_cells = -(-out_w // _SAMPLE_CELL) * -(-out_h // _SAMPLE_CELL)
        patch = max(1, min(_SAMPLE_PATCH, int(math.sqrt(THUMBNAIL_SAMPLE_PIXELS / n_cells))))
        cells = []
        for oy0 in range(0, out_h, _SAMPLE_CELL):
            oy1 = min(oy0 + _SAMPLE_CELL, out_h)
            for ox0 in range(0, out_w, _SAMPLE_CELL):
                ox1 = min(ox0 + _SAMPLE_CELL, out_w)
                pw = max(1, min(patch, int((ox1 - ox0) * fx)))
                ph = max(1, min(patch, int((oy1 - oy0) * fy)))
                cx, cy = (ox0 + ox1) / 2 * fx, (oy0 + oy1) / 2 * fy
                lx0 = min(max(0, int(cx - pw / 2)), lv_w - pw)
                ly0 = min(max(0, int(cy - ph / 2)), lv_h - ph)
                cells.append(((ox0, oy0, ox1, oy1), (lx0, ly0, pw, ph)))
        return cells

    def _fill(self, level: int, out: np.ndarray, cells, retry: bool):
        """Read each cell's level region and resize it into ``out``: (whether any was read, the first error).

        With ``retry``, a cell that cannot be decoded is read again in ``_DAMAGE_BLOCK`` squares.
        """
        ds = self.level_downsamples[level]
        out_size = (out.shape[1], out.shape[0])
        first_error, read_any = None, False
        for (ox0, oy0, ox1, oy1), (lx, ly, lw, lh) in cells:
            try:
                rgb = self.read_region(round(lx * ds), round(ly * ds), level, lw, lh)
            except SlideReadError as err:
                if self._closed:
                    raise
                if retry and lw * lh > _DAMAGE_BLOCK * _DAMAGE_BLOCK:
                    fx, fy = self.level_dimensions[level][0] / out_size[0], self.level_dimensions[level][1] / out_size[1]
                    small = self._cells(level, (ox0, oy0, ox1, oy1), out_size,
                                        max(1, int(_DAMAGE_BLOCK / fx)), max(1, int(_DAMAGE_BLOCK / fy)))
                    some, err_small = self._fill(level, out, small, retry=False)
                    read_any = read_any or some
                    first_error = first_error or err_small
                else:
                    first_error = first_error or err
                continue
            read_any = True
            if rgb.shape[:2] != (oy1 - oy0, ox1 - ox0):
                rgb = cv2.resize(rgb, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_AREA)
            out[oy0:oy1, ox0:ox1] = rgb
        return read_any, first_error

    def info(self) -> SlideInfo:
        """Plain metadata for display and ``biopsia info``."""
        return SlideInfo(
            path=str(self.path) if self.path is not None else "",
            backend=self.backend,
            vendor=self.vendor,
            dimensions=tuple(self.dimensions),
            level_count=self.level_count,
            level_dimensions=tuple(tuple(d) for d in self.level_dimensions),
            level_downsamples=tuple(float(d) for d in self.level_downsamples),
            mpp=self.mpp,
            objective_power=self.objective_power,
            associated_images=tuple(self.associated_image_names),
            has_icc_profile=self.icc_profile is not None,
            properties=dict(self.properties),
        )

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new reads, wait for reads in progress, then release the backend."""
        with self._usage:
            if self._closed:
                return
            self._closed = True
            self._usage.wait_for(lambda: self._active_reads == 0, timeout)
        self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name} {self.dimensions[0]}x{self.dimensions[1]}>"

    # -- colour management -----------------------------------------------
    def _to_srgb(self, rgb: np.ndarray) -> np.ndarray:
        transform = self._get_icc_transform()
        if transform is None:
            return rgb
        from PIL import Image, ImageCms

        image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        ImageCms.applyTransform(image, transform, inPlace=True)
        return np.array(image)  # a writable copy, like the untransformed path

    def _get_icc_transform(self):
        if self._icc_failed:
            return None
        with self._icc_lock:
            if self._icc_transform is None and not self._icc_failed:
                try:
                    from PIL import ImageCms

                    source = ImageCms.ImageCmsProfile(io.BytesIO(self.icc_profile))
                    target = ImageCms.createProfile("sRGB")
                    self._icc_transform = ImageCms.buildTransform(
                        source, target, "RGB", "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
                    )
                except (OSError, ValueError, ImageCms.PyCMSError):
                    # A broken embedded profile must not make the slide unreadable.
                    self._icc_failed = True
            return self._icc_transform

    @property
    def icc_error(self) -> bool:
        """True when the slide carries a profile that could not be used."""
        return self._icc_failed


#: What to tell the user when a slide's stored pixels cannot be decoded.
DAMAGED_HINT = "the file may be damaged or incompletely copied: copy it again or re-export it from the scanner"

#: Micrometres per pixel outside this range are scanner or editor defaults
#: (72 dpi is 352.8 µm/px), not a microscope's calibration.
PLAUSIBLE_MPP = (0.01, 50.0)


def plausible_mpp(mpp_x: float | None, mpp_y: float | None) -> tuple[float, float] | None:
    """``(mpp_x, mpp_y)`` when both are finite and within ``PLAUSIBLE_MPP``, else None.

    Parameters
    ----------
    mpp_x, mpp_y : float or None
        Micrometres per level-0 pixel as read from a file.

    Returns
    -------
    (float, float) or None
    """
    try:
        x, y = float(mpp_x), float(mpp_y)
    except (TypeError, ValueError):
        return None
    lo, hi = PLAUSIBLE_MPP
    if lo <= x <= hi and lo <= y <= hi:  # also False for NaN
        return (x, y)
    return None


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an (h, w, 4) uint8 RGBA array onto white, as glass looks; returns (h, w, 3) uint8.

    Parameters
    ----------
    rgba : ndarray
        Non-premultiplied RGBA pixels; alpha 0 means "no data here".

    Returns
    -------
    ndarray
    """
    alpha = rgba[:, :, 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    rows = max(1, (1 << 20) // max(1, rgba.shape[1]))  # bands of about a megapixel bound the temporaries
    for y in range(0, rgba.shape[0], rows):
        a = alpha[y : y + rows].astype(np.uint16)
        rgb = rgba[y : y + rows, :, :3].astype(np.uint16)
        # Rounded integer form of rgb * a + 255 * (1 - a), with a in [0, 1].
        out[y : y + rows] = (rgb * a + 255 * (255 - a) + 127) // 255
    return out


def best_level_for_downsample(level_downsamples, downsample: float) -> int:
    """Index of the coarsest level still at least as fine as ``downsample`` (so it is drawn at scale ≤ 1)."""
    best = 0
    for level, lv_ds in enumerate(level_downsamples):
        if lv_ds <= downsample * 1.001:  # tolerate rounding in stored downsamples
            best = level
    return best


def white_canvas(lv_w: int, lv_h: int) -> np.ndarray:
    """A white RGB canvas, the colour of glass outside the scanned area."""
    return np.full((lv_h, lv_w, 3), 255, np.uint8)


def paste_clipped(canvas: np.ndarray, src: np.ndarray, lv_x: int, lv_y: int) -> None:
    """Copy the level image ``src`` into ``canvas`` whose top-left is at (lv_x, lv_y), clipping."""
    h, w = canvas.shape[:2]
    src_h, src_w = src.shape[:2]
    x0, y0 = max(lv_x, 0), max(lv_y, 0)
    x1, y1 = min(lv_x + w, src_w), min(lv_y + h, src_h)
    if x1 > x0 and y1 > y0:
        canvas[y0 - lv_y : y1 - lv_y, x0 - lv_x : x1 - lv_x] = src[y0:y1, x0:x1, :3]
