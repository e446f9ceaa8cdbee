"""The command-line side of datasets: ``dataset`` (labelled tiles as MXNet RecordIO, from slides or a patch folder).

Also the patch-folder options (``--patch-mpp``, ``--tile``, ``--mpp``) that ``train`` and ``test`` share,
and reading a patch folder with them (`read_patches`).
"""

from __future__ import annotations

import time
from pathlib import Path

from cli import options as opt
from cli.cohort import add_cluster_options, wants_cluster
from cli.progress import ProgressBar, note, warn
from core.errors import DatasetError
from core.slide import open_slide
from core.tiles.dataset import plan_dataset, sources_from_paths, write_dataset
from core.tiles.grid import TileSpec
from core.tiles.patches import (DATASET_JSON, is_patch_folder, patch_split, read_dataset_json, read_patch_folder,
                                write_patch_dataset)
from core.tiles.labels import LabelRules
from core.view.viewport import UM_PER_PX_AT_10X

RULES = LabelRules()  # the labelling thresholds' defaults, from their one owner


def add_parsers(sub) -> None:
    p = sub.add_parser("dataset", help="labelled tiles from slides and their marks, as MXNet RecordIO")
    p.add_argument("slides", nargs="+", metavar="SLIDE_OR_PROJECT",
                   help="slide files (marks from <stem>.geojson/.xml beside them or the default project), "
                        "project folders, or one patch folder (one subfolder of patches per class)")
    p.add_argument("--out", required=True, help="dataset folder to write (train/test .rec .idx .lst, manifest.json)")
    p.add_argument("--tile", type=opt.tile_px, default=None,
                   help="tile side in pixels (default 128; for a patch folder: the patches' side)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=opt.mpp, default=None,
                     help="micrometres per tile pixel (default 1.0, about 10x; for a patch folder: the patches')")
    res.add_argument("--mag", type=opt.number(0.2, 200, unit="x"),
                     help="magnification instead of --mpp (10 means 1 µm/px)")
    p.add_argument("--split", choices=("by-slide", "random"), default="by-slide",
                   help="whole slides to train or test (default), or tiles at random; a patch folder is "
                        "always split by group of near-copies")
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
    p.add_argument("--cell", type=opt.number(0, None, low_open=True, unit=" µm"), metavar="UM",
                   help="label each tile by the UM-µm square at its centre (tumour, tissue and the thresholds "
                        "above apply to that cell), one tile per cell: the network sees the tissue around what "
                        "it labels (e.g. --tile 64 --mpp 2 --cell 64: 64 µm cells with 32 µm around them); "
                        "predict such a model with --stride of one cell; default: the whole tile")
    p.add_argument("--encoding", choices=("jpg", "png"), default="jpg", help="tile encoding (default jpg, q95)")
    p.add_argument("--threads", type=opt.positive, help="reading threads (default: twice the cores, at most 8)")
    add_cluster_options(p, force=False)  # the files are the same bytes with or without a cluster
    p.add_argument("--dry-run", action="store_true", help="print the counts only; write nothing")
    opt.add_slide_mpp(p)
    p.add_argument("--patch-mpp", type=opt.mpp, metavar="X",
                   help=f"micrometres per pixel of the patches of a patch folder (wins over its {DATASET_JSON})")


def add_patch_options(p, tile: bool = True) -> None:
    """``--patch-mpp`` (and with ``tile``, ``--tile`` and ``--mpp``) for a command given a patch folder."""
    p.add_argument("--patch-mpp", type=opt.mpp, metavar="X",
                   help=f"micrometres per pixel of a patch folder's patches (wins over its {DATASET_JSON}); "
                        "patches are cut into tiles at that scale")
    if tile:
        p.add_argument("--tile", type=opt.tile_px, help="for a patch folder: tile side in pixels (default: the "
                                                        "patches' side); larger patches are cut into tiles")
        p.add_argument("--mpp", type=opt.mpp, help="for a patch folder: µm/px of the tiles (default: the patches'; "
                                                   "needs --patch-mpp or dataset.json)")


def patch_scale(folder) -> float | None:
    """The patches' µm/px as ``--patch-mpp`` or ``dataset.json`` would give it, without reading patches."""
    doc = read_dataset_json(folder)
    return doc["mpp"] if doc else None


def read_patches(folder, patch_mpp=None, tile_px=None, mpp=None, group: bool = True):
    """`core.tiles.patches.read_patch_folder` with a note on stderr saying what was read and how it was grouped."""
    patches = read_patch_folder(folder, patch_mpp=patch_mpp, tile_px=tile_px, mpp=mpp, group=group)
    note(patches.describe())
    return patches


def refuse_patch_options(folder, args) -> None:
    """Raise DatasetError when patch-folder options were given for something that is not a patch folder."""
    given = [name for name, attr in (("--patch-mpp", "patch_mpp"), ("--tile", "tile"), ("--mpp", "mpp"))
             if getattr(args, attr, None) is not None]
    if given:
        raise DatasetError(f"{folder}: {', '.join(given)} apply to a patch folder (one subfolder of patches per "
                           "class); a dataset folder already records its tile size and µm/px")


