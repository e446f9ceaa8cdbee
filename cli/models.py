"""The command-line side of models: ``train``, ``retrain``, ``test`` and ``validate-framework``.

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cli import options as opt
from cli.predict import resolve_engine
from cli.progress import ProgressBar, metric, note, warn
from core.demo import DEMO_MODEL_STATEMENT, is_demo_model
from core.errors import DatasetError
from core.inference.engines import ENGINE_CHOICES
from core.models.engine import describe_device, engine, parse_device
from cli.tiles import add_patch_options, patch_scale, read_patches, refuse_patch_options
from core.tiles.arrays import hold_out_sources, split_off
from core.tiles.patches import DATASET_JSON, is_patch_folder
from core.tiles.dataset import MANIFEST, read_dataset, read_manifest
from core.tiles.folder import read_tile_groups
from core.tiles.stain import STAIN_AUGMENTS, STAIN_NORMALISE

# The trainer, the bundle reader, the tester and the framework check import MXNet, which takes 2 to 4 s
# to load: each command imports its module when it runs, so that `biopsia --help` and the commands that
# need no network stay quick (tests/cli/test_cli.py checks that --help loads no MXNet).


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a tile classifier with MXNet Gluon")
    p.add_argument("dataset", help="dataset folder from 'biopsia dataset', or a patch folder (one subfolder per class)")
    p.add_argument("--out", required=True, help="model folder: best/ is the model to use, last/ resumes")
    p.add_argument("--arch", default="cnn", help="cnn (compact, default) or resnet18")
    p.add_argument("--no-onnx", action="store_true",
                   help="do not export the kept model to model.onnx at the end (export-onnx can add it later)")
    p.add_argument("--int8", action="store_true",
                   help="also make the INT8 variant at the end (as 'biopsia quantize' does: calibrated on training "
                        "tiles, refused if it changes more than 1 %% of the validation tiles' calls)")
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
    add_patch_options(p)
    p.add_argument("--stain-augment", choices=STAIN_AUGMENTS, default="light",
                   help="stain jitter of training tiles: hed (H, E and DAB densities after colour deconvolution), "
                        "light (mild per-channel RGB; default) or none")
    p.add_argument("--stain-normalise", choices=STAIN_NORMALISE, default="none",
                   help="fit a stain normalisation on the training tiles (reinhard: CIELAB mean and spread; "
                        "macenko: stain vectors), record it in the model and apply it at every prediction")
    p.add_argument("--stain-reference", metavar="IMAGE",
                   help="fit --stain-normalise on this RGB image (PNG, JPEG, TIFF) instead of the training tiles")
    p.add_argument("--warmup", type=opt.number(0, None), metavar="EPOCHS",
                   help="raise the learning rate from 1 %% to --lr over this many epochs first (default: 1, or "
                        "10 %% of a run under 10 epochs; 0: none)")
    p.add_argument("--target-sensitivity", type=opt.number(0, 1, low_open=True), default=0.95,
                   help="the model's threshold is the highest one reaching this validation sensitivity "
                        "(default 0.95); Youden's is recorded too")

    p = sub.add_parser("retrain", help="fine-tune a model on a project's marks, decided drafts and reviewed "
                                       "regions (the window's Model > Retrain with new marks)")
    p.add_argument("project", help="project folder (holding project.json)")
    p.add_argument("--model", required=True, help="the model to start from (a model folder or its best/ bundle)")
    p.add_argument("--name", help="the new model's folder under the project's models/ (default <model>-retrained)")
    p.add_argument("--epochs", type=opt.positive, help="default 3: the parent has learnt the tissue already")
    p.add_argument("--lr", type=opt.number(0, None, low_open=True),
                   help="learning rate (default half the parent's)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("test", help="a model's confusion matrix, sensitivity, specificity and AUC on tiles")
    p.add_argument("model", help="model folder (or its best/ bundle)")
    p.add_argument("dataset", help="dataset folder, .rec file, or patch folder (one subfolder per class)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split of a dataset folder (default test)")
    add_patch_options(p, tile=False)
    p.add_argument("--threshold", type=opt.fraction,
                   help="tumour probability called positive (default: the model's, chosen on its validation "
                        "tiles; 0.5 if it records none)")
    p.add_argument("--device", default="auto")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="mxnet, onnx (the model's model.onnx on ONNX Runtime; 'biopsia export-onnx' makes it), or "
                        "auto (default): MXNet, except on a GPU MXNet has no kernels for, where ONNX Runtime runs")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="fp32, or int8: the model's INT8 variant on MXNet oneDNN ('biopsia quantize' makes it)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("validate-framework", help="check MXNet training on MNIST, Fashion-MNIST or CIFAR-10 files")
    p.add_argument("kind", choices=("mnist", "fashion-mnist", "cifar10"))
    p.add_argument("folder", help="folder with the files as distributed (IDX, gzipped or not; CIFAR-10 binary)")
    p.add_argument("--epochs", type=opt.positive, default=8)
    p.add_argument("--batch", type=opt.positive, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-train", type=opt.positive, help="use only the first N training images (a quick check)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def load_training_data(args):
    """Training and validation tiles for ``train``, and their µm/px (None when the dataset or patch folder gives none).

    A patch folder is cut into tiles at ``--patch-mpp`` (or its ``dataset.json``) and, without ``--val``,
    validated on whole groups of near-copies. Without a µm/px a warning says so before any tile is read.
    """
    folder = Path(args.dataset)
    patches, mpp, has_test = None, None, False
    if is_patch_folder(folder):
        scale = args.patch_mpp if args.patch_mpp is not None else patch_scale(folder)
        if scale is None:
            warn_no_scale(args, f"{folder} does not give its patches' µm/px",
                          f"give --patch-mpp X, or an \"mpp\" in {folder / DATASET_JSON}")
        patches = read_patches(folder, args.patch_mpp, args.tile, args.mpp)
        train_tiles, mpp = patches.tiles, patches.mpp
    else:
        refuse_patch_options(folder, args)
        if (folder / MANIFEST).is_file():
            manifest = read_manifest(folder)
            mpp = manifest.get("mpp")
            has_test = sum(manifest.get("counts", {}).get("test", {}).values()) > 0
            if mpp is None:
                warn_no_scale(args, f"{folder} records no µm/px",
                              "write the dataset again from a patch folder with --patch-mpp X")
        train_tiles = read_dataset(folder, "train")
    if args.val:
        val_tiles = (read_patches(args.val, args.patch_mpp, train_tiles.images.shape[1], mpp, group=False).tiles
                     if is_patch_folder(args.val) else read_dataset(args.val, "test"))
    elif (held := hold_out_whole_sources(folder, train_tiles, args, has_test)) is not None:
        train_tiles, val_tiles = held
    elif patches is not None:
        train_tiles, val_tiles = split_off(train_tiles, args.val_ratio, args.seed, patches.groups)
        note(f"no test split in {folder}: {len(val_tiles)} tiles ({args.val_ratio:.0%} of each class, whole "
             f"groups of near-copies) held out for validation")
    else:
        train_tiles, val_tiles = split_off(train_tiles, args.val_ratio, args.seed)
        note(f"no test split in {folder}: {len(val_tiles)} training tiles ({args.val_ratio:.0%}, stratified) "
             "held out for validation")
    return train_tiles, val_tiles, mpp


def dataset_cell(folder) -> float | None:
    """The µm side of the centre cell a dataset folder's tiles are labelled by (``dataset --cell``), else None."""
    folder = Path(folder)
    if is_patch_folder(folder) or not (folder / MANIFEST).is_file():
        return None
    cell = read_manifest(folder).get("split", {}).get("cell_um")
    return None if cell is None else float(cell)


