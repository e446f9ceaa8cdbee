"""The command-line side of assisted annotation: ``propose`` writes the network's calls as draft marks."""

from __future__ import annotations

from pathlib import Path

from cli import options as opt
from cli.progress import ProgressBar, note, warn
from core.errors import BiopsiaError


def add_parsers(sub) -> None:
    p = sub.add_parser("propose", help="the network's calls as draft Tumour marks (GeoJSON) for a doctor to accept, "
                                       "correct or reject")
    p.add_argument("slide", metavar="SLIDE")
    p.add_argument("--model", help="model folder; not needed with --prediction")
    p.add_argument("--prediction", metavar="DIR",
                   help="use this prediction of the slide (the folder 'biopsia predict' wrote, or its grid.npz) "
                        "instead of predicting again")
    p.add_argument("--out", required=True, help="annotation file to write (.geojson, or .xml for ASAP)")
    p.add_argument("--threshold", type=opt.fraction,
                   help="tumour probability proposed as tumour (default: the model's; 0.5 if it records none)")
    p.add_argument("--min-tiles", type=opt.number(0.0, 1e6), default=2.0,
                   help="drop regions smaller than this many tiles (default 2)")
    p.add_argument("--device", default="auto", help="auto (GPU when MXNet finds one), cpu or gpu:0")
    opt.add_slide_mpp(p)


def propose(args) -> int:
    from core.annotations.formats import format_for_writing, write_annotations
    from core.annotations.model import TUMOUR
    from core.annotations.proposals import propose_marks
    from core.evaluation.compare import threshold_for_grids
    from core.inference.predict import ProbabilityGrid
    from core.models.thresholds import format_threshold
    from cli.measure import find_grid

    slide = Path(args.slide).expanduser()
    format_for_writing(args.out, None)  # an impossible output is refused before any work
    opt.state_slide_mpp([slide], args.slide_mpp)
    if args.prediction:
        grid = ProbabilityGrid.load(find_grid(slide, Path(args.prediction).expanduser()))
        if grid.slide and Path(grid.slide).resolve() != slide.resolve():
            warn(f"{args.prediction}: it was predicted on {grid.slide}, not {slide}")
    elif args.model:
        from core.inference.predict import predict_slide
        from core.models.bundle import resolve_bundle

        grid = predict_slide(slide, resolve_bundle(args.model), device=args.device, progress=ProgressBar(slide.name))
    else:
        raise BiopsiaError(f"{slide}: give --model MODEL to predict it, or --prediction DIR to use a prediction")
    if args.threshold is None:
        args.threshold, source = threshold_for_grids([grid.model])
    else:
        source = f"threshold {format_threshold(args.threshold)} (given)"
    note(f"proposing tiles at or above the {source}")
    drafts = propose_marks(grid, args.threshold, min_tiles=args.min_tiles)
    write_annotations(args.out, drafts, [TUMOUR])
    area = sum(d.area_l0 for d in drafts)
    print(f"{args.out}: {len(drafts)} draft Tumour marks ({area / max(grid.stride, 1) ** 2:.0f} tiles' area), "
          "each recording the model, its threshold and when; accept, correct or reject them in the window")
    return 0


COMMANDS = {"propose": propose}
