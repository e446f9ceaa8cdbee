"""MXNet's RecordIO container, written and read without MXNet (same bytes as ``mx.recordio``).

A record is ``magic (uint32) | lrecord (uint32) | payload | zero padding to 4 bytes`` with
``lrecord = cflag << 29 | length``. A payload that holds the magic number at a 4-byte boundary is
split there into parts (cflag 1 first, 2 middle, 3 last) and the reader puts the magic back, as
dmlc-core's writer does. An image record's payload is an ``IRHeader`` (``flag, label, id, id2``)
followed by the encoded image. The ``.idx`` file lists ``key<TAB>byte offset`` per line.

Writing with plain file calls keeps a full disk an ordinary ``OSError`` and lets any thread write.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from core.errors import DatasetError

MAGIC = 0xCED7230A
_INDEX_LINE = re.compile(r"\s*-?[0-9]{1,19}\s*\t\s*[0-9]{1,19}\s*")  # key, byte offset: 64-bit numbers
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")  # mx.recordio.IRHeader: flag, label, id, id2


class RecordIOError(DatasetError, ValueError):
    """A RecordIO file is damaged: bad magic, truncated record, or an index pointing nowhere."""


def pack_image_record(label: float, record_id: int, image_bytes: bytes) -> bytes:
    """IRHeader (flag 0, one float label) followed by the encoded image, as ``mx.recordio.pack``."""
    return _HEADER.pack(0, float(label), int(record_id), 0) + image_bytes


def unpack_image_record(payload: bytes, source: str = "record") -> tuple[float, int, bytes]:
    """``(label, id, image bytes)`` of a record written by `pack_image_record` or ``mx.recordio.pack``.

    Multi-label headers (flag > 0) give the first label. ``source`` names the record in messages
    (e.g. ``"train.rec, record 12"``).

    Raises
    ------
    RecordIOError
        A payload shorter than its header, or a header declaring more labels than the record holds.
    """
    if len(payload) < _HEADER.size:
        raise RecordIOError(f"{source}: {len(payload)} bytes, shorter than the {_HEADER.size}-byte image record "
                            "header; the file is damaged, write the dataset again")
    flag, label, record_id, _ = _HEADER.unpack_from(payload)
    body = payload[_HEADER.size:]
    if flag > 0:
        if 4 * flag > len(body):
            raise RecordIOError(f"{source}: the header declares {flag:,} labels but the record holds "
                                f"{len(body):,} bytes after it; the file is damaged, write the dataset again")
        label, body = struct.unpack_from("<f", body)[0], body[4 * flag:]
    return float(label), int(record_id), body


class RecordWriter:
    """Append records to ``rec_path`` and write ``idx_path`` on `close` (use as a context manager)."""

    def __init__(self, rec_path, idx_path):
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        self._file = open(self.rec_path, "wb")
        self._index: list[tuple[int, int]] = []

    def write(self, key: int, payload: bytes) -> None:
        self._index.append((int(key), self._file.tell()))
        self._file.write(_encode(payload))

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
        finally:
            self._file.close()
        self.idx_path.write_text("".join(f"{k}\t{pos}\n" for k, pos in self._index), encoding="ascii")

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._file.close()


def _encode(payload: bytes) -> bytes:
    parts, start = [], 0
    aligned_end = len(payload) // 4 * 4
    found = payload.find(_MAGIC_BYTES)
    while 0 <= found < aligned_end:
        if found % 4 == 0:
            parts.append((1 if start == 0 else 2, payload[start:found]))
            start = found + 4
            found = payload.find(_MAGIC_BYTES, start)
        else:
            found = payload.find(_MAGIC_BYTES, found + 1)
    parts.append((3 if start else 0, payload[start:]))
    out = bytearray()
    for cflag, data in parts:
        out += _MAGIC_BYTES + struct.pack("<I", (cflag << 29) | len(data)) + data
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


class RecordReader:
    """Random access to the records of ``rec_path`` through its ``.idx`` file."""

    def __init__(self, rec_path, idx_path=None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self.offsets: dict[int, int] = {}
        try:
            lines = self.idx_path.read_text(encoding="ascii").splitlines()
        except OSError as err:
            raise RecordIOError(f"{self.idx_path}: index unreadable ({err.strerror or err})") from err
        except UnicodeDecodeError:
            raise RecordIOError(f"{self.idx_path}: index unreadable (not ASCII text; the index is damaged, write "
                                "the dataset again)") from None
        for n, line in enumerate(lines, 1):
            fields = line.split("\t")
            if len(fields) != 2 or not _INDEX_LINE.fullmatch(line):
                raise RecordIOError(f"{self.idx_path}, line {n}: expected 'key<TAB>offset' (whole numbers); the "
                                    "index is damaged, write the dataset again")
            self.offsets[int(fields[0])] = int(fields[1])
        try:
            self._data = self.rec_path.read_bytes()
        except OSError as err:
            raise RecordIOError(f"{self.rec_path}: unreadable ({err.strerror or err})") from err

    @property
    def keys(self) -> list[int]:
        return list(self.offsets)

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (its parts joined).

        Raises
        ------
        RecordIOError
            A key the index does not list, a bad magic number, a part cut off by the end of the file, or
            parts out of order.
        """
        if key not in self.offsets:
            raise RecordIOError(f"{self.idx_path}: no record {key} in the index")
        pos = self.offsets[key]
        payload = bytearray()
        first = True
        while True:
            if pos + 8 > len(self._data):
                raise RecordIOError(f"{self.rec_path}: record {key} is cut off at byte {pos}")
            magic, lrec = struct.unpack_from("<II", self._data, pos)
            if magic != MAGIC:
                raise RecordIOError(f"{self.rec_path}: no record {key} at byte {pos} (bad magic number)")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            if cflag not in ((0, 1) if first else (2, 3)):
                raise RecordIOError(f"{self.rec_path}: record {key} has its parts out of order at byte {pos} "
                                    "(the file is damaged)")
            first = False
            end = pos + 8 + length
            if end > len(self._data):
                raise RecordIOError(f"{self.rec_path}: record {key} is cut off (file ends at {len(self._data)})")
            payload += self._data[pos + 8:end]
            pos = end + (-length % 4)
            if cflag in (0, 3):
                return bytes(payload)
            payload += _MAGIC_BYTES
