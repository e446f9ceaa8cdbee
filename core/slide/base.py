"""The one slide interface every backend implements.

Coordinates: ``l0_*`` are level-0 pixels, ``lv_*`` are pixels of the level read.
"""

from __future__ import annotations

import abc
import io
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
from PIL import Image, ImageCms

from core.errors import SlideReadError
from core.slide import overview

#: Largest region ``read_region`` reads at once (pixels): 8192 x 4096 RGB is 96 MB, and the
#: backends' own buffers (RGBA, premultiplied) about triple it. Views, tiles and overviews read far less.
MAX_REGION_PIXELS = 1 << 25
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
        self._release_when_idle = False  # close() timed out while reads ran: the last read releases

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

    def stored_tile_size(self, level: int) -> tuple[int, int] | None:
        """(width, height) in level pixels of the blocks the file stores ``level`` in, None when not known.

        Readers decode a stored block whole, so reading its neighbouring tiles together decodes it once.
        """
        return None

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
                release = self._release_when_idle and self._active_reads == 0
                if release:
                    self._release_when_idle = False
            if release:
                self._close()
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
        """The whole slide resized to ``out_w`` x ``out_h``, in bounded memory and time (see ``core.slide.overview``).

        Parameters
        ----------
        out_w, out_h : int
            Size of the result; at most ``MAX_REGION_PIXELS`` together.
        downsample : float, optional
            Level-0 pixels per result pixel used to choose the level; by default the larger of the two ratios.

        Returns
        -------
        ndarray
            (out_h, out_w, 3) uint8 RGB; regions that cannot be decoded are ``overview.DAMAGED_GREY``.

        Raises
        ------
        SlideReadError
            When no part of the slide could be decoded.
        """
        return overview.read_downscaled(self, out_w, out_h, downsample)

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
            if not self._usage.wait_for(lambda: self._active_reads == 0, timeout):
                self._release_when_idle = True  # a read still runs: the last one to finish releases
                return
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
        image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        ImageCms.applyTransform(image, transform, inPlace=True)
        return np.array(image)  # a writable copy, like the untransformed path

    def _get_icc_transform(self):
        if self._icc_failed:
            return None
        with self._icc_lock:
            if self._icc_transform is None and not self._icc_failed:
                try:
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
