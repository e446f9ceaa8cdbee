"""Plain images (PNG, JPEG, BMP, small TIFFs...) loaded whole with OpenCV, pyramid built in memory.

Pillow reads only the header first: the format, the size (so an image too big
for memory is refused before decoding), the stored resolution and ICC profile.
"""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.errors import SlideError
from core.slide.array_reader import ArrayReader
from core.slide.base import DAMAGED_HINT, composite_on_white, plausible_mpp

# Pillow logs odd headers and OpenCV its decoding failures; without this both reach stderr. core/ never prints,
# and each failure becomes a SlideError here.
logging.getLogger("PIL").addHandler(logging.NullHandler())
if hasattr(cv2, "setLogLevel"):
    cv2.setLogLevel(0)  # silent

#: Largest image loaded whole (pixels): decoding, colour conversion and the pyramid of 2**27 pixels
#: (11,585 x 11,585) peak near 1 GB. Larger images belong in a tiled pyramidal TIFF.
MAX_PIXELS = 1 << 27
#: Resolutions image editors write by default; they say nothing about a microscope.
_DEFAULT_DPI = {72, 96}
_ALWAYS_DECODED = {"png", "jpeg", "bmp", "webp"}
_HEADER_ERRORS = (SyntaxError, IndexError, TypeError, ValueError, KeyError, OSError, EOFError, struct.error)


class ImageReader(ArrayReader):
    """An ordinary image file shown as a single-level slide (pyramid computed in memory).

    Parameters
    ----------
    path : path-like
        A PNG, JPEG, BMP, TIFF, WebP... file that Pillow identifies and OpenCV decodes.

    Raises
    ------
    SlideError
        When the file is not an image, is truncated or damaged, or is larger than ``MAX_PIXELS``.
    """

    backend = "image"

    def __init__(self, path: str | Path):
        path = Path(path)
        header = peek_image(path)
        if header is None:
            raise SlideError(path, "not an image format Pillow recognises (PNG, JPEG, BMP, TIFF...)")
        fmt, (width, height), info = header
        if width * height > MAX_PIXELS:
            raise SlideError(
                path,
                f"the image is {width} x {height} pixels, too large to load into memory "
                f"(at most {MAX_PIXELS / 1e6:.0f} megapixels)",
                "convert it to a tiled pyramidal TIFF (e.g. with vips tiffsave --tile --pyramid)",
            )
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SlideError(path, f"could not read the file: {err.strerror or err}") from None
        if fmt == "png" and b"IEND" not in data[-4096:]:
            # libpng would print to stderr before failing; say it plainly instead.
            raise SlideError(path, "the PNG file is truncated (its end marker is missing)", DAMAGED_HINT)
        try:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except (cv2.error, MemoryError) as err:
            raise SlideError(path, f"OpenCV could not decode this {fmt.upper()} image: "
                                   f"{str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}",
                             DAMAGED_HINT) from None
        del data
        if pixels is None or pixels.size == 0:
            # When OpenCV fails on a format it always reads, the file is damaged; a TIFF may
            # just use a compression OpenCV lacks, and Pillow knows formats OpenCV does not.
            raise SlideError(path, f"OpenCV could not decode this {fmt.upper()} image",
                             DAMAGED_HINT if fmt in _ALWAYS_DECODED else None)
        rgb = to_rgb8(pixels)
        del pixels  # before the pyramid is built
        properties = {"image.format": fmt, "image.width": str(width), "image.height": str(height)}
        dpi = info.get("dpi")
        if dpi:
            properties["image.dpi"] = f"{float(dpi[0]):g} x {float(dpi[1]):g}"
        icc = info.get("icc_profile") or None
        super().__init__(rgb, mpp=mpp_from_dpi(dpi), vendor=fmt, properties=properties,
                         path=path, icc_profile=bytes(icc) if icc else None)


def peek_image(path: Path) -> tuple[str, tuple[int, int], dict] | None:
    """(format, (width, height), info) from an image file's header, or None when Pillow does not know it.

    Calls Pillow's format plugins directly so that no pixels are decoded and
    Pillow's decompression-bomb refusal (which starts at 179 megapixels) does
    not apply; ``ImageReader`` enforces its own ``MAX_PIXELS``.

    Parameters
    ----------
    path : Path

    Returns
    -------
    tuple or None
    """
    Image.init()
    # Pillow warns (to stderr) about odd but harmless headers, e.g. corrupt EXIF in a cut-short file.
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prefix = fh.read(16)
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            try:
                accepted = accept(prefix) if accept else True
            except _HEADER_ERRORS:  # some plugins unpack more bytes than a tiny file holds
                continue
            if not accepted or isinstance(accepted, str):  # a string is Pillow's "not this one" note
                continue
            fh.seek(0)
            try:
                image = factory(fh, str(path))
            except _HEADER_ERRORS:
                continue
            size = (int(image.size[0]), int(image.size[1]))
            name = (image.format or fmt).lower()
            return ("jpeg" if name == "mpo" else name), size, dict(image.info)  # MPO: a camera's JPEG
    return None


def mpp_from_dpi(dpi) -> tuple[float, float] | None:
    """Micrometres per pixel from a stored resolution in dots per inch; None for editor defaults.

    Parameters
    ----------
    dpi : (float, float) or None
        Pillow's ``info['dpi']`` (PNG pHYs in metres, JPEG JFIF density, BMP, TIFF tags).

    Returns
    -------
    (float, float) or None
    """
    if not dpi or len(dpi) < 2:
        return None
    try:
        dpi_x, dpi_y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if dpi_x <= 0 or dpi_y <= 0 or round(dpi_x) in _DEFAULT_DPI or round(dpi_y) in _DEFAULT_DPI:
        return None
    return plausible_mpp(25400.0 / dpi_x, 25400.0 / dpi_y)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """An OpenCV image (grey, BGR or BGRA; 8, 16-bit or float) as (h, w, 3) uint8 RGB on white.

    Parameters
    ----------
    pixels : ndarray
        As returned by ``cv2.imdecode(..., IMREAD_UNCHANGED)``.

    Returns
    -------
    ndarray
    """
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        values = pixels.astype(np.float32)
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / top
        pixels = np.clip(np.nan_to_num(values) * scale + 0.5, 0, 255).astype(np.uint8)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2RGB)
    if pixels.shape[2] == 4:
        return composite_on_white(cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA))
    return cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_BGR2RGB)