def hold_out_whole_sources(folder: Path, tiles, args, has_test: bool):
    """Validation tiles from whole slides (or near-copy groups) of a dataset's train split, and the rest.

    The test split is never validated on: the best epoch and the model's threshold are chosen on
    validation, so a test split that also validated would report what was tuned on it. When the train
    split's tiles come from one slide only, or a slide-wise hold-out would leave a class out of either
    side, a stratified share of its tiles validates instead, and the note says what that means.
    None when the folder does not record where its tiles came from (older datasets).
    """
    found = read_tile_groups(folder, "train", len(tiles))
    if found is None:
        if has_test:
            warn(f"{folder} does not record each tile's slide (written by an older Biopsia): validating on its "
                 "test split, so 'biopsia test' on that split reports what the threshold was chosen on; write "
                 "the dataset again, or give --val DATASET")
            return tiles, read_dataset(folder, "test")
        return None
    column, ids = found
    held = hold_out_sources(tiles, ids, args.val_ratio, args.seed, column)
    advice = "" if held.whole else f"; give --val DATASET with {column}s of their own"
    kept = "; its test split is left for 'biopsia test'" if has_test else ""
    where = f"{folder}'s train split"
    note(f"{held.describe(args.val_ratio, where)}{advice}{kept}")
    return held.train, held.val


