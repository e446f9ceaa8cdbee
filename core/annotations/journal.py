"""The journal beside a project's mark file: every save appends what changed since the last one.

Layout, next to the GeoJSON file that QuPath reads (complete after a clean close)::

    <slide-id>.geojson           the marks as of the last full write
    <slide-id>.geojson.journal   what changed since, appended and fsynced at every save

The journal is ``SIGNATURE`` followed by frames. A frame is ``b"REC1"``, the payload's length and
its CRC-32 (little-endian uint32 each), then the payload: one line of JSON, optionally followed by a
compact QuPath GeoJSON FeatureCollection of the marks that record puts.

* ``{"type": "base", "sha256": H, "seq": S}`` says: a GeoJSON file whose bytes hash to ``H`` holds
  exactly the marks after record ``S``. The first frame is one; another is appended before every
  rewrite of the GeoJSON file, so that whichever of the two files a crash leaves is understood.
* ``{"type": "edits", "seq": N, "ops": [...], "classes": [[name, [r, g, b]], ...]}``: the net changes
  of one save, in replay order: ``["del", id]``, ``["put", id]`` (replace in place, or append),
  ``["end", id]`` (take out, then append), ``["meta", id, class_name, note, [r, g, b]]`` (same geometry).

Opening reads the journal, then the GeoJSON file, finds the last base frame naming the file's hash
and replays the edits after it. A torn last frame (a crash while saving) is dropped with a warning.
A journal naming no base that matches the file (the file was replaced since) is not replayed, and
is set aside, never deleted, when saving starts again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.annotations.formats import class_colors, format_for_reading, normalise_id, qupath_geojson, read_bytes
from core.annotations.model import Annotation, AnnotationClass
from core.annotations.store import Changes
from core.atomic import atomic_write_bytes
from core.errors import AnnotationFormatError

SUFFIX = ".journal"
SIGNATURE = b"BIOPSIA-JOURNAL 1\n"
_TAG = b"REC1"
_HEADER = struct.Struct("<4sII")
#: A journal larger than this is refused like an oversized annotation file.
MAX_JOURNAL_BYTES = 1 << 30

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def journal_path(path) -> Path:
    """``<file>.journal`` beside the mark file."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def path_lock(path) -> threading.RLock:
    """The lock this process holds while it changes or reads one mark file and its journal."""
    key = os.path.abspath(os.fspath(path))
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


