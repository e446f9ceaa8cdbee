"""Argument types shared by the subcommands: numbers are checked where they are typed, not when they fail.

Each factory returns an ``argparse`` type; a value out of range (or NaN, or infinite) is refused with
``argparse.ArgumentTypeError``, which argparse reports as ``argument --mpp: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cli.progress import note
from core.project.layout import PROJECT_FILE
from core.project.model import Project
from core.project.mpp import remember_file_mpp, remember_mpp
from core.tiles.grid import MPP_RANGE, TILE_PX_RANGE


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, unit: str = ""):
    """A finite float within ``[low, high]`` (either end open, or absent)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"must be {_describe(low, high, low_open, high_open)}{unit}, "
                                             f"got {text!r}")
        return value
    return parse


def whole(low: int | None = None, high: int | None = None, unit: str = ""):
    """An integer within ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {_describe(low, high)}{unit}, got {text!r}")
        return value
    return parse


def window_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` of a window, each side 200 to 8000 pixels."""
    try:
        w, h = (int(side) for side in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1600x1000, got {text!r}") from err
    if not (200 <= w <= 8000 and 200 <= h <= 8000):  # a window, not an image of the whole slide
        raise argparse.ArgumentTypeError(f"each side must be from 200 to 8000 pixels, got {text!r}")
    return w, h


def _describe(low, high, low_open: bool = False, high_open: bool = False) -> str:
    left = "" if low is None else (f"above {low:g}" if low_open else f"from {low:g}" if high is not None
                                   else f"at least {low:g}")
    right = "" if high is None else (f"below {high:g}" if high_open else f"up to {high:g}" if low_open
                                     else f"to {high:g}" if low is not None else f"at most {high:g}")
    return " ".join(part for part in (left, "and" if low_open and right else "", right) if part) or "finite"


#: Micrometres per pixel of tiles or slides: finite, 0.05 to 50.
mpp = number(*MPP_RANGE, unit=" µm/px")
#: Tile side in pixels.
tile_px = whole(*TILE_PX_RANGE, unit=" px")
#: A probability or a share, 0 to 1.
fraction = number(0.0, 1.0)
#: A share that must leave something on both sides: above 0, up to 1.
share = number(0.0, 1.0, low_open=True)
#: A count of one or more (epochs, batch size, workers, pixels).
positive = whole(1)
#: A seed or a level: zero or more.
natural = whole(0)


def mpp_xy(text: str) -> tuple[float, float]:
    """``X`` (square pixels) or ``X,Y`` micrometres per pixel, each as `mpp` checks it."""
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected X or X,Y micrometres per pixel, got {text!r}")
    values = [mpp(part.strip()) for part in parts]
    return values[0], values[-1]


def add_slide_mpp(parser: argparse.ArgumentParser) -> None:
    """``--slide-mpp X[,Y]``: the resolution of every slide the command is given."""
    parser.add_argument("--slide-mpp", type=mpp_xy, metavar="X[,Y]",
                        help="micrometres per pixel of every slide given (X,Y when they differ), for images "
                             "that do not record it (JPEG, PNG) or record it wrongly; stored for each slide, "
                             "as the window's Slide > Set resolution does")


def state_slide_mpp(paths, value: tuple[float, float] | None) -> None:
    """Store ``--slide-mpp`` for each slide file (in a project folder: each of its slides) and say so on stderr.

    A slide file's value goes to the user's per-slide store (and its entry in the default project, if
    that exists and holds it); a project folder's slides keep it in that project. Paths that are
    neither are left for the command to report.
    """
    if value is None:
        return
    shown = f"{value[0]:g}" if value[0] == value[1] else f"{value[0]:g} x {value[1]:g}"
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir() and (path / PROJECT_FILE).is_file():
            project = Project.open(path)
            for entry in project.slides:
                remember_mpp(entry.path, value, project, entry)
                note(f"{entry.path}: resolution set to {shown} µm/px (stored for this slide)")
        elif path.is_file():
            remember_file_mpp(path, value)
            note(f"{path}: resolution set to {shown} µm/px (stored for this slide)")


def mpp_hint(slide) -> str:
    """The advice for a slide that states no µm/px (`core.cohort.outputs.mpp_hint`, which the workers say too)."""
    from core.cohort.outputs import mpp_hint as hint

    return hint(slide)
