"""The command-line side of slides: ``gui``, ``demo``, ``info``, ``screenshot`` and ``synth``."""

from __future__ import annotations

import dataclasses
import json

from cli import options as opt
from cli.progress import ProgressBar, warn
from core.errors import BiopsiaError
from core.project.mpp import MppSource, resolve_file_mpp
from core.slide import open_slide
from core.slide.describe import describe
from gui.app import render_screenshot, run_gui  # Qt itself loads only when a window is made


def add_parsers(sub) -> None:
    p = sub.add_parser("gui", help="open the window (the default)")
    p.add_argument("slides", nargs="*", help="slides to open")
    p.add_argument("--project", help="project folder: its slides open, and new slides join it")
    sub.add_parser("demo", help="open the bundled demo case (made on first use)")

    p = sub.add_parser("info", help="print a slide's metadata")
    p.add_argument("slide")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-properties", action="store_true", help="leave out the raw property list")
    opt.add_slide_mpp(p)

    p = sub.add_parser("screenshot", help="render the window with a slide offscreen to a PNG")
    p.add_argument("slide")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", type=opt.window_size, default=(1600, 1000), help="window size, e.g. 1600x1000")
    p.add_argument("--mag", type=opt.number(0, 1000, low_open=True),
                   help="magnification, e.g. 5 for 5x (default: fit the slide)")
    p.add_argument("--grid", action="store_true", help="show the measuring grid")
    p.add_argument("--annotations", help="also show the marks in this file (GeoJSON, ASAP or ImageScope XML)")
    p.add_argument("--include-label", action="store_true",
                   help="show the label and macro images (they may carry patient names)")
    opt.add_slide_mpp(p)

    p = sub.add_parser("synth", help="write a synthetic H&E slide with known tumour regions")
    p.add_argument("out", help="output .tiff (or .svs for the Aperio layout); tumour marks go to .geojson beside it")
    p.add_argument("--seed", type=opt.natural, default=0)
    p.add_argument("--width", type=opt.positive, default=40000, help="level-0 width in pixels (256 to 200,000)")
    p.add_argument("--height", type=opt.positive, default=30000, help="level-0 height in pixels (256 to 200,000)")
    p.add_argument("--mpp", type=opt.mpp, default=0.5, help="micrometres per pixel, up to 20 (default 0.5, i.e. 20x)")
    p.add_argument("--svs", action="store_true", help="Aperio SVS layout with label and macro images")
    p.add_argument("--resection", action="store_true",
                   help="one large section filling most of the glass (default: needle cores and small pieces)")


def gui(args) -> int:
    return run_gui(list(args.slides), project=args.project)


def demo(args) -> int:
    return run_gui([], demo=True, progress=ProgressBar("demo slide"))


#: How ``info`` names where a slide's µm/px came from.
MPP_SOURCE_WORDS = {MppSource.FILE: "from the file", MppSource.USER: "the user's setting for this file",
                    MppSource.PROJECT: "the slide's setting in the default project",
                    MppSource.COMMAND_LINE: "given with --slide-mpp, now stored for this slide"}


def info(args) -> int:
    with open_slide(args.slide) as reader:
        found = reader.info()
    opt.state_slide_mpp([args.slide], args.slide_mpp)
    mpp, source = resolve_file_mpp(args.slide, found.mpp)
    if args.slide_mpp is not None and mpp is not None:
        source = MppSource.COMMAND_LINE
    shown = dataclasses.replace(found, mpp=mpp)
    if args.json:
        print(json.dumps({**shown.to_dict(), "mpp_source": None if source is None else str(source),
                          "file_mpp": found.mpp}, indent=2))
        return 0
    lines = describe(shown, show_properties=not args.no_properties).split("\n")
    if source is not None:  # say where the value came from, on its own line
        at = next(i for i, line in enumerate(lines) if line.startswith("Resolution:"))
        lines[at] += f" ({MPP_SOURCE_WORDS[source]})"
    print("\n".join(lines))
    return 0


def screenshot(args) -> int:
    opt.state_slide_mpp([args.slide], args.slide_mpp)  # the window reads it where the window stores it
    out = render_screenshot(args.slide, args.out, args.size, args.mag, args.include_label, args.grid,
                            annotations=args.annotations, on_warning=warn)
    print(out)
    return 0


def synth(args) -> int:
    # the generator loads scipy.ndimage and scikit-image (0.4 s of the 1.2 s `biopsia --help` took with it)
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


COMMANDS = {"gui": gui, "demo": demo, "info": info, "screenshot": screenshot, "synth": synth}