@dataclass(frozen=True)
class FileId:
    """Which file, and which version of it: changes when it is replaced or written."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileId":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def file_id(path) -> FileId | None:
    """The id of the file at ``path`` now, None when there is none."""
    try:
        return FileId.of(os.stat(path))
    except FileNotFoundError:
        return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- encoding -------------------------------------------------------------------------------
def frame(payload: bytes) -> bytes:
    """A payload framed with its length and checksum."""
    return _HEADER.pack(_TAG, len(payload), zlib.crc32(payload)) + payload


def _json(value) -> bytes:
    # ASCII with escapes: any text (even a lone surrogate) can be written, and read back the same.
    # NaN too: a file's own properties may hold it, and they are written back as they were.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def base_payload(sha: str, seq: int) -> bytes:
    return _json({"type": "base", "sha256": sha, "seq": seq}) + b"\n"


def edits_payload(seq: int, changes: Changes) -> bytes | None:
    """The record of ``changes`` (None when they change nothing on disk)."""
    ops: list[list] = []
    puts: list[Annotation] = []
    for ann_id, change in changes.entries.items():
        ann = change.annotation
        if ann is None:
            if change.base is not None:
                ops.append(["del", ann_id])
        elif change.moved:
            ops.append(["end", ann_id])
            puts.append(ann)
        elif change.base is not None and ann.geometry is change.base.geometry and ann.extra is change.base.extra:
            color = class_colors(changes.classes_now, [ann])[ann.class_name]
            ops.append(["meta", ann_id, ann.class_name, ann.note, list(color)])  # a new class or note: no vertices
        else:
            ops.append(["put", ann_id])
            puts.append(ann)
    if not ops and changes.classes is None:
        return None
    meta: dict = {"type": "edits", "seq": seq, "ops": ops}
    if changes.classes is not None:
        meta["classes"] = [[c.name, [int(v) for v in c.color]] for c in changes.classes]
    body = _json(qupath_geojson.to_dict(puts, changes.classes_now)) if puts else b""
    return _json(meta) + b"\n" + body


def geojson_bytes(annotations, classes, foreign=()) -> bytes:
    """The mark file: a QuPath GeoJSON FeatureCollection, one compact feature per line, then ``foreign``."""
    features = qupath_geojson.to_dict(annotations, classes)["features"]
    lines = [_json(f) for f in (*features, *foreign)]
    return b'{"type":"FeatureCollection","features":[\n' + b",\n".join(lines) + b"\n]}\n"


# -- reading --------------------------------------------------------------------------------
@dataclass
class Frames:
    """The readable records of a journal and where reading stopped."""

    records: list[tuple[dict, bytes]] = field(default_factory=list)  # (the JSON line, the rest)
    good_length: int = 0
    problem: str | None = None  # None, "torn" (incomplete last frame), "damaged", "not a journal"
    detail: str = ""


def read_frames(data: bytes) -> Frames:
    """Every whole, intact frame from the start; stops at the first torn or damaged one."""
    if not data.startswith(SIGNATURE):
        if SIGNATURE.startswith(data):  # a crash while the journal was being created: nothing in it yet
            return Frames(problem="torn", detail="the journal was never completed")
        return Frames(problem="not a journal", detail="not a Biopsia journal")
    out = Frames(good_length=len(SIGNATURE))
    pos = len(SIGNATURE)
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            return _stop(out, "torn", len(data) - pos)
        tag, length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if tag != _TAG:
            return _stop(out, "damaged", len(data) - pos)
        if end > len(data):
            return _stop(out, "torn", len(data) - pos)
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            return _stop(out, "damaged" if end < len(data) else "torn", len(data) - pos)
        head, _, body = payload.partition(b"\n")
        try:
            meta = json.loads(head)
            if not isinstance(meta, dict) or meta.get("type") not in ("base", "edits") \
                    or not isinstance(meta.get("seq"), int):
                raise ValueError("unknown record")
        except ValueError:  # also UnicodeDecodeError: a checksum that matches damaged bytes
            return _stop(out, "damaged", len(data) - pos)
        out.records.append((meta, body))
        pos = end
        out.good_length = pos
    return out


def _stop(out: Frames, problem: str, dropped: int) -> Frames:
    out.problem = problem
    out.detail = f"the last {dropped} bytes" if problem == "torn" else f"{dropped} bytes from byte {out.good_length} on"
    return out


@dataclass
class Origin:
    """The files a store was read from, so that saving can go on from them (see :class:`core.project.autosave.AutoSaver`).

    ``journal_state`` is "none" (no journal), "ok", "torn" (its incomplete last frame is cut off
    when saving resumes), "stale" (it does not belong to the GeoJSON file: set aside) or "damaged"
    (unreadable past ``journal_good``: set aside after a full write).
    """

    path: Path
    geojson: FileId | None
    geojson_sha: str | None
    geojson_size: int
    new_ids: int
    journal: FileId | None
    journal_good: int
    journal_seq: int
    journal_state: str
    revision: int = 0


@dataclass
class Saved:
    """What :func:`read_saved` found: the marks with the journal replayed, and how to go on."""

    annotations: list[Annotation]
    classes: list[AnnotationClass]
    foreign: list
    warnings: list[str]
    origin: Origin


def read_saved(path) -> Saved:
    """The marks saved at ``path``: the GeoJSON file with its journal replayed.

    Raises
    ------
    AnnotationFormatError
        When the GeoJSON file or the journal exists but cannot be read, or the GeoJSON file is
        malformed (the message names the file). A torn or damaged journal is not an error: what
        can be read of it is used, with a warning.
    """
    path = Path(path)
    jpath = journal_path(path)
    with path_lock(path):
        for _ in range(5):  # another program may replace the files while they are read: read again
            # The journal first: a base frame is appended before the GeoJSON file is replaced, so the
            # journal read here names whichever GeoJSON file is read after it.
            journal_data, journal_id = _read_journal(jpath)
            geojson_id = file_id(path)
            data = read_bytes(path) if geojson_id is not None else None
            if file_id(path) == geojson_id and file_id(jpath) == journal_id:
                break
    warnings: list[str] = []
    if data is not None:
        loaded = format_for_reading(path, data).parse(data, path)
        annotations, found, foreign, new_ids = loaded.annotations, list(loaded.classes), loaded.foreign, loaded.new_ids
        warnings += loaded.warnings
        sha = sha256(data)
    else:
        annotations, found, foreign, new_ids, sha = [], [], [], 0, None
    origin = Origin(path, geojson_id, sha, len(data) if data is not None else 0, new_ids,
                    journal_id, 0, 0, "none")
    if journal_data is None:
        return Saved(annotations, found, foreign, warnings, origin)

    frames = read_frames(journal_data)
    origin.journal_good = frames.good_length
    start = _matching_base(frames.records, sha)
    if start is None:
        origin.journal_state = "stale"
        if any(meta["type"] == "base" for meta, _ in frames.records):
            why = f"does not belong to {path.name} as it is now (the file was replaced since)"
        else:  # a journal is made whole with its first frame: this one is damaged at its start
            why = f"is damaged ({frames.detail or 'no readable start'})"
        warnings.append(f"{jpath}: this journal of unsaved edits {why}, so it was not applied; it will be "
                        f"kept aside as {jpath.name}.<time>.unused")
        return Saved(annotations, found, foreign, warnings, origin)
    items = {a.id: a for a in annotations}
    classes = {c.name: c for c in found}
    complete = _replay(frames.records, frames.records[start][0]["seq"], items, classes, jpath, warnings)
    origin.journal_seq = max(meta["seq"] for meta, _ in frames.records)
    origin.journal_state = "ok"
    if not complete:
        origin.journal_state = "damaged"
    elif frames.problem == "torn":
        origin.journal_state = "torn"
        warnings.append(f"{jpath}: {frames.detail} were an incomplete save (Biopsia stopped while saving); "
                        "they were dropped, and every save before them is kept")
    elif frames.problem is not None:
        origin.journal_state = "damaged"
        warnings.append(f"{jpath}: damaged ({frames.detail} cannot be read); the edits before the damage "
                        f"are kept, and the journal will be kept aside as {jpath.name}.<time>.damaged")
    return Saved(list(items.values()), list(classes.values()), foreign, warnings, origin)


def _read_journal(jpath: Path) -> tuple[bytes | None, FileId | None]:
    try:
        with open(jpath, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > MAX_JOURNAL_BYTES:
                raise AnnotationFormatError(f"{jpath}: the journal of unsaved edits is {st.st_size / 2**20:.0f} MB, "
                                            f"more than the {MAX_JOURNAL_BYTES // 2**20} MB Biopsia reads")
            data = fh.read()
            return data, FileId.of(os.fstat(fh.fileno()))
    except FileNotFoundError:
        return None, None
    except OSError as err:
        raise AnnotationFormatError(f"{jpath}: cannot read the journal of unsaved edits: "
                                    f"{err.strerror or err}") from err


def _matching_base(records: list[tuple[dict, bytes]], sha: str | None) -> int | None:
    """Index of the last base frame naming ``sha``, None when there is none."""
    if sha is None:
        return None
    for index in range(len(records) - 1, -1, -1):
        meta = records[index][0]
        if meta["type"] == "base" and meta.get("sha256") == sha:
            return index
    return None


def _replay(records, base_seq: int, items: dict, classes: dict, jpath: Path, warnings: list[str]) -> bool:
    """Apply every edit record numbered after ``base_seq`` to ``items``; False when one could not be applied.

    Numbers grow through the file, and a base frame may follow records it does not hold (it is
    appended while saving goes on), so the records applied are chosen by number, not by place.
    """
    seq = base_seq
    for meta, body in records:
        if meta["type"] != "edits" or meta["seq"] <= seq:
            continue  # a base frame, or a record the GeoJSON file already holds
        if meta["seq"] != seq + 1:
            warnings.append(f"{jpath}: record {seq + 1} is missing; the edits after it were not applied")
            return False
        try:
            puts = {}
            if body:
                parsed = qupath_geojson.parse(body, jpath)
                puts = {a.id: a for a in parsed.annotations}
                for c in parsed.classes:
                    classes.setdefault(c.name, c)
            for c in meta.get("classes") or ():
                classes[str(c[0])] = AnnotationClass(str(c[0]), tuple(int(v) for v in c[1]))
            for op in meta["ops"]:
                kind, ann_id = op[0], normalise_id(op[1])
                if kind == "del":
                    items.pop(ann_id, None)
                elif kind == "meta":
                    if ann_id in items:
                        items[ann_id] = replace(items[ann_id], class_name=str(op[2]), note=str(op[3]))
                        classes.setdefault(str(op[2]), AnnotationClass(str(op[2]), tuple(int(v) for v in op[4])))
                elif ann_id in puts:
                    if kind == "end":
                        items.pop(ann_id, None)
                    items[ann_id] = puts[ann_id]
                else:
                    warnings.append(f"{jpath}: record {meta['seq']}: mark {ann_id} could not be read back")
        except (AnnotationFormatError, KeyError, IndexError, TypeError, ValueError) as err:
            warnings.append(f"{jpath}: record {meta['seq']} cannot be applied ({err}); the edits after it "
                            "were not applied")
            return False
        seq = meta["seq"]
    return True


def set_aside(jpath: Path, why: str) -> Path | None:
    """Rename a journal that must not be used, keeping it for a person to look at; None when it is gone."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(100):
        target = jpath.with_name(f"{jpath.name}.{stamp}{'-' + str(n) if n else ''}.{why}")
        if not target.exists():
            try:
                os.rename(jpath, target)
            except FileNotFoundError:
                return None
            return target
    raise FileExistsError(f"{jpath}: too many journals set aside")


