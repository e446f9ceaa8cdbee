"""Walk a TIFF's image directories before any library does, and refuse what would hang or exhaust memory.

tifffile follows a chain of directories that loops back on itself for ever
(its own check looks only at the hundredth), and both tifffile and libtiff
trust the sizes a directory declares. This walk reads the directories alone,
in bounded reads, with a seen-set, so a hostile file costs milliseconds:

* the chain must end and visit no directory twice; SubIFD chains are walked
  once each; all together hold at most ``MAX_DIRECTORIES``;
* each directory must lie inside the file and declare a non-empty image;
* its tile or strip table must have an entry for every tile the declared size
  needs, and lie inside the file: a 2 MB file cannot describe a
  100,000-pixel-wide level with the tile table of a 2,220-pixel one;
* one tile (or compressed strip) may not decode to more than
  ``MAX_SEGMENT_BYTES``.

Tile data past the end of the file is not refused here: a cut-short copy still
opens, and only its missing tiles fail, when read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import SlideError
from core.slide.base import DAMAGED_HINT

#: Directories (pages and SubIFDs together) a slide may hold; tifffile's series parsing is
#: quadratic in them (2,048 take about a second), and real slides hold a few dozen.
MAX_DIRECTORIES = 2048
#: Entries one directory may hold (tifffile calls more than this corrupt too).
MAX_ENTRIES = 4096
#: Largest tile, or compressed strip, decoded in one piece: 4096 x 4096 RGBA at 16 bits is 128 MB.
MAX_SEGMENT_BYTES = 256 << 20

CONVERT_HINT = "convert it to a tiled pyramidal TIFF (e.g. with vips tiffsave --tile --pyramid)"

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
               16: 8, 17: 8, 18: 8}
_INTEGER_CODES = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
_NAMES = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 259: "Compression",
          273: "StripOffsets", 277: "SamplesPerPixel", 278: "RowsPerStrip", 279: "StripByteCounts",
          284: "PlanarConfiguration", 322: "TileWidth", 323: "TileLength", 324: "TileOffsets",
          325: "TileByteCounts", 330: "SubIFDs", 32997: "ImageDepth", 32998: "TileDepth"}
_SCALARS = (256, 257, 258, 259, 277, 278, 284, 322, 323, 32997, 32998)
_NDPI_TAG = 65420


@dataclass(frozen=True)
class _Layout:
    """How a TIFF's header and directories are encoded."""

    order: str  # "<" or ">"
    big: bool  # BigTIFF
    size: int  # file size in bytes

    @property
    def count_fmt(self) -> str:
        return self.order + ("Q" if self.big else "H")

    @property
    def offset_fmt(self) -> str:
        return self.order + ("Q" if self.big else "I")

    @property
    def entry_size(self) -> int:
        return 20 if self.big else 12

    @property
    def field_size(self) -> int:
        return 8 if self.big else 4


def check_tiff(path: str | Path) -> int | None:
    """Walk a TIFF's directories; raise SlideError for a loop, an impossible size or a truncated directory.

    Parameters
    ----------
    path : path-like
        Any file; only TIFF and BigTIFF files (either byte order) are examined.

    Returns
    -------
    int or None
        The number of directories walked, or None when the file is not a TIFF.

    Raises
    ------
    SlideError
        When the file is a TIFF that no reader should be given.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        head = fh.read(16)
        layout = _header(path, head, size)
        if layout is None:
            return None
        first = struct.unpack(layout.offset_fmt, head[8:16] if layout.big else head[4:8])[0]
        return _Walk(path, fh, layout).run(first)


def _header(path: Path, head: bytes, size: int) -> _Layout | None:
    """The layout of a TIFF header, None for other files, SlideError for a TIFF header cut short."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return None
    if len(head) < 4:
        return None  # "II" alone: too short to say; open.py reports tiny files
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic not in (42, 43):
        return None
    big = magic == 43
    needed = 16 if big else 8
    if size < needed:
        raise SlideError(path, f"the file is truncated: it is {size} bytes long, shorter than a TIFF header "
                               f"({needed} bytes)", DAMAGED_HINT)
    if big and struct.unpack(order + "HH", head[4:8]) != (8, 0):
        raise SlideError(path, "its BigTIFF header is damaged (offset size is not 8)", DAMAGED_HINT)
    return _Layout(order, big, size)


