#!/usr/bin/env python3
"""Biopsia: the window by default, subcommands for headless work.

    biopsia [SLIDE ...]                 open slides in the window
    biopsia demo                        open the demo case
    biopsia info SLIDE [--json]         print a slide's metadata
    biopsia screenshot SLIDE --out PNG  render the window offscreen
    biopsia synth OUT.tiff              write a synthetic slide with known tumour

This file only parses the command line and hands over to ``core`` or ``gui``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

COMMANDS = ("info", "screenshot", "synth", "demo", "gui")


def _set_thread_defaults() -> None:
    # MXNet and OpenMP use one core unless told otherwise.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))


class ProgressBar:
    """A one-line terminal progress bar for ``progress(done, total)`` callbacks."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream = label, stream
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0
        line = f"{self.label} [{bar:<30}] {done}/{total} {elapsed:5.1f}s left {eta:5.1f}s"
        if self._tty:  # redraw in place; a log file gets one line every few seconds
            self.stream.write(f"\r{line} " + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1600x1000, got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biopsia", description="Whole-slide viewing, tumour marking and "
                                     "MXNet tumour detection for pathologists.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the window (the default)")
    p.add_argument("slides", nargs="*", help="slides to open")
    sub.add_parser("demo", help="open the bundled demo case (made on first use)")

    p = sub.add_parser("info", help="print a slide's metadata")
    p.add_argument("slide")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-properties", action="store_true", help="leave out the raw property list")

    p = sub.add_parser("screenshot", help="render the window with a slide offscreen to a PNG")
    p.add_argument("slide")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", type=_size, default=(1600, 1000), help="window size, e.g. 1600x1000")
    p.add_argument("--mag", type=float, help="magnification, e.g. 5 for 5x (default: fit the slide)")
    p.add_argument("--grid", action="store_true", help="show the measuring grid")
    p.add_argument("--include-label", action="store_true",
                   help="show the label and macro images (they may carry patient names)")

    p = sub.add_parser("synth", help="write a synthetic H&E slide with known tumour regions")
    p.add_argument("out", help="output .tiff (or .svs for the Aperio layout); tumour marks go to .geojson beside it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=40000)
    p.add_argument("--height", type=int, default=30000)
    p.add_argument("--mpp", type=float, default=0.5, help="micrometres per pixel (default 0.5, i.e. 20x)")
    p.add_argument("--svs", action="store_true", help="Aperio SVS layout with label and macro images")
    return parser


def _run(args) -> int:
    if args.command == "info":
        from core.slide import open_slide
        from core.slide.describe import describe

        with open_slide(args.slide) as reader:
            info = reader.info()
        if args.json:
            print(json.dumps(info.to_dict(), indent=2))
        else:
            print(describe(info, show_properties=not args.no_properties))
        return 0
    if args.command == "screenshot":
        from gui.app import render_screenshot

        out = render_screenshot(args.slide, args.out, args.size, args.mag, args.include_label, args.grid)
        print(out)
        return 0
    if args.command == "synth":
        from core.synth import write_synthetic_slide

        result = write_synthetic_slide(args.out, seed=args.seed, width=args.width, height=args.height,
                                       mpp=args.mpp, svs=args.svs or args.out.lower().endswith(".svs"),
                                       progress=ProgressBar("synth"))
        print(f"{result.slide_path}\n{result.geojson_path} ({len(result.tumour_polygons)} tumour regions)")
        return 0
    from gui.app import run_gui

    if args.command == "demo":
        return run_gui([], demo=True, progress=ProgressBar("demo slide"))
    return run_gui(list(getattr(args, "slides", []) or []))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _set_thread_defaults()
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["gui"] + argv  # `biopsia SLIDE...` opens the slides
    args = build_parser().parse_args(argv)
    from core.errors import BiopsiaError

    try:
        return _run(args)
    except BiopsiaError as err:
        print(f"biopsia: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, permission denied, missing folder: say which file
        where = f"{err.filename}: " if err.filename else ""
        print(f"biopsia: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("biopsia: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