# -- writing --------------------------------------------------------------------------------
class JournalWriter:
    """Appends frames to one journal file, each flushed to the disk before :meth:`append` returns.

    A failed append is cut off again, so the journal never holds a broken frame before a good
    one; when even that fails, ``broken`` is set and the journal must not be appended to.
    ``seq`` is the number of the last record; ``edits`` says whether it holds edit records.
    """

    def __init__(self, path: Path, fd: int, size: int, seq: int, edits: bool):
        self.path = path
        self._fd = fd
        self.size = size
        self.seq = seq
        self.edits = edits
        self.broken = False
        self._starts: list[tuple[int, int]] = []  # (seq, offset) of the edit records this writer knows

    @classmethod
    def create(cls, path: Path, sha: str, base_seq: int, tail: bytes = b"", seq: int | None = None) -> "JournalWriter":
        """A new journal (replacing any at ``path``) going on from the GeoJSON file hashing to ``sha``.

        ``tail`` holds frames to keep after the base frame (records the file does not hold yet);
        ``seq`` is the number of the last of them.
        """
        head = SIGNATURE + frame(base_payload(sha, base_seq))
        atomic_write_bytes(path, head + tail)
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        writer = cls(path, fd, len(head) + len(tail), base_seq if seq is None else seq, bool(tail))
        pos = 0
        while pos < len(tail):  # index the kept records, for the next compaction
            _tag, length, _crc = _HEADER.unpack_from(tail, pos)
            meta = json.loads(tail[pos + _HEADER.size:pos + _HEADER.size + length].partition(b"\n")[0])
            if meta["type"] == "edits":
                writer._starts.append((meta["seq"], len(head) + pos))
            pos += _HEADER.size + length
        return writer

    @classmethod
    def resume(cls, path: Path, expected: FileId, good: int, seq: int) -> "JournalWriter | None":
        """Go on appending to the journal read as ``expected``, cut to its ``good`` length; None when it changed."""
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        try:
            if FileId.of(os.fstat(fd)) != expected:
                os.close(fd)
                return None
            if expected.size > good:  # the torn frame of a crash
                os.ftruncate(fd, good)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, good, seq, True)

    def append(self, payload: bytes, seq: int | None = None) -> None:
        """Write one frame and flush it to the disk; ``seq`` numbers an edit record.

        Raises
        ------
        OSError
            When it cannot be written; the journal is then as before (or ``broken``).
        """
        if self.broken:
            raise OSError(errno.EIO, "the journal could not be repaired after a failed save", str(self.path))
        data = frame(payload)
        try:
            done = 0
            while done < len(data):
                if hasattr(os, "pwrite"):
                    done += os.pwrite(self._fd, data[done:], self.size + done)
                else:  # Windows
                    os.lseek(self._fd, self.size + done, os.SEEK_SET)
                    done += os.write(self._fd, data[done:])
            (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self._fd)  # macOS has no fdatasync
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.broken = True
            raise
        if seq is not None:
            self._starts.append((seq, self.size))
            self.seq, self.edits = seq, True
        self.size += len(data)

    def records_after(self, seq: int) -> bytes:
        """The frames from the first edit record numbered after ``seq`` to the end."""
        offset = next((start for n, start in self._starts if n > seq), self.size)
        chunks, pos = [], offset
        while pos < self.size:
            if hasattr(os, "pread"):
                chunk = os.pread(self._fd, self.size - pos, pos)
            else:  # Windows
                os.lseek(self._fd, pos, os.SEEK_SET)
                chunk = os.read(self._fd, self.size - pos)
            if not chunk:
                raise OSError(errno.EIO, "the journal is shorter than expected", str(self.path))
            chunks.append(chunk)
            pos += len(chunk)
        return b"".join(chunks)

    def is_current(self) -> bool:
        """Whether the file at ``path`` is still this journal, as this writer left it."""
        if self._fd < 0:
            return False
        try:
            st, mine = os.stat(self.path), os.fstat(self._fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino) and st.st_size == self.size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