def format_counts(counts: dict) -> str:
    """Tile counts per split and class, one line a split."""
    lines = []
    for split, per_class in counts.items():
        total = sum(per_class.values())
        parts = ", ".join(f"{name} {n}" for name, n in per_class.items())
        lines.append(f"  {split:<5} {total:>7} tiles ({parts})")
    return "\n".join(lines)


def dataset(args) -> int:
    if len(args.slides) == 1 and is_patch_folder(args.slides[0]):
        return patch_dataset(args)
    if args.patch_mpp is not None:
        raise DatasetError(f"--patch-mpp applies to one patch folder (one subfolder of patches per class), not to "
                           f"{', '.join(args.slides)}; for slides use --slide-mpp")
    mpp = UM_PER_PX_AT_10X * 10.0 / args.mag if args.mag else (args.mpp if args.mpp is not None else 1.0)
    try:
        spec = TileSpec(args.tile or 128, mpp)
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
                        progress=ProgressBar("tissue and labels"), cell_um=args.cell)
    for warning in plan.warnings:
        warn(warning)
    cell = "" if args.cell is None else f", each labelled by its centre {args.cell:g} µm cell"
    print(f"{len(sources)} slide(s), {plan.label.size} labelled tiles of {spec.tile_px} px at {spec.mpp:g} µm/px "
          f"({args.split} split{cell})")
    for name, where in plan.slide_splits().items():
        print(f"  {name}: {where}")
    print(format_counts(plan.counts()))
    if args.dry_run:
        return 0
    if wants_cluster(args):
        manifest = dataset_on_cluster(plan, args)
    else:
        manifest = write_dataset(plan, args.out, encoding=args.encoding, workers=args.threads,
                                 progress=ProgressBar("tiles"))
    elapsed = time.monotonic() - start
    print(f"{Path(args.out)} ({sum(sum(c.values()) for c in manifest['counts'].values())} tiles in {elapsed:.1f} s)")
    return 0


def dataset_on_cluster(plan, args) -> dict:
    """The dataset's tiles read and encoded on a Dask cluster, one task per slide (`core.cohort.shards`)."""
    from core.cohort.cluster import cohort_client
    from core.cohort.shards import write_dataset_on_cluster

    with cohort_client(workers=args.workers, scheduler=args.scheduler or None,
                       timeout=args.scheduler_timeout) as (client, info):
        where = "a local cluster" if info.local else f"the cluster at {info.scheduler}"
        note(f"{len(plan.sources)} slides on {where} of {info.workers} worker processes; dashboard {info.dashboard}")
        return write_dataset_on_cluster(client, plan, args.out, args.encoding, progress=ProgressBar("tiles"),
                                        on_slide=lambda s: note(f"{s['slide']}: {s['tiles']} tiles on {s['worker']}"))


def patch_dataset(args) -> int:
    """``dataset`` of a patch folder: tiles cut at the stated scale, split by group, written as a dataset."""
    start = time.monotonic()
    folder = Path(args.slides[0])
    if getattr(args, "cell", None) is not None:
        raise DatasetError(f"{folder}: --cell labels the centre of tiles cut from slides with marks; a patch "
                           "folder's tiles take their folder's class whole")
    mpp = UM_PER_PX_AT_10X * 10.0 / args.mag if args.mag else args.mpp
    patches = read_patches(folder, args.patch_mpp, args.tile, mpp)
    if patches.mpp is None:
        warn(f"{folder}: the patches' µm/px is unknown, so the dataset records none and a model trained on it "
             f"cannot predict slides; give --patch-mpp X or an \"mpp\" in {folder / DATASET_JSON}")
    if args.split != "by-slide":
        note(f"{folder}: a patch folder is split by group of near-copies, not --split {args.split}")
    split = patch_split(patches, args.ratio, args.seed)
    tiles = patches.tiles
    counts = {name: {cls: int(((split == s) & (tiles.labels == c)).sum()) for c, cls in enumerate(tiles.classes)}
              for s, name in enumerate(("train", "test"))}
    groups = {name: int(len(set(patches.groups[split == s].tolist()))) for s, name in enumerate(("train", "test"))}
    scale = f" at {patches.mpp:g} µm/px" if patches.mpp is not None else " (µm/px unknown)"
    print(f"{patches.patches} patches, {len(tiles)} tiles of {tiles.images.shape[1]} px{scale}; "
          f"{patches.n_groups} groups, split by group: train {groups['train']}, test {groups['test']}")
    print(format_counts(counts))
    if args.dry_run:
        return 0
    manifest = write_patch_dataset(patches, args.out, ratio=args.ratio, seed=args.seed, encoding=args.encoding,
                                   progress=ProgressBar("tiles"))
    elapsed = time.monotonic() - start
    print(f"{Path(args.out)} ({sum(sum(c.values()) for c in manifest['counts'].values())} tiles in {elapsed:.1f} s)")
    return 0


COMMANDS = {"dataset": dataset}
