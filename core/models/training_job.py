"""One training run of the GUI's training panel, without widgets: plan the tiles, read them, train.

`run_job` runs on a worker thread; `core.models.train.train` hands the MXNet work to the model thread. Every
report reaches the caller through one ``partial(obj)`` callable, in this order: `Stage` (planning),
`Planned` (the labelled tiles), `Stage` (reading tiles), `Validation` (what validates),
`core.models.train.ProgressEvent` s (batches and epochs), `OnTestSlides` (the Test slides, when there are any)
and finally the `core.models.train.TrainResult`.

Validation is held out of the Train slides by `core.tiles.arrays.hold_out_sources` (whole slides when that
keeps every class on both sides, else a stratified share of the tiles), the rule ``biopsia train`` follows,
so a one-slide project trains too. The best epoch and the model's threshold are chosen on validation, so
the Test slides never validate: the kept model is tested on them after training.

`run_patch_job` is the same run on a patch folder (one subfolder of images per class, `core.tiles.patches`):
the patches are cut into the model's tiles at its µm/px, whole groups of near-copies are held out for
validation, and it reports `Stage` s, a `PatchesSplit`, then the training's reports, as
``biopsia train PATCHFOLDER --patch-mpp X`` does.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import DatasetError
from core.models.engine import describe_device, engine, parse_device
from core.project.layout import MODELS_DIR  # a project's trained models: <project>/models/<name>
from core.tiles.arrays import IMAGE_SUFFIXES
from core.tiles.grid import TileSpec
from core.tiles.stain import DEFAULT_STAIN_AUGMENT

NO_SCALE = ("No scale: the patches are used at their own size and the model records no µm/px, so it can be "
            "tested on patches but cannot predict slides. Give the patches' µm/px to train a model for slides.")

@dataclass
class TrainingJob:
    """Everything one run needs, fixed when it starts.

    Parameters
    ----------
    project : core.project.model.Project
        The project holding the slides and their marks.
    slide_ids : list of str
        Project slide ids to use, training and test.
    test_ids : list of str
        The slides (a subset of ``slide_ids``) the kept model is tested on after training (may be empty);
        validation is held out of the others (`core.tiles.arrays.hold_out_sources`).
    spec : TileSpec
        Tile size and µm/px.
    out_dir : Path
        Folder the model is written to (``best/``, ``last/``, ``history.json``).
    arch, epochs, batch_size, lr, device
        Passed on to `core.models.train.train`.
    val_ratio, seed
        Share of each class of the Train slides' tiles held out for validation, and the split's seed.
    init_from : Path, optional
        A model to fine-tune from (`core.models.train.train`'s ``init_from``; `core.models.retrain.retrain_job`
        makes such a job). The slides are then labelled as retraining labels them
        (`core.models.retrain.retrain_sources`: reviewed regions count as Non-tumour on partly annotated slides).
    open_marks : dict, optional
        ``{slide id: marks}`` at hand (open in the window, or read already), used instead of their files
        (retraining only).
    stain_augment, stain_normalise : str
        Passed on to `core.models.train.train` (the jitter of training tiles; the normalisation fitted on them,
        recorded in the model and applied at every prediction).

    Each slide's µm/px is `core.project.mpp.resolve_mpp`'s (through `sources_from_project`).
    """

    project: object
    slide_ids: list[str]
    test_ids: list[str]
    spec: TileSpec
    out_dir: Path
    arch: str = "cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    device: str = "auto"
    val_ratio: float = 0.2
    seed: int = 0
    init_from: Path | None = None
    open_marks: dict | None = None
    stain_augment: str = DEFAULT_STAIN_AUGMENT
    stain_normalise: str = "none"


@dataclass
class Stage:
    """A step before training: ``text`` with ``done`` of ``total`` (``total`` 0: no count)."""

    text: str
    done: int
    total: int


@dataclass
class Planned:
    """The labelled tiles: ``counts`` as `DatasetPlan.counts`, ``per_slide`` {slide id: (tumour, non-tumour)};
    ``warnings`` as `DatasetPlan.warnings` (marks that miss their slide)."""

    counts: dict
    per_slide: dict
    warnings: list = field(default_factory=list)


@dataclass
class Validation:
    """What validates the run: ``text`` for the user (`core.tiles.arrays.HoldOut.describe`); ``whole`` False
    when validation shares slides with training (a one-slide project), so the threshold may be optimistic."""

    text: str
    whole: bool
    tiles: int


@dataclass
class OnTestSlides:
    """The kept model on the Test slides' tiles, at its own threshold: `core.models.testing.test_model`'s dict."""

    metrics: dict


def check_counts(counts: dict, splits=("train", "test")) -> None:
    """Check that the ``splits`` have tiles of both classes.

    Parameters
    ----------
    counts : dict
        ``{"train": {"Tumour": n, "Non-tumour": n}, "test": {...}}`` as `DatasetPlan.counts` gives.
    splits : tuple of str
        The splits to check (``("train",)`` when validation is held out of the training slides).

    Raises
    ------
    DatasetError
        When a split lacks a class; the message says what to mark.
    """
    for split, who in (("train", "training"), ("test", "test")):
        if split not in splits:
            continue
        if counts[split]["Tumour"] == 0:
            raise DatasetError(f"The {who} slides have no Tumour tiles: mark tumour regions on them with the "
                               "Tumour class, or choose other slides")
        if counts[split]["Non-tumour"] == 0:
            raise DatasetError(f"The {who} slides have no Non-tumour tiles: mark Benign regions or tick "
                               "fully annotated")


def new_job(project, choices: dict, name: str, spec: TileSpec, **settings) -> TrainingJob:
    """The job for the slides ticked in ``choices``, its model saved as ``name`` in the project.

    Parameters
    ----------
    project : core.project.model.Project or None
    choices : dict
        {slide id: (use, role)}: ``use`` True for the slides to train or test on, ``role`` ``"Train"``
        (learnt on, validation held out of them) or ``"Test"`` (the kept model is tested on them).
    name : str
        The model's folder name under the project's ``models`` folder.
    spec : TileSpec
    **settings
        `TrainingJob` fields: ``arch``, ``epochs``, ``batch_size``, ``lr``, ``device``, ``stain_augment``,
        ``stain_normalise``.

    Raises
    ------
    DatasetError
        When there is no project, no ticked slide, no Train slide, the name is not a plain folder name,
        or a model of that name exists.
    """
    if project is None:
        raise DatasetError("No project: open a slide or a project first")
    ids = [i for i, (use, _) in choices.items() if use]
    test_ids = [i for i in ids if choices[i][1] == "Test"]
    if not ids:
        raise DatasetError("Tick the slides to use")
    if len(test_ids) == len(ids):
        raise DatasetError("Give at least one slide the role Train: the model learns on the Train slides "
                           "(validation is held out of them) and is tested on the Test slides")
    return TrainingJob(project, ids, test_ids, spec, model_dir(project, name), **settings)


def model_dir(project, name: str) -> Path:
    """The fresh folder a model called ``name`` is saved in: ``<project>/models/<name>``.

    Raises
    ------
    DatasetError
        When ``name`` is not a plain folder name, or a model of that name exists.
    """
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]*", name):
        raise DatasetError(f"Model name {name!r}: use letters, digits, '-', '_' and '.'")
    out_dir = Path(project.folder) / MODELS_DIR / name
    if out_dir.exists():
        raise DatasetError(f"{out_dir}: a model of that name exists in this project; choose another name")
    return out_dir


def run_job(job: TrainingJob, partial: Callable[[object], None], should_stop: Callable[[], bool]):
    """Plan the tiles of ``job``'s slides, read them and train a model.

    Parameters
    ----------
    job : TrainingJob
    partial : callable
        Called with every report (`Stage`, `Planned`, `Validation`, `core.models.train.ProgressEvent`,
        `OnTestSlides`, then the `core.models.train.TrainResult`), from the calling thread or the model thread.
    should_stop : callable
        Returns True to cancel: planning and reading stop at the next chunk, training after the
        current batch (the best epoch so far is kept).

    Returns
    -------
    TrainResult or None
        None when stopped before training began (nothing is written then).

    Raises
    ------
    DatasetError
        When the slides or marks cannot make a dataset (which slide, what to mark).
    """
    # The window imports this module at start-up (the device picker's `describe`); the trainer loads
    # MXNet, 2.1 s on top of the window's 0.7 s (python -X importtime), so it loads when a run starts.
    from core.models.train import train
    from core.tiles.arrays import hold_out_sources
    from core.tiles.dataset import load_tiles, plan_dataset, sources_from_project
    from core.tiles.reading import ordered_positions

    problems: list[str] = []
    if job.init_from is not None:
        from core.models.retrain import retrain_sources

        found = retrain_sources(job.project, job.slide_ids, job.open_marks)
        sources, problems = found.sources, found.problems
    else:
        sources = sources_from_project(job.project, job.slide_ids)
    names = dict(zip(job.slide_ids, (s.name for s in sources)))
    planning = "Finding tissue and labelling tiles"
    partial(Stage(planning, 0, len(sources)))
    plan = plan_dataset(sources, job.spec, "by-slide", test_slides=[names[i] for i in job.test_ids],
                        progress=lambda d, t: partial(Stage(planning, d, t)), should_stop=should_stop)
    if plan is None:
        return None
    per_slide = {slide_id: tuple(int(((plan.slide == n) & (plan.label == c)).sum()) for c in (1, 0))
                 for n, slide_id in enumerate(job.slide_ids)}
    partial(Planned(plan.counts(), per_slide, list(plan.warnings) + problems))
    check_counts(plan.counts(), ("train",))  # Test slides may hold one class: they are tested, not validated on
    total = int(plan.label.size)
    tiles = {}
    for split, offset in (("train", 0), ("test", int(plan.select("train").size))):
        if split == "test" and plan.select("test").size == 0:
            continue
        tiles[split] = load_tiles(plan, split, should_stop=should_stop,
                                  progress=lambda d, _t, o=offset: partial(Stage("Reading tiles", o + d, total)))
        if tiles[split] is None:
            return None
    # load_tiles reads in ordered_positions' order: the slide of each tile read
    slide_of = plan.slide[ordered_positions(plan, plan.select("train"))]
    held = hold_out_sources(tiles["train"], slide_of, job.val_ratio, job.seed)
    for part, who in ((held.train, "training"), (held.val, "validation")):
        found = np.bincount(part.labels, minlength=2)
        if not found.all():
            raise DatasetError(f"Too few tiles to hold some out for validation: the {who} part has no "
                               f"{'Tumour' if found[1] == 0 else 'Non-tumour'} tiles; mark more regions on the "
                               "Train slides")
    train_slides = len(job.slide_ids) - len(job.test_ids)
    where = "the Train slide's tiles" if train_slides == 1 else "the Train slides' tiles"
    partial(Validation(held.describe(job.val_ratio, where), held.whole, len(held.val)))
    partial(Stage("Starting training", 0, 0))
    result = train(held.train, held.val, job.out_dir, arch=job.arch, epochs=job.epochs,
                   batch_size=job.batch_size, lr=job.lr, device=job.device, progress=partial,
                   should_stop=should_stop, mpp=job.spec.mpp, init_from=job.init_from,
                   stain_augment=job.stain_augment, stain_normalise=job.stain_normalise)
    if result.bundle is None and {p.name for p in job.out_dir.iterdir()} <= {"history.json"}:
        shutil.rmtree(job.out_dir, ignore_errors=True)  # cancelled before any epoch: nothing worth keeping
    if result.bundle is not None and "test" in tiles and not should_stop():
        from core.models.testing import test_model

        partial(OnTestSlides(test_model(result.bundle, tiles["test"], device=job.device)))
    # a cancelled gui.worker.Worker emits no result, so the result is also reported, for the panel
    partial(result)
    return result


@dataclass
class PatchJob:
    """One run on a patch folder, fixed when it starts (see `new_patch_job` and `run_patch_job`).

    Parameters
    ----------
    folder : Path
        The patch folder: one subfolder of images per class, an optional ``dataset.json``.
    out_dir : Path
        Folder the model is written to.
    spec : TileSpec
        The model's tile size and µm/px; the patches are cut into such tiles.
    patch_mpp : float or None
        µm/px of the patches as stored, when given by the user (it wins over ``dataset.json``'s).
    val_ratio : float
        Share of the groups of near-copies held out for validation.
    seed, arch, epochs, batch_size, lr, device, stain_augment, stain_normalise
        The split's seed; the rest passed on to `core.models.train.train`.
    """

    folder: Path
    out_dir: Path
    spec: TileSpec
    patch_mpp: float | None
    val_ratio: float = 0.2
    seed: int = 0
    arch: str = "cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    device: str = "auto"
    stain_augment: str = DEFAULT_STAIN_AUGMENT
    stain_normalise: str = "none"


@dataclass
class PatchesSplit:
    """The tiles cut from the patches and how they were split: ``text`` to show; ``warnings`` (`NO_SCALE`)."""

    text: str
    warnings: list


def class_folders(folder: Path) -> dict[str, int]:
    """{subfolder: number of images} of a patch folder: a quick look, no image is read.

    Counts the files `core.tiles.patches.read_patch_folder` reads (`core.tiles.arrays.IMAGE_SUFFIXES`);
    hidden folders and folders without images are left out.
    """
    out = {}
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")):
        count = sum(1 for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if count:
            out[sub.name] = count
    return out


def new_patch_job(project, folder, name: str, spec: TileSpec, *, patch_mpp: float | None = None,
                  json_mpp: float | None = None, val_ratio: float = 0.2, **settings) -> PatchJob:
    """The run on the patch folder ``folder``, its model saved as ``name`` in the project's models folder.

    Parameters
    ----------
    project : core.project.model.Project or None
    folder : path-like or None
    name : str
    spec : TileSpec
    patch_mpp : float, optional
        The patches' µm/px as the user gave it; a value equal to ``json_mpp`` (the folder's
        ``dataset.json`` one, as shown) is not recorded as the user's.
    val_ratio : float
        Share of the groups held out for validation, more than 0 and less than 1.
    **settings
        `PatchJob` fields: ``seed``, ``arch``, ``epochs``, ``batch_size``, ``lr``, ``device``.

    Raises
    ------
    DatasetError
        No project, no folder, a µm/px out of range, a bad share or name, or a model of that name exists.
    """
    from core.tiles.patches import check_mpp

    if project is None:
        raise DatasetError("No project: open a slide or a project first (the model is saved in it)")
    if folder is None or not str(folder).strip():
        raise DatasetError("Choose a patch folder (one subfolder of images per class)")
    folder = Path(str(folder).strip()).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder; choose a patch folder (one subfolder of images per class)")
    if patch_mpp is not None:
        patch_mpp = check_mpp(patch_mpp, f"{folder}: patch scale")
    if not 0 < val_ratio < 1:
        raise DatasetError(f"{folder}: the validation share must lie between 0 and 1, got {val_ratio!r}")
    explicit = patch_mpp if patch_mpp is not None and patch_mpp != json_mpp else None
    return PatchJob(folder, model_dir(project, name), spec, explicit, val_ratio=val_ratio, **settings)


def run_patch_job(job: PatchJob, partial: Callable[[object], None], should_stop: Callable[[], bool]):
    """Read and cut the patches, split by group, train: a run on a patch folder (on a worker thread).

    Parameters
    ----------
    job : PatchJob
    partial : callable
        Called with every report: `Stage` s, a `PatchesSplit`, `core.models.train.ProgressEvent` s, then
        the `core.models.train.TrainResult`.
    should_stop : callable
        Returns True to cancel (the best epoch so far is kept).

    Returns
    -------
    TrainResult or None
        None when stopped before training began (nothing is written then).

    Raises
    ------
    DatasetError
        The folder does not make a dataset: no class folders or patches, an unreadable patch, a bad
        µm/px, one class only, or a class too small to hold some of it out. Each message names the folder
        or the file.
    """
    from core.models.train import train  # MXNet: loads when a run starts (see run_job)
    from core.tiles.arrays import split_off
    from core.tiles.patches import check_mpp, read_dataset_json, read_patch_folder

    if job.patch_mpp is not None:
        check_mpp(job.patch_mpp, f"{job.folder}: patch scale")
    reading = "Reading and cutting patches"
    partial(Stage(reading, 0, 0))
    scaled = job.patch_mpp is not None or (read_dataset_json(job.folder) or {}).get("mpp") is not None
    patches = read_patch_folder(job.folder, patch_mpp=job.patch_mpp, tile_px=job.spec.tile_px,
                                mpp=job.spec.mpp if scaled else None,
                                progress=lambda d, t: partial(Stage(reading, d, t)), should_stop=should_stop)
    if patches is None or should_stop():
        return None
    classes = patches.tiles.classes
    if len(classes) < 2:
        raise DatasetError(f"{job.folder}: only one class ({', '.join(classes)}); a model learns to tell classes "
                           "apart, so give at least two class subfolders (e.g. tumour and normal)")
    train_tiles, val_tiles = split_off(patches.tiles, job.val_ratio, job.seed, groups=patches.groups)
    for tiles, where in ((train_tiles, "training"), (val_tiles, "validation")):
        missing = [c for c, n in zip(classes, np.bincount(tiles.labels, minlength=len(classes))) if n == 0]
        if missing:
            raise DatasetError(f"{job.folder}: no {', '.join(missing)} tiles for {where}: the class has too few "
                               f"groups of patches ({patches.n_groups} groups in all, near-copies kept together) "
                               "to hold some out; add patches of it")
    scale = (f"{patches.mpp:g} µm/px (patch scale from {patches.source})" if patches.mpp else "no µm/px")
    text = (f"{patches.patches:,} patches → {len(patches.tiles.labels):,} tiles of {job.spec.tile_px} px at {scale}; "
            f"{patches.n_groups:,} groups ({patches.group_source}); train {_counts(train_tiles)}, "
            f"validation {_counts(val_tiles)} (whole groups)")
    partial(PatchesSplit(text, [] if patches.mpp else [NO_SCALE]))
    partial(Stage("Starting training", 0, 0))
    result = train(train_tiles, val_tiles, job.out_dir, arch=job.arch, epochs=job.epochs, batch_size=job.batch_size,
                   lr=job.lr, device=job.device, progress=partial, should_stop=should_stop, mpp=patches.mpp,
                   stain_augment=job.stain_augment, stain_normalise=job.stain_normalise)
    if result.bundle is None and {p.name for p in job.out_dir.iterdir()} <= {"history.json"}:
        shutil.rmtree(job.out_dir, ignore_errors=True)  # cancelled before any epoch: nothing worth keeping
    partial(result)
    return result


def _counts(tiles) -> str:
    counts = np.bincount(tiles.labels, minlength=len(tiles.classes))
    return ", ".join(f"{n:,} {c}" for c, n in zip(tiles.classes, counts))


def describe(device: str) -> str:
    """Words for the context ``device`` (``"auto"``, ``"cpu"``, ``"gpu:0"``) resolves to.

    Asked on the model thread; raises `core.errors.ModelError` when that device is not available. Without
    an NVIDIA driver, "auto" and "cpu" are the CPU, said without loading MXNet (whose import holds the
    interpreter for stretches of 100 ms or more and would stall the window opening a panel).
    """
    from core.inference.gpu_check import driver_gpus
    from core.models.engine import cpu_description

    if str(device).strip().lower() in ("auto", "cpu") and not driver_gpus()[0]:
        return cpu_description()
    return engine().run(lambda: describe_device(parse_device(device)))


def default_model_name(models: Path) -> str:
    """A fresh folder name under ``models``: ``model-YYYYmmdd-HHMM``, with ``-2``, ``-3``... when taken."""
    base = datetime.now().strftime("model-%Y%m%d-%H%M")
    name, n = base, 2
    while (models / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def best_so_far(history: list[dict]) -> dict | None:
    """The epoch `core.models.train.train` keeps as the best: the lowest validation loss (the first of equal ones).

    Parameters
    ----------
    history : list of dict
        Metrics per epoch, as `core.models.train.ProgressEvent.metrics` / `TrainResult.history` give them.

    Returns
    -------
    dict or None
        That epoch's entry of ``history``; None when ``history`` is empty.
    """
    return min(history, key=lambda h: h["loss"]) if history else None
