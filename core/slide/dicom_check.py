"""Read the few header fields of a DICOM whole-slide file that say how large it claims to be, and refuse the impossible.

OpenSlide trusts ``TotalPixelMatrixColumns``: a 5 kB file claiming 2^31
columns opens and then asks for gigabytes. This reads the top-level data set
up to the pixel data (bounded), and checks that a ``TILED_FULL`` image has a
frame for every tile its size needs and that one frame decodes to a sensible
size. Anything it cannot parse is left to OpenSlide, which says why.
"""

from __future__ import annotations

import struct
from pathlib import Path

from core.errors import SlideError
from core.slide.base import DAMAGED_HINT
from core.slide.tiff_check import MAX_SEGMENT_BYTES

#: Bytes of header read at most (the fields checked come before any frame data).
_HEADER_BYTES = 4 << 20
#: Other files of a series checked beside the one opened (OpenSlide reads the whole folder).
MAX_SIBLINGS = 64

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_IMPLICIT_LE = "1.2.840.10008.1.2"
_UNREAD_SYNTAXES = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_ROWS, _COLUMNS, _FRAMES = (0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0008)
_SAMPLES, _BITS = (0x0028, 0x0002), (0x0028, 0x0100)
_TOTAL_COLUMNS, _TOTAL_ROWS = (0x0048, 0x0006), (0x0048, 0x0007)
_ORGANISATION = (0x0020, 0x9311)
_WANTED = {_ROWS, _COLUMNS, _FRAMES, _SAMPLES, _BITS, _TOTAL_COLUMNS, _TOTAL_ROWS, _ORGANISATION}
_LAST_GROUP = 0x0048


class _Unparsed(Exception):
    """The header is not in a form this module reads; OpenSlide will judge it."""


def is_dicom(head: bytes) -> bool:
    """Whether the first 132 bytes of a file are a DICOM Part 10 preamble."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def check_dicom(path: str | Path) -> None:
    """Refuse a DICOM slide (or a file of its series beside it) whose declared size its frames cannot fill.

    Parameters
    ----------
    path : path-like
        A DICOM file; other ``.dcm`` files in its folder are checked too.

    Raises
    ------
    SlideError
        When a file declares more tiles than it has frames (``TILED_FULL``), an empty size,
        or frames too large to decode.
    """
    path = Path(path)
    _check_one(path)
    try:
        siblings = sorted(p for p in path.parent.iterdir() if p.suffix.lower() == ".dcm" and p != path)
    except OSError:
        return
    for other in siblings[:MAX_SIBLINGS]:
        _check_one(other)


def _check_one(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_HEADER_BYTES)
    except OSError:
        return
    if not is_dicom(data):
        return
    try:
        fields = _read_fields(data)
    except (_Unparsed, struct.error, IndexError, ValueError):
        return
    rows, columns = fields.get(_ROWS), fields.get(_COLUMNS)
    if rows is None or columns is None:
        return
    if rows == 0 or columns == 0:
        raise SlideError(path, f"its frames are {columns} x {rows} px (empty)", DAMAGED_HINT)
    samples, bits = fields.get(_SAMPLES) or 1, fields.get(_BITS) or 8
    frame_bytes = rows * columns * samples * -(-bits // 8)
    if frame_bytes > MAX_SEGMENT_BYTES:
        raise SlideError(path, f"its frames are {columns:,} x {rows:,} px, {frame_bytes / 2**20:,.0f} MB each once "
                               f"decoded (Biopsia decodes at most {MAX_SEGMENT_BYTES >> 20} MB at once)", DAMAGED_HINT)
    total_w, total_h = fields.get(_TOTAL_COLUMNS), fields.get(_TOTAL_ROWS)
    if total_w is None or total_h is None:
        return
    if total_w == 0 or total_h == 0:
        raise SlideError(path, f"it declares an empty image ({total_w} x {total_h} px)", DAMAGED_HINT)
    frames = fields.get(_FRAMES) or 1
    needed = -(-total_w // columns) * -(-total_h // rows)
    if fields.get(_ORGANISATION) == "TILED_FULL" and frames < needed:
        raise SlideError(path, f"it declares a {total_w:,} x {total_h:,} px image, which needs {needed:,} frames of "
                               f"{columns:,} x {rows:,} px, but it holds {frames:,}", DAMAGED_HINT)


def _read_fields(data: bytes) -> dict:
    """The wanted top-level fields of a DICOM file's data set, as ints (or a string for the organisation)."""
    pos = 132
    meta_end, transfer = None, None
    explicit = True
    found: dict = {}
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002 and meta_end is None:
            meta_end = pos
            explicit = transfer != _IMPLICIT_LE
            if transfer in _UNREAD_SYNTAXES:
                raise _Unparsed("big-endian or deflated data set")
        if group > _LAST_GROUP and group != 0x0002:
            break
        vr, length, value_at = _element_header(data, pos, explicit or group == 0x0002)
        if length == 0xFFFFFFFF:
            pos = _skip_undefined(data, value_at, explicit or group == 0x0002, 0)
            continue
        value = data[value_at : value_at + length]
        if len(value) < length:
            raise _Unparsed("cut short")
        tag = (group, element)
        if tag == (0x0002, 0x0010):
            transfer = value.rstrip(b"\0 ").decode("ascii", "replace")
        elif tag in _WANTED:
            found[tag] = _value(tag, vr, value)
        pos = value_at + length
    return found


def _element_header(data: bytes, pos: int, explicit: bool) -> tuple[bytes | None, int, int]:
    """(VR or None, value length, where the value starts) of the element at ``pos``."""
    group, _ = struct.unpack_from("<HH", data, pos)
    if group == 0xFFFE or not explicit:  # items and delimiters have no VR
        return None, struct.unpack_from("<I", data, pos + 4)[0], pos + 8
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        return vr, struct.unpack_from("<I", data, pos + 8)[0], pos + 12
    return vr, struct.unpack_from("<H", data, pos + 6)[0], pos + 8


def _skip_undefined(data: bytes, pos: int, explicit: bool, depth: int) -> int:
    """The position after a sequence (or item) of undefined length that starts its contents at ``pos``."""
    if depth > 16:
        raise _Unparsed("sequences nested too deep")
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        _, length, value_at = _element_header(data, pos, explicit)
        if group == 0xFFFE and element in (0xE00D, 0xE0DD):  # end of item / of sequence
            return value_at
        if length == 0xFFFFFFFF:
            pos = _skip_undefined(data, value_at, explicit, depth + 1)
        else:
            pos = value_at + length
    raise _Unparsed("cut short")


def _value(tag, vr: bytes | None, value: bytes):
    if tag == _ORGANISATION:
        return value.rstrip(b"\0 ").decode("ascii", "replace").strip()
    if tag == _FRAMES:  # IS: a decimal string
        return int(value.rstrip(b"\0 ").decode("ascii").strip() or "1")
    if tag in (_TOTAL_COLUMNS, _TOTAL_ROWS) or vr == b"UL":
        return struct.unpack_from("<I", value)[0]
    return struct.unpack_from("<H", value)[0]
