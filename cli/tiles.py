"""The command-line side of datasets: ``dataset`` (labelled tiles as MXNet RecordIO)."""

from __future__ import annotations

import time
from pathlib import Path

from cli import options as opt
from cli.progress import ProgressBar, warn
from core.errors import DatasetError
from core.slide import open_slide
from core.tiles.dataset import plan_dataset, sources_from_paths, write_dataset
from core.tiles.grid import TileSpec
from core.tiles.labels import LabelRules
from core.view.viewport import UM_PER_PX_AT_10X

RULES = LabelRules()  # the labelling thresholds' defaults, from their one owner


def add_parsers(sub) -> None:
    p = sub.add_parser("dataset", help="labelled tiles from slides and their marks, as MXNet RecordIO")
    p.add_argument("slides", nargs="+", metavar="SLIDE_OR_PROJECT",
                   help="slide files (marks from <stem>.geojson/.xml beside them or the default project) "
                        "or project folders")
    p.add_argument("--out", required=True, help="dataset folder to write (train/test .rec .idx .lst, manifest.json)")
    p.add_argument("--tile", type=opt.tile_px, default=128, help="tile side in pixels (default 128)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=opt.mpp, default=None, help="micrometres per tile pixel (default 1.0, about 10x)")
    res.add_argument("--mag", type=opt.number(0.2, 200, unit="x"),
                     help="magnification instead of --mpp (10 means 1 µm/px)")
    p.add_argument("--split", choices=("by-slide", "random"), default="by-slide",
                   help="whole slides to train or test (default), or tiles at random")
    p.add_argument("--ratio", type=opt.share, default=0.7, help="share of tiles for training (default 0.7)")
    p.add_argument("--seed", type=opt.natural, default=0, help="seed of the split (default 0)")
    p.add_argument("--test-slide", action="append", dest="test_slides", metavar="NAME",
                   help="put this slide (file stem) in the test split; repeat for several")
    full = p.add_mutually_exclusive_group()
    full.add_argument("--fully-annotated", dest="fully_annotated", action="store_true", default=None,
                      help="every tumour is marked: unmarked tissue is non-tumour")
    full.add_argument("--partly-annotated", dest="fully_annotated", action="store_false",
                      help="only Benign marks give non-tumour tiles")
    p.add_argument("--tumour-min", type=opt.fraction, default=RULES.tumour_min,
                   help=f"Tumour coverage for a tumour tile (default {RULES.tumour_min:g})")
    p.add_argument("--normal-max", type=opt.fraction, default=RULES.normal_max,
                   help=f"Tumour coverage up to which a tile is non-tumour (default {RULES.normal_max:g})")
    p.add_argument("--tissue-min", type=opt.fraction, default=RULES.tissue_min,
                   help=f"tissue share a tile needs (default {RULES.tissue_min:g})")
    p.add_argument("--encoding", choices=("jpg", "png"), default="jpg", help="tile encoding (default jpg, q95)")
    p.add_argument("--workers", type=opt.positive, help="reading threads (default: twice the cores, at most 8)")
    p.add_argument("--dry-run", action="store_true", help="print the counts only; write nothing")
    opt.add_slide_mpp(p)


def format_counts(counts: dict) -> str:
    """Tile counts per split and class, one line a split."""
    lines = []
    for split, per_class in counts.items():
        total = sum(per_class.values())
        parts = ", ".join(f"{name} {n}" for name, n in per_class.items())
        lines.append(f"  {split:<5} {total:>7} tiles ({parts})")
    return "\n".join(lines)


def dataset(args) -> int:
    mpp = UM_PER_PX_AT_10X * 10.0 / args.mag if args.mag else (args.mpp if args.mpp is not None else 1.0)
    try:
        spec = TileSpec(args.tile, mpp)
    except ValueError as err:
        raise DatasetError(str(err)) from err
    start = time.monotonic()
    opt.state_slide_mpp(args.slides, args.slide_mpp)
    sources = sources_from_paths(args.slides, args.fully_annotated)
    for source in sources:
        if source.mpp is None:  # nothing entered: the file must say it (a plain JPEG or PNG never does)
            with open_slide(source.path) as reader:
                if not reader.mpp:
                    raise DatasetError(opt.mpp_hint(source.path))
    labelling = {"tumour_min": args.tumour_min, "normal_max": args.normal_max, "tissue_min": args.tissue_min}
    plan = plan_dataset(sources, spec, args.split, args.ratio, args.seed, args.test_slides, labelling,
                        progress=ProgressBar("tissue and labels"))
    for warning in plan.warnings:
        warn(warning)
    print(f"{len(sources)} slide(s), {plan.label.size} labelled tiles of {spec.tile_px} px at {spec.mpp:g} µm/px "
          f"({args.split} split)")
    for name, where in plan.slide_splits().items():
        print(f"  {name}: {where}")
    print(format_counts(plan.counts()))
    if args.dry_run:
        return 0
    manifest = write_dataset(plan, args.out, encoding=args.encoding, workers=args.workers,
                             progress=ProgressBar("tiles"))
    elapsed = time.monotonic() - start
    print(f"{Path(args.out)} ({sum(sum(c.values()) for c in manifest['counts'].values())} tiles in {elapsed:.1f} s)")
    return 0


COMMANDS = {"dataset": dataset}
