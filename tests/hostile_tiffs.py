"""Hand-made and hand-damaged TIFFs for the slide robustness tests and the slide fuzzer.

Every helper works on classic TIFF and BigTIFF, little- and big-endian, and
edits bytes in a ``bytearray``; none of them trusts the file (walks are bounded).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

#: Tags by name, for readable edits.
TAGS = {"ImageWidth": 256, "ImageLength": 257, "BitsPerSample": 258, "Compression": 259, "StripOffsets": 273,
        "SamplesPerPixel": 277, "RowsPerStrip": 278, "StripByteCounts": 279, "TileWidth": 322,
        "TileLength": 323, "TileOffsets": 324, "TileByteCounts": 325, "SubIFDs": 330}


def layout(data: bytes) -> tuple[str, bool]:
    """(byte order, is BigTIFF) of a TIFF header."""
    order = {b"II": "<", b"MM": ">"}[bytes(data[:2])]
    return order, struct.unpack(order + "H", data[2:4])[0] == 43


def ifd_offsets(data: bytes, limit: int = 64) -> list[int]:
    """Offsets of the main chain's directories (at most ``limit``, stopping at a loop or the file's end)."""
    order, big = layout(data)
    offset = struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    found: list[int] = []
    while offset and offset not in found and len(found) < limit and offset + 16 < len(data):
        found.append(offset)
        n = struct.unpack(order + ("Q" if big else "H"), data[offset : offset + (8 if big else 2)])[0]
        if n > 4096:
            break
        at = offset + (8 if big else 2) + n * (20 if big else 12)
        if at + 8 > len(data):
            break
        offset = struct.unpack(order + ("Q" if big else "I"), data[at : at + (8 if big else 4)])[0]
    return found


def next_pointer_at(data: bytes, ifd: int) -> int:
    """Byte position of a directory's next-directory pointer."""
    order, big = layout(data)
    n = struct.unpack(order + ("Q" if big else "H"), data[ifd : ifd + (8 if big else 2)])[0]
    return ifd + (8 if big else 2) + n * (20 if big else 12)


def set_next(data: bytearray, ifd: int, target: int) -> bool:
    """Point a directory's next-directory pointer at ``target`` (a loop when it is an earlier one).

    False when the pointer lies past the end (a damaged entry count).
    """
    order, big = layout(data)
    at = next_pointer_at(data, ifd)
    if at + (8 if big else 4) > len(data):
        return False
    struct.pack_into(order + ("Q" if big else "I"), data, at, target)
    return True


def entry_positions(data: bytes, ifd: int) -> dict[int, int]:
    """Tag -> byte position of its entry in one directory."""
    order, big = layout(data)
    n = struct.unpack(order + ("Q" if big else "H"), data[ifd : ifd + (8 if big else 2)])[0]
    first = ifd + (8 if big else 2)
    size = 20 if big else 12
    return {struct.unpack(order + "H", data[first + i * size : first + i * size + 2])[0]: first + i * size
            for i in range(min(n, 4096)) if first + (i + 1) * size <= len(data)}


def set_tag(data: bytearray, ifd: int, tag: int, value: int) -> bool:
    """Rewrite an existing entry as one inline integer (LONG, or LONG8 in BigTIFF); False when it is absent."""
    order, big = layout(data)
    at = entry_positions(data, ifd).get(tag)
    if at is None:
        return False
    if big:
        struct.pack_into(order + "HHQQ", data, at, tag, 16, 1, value)
    else:
        struct.pack_into(order + "HHII", data, at, tag, 4, 1, value & 0xFFFFFFFF)
    return True


def clear_entries(data: bytearray, ifd: int) -> None:
    """Make a directory empty (zero entries), keeping its next pointer's bytes where they were read from."""
    order, big = layout(data)
    struct.pack_into(order + ("Q" if big else "H"), data, ifd, 0)


def write_sparse_tiff(path: Path, width: int, height: int, tile: int = 256, big: bool = False,
                      order: str = "<", tiles: dict[int, np.ndarray] | None = None) -> Path:
    """A tiled 8-bit RGB TIFF of any declared size whose tiles are all unwritten (offset 0), but ``tiles``.

    Such a file is valid (OpenSlide and tifffile show unwritten tiles as glass) and tiny, however large it
    claims to be: what a reader must do in bounded memory and time.
    """
    tiles = tiles or {}
    n_tiles = -(-width // tile) * -(-height // tile)
    assert n_tiles > 1, "the tile tables are written out of line"
    off_code, off_size = ("Q", 8) if big else ("I", 4)
    header_size = 16 if big else 8
    entry_size, count_size = (20, 8) if big else (12, 2)
    n_entries = 10
    ifd_at = header_size
    bits_at = ifd_at + count_size + n_entries * entry_size + off_size
    offsets_at = bits_at + 8
    counts_at = offsets_at + n_tiles * off_size
    data_at = counts_at + n_tiles * off_size
    offsets, counts = np.zeros(n_tiles, np.uint64), np.zeros(n_tiles, np.uint64)
    payload = b""
    for index, pixels in sorted(tiles.items()):
        raw = np.ascontiguousarray(pixels, np.uint8).tobytes()
        assert len(raw) == tile * tile * 3
        offsets[index], counts[index] = data_at + len(payload), len(raw)
        payload += raw
    dt = np.dtype(order + ("u8" if big else "u4"))

    def entry(tag, typ, count, value: bytes) -> bytes:
        head = struct.pack(order + ("HHQ" if big else "HHI"), tag, typ, count)
        return head + value.ljust(off_size, b"\0")

    def inline(code: str, value: int) -> bytes:
        return struct.pack(order + code, value)

    long_type, long_code = (16, "Q") if big else (4, "I")
    entries = [
        entry(256, long_type, 1, inline(long_code, width)),
        entry(257, long_type, 1, inline(long_code, height)),
        entry(258, 3, 3, struct.pack(order + "HHH", 8, 8, 8)) if big else entry(258, 3, 3, inline("I", bits_at)),
        entry(259, 3, 1, inline("H", 1)),
        entry(262, 3, 1, inline("H", 2)),
        entry(277, 3, 1, inline("H", 3)),
        entry(322, 3, 1, inline("H", tile)),
        entry(323, 3, 1, inline("H", tile)),
        entry(324, long_type, n_tiles, inline(long_code, offsets_at)),
        entry(325, long_type, n_tiles, inline(long_code, counts_at)),
    ]
    assert len(entries) == n_entries
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    head += struct.pack(order + "HHQ", 8, 0, ifd_at) if big else struct.pack(order + "I", ifd_at)
    ifd = struct.pack(order + ("Q" if big else "H"), n_entries) + b"".join(entries) + b"\0" * off_size
    bits = struct.pack(order + "HHH", 8, 8, 8) + b"\0\0"
    with open(path, "wb") as fh:
        fh.write(head + ifd + bits + offsets.astype(dt).tobytes() + counts.astype(dt).tobytes() + payload)
    return path
