"""Time the synthetic slide generator (default 40,000 x 30,000 at 0.5 µm/px) and print one JSON line.

Usage: ``python bench/synth.py [--width W] [--height H] [--seed N] [--svs]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.synth import write_synthetic_slide  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=40000)
    parser.add_argument("--height", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--svs", action="store_true", help="write the Aperio layout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="biopsia-bench-") as folder:
        path = Path(folder) / ("bench.svs" if args.svs else "bench.tiff")
        start = time.perf_counter()
        result = write_synthetic_slide(path, seed=args.seed, width=args.width, height=args.height)
        seconds = time.perf_counter() - start
        size = result.slide_path.stat().st_size
    print(json.dumps({
        "width": args.width,
        "height": args.height,
        "seconds": round(seconds, 2),
        "megapixels_per_s": round(args.width * args.height / 1e6 / seconds, 1),
        "file_mb": round(size / 1e6, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
