"""Seeded fuzzer for slide files: damaged copies of real and synthetic slides must give only SlideErrors,
in bounded time and memory, and never change a file.

Each case takes a small slide (a synthetic Aperio SVS, tifffile pyramids in several layouts, a huge
sparse TIFF, the real CMU SVS, the shared DICOM when present) and damages a copy: truncation, bytes
flipped in its directories or in its tile data, a directory chain looped back, a declared size made
huge or zero. It then opens the copy, reads regions of its first and last level, its thumbnail and
its associated images.

The cases run in a fresh interpreter whose address space is limited to ``AS_LIMIT`` (so a blow-up
fails this test instead of the machine); a case that makes no progress for ``HANG_S`` seconds, a
crash, a peak resident size over ``RSS_LIMIT_MB``, a MemoryError, an exception that is not a
SlideError, or a changed file fails the test with its seed. Replay one with
``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent
CMU = TESTS / "data" / "CMU-1-Small-Region.svs"
SHARED_SLIDES = TESTS.parents[1] / "shared" / "data" / "slides"
#: Cases in the quick run of ``make test``.
CASES = 200
#: The child's address-space limit, and the resident size no case may exceed (the issue's goal).
AS_LIMIT = 2 << 30
RSS_LIMIT_MB = 1536
#: The list of undamaged sources, written by ``--sources`` into the work folder.
SOURCES_FILE = "sources.json"
#: A case taking this long is a hang (they take a fraction of a second), or too slow (the goal is 30 s).
HANG_S = 30.0
CASE_LIMIT_S = 30.0


# -- the test (parent) ------------------------------------------------------------------------------------
def test_damaged_slides_raise_only_slide_errors_in_bounded_time_and_memory(tmp_path):
    import pytest

    from fuzzing import fuzz_seconds, record

    log = tmp_path / "cases.jsonl"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    output_path = tmp_path / "child-output.txt"
    # The undamaged sources are made by an interpreter of their own: the cases' child measures its peak
    # memory from its start, and making the synthetic slide must not count against the first case.
    made = subprocess.run([sys.executable, str(Path(__file__)), "--sources", str(tmp_path / "work")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-4000:]
    with open(output_path, "wb") as output:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen([sys.executable, str(Path(__file__)), str(tmp_path / "work"), str(log)],
                                 cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    overall = (fuzz_seconds() or 0) + 600
    started, last_change, last_size = time.monotonic(), time.monotonic(), -1
    try:
        while child.poll() is None:
            time.sleep(0.2)
            size = log.stat().st_size if log.exists() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            stalled = time.monotonic() - last_change > HANG_S + 30  # + time to make the sources
            if stalled or time.monotonic() - started > overall:
                child.kill()
                child.wait()
                pytest.fail(f"a case made no progress for {HANG_S + 30:.0f} s: {_last_started(log)}")
    finally:
        if child.poll() is None:
            child.kill()
    output = output_path.read_text("utf-8", "replace")
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = [r for r in records if r["event"] == "done"]
    record(len(done))
    problems = [f"seed {r['seed']} ({r['case']}): {r['problem']}" for r in done if r["problem"]]
    problems += [r["problem"] for r in records if r["event"] == "sources"]
    assert child.returncode == 0, (f"the fuzz child exited with {child.returncode} during "
                                   f"{_last_started(log)}\n{output[-4000:]}")
    assert not problems, "\n".join(problems[:20])
    assert len(done) >= min(CASES, int(os.environ.get("BIOPSIA_FUZZ_CASES", CASES)))
    refused = sum(r["outcome"] == "refused" for r in done)
    assert 0 < refused < len(done), f"{refused} of {len(done)} refused: the mutations are not mixed"


def _last_started(log: Path) -> str:
    lines = log.read_text().splitlines() if log.exists() else []
    started = [json.loads(line) for line in lines if '"start"' in line]
    return f"seed {started[-1]['seed']} ({started[-1]['case']})" if started else "making the sources"


# -- the cases (child) ----------------------------------------------------------------------------------
def _sources(work: Path) -> dict[str, Path]:
    """The undamaged slides the cases start from, each in a folder of its own."""
    import numpy as np
    import tifffile

    from core.synth import write_synthetic_slide
    from hostile_tiffs import write_sparse_tiff

    def folder(name: str) -> Path:
        (work / name).mkdir(parents=True)
        return work / name

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:384, 0:512]
    rgb = np.dstack([xs // 2, ys // 2, (xs + ys) // 4]).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
    levels = [rgb, rgb[::2, ::2].copy(), rgb[::4, ::4].copy()]
    sources = {"synthetic-svs": write_synthetic_slide(folder("synthetic-svs") / "synth.svs", seed=5, width=1024,
                                                      height=768, tile=256, svs=True).slide_path}
    sources["pyramid"] = folder("pyramid") / "pyramid.tif"
    with tifffile.TiffWriter(sources["pyramid"]) as tw:
        for i, level in enumerate(levels):
            tw.write(level, tile=(128, 128), photometric="rgb", compression="jpeg", subfiletype=1 if i else 0)
    sources["ome"] = folder("ome") / "slide.ome.tif"
    with tifffile.TiffWriter(sources["ome"], ome=True) as tw:
        tw.write(levels[0], subifds=2, tile=(128, 128), photometric="rgb", compression="zlib")
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(128, 128), photometric="rgb", compression="zlib")
    sources["strips"] = folder("strips") / "strips.tif"
    tifffile.imwrite(sources["strips"], levels[0], photometric="rgb", rowsperstrip=32, compression="lzw")
    sources["bigtiff-be"] = folder("bigtiff-be") / "big.tif"
    with tifffile.TiffWriter(sources["bigtiff-be"], bigtiff=True, byteorder=">") as tw:
        tw.write((levels[0][:, :, 0].astype(np.uint16) * 200), tile=(128, 128), compression="zlib")
        tw.write((levels[1][:, :, 0].astype(np.uint16) * 200), tile=(128, 128), compression="zlib", subfiletype=1)
    sources["sparse"] = write_sparse_tiff(folder("sparse") / "sparse.tif", 30_000, 20_000,
                                          tiles={0: np.full((256, 256, 3), 90, np.uint8)})
    shutil.copy(CMU, folder("cmu") / CMU.name)
    sources["cmu"] = work / "cmu" / CMU.name
    if (SHARED_SLIDES / "boxes_0.dcm").is_file():
        for name in ("boxes_0.dcm", "boxes_1.dcm"):
            shutil.copy(SHARED_SLIDES / name, (work / "dicom").mkdir(exist_ok=True) or work / "dicom" / name)
        sources["dicom"] = work / "dicom" / "boxes_0.dcm"
    return sources


#: How often each source is chosen (the CMU slide is the slowest to read).
WEIGHTS = {"synthetic-svs": 4, "pyramid": 3, "ome": 3, "strips": 2, "bigtiff-be": 2, "sparse": 2, "cmu": 1,
           "dicom": 2}
KINDS = ("truncate", "flip-directory", "flip-tiles", "loop", "declared-size", "two-at-once")
#: How often each kind of damage is chosen: most cases should get past opening.
KIND_WEIGHTS = (2, 2, 4, 1, 3, 1)
#: Values a declared size or layout field is set to.
ODD_VALUES = (0, 1, 2, 3, 7, 255, 256, 65_535, 65_536, 100_000, 1 << 20, 2**31, 2**32 - 1)
SIZE_TAGS = (256, 257, 258, 277, 278, 322, 323, 330)  # 330: SubIFDs, pointed anywhere


def _segments(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every tile or strip of a TIFF, from tifffile."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        found = []
        for page in tif.pages:
            found += [(int(o), int(n)) for o, n in zip(page.dataoffsets, page.databytecounts) if o and n]
            for sub in page.pages or ():
                found += [(int(o), int(n)) for o, n in zip(sub.dataoffsets, sub.databytecounts) if o and n]
    return found


def _ifds(data: bytearray) -> list[int]:
    """The main chain's directory offsets, or none when the header is no longer a TIFF's."""
    import struct

    import hostile_tiffs as ht

    try:
        return ht.ifd_offsets(bytes(data))
    except (KeyError, struct.error, IndexError):
        return []


def _dicom_header_end(data: bytes) -> int:
    at = data.find(b"\xe0\x7f\x10\x00")
    return at if at > 132 else min(len(data), 4096)


def _mutate(rng, kind: str, name: str, data: bytearray, segments) -> str:
    """Damage ``data`` in place; a short description of what was done."""
    import hostile_tiffs as ht

    dicom = name == "dicom"
    ifds = [] if dicom else _ifds(data)
    if kind in ("loop", "declared-size") and not dicom and not ifds:
        kind = "flip-directory"  # an earlier mutation left no directory to edit
    if kind == "truncate":
        size = int(rng.choice([rng.integers(0, len(data)), rng.integers(0, min(len(data), 256)),
                               len(data) - rng.integers(1, min(len(data), 4096))]))
        del data[size:]
        return f"truncated to {size} bytes"
    if kind == "flip-directory" or (kind == "loop" and dicom) or (kind == "flip-tiles" and (dicom or not segments)):
        if dicom:
            spans = [(132, _dicom_header_end(data))]
        else:
            spans = [(ifd, ht.next_pointer_at(data, ifd) + 8) for ifd in ifds] or [(0, 64)]
        flips = []
        for _ in range(int(rng.integers(1, 17))):
            lo, hi = spans[int(rng.integers(len(spans)))]
            at = int(rng.integers(lo, max(lo + 1, min(hi, len(data)))))
            if at < len(data):
                data[at] ^= int(rng.integers(1, 256))
                flips.append(at)
        return f"flipped bytes {flips} in the header"
    if kind == "flip-tiles":
        touched = []
        for _ in range(int(rng.integers(1, 4))):
            offset, length = segments[int(rng.integers(len(segments)))]
            if rng.random() < 0.5:
                n = max(0, min(16, len(data) - offset))
                data[offset : offset + n] = bytes(n)  # no JPEG start marker, no zlib header
            else:
                for _ in range(int(rng.integers(1, 17))):
                    at = offset + int(rng.integers(length))
                    if at < len(data):
                        data[at] ^= int(rng.integers(1, 256))
            touched.append(offset)
        return f"damaged tiles at {touched}"
    if kind == "loop":
        i = int(rng.integers(len(ifds)))
        j = int(rng.integers(i + 1))
        done = ht.set_next(data, ifds[i], ifds[j])
        return f"directory {i} points back to directory {j}" + ("" if done else " (past the end)")
    if kind == "declared-size":
        value = int(rng.choice(ODD_VALUES)) if rng.random() < 0.8 else int(rng.integers(0, 2**32))
        if dicom:
            import struct

            fields = {"TotalPixelMatrixColumns": (b"\x48\x00\x06\x00", "<I"),
                      "TotalPixelMatrixRows": (b"\x48\x00\x07\x00", "<I"),
                      "Rows": (b"\x28\x00\x10\x00", "<H"), "Columns": (b"\x28\x00\x11\x00", "<H")}
            field = list(fields)[int(rng.integers(len(fields)))]
            key, code = fields[field]
            at = data.find(key)
            if at > 128:
                struct.pack_into(code, data, at + 8, value & (0xFFFF if code == "<H" else 0xFFFFFFFF))
            return f"{field} = {value}"
        ifd = int(rng.integers(len(ifds)))
        tag = int(rng.choice(SIZE_TAGS))
        if tag == 330 and rng.random() < 0.7:
            value = int(rng.choice(ifds))  # a SubIFD that is a directory of the main chain, maybe its own
        done = ht.set_tag(data, ifds[ifd], tag, value)
        return f"directory {ifd} tag {tag} = {value}" + ("" if done else " (absent)")
    first = _mutate(rng, str(rng.choice(KINDS[1:5])), name, data, segments)
    return first + "; " + _mutate(rng, str(rng.choice(KINDS[:5])), name, data, segments)


def _exercise(path: Path, rng) -> tuple[str, str | None]:
    """Open, read regions, the thumbnail and associated images: (outcome, problem or None)."""
    from core.errors import SlideError
    from core.slide import open_slide
    from core.slide.describe import describe

    errors = 0
    try:
        reader = open_slide(path)
    except SlideError as err:
        return "refused", _judge(err, path)
    with reader:
        describe(reader.info())
        for level in sorted({0, reader.level_count - 1}):
            lv_w, lv_h = reader.level_dimensions[level]
            ds = reader.level_downsamples[level]
            for lv_x, lv_y in ((0, 0), (int(rng.integers(max(1, lv_w))), int(rng.integers(max(1, lv_h))))):
                try:
                    reader.read_region(int(lv_x * ds), int(lv_y * ds), level, 256, 256)
                except SlideError as err:
                    errors += 1
                    if problem := _judge(err, path):
                        return "read", problem
        try:
            thumb = reader.get_thumbnail((256, 256))
            assert thumb.ndim == 3 and max(thumb.shape[:2]) <= 256, thumb.shape
        except SlideError as err:
            errors += 1
            if problem := _judge(err, path):
                return "read", problem
        for name in reader.associated_image_names:
            try:
                reader.associated_image(name)
            except SlideError as err:
                errors += 1
                if problem := _judge(err, path):
                    return "read", problem
    return ("damaged" if errors else "read"), None


def _judge(err: Exception, path: Path) -> str | None:
    """None for a SlideError that names a file of the case and did not come from running out of memory."""
    cause = err
    while cause is not None:
        if isinstance(cause, MemoryError):
            return f"ran out of memory (limit {AS_LIMIT >> 20} MB): {err}"
        cause = cause.__context__
    if err.path is None or err.path.parent != path.parent:
        return f"the message does not name the file: {err}"
    return None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def child_main(work: Path, log_path: Path) -> int:
    """Run the cases, one JSON line per event in ``log_path``."""
    import resource

    import numpy as np

    from fuzzing import peak_memory_mb, seeds

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    import cv2

    cv2.setNumThreads(1)
    with open(log_path, "a", buffering=1) as log:
        def write(**record):
            log.write(json.dumps(record) + "\n")

        sources = {name: Path(path) for name, path in json.loads((work / SOURCES_FILE).read_text()).items()}
        pristine = {name: _sha(path) for name, path in sources.items()}
        segments = {name: ([] if name == "dicom" else _segments(path)) for name, path in sources.items()}
        names = list(sources)
        weights = np.array([WEIGHTS[n] for n in names], float)
        for seed in seeds(CASES):
            rng = np.random.default_rng(seed)
            name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            kind = str(rng.choice(KINDS, p=np.array(KIND_WEIGHTS) / sum(KIND_WEIGHTS)))
            source = sources[name]
            data = bytearray(source.read_bytes())
            what = f"{name}, {kind}: " + _mutate(rng, kind, name, data, segments[name])
            case_dir = work / f"case-{seed}"
            shutil.copytree(source.parent, case_dir)
            path = case_dir / source.name
            path.write_bytes(bytes(data))
            before = {p.name: _sha(p) for p in case_dir.iterdir()}
            write(event="start", seed=seed, case=what)
            started = time.monotonic()
            try:
                outcome, problem = _exercise(path, rng)
            except Exception as err:  # noqa: BLE001 - any other exception is the finding
                outcome, problem = "crashed", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
            seconds = time.monotonic() - started
            rss_mb = peak_memory_mb()
            if problem is None and seconds > CASE_LIMIT_S:
                problem = f"took {seconds:.1f} s (at most {CASE_LIMIT_S:.0f})"
            if problem is None and rss_mb > RSS_LIMIT_MB:
                problem = f"the process reached {rss_mb:.0f} MB (at most {RSS_LIMIT_MB})"
            if problem is None and {p.name: _sha(p) for p in case_dir.iterdir()} != before:
                problem = "a file of the case was changed or created"
            write(event="done", seed=seed, case=what, outcome=outcome, problem=problem, seconds=round(seconds, 3),
                  rss_mb=round(rss_mb))
            shutil.rmtree(case_dir)
        changed = [name for name, path in sources.items() if _sha(path) != pristine[name]]
        if changed:
            write(event="sources", problem=f"the undamaged sources changed: {changed}")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--sources":
        made = _sources(Path(sys.argv[2]))
        (Path(sys.argv[2]) / SOURCES_FILE).write_text(json.dumps({name: str(path) for name, path in made.items()}))
        sys.exit(0)
    sys.exit(child_main(Path(sys.argv[1]), Path(sys.argv[2])))
