#!/usr/bin/env python3
"""Biopsia: the window by default, subcommands for headless work.

    biopsia [SLIDE ...]                 open slides in the window
    biopsia demo                        open the demo case
    biopsia info SLIDE [--json]         print a slide's metadata
    biopsia screenshot SLIDE --out PNG  render the window offscreen
    biopsia synth OUT.tiff              write a synthetic slide with known tumour
    biopsia annotations convert IN OUT  convert QuPath GeoJSON / ASAP XML / ImageScope XML
    biopsia annotations mask SLIDE ANNOTATIONS --level N --out PNG
                                        write a label mask of the annotations at a level
    biopsia import-marked ORIGINAL MARKED --out A.geojson
                                        annotations from a pen-marked copy of a slide
    biopsia dataset SLIDE_OR_PROJECT... --out DIR
                                        labelled tiles as MXNet RecordIO, lists and a manifest
    biopsia train DATASET --out MODEL   train a tile classifier (MXNet Gluon)
    biopsia test MODEL DATASET [--json] a model's confusion matrix, sensitivity, specificity, AUC
    biopsia validate-framework {mnist,fashion-mnist,cifar10} DIR
                                        check MXNet training on a public benchmark
    biopsia predict SLIDE... --model MODEL --out DIR
                                        probability grids, heatmaps, overviews, TIFF overlays
    biopsia evaluate DIR [--annotations ...] [--json]
                                        predictions against the doctors' marks

This file only parses the command line and hands over to ``core`` or ``gui``. Every error is one line
naming the file and the problem, with exit status 1 (2 for a value refused on the command line);
``BIOPSIA_TRACEBACK=1`` also prints the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

COMMANDS = ("info", "screenshot", "synth", "annotations", "import-marked", "dataset", "train", "test",
            "validate-framework", "predict", "evaluate", "demo", "gui")


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
        w, h = (int(side) for side in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1600x1000, got {text!r}") from err
    if not (200 <= w <= 8000 and 200 <= h <= 8000):  # a window, not an image of the whole slide
        raise argparse.ArgumentTypeError(f"each side must be from 200 to 8000 pixels, got {text!r}")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    from cli import options as opt
    from cli import models as ml_commands, predict as predict_commands

    parser = argparse.ArgumentParser(prog="biopsia", description="Whole-slide viewing, tumour marking and "
                                     "MXNet tumour detection for pathologists.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the window (the default)")
    p.add_argument("slides", nargs="*", help="slides to open")
    p.add_argument("--project", help="project folder: its slides open, and new slides join it")
    sub.add_parser("demo", help="open the bundled demo case (made on first use)")

    p = sub.add_parser("info", help="print a slide's metadata")
    p.add_argument("slide")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-properties", action="store_true", help="leave out the raw property list")

    p = sub.add_parser("screenshot", help="render the window with a slide offscreen to a PNG")
    p.add_argument("slide")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", type=_size, default=(1600, 1000), help="window size, e.g. 1600x1000")
    p.add_argument("--mag", type=opt.number(0, 1000, low_open=True),
                   help="magnification, e.g. 5 for 5x (default: fit the slide)")
    p.add_argument("--grid", action="store_true", help="show the measuring grid")
    p.add_argument("--annotations", help="also show the marks in this file (GeoJSON, ASAP or ImageScope XML)")
    p.add_argument("--include-label", action="store_true",
                   help="show the label and macro images (they may carry patient names)")

    p = sub.add_parser("synth", help="write a synthetic H&E slide with known tumour regions")
    p.add_argument("out", help="output .tiff (or .svs for the Aperio layout); tumour marks go to .geojson beside it")
    p.add_argument("--seed", type=opt.natural, default=0)
    p.add_argument("--width", type=opt.positive, default=40000, help="level-0 width in pixels (256 to 200,000)")
    p.add_argument("--height", type=opt.positive, default=30000, help="level-0 height in pixels (256 to 200,000)")
    p.add_argument("--mpp", type=opt.mpp, default=0.5, help="micrometres per pixel, up to 20 (default 0.5, i.e. 20x)")
    p.add_argument("--svs", action="store_true", help="Aperio SVS layout with label and macro images")
    p.add_argument("--resection", action="store_true",
                   help="one large section filling most of the glass (default: needle cores and small pieces)")

    p = sub.add_parser("annotations", help="convert annotation files, or draw them as a mask")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("convert", help="convert between QuPath GeoJSON, ASAP XML and ImageScope XML "
                           "(by extension; .xml is written as ASAP unless --format imagescope)")
    a.add_argument("input", help=".geojson, .json or .xml file to read")
    a.add_argument("output", help="file to write")
    a.add_argument("--format", choices=("geojson", "asap", "imagescope"), help="output format (default: by extension)")
    a = actions.add_parser("mask", help="write the annotations as a PNG mask at one pyramid level: with --class, "
                           "255 inside that class; otherwise class i of n (in file order, from 1) is i * (255 // n)")
    a.add_argument("slide", help="the slide the annotations belong to (for its level sizes)")
    a.add_argument("annotations", help=".geojson or .xml annotation file")
    a.add_argument("--level", type=opt.natural, default=0, help="pyramid level (default 0)")
    a.add_argument("--out", required=True, help="PNG file to write")
    a.add_argument("--class", dest="class_name", help="only this class (binary mask)")

    p = sub.add_parser("import-marked", help="annotations from a copy of a slide a doctor marked with a pen")
    p.add_argument("original", help="the slide (or its unmarked image)")
    p.add_argument("marked", help="the marked copy (PNG or JPEG, may be downscaled)")
    p.add_argument("--out", required=True, help="annotation file to write (.geojson or .xml)")
    p.add_argument("--class", dest="class_name", default="Tumour", help="class of the marked regions (default Tumour)")
    ml_commands.add_parsers(sub)
    predict_commands.add_parsers(sub)
    return parser


def _annotations(args) -> int:
    from core.annotations.formats import read_annotations, write_annotations

    if args.action == "convert":
        found = read_annotations(args.input)
        for warning in found.warnings:
            print(f"biopsia: warning: {warning}", file=sys.stderr)
        write_annotations(args.output, found.annotations, found.classes, format=args.format)
        print(f"{args.output} ({len(found.annotations)} annotations)")
        return 0
    import cv2

    from core.annotations.masks import rasterise
    from core.errors import BiopsiaError
    from core.slide import open_slide

    with open_slide(args.slide) as reader:
        if not 0 <= args.level < reader.level_count:
            raise BiopsiaError(f"{args.slide}: no level {args.level} (the slide has levels 0 to {reader.level_count - 1})")
        l0_w, l0_h = reader.dimensions
        lv_w, lv_h = reader.level_dimensions[args.level]
    found = read_annotations(args.annotations)
    for warning in found.warnings:
        print(f"biopsia: warning: {warning}", file=sys.stderr)
    downsample = max(l0_w / lv_w, l0_h / lv_h)
    window = (0, 0, lv_w, lv_h)
    names = [args.class_name] if args.class_name else [c.name for c in found.classes]
    step = 255 // max(1, len(names))  # class i of n (from 1) is drawn as i * (255 // n), to be visible
    values = {name: (i + 1) * step for i, name in enumerate(names)}
    try:
        mask = rasterise(found.annotations, None, l0_w, l0_h, downsample, values, window=window)
    except ValueError as err:
        raise BiopsiaError(f"{args.slide}: level {args.level}: {err}") from err
    legend = ", ".join(f"{name}={value}" for name, value in values.items())
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise BiopsiaError(f"{args.out}: could not encode the mask as PNG")
    from core.atomic import atomic_write_bytes

    atomic_write_bytes(args.out, data.tobytes())
    print(f"{args.out} ({lv_w} x {lv_h}; {legend})")
    return 0


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

        out = render_screenshot(args.slide, args.out, args.size, args.mag, args.include_label, args.grid,
                                annotations=args.annotations,
                                on_warning=lambda text: print(f"warning: {text}", file=sys.stderr))
        print(out)
        return 0
    if args.command == "synth":
        from core.errors import BiopsiaError
        from core.synth import write_synthetic_slide

        try:
            result = write_synthetic_slide(args.out, seed=args.seed, width=args.width, height=args.height,
                                           mpp=args.mpp, svs=args.svs or args.out.lower().endswith(".svs"),
                                           specimen="resection" if args.resection else "biopsy",
                                           progress=ProgressBar("synth"))
        except ValueError as err:  # a size, scale or suffix the generator refuses: it says which
            raise BiopsiaError(f"{args.out}: {err}") from err
        print(f"{result.slide_path}\n{result.geojson_path} ({len(result.tumour_polygons)} tumour regions)")
        return 0
    if args.command == "annotations":
        return _annotations(args)
    if args.command in ("dataset", "train", "test", "validate-framework"):
        from cli.models import run

        return run(args, ProgressBar)
    if args.command in ("predict", "evaluate"):
        from cli.predict import run

        return run(args, ProgressBar)
    if args.command == "import-marked":
        from core.annotations.formats import write_annotations
        from core.annotations.marked import import_marked
        from core.annotations.model import DEFAULT_CLASSES

        color = next((c.color for c in DEFAULT_CLASSES if c.name == args.class_name), (220, 30, 30))
        found = import_marked(args.original, args.marked, class_name=args.class_name, color=color)
        for warning in found.warnings:
            print(f"biopsia: warning: {warning}", file=sys.stderr)
        write_annotations(args.out, found.annotations, found.classes)
        print(f"{args.out} ({len(found.annotations)} regions)")
        return 0
    from gui.app import run_gui

    if args.command == "demo":
        return run_gui([], demo=True, progress=ProgressBar("demo slide"))
    return run_gui(list(getattr(args, "slides", []) or []), project=getattr(args, "project", None))


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
        where = f"{err.filename}: " if err.filename else _files_of(args)
        print(f"biopsia: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("biopsia: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a defect in Biopsia: still say which file, and keep the traceback for a report
        if os.environ.get("BIOPSIA_TRACEBACK"):
            import traceback

            traceback.print_exc()
        kind = type(err).__qualname__ if type(err).__module__ == "builtins" else \
            f"{type(err).__module__}.{type(err).__qualname__}"
        print(f"biopsia: error: {_files_of(args)}unexpected {kind}: {err} (a defect in Biopsia; "
              "please report it, with BIOPSIA_TRACEBACK=1 set for the details)", file=sys.stderr)
        return 1


#: Arguments that name the files a command reads or writes, in the order they are reported.
_FILE_ARGS = ("slide", "slides", "original", "marked", "input", "annotations", "dataset", "model", "folder",
              "output", "out")


def _files_of(args) -> str:
    """``"a.svs, b.svs: "``: the files named on the command line, to start an error message with."""
    names = []
    for attr in _FILE_ARGS:
        value = getattr(args, attr, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item not in names:
                names.append(item)
    return f"{', '.join(names)}: " if names else ""


if __name__ == "__main__":
    sys.exit(main())
