"""Seeded fuzzer for RecordIO datasets: damaged ``.rec`` / ``.idx`` files give a DatasetError naming the file.

The source is a small RecordIO file written by `core.tiles.recordio.RecordWriter`: PNG tiles with image
record headers, plus records whose payload holds the magic number (so they are split into parts).
Each case damages a copy: bytes flipped in record headers (magic, length and part flags, the image
header's flag and label) or anywhere, the file cut short or grown, bytes inserted or removed; index lines
changed, swapped, doubled, emptied or filled with junk. It then reads every record through the reader
and, for image datasets, through `core.tiles.dataset.read_records`.

Only DatasetError (RecordIOError is one) may escape, its message must name the damaged file, each case
takes bounded time, peak memory stays bounded, and the source files never change. A failure names its seed; replay it with
``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1``.
"""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import DatasetError
from core.tiles.recordio import MAGIC, RecordReader, RecordWriter, pack_image_record, unpack_image_record
from fuzzing import peak_memory_mb, reset_peak_memory, seeds

CASES = 400
CASE_LIMIT_S = 20.0
RSS_GROWTH_LIMIT_MB = 1536  # damaged PNG chunk lengths (OpenCV took 641 MB for seed 142) are refused first
MAGIC_BYTES = struct.pack("<I", MAGIC)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path, dict[int, bytes]]:
    import cv2

    folder = tmp_path_factory.mktemp("rec-source")
    rng = np.random.default_rng(0)
    payloads = {}
    rec, idx = folder / "tiles.rec", folder / "tiles.idx"
    with RecordWriter(rec, idx) as writer:
        for key in range(12):
            tile = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            ok, png = cv2.imencode(".png", tile)
            assert ok
            payload = pack_image_record(key % 2, key, png.tobytes())
            if key % 4 == 3:  # the magic number at 4-byte boundaries: the record is written in parts
                payload = payload + b"\0" * (-len(payload) % 4) + MAGIC_BYTES * 2 + b"tail"
            payloads[key] = payload
            writer.write(key, payload)
    return rec, idx, payloads


def _record_starts(data: bytes) -> list[int]:
    return [i for i in range(0, len(data) - 3, 4) if data[i:i + 4] == MAGIC_BYTES]


