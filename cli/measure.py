"""The command-line side of measuring: ``measure`` prints what a biopsy report needs (`core.evaluation.measure`)."""

from __future__ import annotations

import json
from pathlib import Path

from cli import options as opt
from cli.progress import note, warn
from core.cohort.outputs import GRID_FILE
from core.errors import BiopsiaError


def add_parsers(sub) -> None:
    p = sub.add_parser("measure", help="each mark's area and length; each core's length, tumour length and "
                                       "percentage involved, from the marks and from a prediction")
    p.add_argument("slide", metavar="SLIDE")
    p.add_argument("--annotations", metavar="PATH", nargs="+",
                   help="mark file, folder of them or project folder (default: the file beside the slide, else "
                        "the default project)")
    p.add_argument("--prediction", metavar="DIR",
                   help="a prediction of this slide: the folder 'biopsia predict' wrote for it (or its grid.npz), "
                        "or the --out folder of a batch holding it")
    p.add_argument("--threshold", type=opt.fraction,
                   help="tumour probability called tumour (default: the threshold of the model that made the "
                        "prediction; 0.5 if it records none)")
    p.add_argument("--json", action="store_true", help="print JSON")
    opt.add_slide_mpp(p)


def find_grid(slide: Path, given: Path) -> Path:
    """The ``grid.npz`` of ``slide`` in ``given``: the file, its folder, or a batch folder holding it."""
    if given.is_file():
        return given
    if (given / GRID_FILE).is_file():
        return given / GRID_FILE
    if given.is_dir():
        from core.inference.predict import ProbabilityGrid

        for path in sorted(given.glob(f"*/{GRID_FILE}")):
            if Path(ProbabilityGrid.load(path).slide).resolve() == slide.resolve():
                return path
        raise BiopsiaError(f"{given}: no prediction of {slide} in it; run 'biopsia predict {slide} --out {given}'")
    raise BiopsiaError(f"{given}: no such prediction folder or {GRID_FILE}")


def measure(args) -> int:
    from core.evaluation.compare import threshold_for_grids
    from core.evaluation.measure import measure_slide
    from core.inference.predict import ProbabilityGrid
    from core.models.thresholds import format_threshold
    from core.project.marks import find_marks
    from core.project.mpp import resolve_file_mpp
    from core.slide import open_slide

    slide = Path(args.slide).expanduser()
    opt.state_slide_mpp([slide], args.slide_mpp)
    grid, source = None, None
    if args.prediction:
        path = find_grid(slide, Path(args.prediction).expanduser())
        grid = ProbabilityGrid.load(path)
        if grid.slide and Path(grid.slide).resolve() != slide.resolve():
            warn(f"{path}: it was predicted on {grid.slide}, not {slide}")
        if args.threshold is None:
            args.threshold, source = threshold_for_grids([grid.model])
        else:
            source = f"threshold {format_threshold(args.threshold)} (given)"
        note(f"network's calls: {source}")
    found = find_marks(slide, [Path(p) for p in args.annotations] if args.annotations else None)
    for warning in found.warnings:
        warn(warning)
    if not found.found:
        warn(f"{slide}: {found.reason}; measuring the cores without marks")
    with open_slide(slide) as reader:
        mpp = resolve_file_mpp(slide, reader.mpp).mpp
        if not mpp:
            raise BiopsiaError(opt.mpp_hint(slide))
        result = measure_slide(reader, found.marks or (), mpp, grid=grid, threshold=args.threshold,
                               slide_name=str(slide))
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    print(f"{slide}: {len(result.marks)} marks, {len(result.cores)} cores (tissue fragments) at "
          f"{result.mpp[0]:g} µm/px")
    if result.marks:
        print("\nmark  class           area mm²   length mm")
        for n, m in enumerate(result.marks, 1):
            print(f"{n:>4}  {m.class_name[:14]:<14} {m.area_mm2:>9.4f} {m.length_mm:>11.3f}")
    if result.cores:
        print("\ncore  length mm   tumour mm (marks)  involved   foci" +
              ("   tumour mm (network)  involved   foci" if grid is not None else ""))
        for c in result.cores:
            line = (f"{c.index:>4} {c.length_mm:>10.2f} {c.marks.tumour_length_mm:>18.2f} "
                    f"{c.marks.percent_involved:>8.0f} % {c.marks.foci:>5}")
            if c.network is not None:
                line += (f" {c.network.tumour_length_mm:>20.2f} {c.network.percent_involved:>8.0f} % "
                         f"{c.network.foci:>5}")
            print(line)
        print("\ntumour length: first to last tumour along the core (ISUP 2019), foci counted apart; "
              "percentage of the core's length")
    return 0


COMMANDS = {"measure": measure}