def warn_no_scale(args, why: str, fix: str) -> None:
    """The warning, before training, that a model without a µm/px will be refused on slides."""
    warn(f"{why}: the model will record no µm/px and 'biopsia predict' will refuse it on slides; {fix}, "
         f"or set \"mpp\" in {Path(args.out) / 'best' / 'model.json'} after training")


class EpochProgress:
    """Training events as a progress bar per epoch and one line of metrics after each."""

    def __init__(self):
        self.bar, self.epoch = None, -1

    def __call__(self, event) -> None:
        if event.epoch != self.epoch:
            self.epoch = event.epoch
            self.bar = ProgressBar(f"epoch {event.epoch + 1}/{event.epochs}")
        if event.metrics is None:
            self.bar(event.batch, event.batches)
            return
        m = event.metrics
        auc = m.get("auc")
        extra = "" if auc is None else (f"  AUC {auc:.3f}  sensitivity {metric(m.get('sensitivity'))}  "
                                         f"specificity {metric(m.get('specificity'))}")
        note(f"epoch {event.epoch + 1}/{event.epochs}: train loss {m['train_loss']:.4f}  val loss {m['loss']:.4f}  "
             f"accuracy {m['accuracy']:.3f}{extra}")


def class_counts(tiles) -> str:
    """``"tumour 40, normal 60"``: tiles per class."""
    return ", ".join(f"{c} {n}" for c, n in zip(tiles.classes, np.bincount(tiles.labels, minlength=len(tiles.classes))))


def train_model(args) -> int:
    from core.models.train import train  # MXNet: see the note at the top

    train_tiles, val_tiles, mpp = load_training_data(args)
    cell = dataset_cell(args.dataset)
    if cell is not None:
        note(f"{args.dataset}: each tile is labelled by its centre {cell:g} µm cell; the model records it, so "
             f"predict it with --stride of one cell ({cell:g} µm in the slide's pixels) to give every cell a call")
    device = engine().run(lambda: describe_device(parse_device(args.device)))
    note(f"training {args.arch} on {device}: {len(train_tiles)} tiles ({class_counts(train_tiles)}), "
         f"validating on {len(val_tiles)} ({class_counts(val_tiles)})")
    if args.stain_normalise != "none":
        source = args.stain_reference or "the training tiles"
        note(f"stain: {args.stain_normalise} normalisation fitted on {source}, recorded in the model and applied "
             "by every prediction with it")
    result = train(train_tiles, val_tiles, args.out, arch=args.arch, epochs=args.epochs, batch_size=args.batch,
                   lr=args.lr, optimizer=args.optimizer, seed=args.seed, device=args.device,
                   augment=not args.no_augment, early_stopping_patience=args.patience,
                   stain_augment=args.stain_augment, stain_normalise=args.stain_normalise,
                   stain_reference=args.stain_reference,
                   progress=EpochProgress(), resume=args.resume, mpp=mpp,
                   target_sensitivity=args.target_sensitivity, cell_um=cell, warmup_epochs=args.warmup,
                   onnx=not args.no_onnx, int8=args.int8)
    if result.bundle is None:
        note("no epoch finished; no model saved")
        return 1
    best = result.history[[h["epoch"] for h in result.history].index(result.best_epoch)]
    how = " (stopped early)" if result.stopped_early else ""
    print(f"{result.bundle}  best epoch {result.best_epoch + 1} of {result.epochs_run}{how}: "
          f"validation AUC {metric(best.get('auc'))}, accuracy {best['accuracy']:.3f}, "
          f"sensitivity {metric(best.get('sensitivity'))}, specificity {metric(best.get('specificity'))} at 0.5")
    if result.threshold is not None:
        from core.models.bundle import read_info, describe_threshold

        youden = result.thresholds.get("youden")
        print(f"{describe_threshold(read_info(result.bundle, verify=False))}; Youden's {youden!r}; "
              "test, predict and evaluate use it unless given --threshold")
    if result.onnx is not None:
        note(onnx_words(result.onnx))
    if result.int8 is not None:
        note(int8_words(result.int8))
    return 0


def int8_words(summary: dict) -> str:
    """What the end-of-training quantisation did, in a line (`core.models.train.add_int8`'s record)."""
    if "error" in summary:
        return f"INT8 variant not made: {summary['error']}"
    check = summary["check"]
    return (f"INT8 variant kept ({summary['calib_mode']} calibration on {summary['calibration_tiles']} training "
            f"tiles): against FP32 on {check['tiles']} validation tiles, calls agree {check['calls_agree']:.1%}, "
            f"max |Δp| {check['max_abs_diff']:.3f}; predict --precision int8 uses it")


