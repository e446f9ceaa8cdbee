"""Slides read through OpenSlide: Aperio, Hamamatsu, Leica, MIRAX, Philips, Sakura, Ventana, DICOM, generic tiled TIFF.

OpenSlide's errors are sticky: after one failed read every later call on the
same handle fails too. So each read borrows a handle from a small pool, one
handle per concurrent read, and a handle that failed is closed and replaced:
only the damaged regions fail, and the rest of the slide still reads. The
handles share one tile cache.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import ImageCms

from core.errors import SlideError, SlideReadError
from core.slide.base import DAMAGED_HINT, MAX_REGION_PIXELS, SlideReader, composite_on_white, plausible_mpp

try:
    import openslide
    from openslide import OpenSlideError, OpenSlideUnsupportedFormatError
except (ImportError, OSError):  # pragma: no cover - pinned; keep core importable without the library
    openslide = None
    OpenSlideError = OpenSlideUnsupportedFormatError = OSError


#: Decoded tiles kept for all of a slide's handles together.
_CACHE_BYTES = 64 << 20


def openslide_available() -> bool:
    """Whether the OpenSlide library could be loaded."""
    return openslide is not None


class OpenSlideReader(SlideReader):
    """A slide opened with OpenSlide.

    Parameters
    ----------
    path : path-like
        The slide file (for MIRAX the ``.mrxs`` file; for DICOM any one of the series' files).

    Raises
    ------
    SlideError
        When OpenSlide is missing, does not recognise the format, or the file is damaged.
    """

    backend = "openslide"

    def __init__(self, path: str | Path):
        super().__init__(path)
        if openslide is None:
            raise SlideError(path, "the OpenSlide library is not installed", "install openslide-bin")
        self._pool_lock = threading.Lock()
        self._idle: list = []  # handles no read is using
        self._handles: set = set()  # every open handle, closed with the slide
        self._cache = None
        try:
            self._slide = self._open_handle()
        except OpenSlideUnsupportedFormatError:
            raise SlideError(path, "OpenSlide does not recognise this format") from None
        except OpenSlideError as err:
            # Not necessarily damage: OpenSlide also refuses variants it does not support.
            raise SlideError(path, f"OpenSlide could not open it: {err}") from None
        except OSError as err:  # permission denied, vanished file
            raise SlideError(path, f"could not open the file: {err.strerror or err}") from None
        try:
            self._read_metadata()
        except OpenSlideError as err:
            self._close()
            raise SlideError(path, f"OpenSlide could not read its metadata: {err}", DAMAGED_HINT) from None
        self._idle.append(self._slide)  # the first handle serves reads too

    def _open_handle(self):
        """A new OpenSlide handle on the file, sharing the slide's tile cache."""
        handle = openslide.OpenSlide(str(self.path))
        try:
            if self._cache is None and hasattr(openslide, "OpenSlideCache"):
                self._cache = openslide.OpenSlideCache(_CACHE_BYTES)
            if self._cache is not None:
                handle.set_cache(self._cache)
        except (OpenSlideError, AttributeError, TypeError):
            pass  # an OpenSlide without shared caches: each handle keeps its own
        with self._pool_lock:
            self._handles.add(handle)
        return handle

    def _borrow(self):
        """An idle handle, or a new one (which raises OpenSlideError or OSError if the file cannot be opened)."""
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return self._open_handle()

    def _give_back(self, handle, failed: bool) -> None:
        """Return a handle after use; a failed one (OpenSlide's error sticks to it) is closed instead."""
        with self._pool_lock:
            if not failed and not self._closed:
                self._idle.append(handle)
                return
            self._handles.discard(handle)
        handle.close()

    def _read_metadata(self) -> None:
        props = self._slide.properties
        self._properties = dict(props)
        self._level_dimensions = tuple(tuple(int(v) for v in dims) for dims in self._slide.level_dimensions)
        self._level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self._mpp = plausible_mpp(_float(props.get(openslide.PROPERTY_NAME_MPP_X)),
                                  _float(props.get(openslide.PROPERTY_NAME_MPP_Y)))
        objective = _float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        self._objective = objective if objective and objective > 0 else None
        self._vendor = props.get(openslide.PROPERTY_NAME_VENDOR) or "unknown"
        self._associated_names = tuple(self._slide.associated_images.keys())
        self._icc = self._read_icc_profile()

    def _read_icc_profile(self) -> bytes | None:
        """The embedded profile's bytes; a broken one is reported through ``icc_error``."""
        try:
            profile = self._slide.color_profile
        except (OSError, ValueError, ImageCms.PyCMSError):
            # A broken embedded profile must not make the slide unreadable.
            self._icc_failed = True
            return None
        return profile.tobytes() if profile is not None else None

    @property
    def associated_image_names(self) -> tuple[str, ...]:
        return self._associated_names

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (``label``, ``macro``, ``thumbnail``...) as (h, w, 3) uint8 RGB on white.

        Raises
        ------
        KeyError
            When the slide has no such image.
        SlideReadError
            When its data cannot be decoded.
        """
        if name not in self._associated_names:
            raise KeyError(name)
        handle = self._handle_for(f"the {name} image")
        failed = True
        try:
            w, h = openslide.lowlevel.get_associated_image_dimensions(handle._osr, name)
            if w * h > MAX_REGION_PIXELS:
                failed = False  # refused before OpenSlide read it: the handle is still good
                raise SlideReadError(self.path, f"its {name} image claims {w:,} x {h:,} px, too large to show",
                                     DAMAGED_HINT)
            image = handle.associated_images[name]
            failed = False
        except (OpenSlideError, MemoryError) as err:
            raise SlideReadError(self.path, f"could not decode the {name} image: {_reason(err)}",
                                 DAMAGED_HINT) from None
        finally:
            self._give_back(handle, failed)
        return _pil_to_rgb(image)

    # -- pixels --------------------------------------------------------------
    def stored_tile_size(self, level: int) -> tuple[int, int] | None:
        width = _float(self._properties.get(f"openslide.level[{level}].tile-width"))
        height = _float(self._properties.get(f"openslide.level[{level}].tile-height"))
        return (int(width), int(height)) if width and height and 0 < width < 1e6 and 0 < height < 1e6 else None

    def _read_region_raw(self, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int) -> np.ndarray:
        where = f"the region at level {level} ({l0_x}, {l0_y}, {lv_w} x {lv_h})"
        handle = self._handle_for(where)
        failed = True
        try:
            region = handle.read_region((l0_x, l0_y), level, (lv_w, lv_h))
            failed = False
        except OpenSlideError as err:
            raise SlideReadError(self.path, f"could not decode {where}: {_reason(err)}", DAMAGED_HINT) from None
        finally:
            self._give_back(handle, failed)
        return _pil_to_rgb(region)

    def _handle_for(self, what: str):
        """A handle for one read; SlideReadError when the file can no longer be opened."""
        try:
            return self._borrow()
        except (OpenSlideError, OSError) as err:
            raise SlideReadError(self.path, f"could not reopen the file to read {what}: {_reason(err)}",
                                 DAMAGED_HINT) from None

    def _close(self) -> None:
        with self._pool_lock:
            handles, self._handles, self._idle = list(self._handles), set(), []
        for handle in handles:
            handle.close()


def _reason(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _pil_to_rgb(image) -> np.ndarray:
    """A PIL image from OpenSlide (RGBA, transparent where there is no tissue data) as RGB on white."""
    if image.mode == "RGBA":
        return composite_on_white(np.asarray(image))
    return np.array(image.convert("RGB"))


def _float(value: str | None) -> float | None:
    """A property value as float, or None when absent or not a number."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
