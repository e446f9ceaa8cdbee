"""The command-line side of datasets and models: ``dataset``, ``train``, ``test``, ``validate-framework``.

`add_parsers` adds the subcommands to ``main.py``'s parser; `run` carries one out and prints the result.
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from cli import options as opt
from core.errors import DatasetError


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
    p.add_argument("--tumour-min", type=opt.fraction, default=0.5, help="Tumour coverage for a tumour tile (default 0.5)")
    p.add_argument("--normal-max", type=opt.fraction, default=0.05,
                   help="Tumour coverage up to which a tile is non-tumour (default 0.05)")
    p.add_argument("--tissue-min", type=opt.fraction, default=0.5, help="tissue share a tile needs (default 0.5)")
    p.add_argument("--encoding", choices=("jpg", "png"), default="jpg", help="tile encoding (default jpg, q95)")
    p.add_argument("--workers", type=opt.positive, help="reading threads (default: twice the cores, at most 8)")
    p.add_argument("--dry-run", action="store_true", help="print the counts only; write nothing")

    p = sub.add_parser("train", help="train a tile classifier with MXNet Gluon")
    p.add_argument("dataset", help="dataset folder from 'biopsia dataset', or a patch folder (one subfolder per class)")
    p.add_argument("--out", required=True, help="model folder: best/ is the model to use, last/ resumes")
    p.add_argument("--arch", default="cnn", help="cnn (compact, default) or resnet18")
    p.add_argument("--epochs", type=opt.positive, default=10)
    p.add_argument("--batch", type=opt.positive, default=64)
    p.add_argument("--lr", type=opt.number(0, 10, low_open=True), default=1e-3, help="initial learning rate (cosine decay)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--device", default="auto", help="auto (GPU when MXNet finds one), cpu or gpu:0")
    p.add_argument("--seed", type=opt.natural, default=0)
    p.add_argument("--val", help="validation tiles (dataset folder or patch folder); default: the dataset's "
                                 "test split, else a part of the training tiles")
    p.add_argument("--val-ratio", type=opt.number(0, 1, low_open=True, high_open=True), default=0.2,
                   help="share held out for validation when there is no test split (default 0.2)")
    p.add_argument("--patience", type=opt.positive, default=5, help="stop after this many epochs without a lower validation loss")
    p.add_argument("--no-augment", action="store_true", help="no flips, rotations or stain jitter")
    p.add_argument("--resume", action="store_true", help="continue from MODEL/last")

    p = sub.add_parser("test", help="a model's confusion matrix, sensitivity, specificity and AUC on tiles")
    p.add_argument("model", help="model folder (or its best/ bundle)")
    p.add_argument("dataset", help="dataset folder, .rec file, or patch folder (one subfolder per class)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split of a dataset folder (default test)")
    p.add_argument("--threshold", type=opt.fraction, default=0.5,
                   help="tumour probability called positive (default 0.5)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("validate-framework", help="check MXNet training on MNIST, Fashion-MNIST or CIFAR-10 files")
    p.add_argument("kind", choices=("mnist", "fashion-mnist", "cifar10"))
    p.add_argument("folder", help="folder with the files as distributed (IDX, gzipped or not; CIFAR-10 binary)")
    p.add_argument("--epochs", type=opt.positive, default=8)
    p.add_argument("--batch", type=opt.positive, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-train", type=opt.positive, help="use only the first N training images (a quick check)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args, progress_bar) -> int:
    handler = {"dataset": _dataset, "train": _train, "test": _test, "validate-framework": _validate}[args.command]
    return handler(args, progress_bar)


def _format_counts(counts: dict) -> str:
    lines = []
    for split, per_class in counts.items():
        total = sum(per_class.values())
        parts = ", ".join(f"{name} {n}" for name, n in per_class.items())
        lines.append(f"  {split:<5} {total:>7} tiles ({parts})")
    return "\n".join(lines)


def _dataset(args, progress_bar) -> int:
    from core.tiles.dataset import plan_dataset, sources_from_paths, write_dataset
    from core.tiles.grid import TileSpec

    mpp = 10.0 / args.mag if args.mag else (args.mpp if args.mpp is not None else 1.0)
    try:
        spec = TileSpec(args.tile, mpp)
    except ValueError as err:
        raise DatasetError(str(err)) from err
    start = time.monotonic()
    sources = sources_from_paths(args.slides, args.fully_annotated)
    labelling = {"tumour_min": args.tumour_min, "normal_max": args.normal_max, "tissue_min": args.tissue_min}
    plan = plan_dataset(sources, spec, args.split, args.ratio, args.seed, args.test_slides, labelling,
                        progress=progress_bar("tissue and labels"))
    for warning in plan.warnings:
        print(f"biopsia: warning: {warning}", file=sys.stderr)
    print(f"{len(sources)} slide(s), {plan.label.size} labelled tiles of {spec.tile_px} px at {spec.mpp:g} µm/px "
          f"({args.split} split)")
    for name, where in plan.slide_splits().items():
        print(f"  {name}: {where}")
    print(_format_counts(plan.counts()))
    if args.dry_run:
        return 0
    manifest = write_dataset(plan, args.out, encoding=args.encoding, workers=args.workers,
                             progress=progress_bar("tiles"))
    elapsed = time.monotonic() - start
    print(f"{Path(args.out)} ({sum(sum(c.values()) for c in manifest['counts'].values())} tiles in {elapsed:.1f} s)")
    return 0


def _split_off(tiles, ratio: float, seed: int):
    """A stratified random share ``ratio`` of ``tiles`` for validation, and the rest."""
    from core.models.train import TileArrays

    rng = np.random.default_rng(seed)
    val = np.zeros(len(tiles), bool)
    for c in np.unique(tiles.labels):
        members = rng.permutation(np.flatnonzero(tiles.labels == c))
        val[members[:max(1, round(ratio * members.size))]] = True
    pick = lambda mask: TileArrays(tiles.images[mask], tiles.labels[mask], tiles.classes)  # noqa: E731
    return pick(~val), pick(val)


def _load_training_data(args):
    from core.tiles.dataset import MANIFEST, read_dataset, read_manifest

    folder = Path(args.dataset)
    train_tiles = read_dataset(folder, "train")
    mpp = None
    has_test = False
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        mpp = manifest.get("mpp")
        has_test = sum(manifest.get("counts", {}).get("test", {}).values()) > 0
    if args.val:
        val_tiles = read_dataset(args.val, "test")
    elif has_test:
        val_tiles = read_dataset(folder, "test")
    else:
        train_tiles, val_tiles = _split_off(train_tiles, args.val_ratio, args.seed)
        print(f"no test split in {folder}: {len(val_tiles)} training tiles ({args.val_ratio:.0%}, stratified) "
              "held out for validation", file=sys.stderr)
    return train_tiles, val_tiles, mpp


class _TrainProgress:
    def __init__(self, progress_bar):
        self.progress_bar, self.bar, self.epoch = progress_bar, None, -1

    def __call__(self, event) -> None:
        if event.epoch != self.epoch:
            self.epoch = event.epoch
            self.bar = self.progress_bar(f"epoch {event.epoch + 1}/{event.epochs}")
        if event.metrics is None:
            self.bar(event.batch, event.batches)
            return
        m = event.metrics
        auc = m.get("auc")
        extra = "" if auc is None else (f"  AUC {auc:.3f}  sensitivity {_pct(m.get('sensitivity'))}  "
                                         f"specificity {_pct(m.get('specificity'))}")
        print(f"epoch {event.epoch + 1}/{event.epochs}: train loss {m['train_loss']:.4f}  val loss {m['loss']:.4f}  "
              f"accuracy {m['accuracy']:.3f}{extra}", file=sys.stderr, flush=True)


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _train(args, progress_bar) -> int:
    from core.models.engine import describe_device, engine, parse_device
    from core.models.train import train

    train_tiles, val_tiles, mpp = _load_training_data(args)
    device = engine().run(lambda: describe_device(parse_device(args.device)))
    counts = lambda t: ", ".join(f"{c} {n}" for c, n in zip(t.classes, np.bincount(t.labels, minlength=len(t.classes))))  # noqa: E731
    print(f"training {args.arch} on {device}: {len(train_tiles)} tiles ({counts(train_tiles)}), "
          f"validating on {len(val_tiles)} ({counts(val_tiles)})", file=sys.stderr)
    result = train(train_tiles, val_tiles, args.out, arch=args.arch, epochs=args.epochs, batch_size=args.batch,
                   lr=args.lr, optimizer=args.optimizer, seed=args.seed, device=args.device,
                   augment=not args.no_augment, early_stopping_patience=args.patience,
                   progress=_TrainProgress(progress_bar), resume=args.resume, mpp=mpp)
    if result.bundle is None:
        print("no epoch finished; no model saved", file=sys.stderr)
        return 1
    best = result.history[[h["epoch"] for h in result.history].index(result.best_epoch)]
    how = " (stopped early)" if result.stopped_early else ""
    print(f"{result.bundle}  best epoch {result.best_epoch + 1} of {result.epochs_run}{how}: "
          f"validation AUC {_pct(best.get('auc'))}, accuracy {best['accuracy']:.3f}, "
          f"sensitivity {_pct(best.get('sensitivity'))}, specificity {_pct(best.get('specificity'))}")
    return 0


def _test(args, progress_bar) -> int:
    from core.tiles.dataset import read_dataset
    from core.models.testing import test_model
    from core.models.bundle import resolve_bundle

    bundle = resolve_bundle(args.model)
    tiles = read_dataset(args.dataset, args.split)
    result = test_model(bundle, tiles, args.device, args.threshold, progress=progress_bar("tiles"))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{bundle} on {args.dataset} ({result['tiles']} tiles; {result['device']})")
    if "table" in result:
        print(result["table"])
        print(f"sensitivity {_pct(result['sensitivity'])}  specificity {_pct(result['specificity'])}  "
              f"PPV {_pct(result['ppv'])}  NPV {_pct(result['npv'])}  accuracy {_pct(result['accuracy'])}  "
              f"F1 {_pct(result['f1'])}")
        auc = result["auc"]
        print(f"AUC {auc:.4f}" if auc is not None else f"AUC n/a ({result['auc_reason']})")
    else:
        print(f"accuracy {result['accuracy']:.4f}")
    return 0


def _validate(args, progress_bar) -> int:
    from core.models.framework_check import validate_framework

    start = time.monotonic()
    report = _TrainProgress(progress_bar)
    accuracy = validate_framework(args.kind, args.folder, epochs=args.epochs, batch_size=args.batch,
                                  max_train=args.max_train, device=args.device, progress=report)
    elapsed = time.monotonic() - start
    if args.json:
        print(json.dumps({"benchmark": args.kind, "test_accuracy": accuracy, "epochs": args.epochs,
                          "seconds": round(elapsed, 1)}))
    else:
        print(f"{args.kind}: test accuracy {accuracy:.4f} after {args.epochs} epoch(s) in {elapsed:.0f} s")
    return 0
