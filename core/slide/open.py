"""Open any slide file: ask each backend in turn, most likely first, and say what was tried if none can."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Callable

from core.errors import SlideError, SlideNotFoundError, UnsupportedSlideError
from core.slide.base import SlideReader

#: Extensions OpenSlide reads (vendor formats; ``.tif``/``.tiff`` are tried with it too).
OPENSLIDE_EXTENSIONS = ("svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif", "dcm")
#: Extensions tried with tifffile first.
TIFFFILE_EXTENSIONS = ("ome.tif", "ome.tiff", "ome.btf", "btf", "tf8", "qptiff")
#: Plain images loaded whole.
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "webp")

_ORDERS = {
    "openslide": ("openslide", "tifffile", "image"),
    "tifffile": ("tifffile", "openslide", "image"),
    "image": ("image", "tifffile", "openslide"),
}


def supported_extensions() -> list[str]:
    """File extensions (without the dot) for an Open dialog filter, vendor formats first.

    Returns
    -------
    list of str
        For example ``["svs", "tif", ..., "ome.tiff", "png", "jpg", ...]``.
    """
    seen: list[str] = []
    for ext in OPENSLIDE_EXTENSIONS + TIFFFILE_EXTENSIONS + IMAGE_EXTENSIONS:
        if ext not in seen:
            seen.append(ext)
    return seen


def open_slide(path: str | Path) -> SlideReader:
    """Open a slide with the first backend that can read it.

    Backends are tried in an order guessed from the extension (and, for a
    ``.tif`` that turns out to be OME-TIFF, from its content), then the others.

    Parameters
    ----------
    path : path-like
        The slide file (for MIRAX the ``.mrxs`` file; for DICOM any one file of the series).

    Returns
    -------
    SlideReader

    Raises
    ------
    SlideNotFoundError
        When the file does not exist.
    SlideError
        When the path is a folder, cannot be read (permissions), or is empty.
    UnsupportedSlideError
        When no backend can open it; ``err.tried`` lists each backend and its reason.
        (When one recognises the format but finds the file damaged, truncated or
        too large, and has advice for the user, its SlideError is raised instead.)
    """
    path = Path(path).expanduser()
    _check_readable(path)
    tried: list[tuple[str, str]] = []
    recognised: SlideError | None = None
    for name in backend_order(path):
        opener = _backend(name)
        if opener is None:
            tried.append((name, "not installed"))
            continue
        try:
            return opener(path)
        except SlideError as err:
            tried.append((name, err.problem))
            if recognised is None and err.hint:
                recognised = err
        except MemoryError:
            tried.append((name, "not enough memory to open it"))
    if recognised is not None:
        # A backend knew the format but found the file damaged, truncated or too large, and
        # said what to do (its hint): more useful than "not a slide format Biopsia can read".
        raise recognised
    raise UnsupportedSlideError(path, tried)


def backend_order(path: Path) -> tuple[str, ...]:
    """Backend names in the order to try them for ``path``."""
    name = path.name.lower()
    if any(name.endswith("." + ext) for ext in TIFFFILE_EXTENSIONS):
        return _ORDERS["tifffile"]
    suffix = path.suffix.lower().lstrip(".")
    if suffix in IMAGE_EXTENSIONS:
        return _ORDERS["image"]
    if suffix in ("tif", "tiff") and _better_with_tifffile(path):
        return _ORDERS["tifffile"]
    return _ORDERS["openslide"]


def _check_readable(path: Path) -> None:
    """Raise a clear SlideError for paths no backend should even try (and that could hang, like FIFOs)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SlideNotFoundError(path, "file not found", "check the path, or whether the drive is connected") from None
    except PermissionError:
        raise SlideError(path, "permission denied", "ask for read access to the file and its folder") from None
    except OSError as err:
        raise SlideError(path, f"cannot access the file: {err.strerror or err}") from None
    except ValueError as err:  # e.g. an embedded NUL character
        raise SlideError(path, f"not a valid file name: {err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SlideError(path, "this is a folder, not a slide file",
                         "open the slide file inside it; for MIRAX, open the .mrxs file beside the folder")
    if not stat.S_ISREG(st.st_mode):
        raise SlideError(path, "not a regular file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise SlideError(path, "permission denied", "ask for read access to the file") from None
    except OSError as err:
        raise SlideError(path, f"cannot read the file: {err.strerror or err}") from None
    if st.st_size == 0:
        raise SlideError(path, "the file is empty (0 bytes)", "it may not have finished copying")


def _better_with_tifffile(path: Path) -> bool:
    """Whether a TIFF is OME-TIFF, deeper than 8 bits, or a generic (non-vendor) tiled TIFF.

    OpenSlide would show only an OME file's first plane, without its SubIFD
    pyramid, and keeps just the high byte of 16-bit samples. For generic tiled
    TIFFs both read the same pixels, and tifffile decodes tiles several times
    faster (no Cairo compositing), which the viewer and tiling feel directly.
    """
    try:
        import openslide

        if openslide.OpenSlide.detect_format(str(path)) == "generic-tiff":
            return True
    except (ImportError, OSError):
        pass
    try:
        from core.slide.tifffile_reader import tifffile  # also quietens tifffile's logging

        with tifffile.TiffFile(str(path)) as tif:
            return bool(tif.is_ome) or tif.pages.first.bitspersample > 8
    except (ImportError, ValueError, OSError, IndexError, KeyError, TypeError, RuntimeError, AttributeError):
        return False


def _backend(name: str) -> Callable[[Path], SlideReader] | None:
    """The reader class for a backend name, or None when its library is missing."""
    try:
        if name == "openslide":
            from core.slide.openslide_reader import OpenSlideReader, openslide_available

            return OpenSlideReader if openslide_available() else None
        if name == "tifffile":
            from core.slide.tifffile_reader import TiffFileReader

            return TiffFileReader
        from core.slide.image_reader import ImageReader

        return ImageReader
    except ImportError:
        return None