def retrain_model(args) -> int:
    from core.models.retrain import RETRAIN_EPOCHS, retrain_job  # MXNet: see the note at the top
    from core.models.reports import ProgressEvent
    from core.models.training_job import Planned, Validation, run_job
    from core.project.model import Project

    project = Project.open(args.project)
    job = retrain_job(project, args.model, name=args.name, epochs=args.epochs or RETRAIN_EPOCHS,
                      device=args.device, lr=args.lr)
    note(f"retraining {job.init_from} on {len(job.slide_ids)} slide(s) of {project.name}, {job.epochs} epochs at "
         f"lr {job.lr:g}: {job.spec.tile_px} px tiles at {job.spec.mpp:g} µm/px")
    epochs = EpochProgress()

    def report(event) -> None:
        if isinstance(event, Planned):
            counts = event.counts["train"]
            note("labelled tiles: " + ", ".join(f"{n} {c}" for c, n in counts.items()))
            for line in event.warnings:
                warn(line)
        elif isinstance(event, Validation):
            note(event.text)
        elif isinstance(event, ProgressEvent):
            epochs(event)

    result = run_job(job, report, lambda: False)
    if result is None or result.bundle is None:
        note("no epoch finished; no model saved")
        return 1
    print(f"{result.bundle}  validation AUC {metric(result.best_score)}; its parent is recorded in model.json")
    if result.onnx is not None:
        note(onnx_words(result.onnx))
    return 0


def onnx_words(check: dict) -> str:
    """What the end-of-training export did, in a line (`core.models.train.add_onnx`'s record)."""
    if "error" in check:
        return f"model.onnx not made: {check['error']}"
    return (f"model.onnx kept: checked against MXNet on {check['checked_tiles']} validation tiles, max |Δp| "
            f"{check['max_abs_diff']:.1e}")


def test_tiles(args) -> int:
    from core.models.bundle import read_info, resolve_bundle  # MXNet: see the note at the top
    from core.models.testing import test_model

    bundle = resolve_bundle(args.model)
    if is_demo_model(bundle):
        note(DEMO_MODEL_STATEMENT)
    info = read_info(bundle)
    args.engine = resolve_engine(args, info)  # decided before any tile is read
    if is_patch_folder(args.dataset):  # cut at the model's tile size and µm/px
        tiles = read_patches(args.dataset, args.patch_mpp, info.tile_px, info.mpp, group=False).tiles
        if tiles.classes != list(info.classes):
            raise DatasetError(f"{args.dataset}: its classes {tiles.classes} are not the model's {info.classes}; "
                               f"map its folders to the model's classes in {Path(args.dataset) / DATASET_JSON}, "
                               'e.g. {"classes": {"lung_aca": "Tumour", "lung_n": "Non-tumour"}}')
    else:
        refuse_patch_options(args.dataset, args)
        tiles = read_dataset(args.dataset, args.split)
    result = test_model(bundle, tiles, args.device, args.threshold, progress=ProgressBar("tiles"), engine=args.engine,
                        precision=args.precision)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{bundle} on {args.dataset} ({result['tiles']} tiles; {result['device']})")
    if "table" in result:
        print(result["threshold_text"])
    if "table" in result:
        print(result["table"])
        print(f"sensitivity {metric(result['sensitivity'])}  specificity {metric(result['specificity'])}  "
              f"PPV {metric(result['ppv'])}  NPV {metric(result['npv'])}  accuracy {metric(result['accuracy'])}  "
              f"F1 {metric(result['f1'])}")
        auc = result["auc"]
        print(f"AUC {auc:.4f}" if auc is not None else f"AUC n/a ({result['auc_reason']})")
    else:
        print(f"accuracy {result['accuracy']:.4f}")
    return 0


def validate(args) -> int:
    from core.models.framework_check import validate_framework  # MXNet: see the note at the top

    start = time.monotonic()
    accuracy = validate_framework(args.kind, args.folder, epochs=args.epochs, batch_size=args.batch,
                                  max_train=args.max_train, device=args.device, progress=EpochProgress())
    elapsed = time.monotonic() - start
    if args.json:
        print(json.dumps({"benchmark": args.kind, "test_accuracy": accuracy, "epochs": args.epochs,
                          "seconds": round(elapsed, 1)}))
    else:
        print(f"{args.kind}: test accuracy {accuracy:.4f} after {args.epochs} epoch(s) in {elapsed:.0f} s")
    return 0


COMMANDS = {"train": train_model, "retrain": retrain_model, "test": test_tiles, "validate-framework": validate}
