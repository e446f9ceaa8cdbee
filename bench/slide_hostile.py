"""Time and memory of the hostile slide files a robustness review reported, and of the slide fuzz corpus (JSON).

Each file is opened in a fresh interpreter (its peak resident size is its own), which then reads 25
regions of level 0, the 1024-pixel overview the viewer makes, and the associated images. The fuzz
figures come from the fuzzer's own child process (``tests/core/slide/test_fuzz_slides.py``) over
``--cases`` cases.

Usage: ``python bench/slide_hostile.py [--cases N]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

from hostile_tiffs import TAGS, ifd_offsets, set_next, set_tag, write_sparse_tiff  # noqa: E402

CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"
DICOM = ROOT.parent / "shared" / "data" / "slides"

_PROBE = r"""
import json, resource, sys, time
from core.errors import SlideError
from core.slide import open_slide
start = time.perf_counter()
record = {"outcome": "read", "regions_failed": 0}
try:
    with open_slide(sys.argv[1]) as reader:
        w, h = reader.dimensions
        for j in range(5):
            for i in range(5):
                try:
                    reader.read_region(i * w // 5, j * h // 5, 0, min(w // 5 or 1, 4096), min(h // 5 or 1, 4096))
                except SlideError:
                    record["regions_failed"] += 1
        reader.get_thumbnail((1024, 1024))
        for name in reader.associated_image_names:
            reader.associated_image(name)
except SlideError as err:
    record = {"outcome": "refused", "message": str(err)[:160]}
record["seconds"] = round(time.perf_counter() - start, 3)
record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(record))
"""


def _files(folder: Path) -> dict[str, Path]:
    """The reported cases, rebuilt: each as the review described it."""
    files = {}
    path = folder / "loop-120.tif"
    with tifffile.TiffWriter(path) as tw:
        for i in range(120):
            tw.write(np.full((16, 16), i, np.uint8), contiguous=False)
    data = bytearray(path.read_bytes())
    offsets = ifd_offsets(data, 200)
    set_next(data, offsets[-1], offsets[0])
    path.write_bytes(data)
    files["tiff_directory_loop"] = path

    data = bytearray(CMU.read_bytes())
    set_tag(data, ifd_offsets(data)[0], TAGS["ImageWidth"], 100_000)
    (folder / "wide.svs").write_bytes(data)
    files["svs_claiming_100000_px"] = folder / "wide.svs"

    damaged = folder / "damaged.svs"
    shutil.copy(CMU, damaged)
    with tifffile.TiffFile(damaged) as tif:
        tile_offsets = tif.pages[0].dataoffsets
    with open(damaged, "r+b") as fh:
        for index in (14, 57, 101):
            fh.seek(tile_offsets[index])
            fh.write(b"\0" * 16)
    files["svs_with_3_damaged_tiles"] = damaged

    dark = np.full((256, 256, 3), 90, np.uint8)
    files["sparse_100000x80000_tiff"] = write_sparse_tiff(folder / "sparse.tif", 100_000, 80_000, tiles={0: dark})

    if (DICOM / "boxes_0.dcm").is_file():
        (folder / "dicom").mkdir()
        shutil.copy(DICOM / "boxes_1.dcm", folder / "dicom" / "boxes_1.dcm")
        data = bytearray((DICOM / "boxes_0.dcm").read_bytes())
        struct.pack_into("<I", data, data.find(struct.pack("<HH", 0x48, 6)) + 8, 2**31)
        (folder / "dicom" / "boxes_0.dcm").write_bytes(data)
        files["dicom_claiming_2^31_columns"] = folder / "dicom" / "boxes_0.dcm"
    (folder / "two.svs").write_bytes(b"II")
    files["two_byte_file"] = folder / "two.svs"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="fuzz cases to run")
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OPENBLAS_NUM_THREADS="1")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-") as tmp:
        folder = Path(tmp)
        for name, path in _files(folder).items():
            done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                                  env=env, timeout=600, cwd=ROOT)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                "outcome": f"exited {done.returncode}", "stderr": done.stderr[-300:]}
        log = folder / "fuzz.jsonl"
        subprocess.run([sys.executable, str(ROOT / "tests" / "core" / "slide" / "test_fuzz_slides.py"), str(folder / "work"), str(log)],
                       env=dict(env, BIOPSIA_FUZZ_CASES=str(args.cases), MALLOC_ARENA_MAX="2"),
                       capture_output=True, timeout=3600, cwd=ROOT)
        cases = [json.loads(line) for line in log.read_text().splitlines() if '"done"' in line]
    outcomes: dict = {}
    for case in cases:
        outcomes[case["outcome"]] = outcomes.get(case["outcome"], 0) + 1
    results["fuzz"] = {"cases": len(cases), "outcomes": outcomes,
                       "problems": sum(1 for c in cases if c["problem"]),
                       "slowest_case_s": max((c["seconds"] for c in cases), default=None),
                       "peak_rss_mb": max((c["rss_mb"] for c in cases), default=None)}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
