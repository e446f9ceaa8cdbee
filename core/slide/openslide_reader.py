"""Slides read through OpenSlide: Aperio, Hamamatsu, Leica, MIRAX, Philips, Sakura, Ventana, DICOM, generic tiled TIFF.

OpenSlide is thread-safe, so ``read_region`` calls it directly from any thread.
Its errors are sticky: after one failed read every later call on the same
handle fails too, so the messages below say so and suggest reopening.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import SlideError, SlideReadError
from core.slide.base import DAMAGED_HINT, SlideReader, composite_on_white, plausible_mpp

try:
    import openslide
    from openslide import OpenSlideError, OpenSlideUnsupportedFormatError
except (ImportError, OSError):  # pragma: no cover - pinned; keep core importable without the library
    openslide = None
    OpenSlideError = OpenSlideUnsupportedFormatError = OSError


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
        try:
            self._slide = openslide.OpenSlide(str(path))
        except OpenSlideUnsupportedFormatError:
            raise SlideError(path, "OpenSlide does not recognise this format") from None
        except OpenSlideError as err:
            # Not necessarily damage: OpenSlide also refuses variants it does not support.
            raise SlideError(path, f"OpenSlide could not open it: {err}") from None
        except OSError as err:  # permission denied, vanished file
            raise SlideError(path, f"could not open the file: {err.strerror or err}") from None
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
        self._first_error: str | None = None

    def _read_icc_profile(self) -> bytes | None:
        """The embedded profile's bytes; a broken one is reported through ``icc_error``."""
        from PIL import ImageCms

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
        try:
            image = self._slide.associated_images[name]
        except OpenSlideError as err:
            raise SlideReadError(self.path, f"could not decode the {name} image: {err}", DAMAGED_HINT) from None
        return _pil_to_rgb(image)

    # -- pixels --------------------------------------------------------------
    def _read_region_raw(self, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int) -> np.ndarray:
        try:
            region = self._slide.read_region((l0_x, l0_y), level, (lv_w, lv_h))
        except OpenSlideError as err:
            raise self._read_error(err, l0_x, l0_y, level, lv_w, lv_h) from None
        return _pil_to_rgb(region)

    def _read_error(self, err, l0_x, l0_y, level, lv_w, lv_h) -> SlideReadError:
        """A SlideReadError for a failed read, noting OpenSlide's sticky error state."""
        reason = str(err) or type(err).__name__
        hint = DAMAGED_HINT
        if self._first_error is None:
            self._first_error = reason
        else:
            hint = (f'OpenSlide stops reading a file after its first error, here "{self._first_error}": '
                    f"close and reopen the slide; if it persists, {DAMAGED_HINT}")
        return SlideReadError(
            self.path,
            f"could not decode the region at level {level} ({l0_x}, {l0_y}, {lv_w} x {lv_h}): {reason}",
            hint,
        )

    def _close(self) -> None:
        self._slide.close()


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