class _Walk:
    """One walk over the directory graph of an open TIFF."""

    def __init__(self, path: Path, fh, layout: _Layout):
        self.path, self.fh, self.layout = path, fh, layout
        self.seen: dict[int, int] = {}  # directory offset -> its index in walk order
        self.ndpi_large = False

    def run(self, first: int) -> int:
        if first == 0:
            raise SlideError(self.path, "the TIFF holds no image directory", DAMAGED_HINT)
        if first >= self.layout.size:
            raise SlideError(self.path, f"the file is truncated: it is {self.layout.size:,} bytes long but its "
                                        f"image directory starts at byte {first:,}", DAMAGED_HINT)
        self._chain(first, "the file header")
        return len(self.seen)

    def _chain(self, offset: int, referrer: str, depth: int = 0) -> None:
        """Follow one chain of directories (the main chain, or a SubIFD's) to its end."""
        while offset:
            if offset in self.seen:
                if depth:
                    return  # writers chain a directory's SubIFDs and list them all too: each is walked once
                raise SlideError(self.path, f"its image directories loop: {referrer} points back to "
                                            f"directory {self.seen[offset]} (byte {offset:,})", DAMAGED_HINT)
            if len(self.seen) >= MAX_DIRECTORIES:
                raise SlideError(self.path, f"it holds more than {MAX_DIRECTORIES:,} image directories",
                                 "a slide holds a few dozen: the file is damaged or not a slide")
            if offset < 8 or offset >= self.layout.size:
                raise SlideError(self.path, f"the file is truncated or damaged: {referrer} points to byte "
                                            f"{offset:,}, outside the file ({self.layout.size:,} bytes)",
                                 DAMAGED_HINT)
            index = len(self.seen)
            self.seen[offset] = index
            next_offset, subifds = self._directory(index, offset)
            if self.ndpi_large:
                return  # Hamamatsu's > 4 GB files keep the high bits of offsets elsewhere: leave them to the readers
            if depth < 4:
                for sub_i, sub in enumerate(subifds):
                    self._chain(sub, f"SubIFD {sub_i} of directory {index}", depth + 1)
            referrer = f"directory {index}"
            offset = next_offset

    def _directory(self, index: int, offset: int) -> tuple[int, list[int]]:
        """Check one directory; (offset of the next one, offsets of its SubIFDs)."""
        lay = self.layout
        count_size = 8 if lay.big else 2
        self.fh.seek(offset)
        raw = self.fh.read(count_size)
        if len(raw) < count_size:
            raise self._truncated(f"directory {index}")
        n = struct.unpack(lay.count_fmt, raw)[0]
        if n == 0:
            raise SlideError(self.path, f"image directory {index} is empty (it has no entries)", DAMAGED_HINT)
        if n > MAX_ENTRIES:
            raise SlideError(self.path, f"image directory {index} claims {n:,} entries (a real one has a few "
                                        "dozen)", DAMAGED_HINT)
        body = self.fh.read(n * lay.entry_size + lay.field_size)
        if len(body) < n * lay.entry_size + lay.field_size:
            raise self._truncated(f"directory {index}")
        next_offset = struct.unpack(lay.offset_fmt, body[-lay.field_size:])[0]
        entries = {}
        entry_fmt = lay.order + ("HHQ" if lay.big else "HHI")
        for i in range(n):
            e = body[i * lay.entry_size : (i + 1) * lay.entry_size]
            tag, typ, count = struct.unpack(entry_fmt, e[: 4 + (8 if lay.big else 4)])
            entries.setdefault(tag, (typ, count, e[-lay.field_size:]))
        if _NDPI_TAG in entries and not lay.big and lay.size > 1 << 32:
            self.ndpi_large = True
            return 0, []
        self._check_image(index, entries)
        subifds = []
        if 330 in entries:
            subifds = [int(v) for v in self._values(index, 330, entries[330], limit=256)]
        return next_offset, subifds

    # -- values ---------------------------------------------------------------
    def _values(self, index: int, tag: int, entry, limit: int | None = None, read: bool = True) -> np.ndarray | None:
        """The integer values of one entry (inline or pointed to), checked to lie inside the file.

        With ``read=False`` only their place is checked, and None is returned.
        """
        typ, count, field = entry
        name = _NAMES.get(tag, str(tag))
        code = _INTEGER_CODES.get(typ)
        if code is None:
            raise SlideError(self.path, f"image directory {index}: {name} has type {typ}, not an integer type",
                             DAMAGED_HINT)
        if limit is not None and count > limit:
            raise SlideError(self.path, f"image directory {index}: {name} lists {count:,} values, "
                                        f"at most {limit} are plausible", DAMAGED_HINT)
        nbytes = count * _TYPE_SIZES[typ]
        if nbytes <= self.layout.field_size:
            data = field[:nbytes]
        else:
            where = struct.unpack(self.layout.offset_fmt, field)[0]
            if where + nbytes > self.layout.size:
                raise SlideError(self.path, f"the file is truncated or damaged: the {name} of image directory "
                                            f"{index} ({count:,} values at byte {where:,}) lies past its end "
                                            f"({self.layout.size:,} bytes)", DAMAGED_HINT)
            if not read:
                return None
            self.fh.seek(where)
            data = self.fh.read(nbytes)
            if len(data) < nbytes:
                raise self._truncated(f"the {name} of directory {index}")
        return np.frombuffer(data, np.dtype(self.layout.order + code))

    def _scalar(self, index: int, tag: int, entries, default: int | None = None) -> int | None:
        entry = entries.get(tag)
        if entry is None or entry[1] == 0:
            return default
        values = self._values(index, tag, entry, limit=1024)
        return int(values.max()) if tag == 258 else int(values[0])

    # -- the image a directory declares -------------------------------------
    def _check_image(self, index: int, entries) -> None:
        scalar = {tag: self._scalar(index, tag, entries) for tag in _SCALARS}
        width, height = scalar[256], scalar[257]
        if not width or not height:
            raise SlideError(self.path, f"image directory {index} declares an empty image "
                                        f"({width or 0} x {height or 0} px)", DAMAGED_HINT)
        samples = scalar[277] if scalar[277] is not None else 1
        bits = scalar[258] if scalar[258] is not None else 1
        if samples < 1 or not 1 <= bits <= 64:
            raise SlideError(self.path, f"image directory {index} declares {samples} samples of {bits} bits "
                                        "per pixel", DAMAGED_HINT)
        depth = scalar[32997] or 1
        separate = scalar[284] == 2 and samples > 1
        compressed = (scalar[259] or 1) != 1
        tiled = 322 in entries or 323 in entries or 324 in entries
        if tiled:
            seg_w, seg_h, seg_d = scalar[322], scalar[323], scalar[32998] or 1
            if not seg_w or not seg_h:
                raise SlideError(self.path, f"image directory {index} declares tiles of {seg_w or 0} x "
                                            f"{seg_h or 0} px", DAMAGED_HINT)
            offsets_tag, counts_tag, unit = 324, 325, "tile"
            needed = -(-width // seg_w) * -(-height // seg_h) * -(-depth // seg_d)
        else:
            rows = scalar[278]
            seg_w, seg_h, seg_d = width, (rows if rows and rows < height else height), depth
            offsets_tag, counts_tag, unit = 273, 279, "strip"
            needed = -(-height // seg_h)
        if separate:
            needed *= samples
        segment_bytes = seg_w * seg_h * seg_d * (bits * (1 if separate else samples) + 7) // 8
        if segment_bytes > MAX_SEGMENT_BYTES and (tiled or compressed):
            raise SlideError(self.path, f"image directory {index} stores its {width:,} x {height:,} px image in "
                                        f"{unit}s of {seg_w:,} x {seg_h:,} px, {segment_bytes / 2**20:,.0f} MB each "
                                        f"once decoded (Biopsia decodes at most {MAX_SEGMENT_BYTES >> 20} MB at once)",
                             CONVERT_HINT)
        # libtiff works out the byte counts of uncompressed strips when a writer left them out
        counts_optional = counts_tag not in entries and not (tiled or compressed)
        tables = (offsets_tag,) if counts_optional else (offsets_tag, counts_tag)
        for tag in tables:
            entry = entries.get(tag)
            listed = entry[1] if entry is not None else 0
            if listed < needed:
                raise SlideError(self.path, f"image directory {index} declares a {width:,} x {height:,} px image, "
                                            f"which needs {needed:,} {unit}s of {seg_w:,} x {seg_h:,} px, but its "
                                            f"{_NAMES[tag]} lists {listed:,}", DAMAGED_HINT)
        self._values(index, offsets_tag, entries[offsets_tag], read=False)  # the table must lie inside the file
        if counts_tag not in tables:
            return
        counts = self._values(index, counts_tag, entries[counts_tag])
        if counts.size and int(counts.max()) > self.layout.size:
            raise SlideError(self.path, f"image directory {index}: a {unit} claims {int(counts.max()):,} bytes, "
                                        f"more than the whole file ({self.layout.size:,} bytes)", DAMAGED_HINT)

    def _truncated(self, what: str) -> SlideError:
        return SlideError(self.path, f"the file is truncated: {what} runs past its end "
                                     f"({self.layout.size:,} bytes)", DAMAGED_HINT)