def _damage_rec(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    starts = _record_starts(data)
    kind = rng.choice(["lrecord", "lrecord", "magic", "image-flag", "image-flag", "label", "flip", "truncate",
                       "grow", "insert", "delete"])
    pos = rng.choice([p for p in starts if p + 16 <= len(data)])
    if kind == "lrecord":  # the part flag (top 3 bits) and the length
        value = rng.choice([0xFFFFFFFF, 1 << 29, 2 << 29, 3 << 29, 7 << 29, 0, rng.getrandbits(32),
                            struct.unpack_from("<I", data, pos + 4)[0] ^ (1 << rng.randrange(32))])
        struct.pack_into("<I", out, pos + 4, value)
    elif kind == "magic":
        out[pos + rng.randrange(4)] ^= 1 << rng.randrange(8)
    elif kind == "image-flag":  # IRHeader.flag: how many float labels follow the header
        struct.pack_into("<I", out, pos + 8, rng.choice([1, 2, 1000, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)]))
    elif kind == "label":
        struct.pack_into("<f", out, pos + 12, rng.choice([float("nan"), float("inf"), -1.0, 0.5, 1e30, 7.0]))
    elif kind == "flip":
        for _ in range(rng.choice([1, 4, 32])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        out = out[:rng.randrange(len(out))]
    elif kind == "grow":
        out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    elif kind == "insert":
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    else:
        at = rng.randrange(len(out))
        del out[at:at + rng.randrange(1, 9)]
    return kind, bytes(out)


def _damage_idx(text: str, rng: random.Random) -> tuple[str, bytes]:
    lines = text.splitlines()
    kind = rng.choice(["offset", "key", "swap", "double", "junk", "empty", "binary"])
    n = rng.randrange(len(lines))
    key, offset = lines[n].split("\t")
    if kind == "offset":
        lines[n] = f"{key}\t{rng.choice([0, 1, 3, int(offset) + 4, int(offset) - 4, 10 ** 30, 2 ** 63])}"
    elif kind == "key":
        lines[n] = f"{rng.choice(['-1', '99999999999999999999', key + key, ''])}\t{offset}"
    elif kind == "swap":
        m = rng.randrange(len(lines))
        lines[n], lines[m] = lines[m], lines[n]
    elif kind == "double":
        lines.insert(n, lines[n])
    elif kind == "junk":
        lines[n] = rng.choice(["x\ty", "1\t2\t3", "\t", "1 2", "\u00e9\t1", "1\t-5", "1\t" + "9" * 5000])
    elif kind == "empty":
        return kind, b""
    else:
        return kind, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    return kind, ("\n".join(lines) + "\n").encode("utf-8")


def test_damaged_recordio_gives_dataset_errors_naming_the_file(source, tmp_path):
    from core.tiles.dataset import read_records

    rec, idx, payloads = source
    reader = RecordReader(rec)
    assert {key: reader.read(key) for key in reader.keys} == payloads  # the undamaged source reads back
    rec_data, idx_text = rec.read_bytes(), idx.read_text()
    huge = bytearray(rec_data)
    struct.pack_into("<I", huge, 8, 0xFFFFFFF0)  # the first record's image header: 4 billion labels
    (tmp_path / "huge-flag.rec").write_bytes(bytes(huge))
    (tmp_path / "huge-flag.idx").write_text(idx_text)
    with pytest.raises(DatasetError, match=r"huge-flag\.rec, record 0: the header declares 4,294,967,280 labels"):
        read_records(tmp_path / "huge-flag.rec", workers=1)  # was struct.error
    outcomes = {"refused": 0, "read": 0}
    rss_before = reset_peak_memory()
    for seed in seeds(CASES):
        rng = random.Random(seed)
        case_rec, case_idx = tmp_path / f"case-{seed}.rec", tmp_path / f"case-{seed}.idx"
        new_rec, new_idx = rec_data, idx_text.encode()
        kind = ""
        if rng.random() < 0.75:
            kind, new_rec = _damage_rec(rec_data, rng)
        if not kind or rng.random() < 0.2:
            idx_kind, new_idx = _damage_idx(idx_text, rng)
            kind = f"{kind}+idx-{idx_kind}" if kind else f"idx-{idx_kind}"
        case_rec.write_bytes(new_rec)
        case_idx.write_bytes(new_idx)
        where = f"seed {seed} ({kind})"
        started = time.monotonic()
        for reader_name in ("records", "read_records"):
            try:
                if reader_name == "records":
                    reader = RecordReader(case_rec)
                    for key in reader.keys:
                        unpack_image_record(reader.read(key), f"{case_rec}, record {key}")
                else:
                    read_records(case_rec, workers=1)
            except DatasetError as err:
                outcomes["refused"] += 1
                assert str(case_rec) in str(err) or str(case_idx) in str(err), f"{where}: {err}"
            except Exception as err:  # anything but a DatasetError is a bug: report the seed
                pytest.fail(f"{where}, {reader_name}: {type(err).__name__}: {err}")
            else:
                outcomes["read"] += 1
        assert time.monotonic() - started < CASE_LIMIT_S, f"{where}: took {time.monotonic() - started:.1f} s"
        case_rec.unlink()
        case_idx.unlink()
    growth_mb = peak_memory_mb() - rss_before
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"peak memory grew by {growth_mb:.0f} MB"
    assert rec.read_bytes() == rec_data and idx.read_text() == idx_text  # the source never changed
    assert outcomes["refused"] and outcomes["read"], outcomes
