"""Open any slide file: ask each backend in turn, most likely first, and say what was tried if none can.

Before any library sees a file, its structure is checked (``preflight``): a
TIFF's directories are walked with a bound and a seen-set, and a TIFF's or
DICOM's declared size is checked against what the file holds, so that a
damaged or hostile file is refused in milliseconds instead of hanging a
library or asking it for gigabytes. Opening also runs under a deadline.
"""

from __future__ import annotations

import stat
import struct
import threading
from pathlib import Path
from typing import Callable

from core.errors import SlideError, SlideNotFoundError, UnsupportedSlideError
from core.slide.base import DAMAGED_HINT, SlideReader
from core.slide.dicom_check import check_dicom, is_dicom
from core.slide.image_reader import ImageReader
from core.slide.openslide_reader import OpenSlideReader, openslide, openslide_available
from core.slide.tiff_check import check_tiff
from core.slide.tifffile_reader import TiffFileReader, tifffile  # the latter with tifffile's logging quietened
from core.threads import lower_this_thread

#: Extensions OpenSlide reads (vendor formats; ``.tif``/``.tiff`` are tried with it too).
OPENSLIDE_EXTENSIONS = ("svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif", "dcm")
#: Extensions tried with tifffile first.
TIFFFILE_EXTENSIONS = ("ome.tif", "ome.tiff", "ome.btf", "btf", "tf8", "qptiff")
#: Plain images loaded whole.
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "webp")
#: No slide or image format fits in fewer bytes (the smallest valid PNG is 67).
MIN_FILE_BYTES = 16
#: Seconds an open may take before Biopsia gives up on it. The pre-flight checks make the known
#: hangs impossible; this is the last guard, so that no caller waits for ever.
OPEN_TIMEOUT_S = 60.0

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


def open_slide(path: str | Path, timeout: float | None = OPEN_TIMEOUT_S) -> SlideReader:
    """Open a slide with the first backend that can read it.

    The file's structure is checked first (``preflight``). Backends are then
    tried in an order guessed from the extension (and, for a ``.tif`` that
    turns out to be OME-TIFF, from its content), then the others.

    Parameters
    ----------
    path : path-like
        The slide file (for MIRAX the ``.mrxs`` file; for DICOM any one file of the series).
    timeout : float or None
        Seconds to wait for the backends; None waits as long as they take.

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
        Also when the file is too short, its structure is damaged or impossible
        (a directory loop, a size its tile table cannot hold), or opening takes
        longer than ``timeout``.
    """
    path = Path(path).expanduser()
    _check_readable(path)
    if timeout is None:
        return _open_checked(path)
    return _within_deadline(path, timeout)


def preflight(path: Path) -> None:
    """Refuse, before any library reads it, a file whose structure would hang a reader or exhaust memory.

    Parameters
    ----------
    path : Path
        A readable regular file.

    Raises
    ------
    SlideError
        When the file is too short to be a slide, or is a TIFF or DICOM file whose
        structure is damaged or declares more than it holds.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            size = fh.seek(0, 2)
        if size < MIN_FILE_BYTES:
            raise SlideError(path, f"the file is only {size} bytes long, too short to hold a slide", DAMAGED_HINT)
        if is_dicom(head):
            check_dicom(path)
        else:
            check_tiff(path)
    except OSError as err:
        raise SlideError(path, f"cannot read the file: {err.strerror or err}") from None


def _within_deadline(path: Path, timeout: float) -> SlideReader:
    """``_open_checked(path)`` on a thread of its own; SlideError if it has not finished in ``timeout`` seconds.

    A late reader is closed when it arrives, so nothing leaks but the thread's time.
    """
    lock = threading.Lock()
    done = threading.Event()
    outcome: dict = {}

    def run() -> None:
        lower_this_thread()
        try:
            result = _open_checked(path)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting caller, who re-raises it
            result, outcome["error"] = None, err
        with lock:
            if outcome.get("abandoned") and result is not None:
                result.close()
            outcome["reader"] = result
            done.set()

    threading.Thread(target=run, name=f"open {path.name}", daemon=True).start()
    try:
        finished = done.wait(timeout)
    finally:
        with lock:
            if not done.is_set():
                outcome["abandoned"] = True
    if not finished and "abandoned" in outcome:
        raise SlideError(path, f"took longer than {timeout:g} s to open",
                         "the file may be damaged, or on a drive that stopped answering")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reader"]


def _open_checked(path: Path) -> SlideReader:
    """Pre-flight checks, then each backend in turn."""
    preflight(path)
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
        if openslide is not None and openslide.OpenSlide.detect_format(str(path)) == "generic-tiff":
            return True
    except OSError:
        pass
    try:
        with tifffile.TiffFile(str(path)) as tif:
            return bool(tif.is_ome) or tif.pages.first.bitspersample > 8
    except (ValueError, OSError, IndexError, KeyError, TypeError, RuntimeError, AttributeError,
            EOFError, struct.error, ZeroDivisionError, MemoryError):
        return False


def _backend(name: str) -> Callable[[Path], SlideReader] | None:
    """The reader class for a backend name, or None when its library is missing (OpenSlide is optional)."""
    if name == "openslide":
        return OpenSlideReader if openslide_available() else None
    return TiffFileReader if name == "tifffile" else ImageReader
