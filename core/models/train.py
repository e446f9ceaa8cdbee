"""Train a tile classifier with MXNet Gluon and save the best epoch as a model bundle.

All MXNet work runs on the model thread (`core.models.engine`); `train` submits itself there and
waits, so ``progress`` and ``should_stop`` are called from the model thread. Batches are augmented in
numpy by a small thread pool a few batches ahead, so the network does not wait for them.
"""

from __future__ import annotations

import json
import math
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from core.atomic import atomic_write_bytes
from core.errors import DatasetError, ModelError
from core.metrics import BinaryMetrics
from core.models import safety
from core.models.bundle import (IMAGENET_MEAN, IMAGENET_STD, PARAMS_FILE, SYMBOL_FILE, ModelInfo, read_bundle,
                                read_info, resolve_bundle, save_bundle)
from core.models.checkpoint import adopt_best, load_checkpoint, save_checkpoint
from core.models.reports import ProgressEvent, TrainResult  # noqa: F401 - also where callers import them from
from core.models.engine import describe_device, engine, parse_device
from core.models.folder import NEW, OLD, model_name, sibling
from core.models.loading import normalise
from core.models.thresholds import DEFAULT_TARGET_SENSITIVITY, choose_thresholds
from core.models.zoo import build
from core.tiles.arrays import TileArrays
from core.tiles.stain import (DEFAULT_STAIN_AUGMENT, STAIN_AUGMENTS, STAIN_NORMALISE, StainNormaliser, hed_jitter,
                              light_jitter, read_reference)

log = logging.getLogger(__name__)

PREFETCH = 3
SAMPLING = ("shuffle", "balanced")


def augment(images: np.ndarray, rng: np.random.Generator, stain: str = DEFAULT_STAIN_AUGMENT) -> np.ndarray:
    """Random flips, 90-degree rotations and stain jitter of a batch (uint8 in, out).

    ``stain`` is ``"hed"`` (`core.tiles.stain.hed_jitter`: each tile's haematoxylin, eosin and DAB
    densities scaled by 1 +- 0.05 and shifted by +- 0.05 OD), ``"light"`` (`core.tiles.stain.light_jitter`:
    a mild per-channel RGB scale and shift) or ``"none"`` (flips and rotations only).
    """
    if stain not in STAIN_AUGMENTS:
        raise ValueError(f"unknown stain augmentation {stain!r}; choose one of {', '.join(STAIN_AUGMENTS)}")
    out = np.empty_like(images)
    for i, tile in enumerate(images):
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        if rng.random() < 0.5:
            tile = tile[::-1]
        tile = np.rot90(tile, int(rng.integers(4)))
        out[i] = light_jitter(tile, rng) if stain == "light" else tile
    return hed_jitter(out, rng) if stain == "hed" and len(out) else out


def default_warmup(epochs: int) -> float:
    """The warm-up `train` uses unless told: 1 epoch, or 10 % of a run shorter than 10 epochs."""
    return min(1.0, 0.1 * max(0, int(epochs)))


def _class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return (labels.size / (n_classes * np.maximum(counts, 1))).astype(np.float32)


def train(train_data: TileArrays, val_data: TileArrays, out_dir, arch: str = "cnn", epochs: int = 10,
          batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam", seed: int = 0,
          device: str = "auto", class_weighting: bool = True, augment: bool = True,
          early_stopping_patience: int | None = 5, progress: Callable | None = None,
          should_stop: Callable | None = None, resume: bool = False, mpp: float | None = None,
          stain_augment: str = DEFAULT_STAIN_AUGMENT, stain_normalise: str = "none", stain_reference=None,
          lr_schedule: str = "cosine", target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
          sampling: str = "shuffle", warmup_epochs: float | None = None, cell_um: float | None = None,
          init_from=None, onnx: bool = True, int8: bool = False) -> TrainResult:
    """Train ``arch`` on tiles, validate every epoch, keep the best epoch (lowest validation loss) as a bundle.

    Parameters
    ----------
    train_data, val_data : TileArrays
        Tiles of one size; every class must be present in both.
    out_dir : path-like
        Receives ``best/`` (the bundle to use), ``last/`` (resumable checkpoint) and ``history.json``.
    arch : str
        A key of `core.models.zoo.ARCHS`.
    epochs, batch_size : int
    lr : float
        Initial learning rate, decayed by ``lr_schedule`` (``"cosine"`` or ``"step"``: x0.1 at 50%, 75%).
    optimizer : {"adam", "sgd"}
        SGD uses momentum 0.9 and weight decay 1e-4.
    seed : int
        Seeds MXNet and numpy (shuffling and augmentation).
    device : str
        ``"auto"``, ``"cpu"`` or ``"gpu:N"`` (see `core.models.engine.parse_device`).
    class_weighting : bool
        Weight the loss by inverse class frequency.
    augment : bool
        Random flips, rotations and stain jitter on training tiles.
    early_stopping_patience : int or None
        Stop after this many epochs without a lower validation loss.
    progress : callable, optional
        Called with a `ProgressEvent` after each batch and each epoch.
    should_stop : callable, optional
        Checked before each batch; when it returns True training stops and the best checkpoint is kept.
        Ctrl-C (KeyboardInterrupt) in the calling thread does the same, then is raised again once the
        model thread has stopped, so no save is cut short by the interpreter exiting.
    resume : bool
        Continue from ``out_dir/last`` if present (a checkpoint of this version: MXNet's pickled
        ``trainer.states`` is refused).
    mpp : float, optional
        Micrometres per pixel of the tiles, recorded in the bundle.
    stain_augment : {"light", "hed", "none"}
        The stain jitter of `augment` (when ``augment`` is on).
    stain_normalise : {"none", "reinhard", "macenko"}
        Fit a `core.tiles.stain.StainNormaliser` on the training tiles, normalise training and validation
        tiles with it once, and record it in ``model.json`` (``"stain"``) so every prediction applies it.
    stain_reference : path-like, optional
        An RGB image (PNG, JPEG, TIFF) to fit the stain normalisation on instead of the training tiles.
    target_sensitivity : float
        In (0, 1]. Each epoch, the highest threshold whose validation sensitivity reaches this, and
        Youden's, are chosen on the validation tiles; the best epoch's target-sensitivity threshold is
        recorded in ``model.json`` as the model's default (`core.models.bundle.default_threshold`).
    sampling : {"shuffle", "balanced"}
        ``"shuffle"``: each epoch every tile once, in random order. ``"balanced"``: the classes take turns
        (`_balanced_order`), so every batch holds them in equal shares; the loss is then not class-weighted.
    warmup_epochs : float, optional
        Raise the learning rate linearly from 1 % to ``lr`` over this many epochs, then ``lr_schedule``;
        0 for none. None (the default): `default_warmup` (1 epoch, or 10 % of a shorter run).
    cell_um : float, optional
        The tiles are labelled by their centre square of this many µm (``biopsia dataset --cell``,
        `core.tiles.planning.context_plan`); recorded in ``model.json`` (``training.settings.cell_um``) so a
        prediction can step by one cell. Needs ``mpp`` and at most the tile's side.
    init_from : path-like, optional
        A model folder (a bundle, or a training folder whose ``best/`` is used) to fine-tune from: the
        network starts from its weights (the ``.params`` file only, hash-checked; never an optimizer state,
        which MXNet pickles). It must have this run's architecture, classes (in order), tile size, µm/px
        and stain normalisation method; a parent's fitted normalisation is reused (its weights expect it),
        so ``stain_reference`` is not refitted. Recorded in ``model.json`` as ``training.parent`` (its name, folder and weights SHA-256).
    onnx : bool
        At the end, export the kept model to ``model.onnx`` (`core.models.onnx_export.export_onnx`), checked
        against MXNet on validation tiles; an export that fails or differs is not kept, and
        ``TrainResult.onnx`` says why (the MXNet model is kept either way).
    int8 : bool
        At the end, also make the INT8 variant (`core.models.quantize.quantize_bundle`), calibrated on
        training tiles and checked against FP32 on validation tiles; one refused (calls changed on more than
        1 % of them) or that MXNet cannot make is not kept, and ``TrainResult.int8`` says why.

    Returns
    -------
    TrainResult

    Raises
    ------
    DatasetError
        For empty, mis-shaped or single-class data.
    ModelError
        For an unknown architecture or unavailable device, a checkpoint that cannot be resumed, a parent
        model (``init_from``) that cannot be read or does not match the run, or a model that cannot be
        saved (the previous ``best/`` and ``last/`` are kept).
    """
    train_data.check("training data")
    val_data.check("validation data")
    if train_data.images.shape[1:] != val_data.images.shape[1:]:
        raise DatasetError(f"training tiles are {train_data.images.shape[1:3]} px but validation tiles are "
                           f"{val_data.images.shape[1:3]} px")
    if list(train_data.classes) != list(val_data.classes):
        raise DatasetError(f"training classes {train_data.classes} differ from validation {val_data.classes}")
    if sampling not in SAMPLING:
        raise ModelError(f"unknown sampling {sampling!r}; choose one of {', '.join(SAMPLING)}")
    if warmup_epochs is None:
        warmup_epochs = default_warmup(epochs)
    if not (isinstance(warmup_epochs, (int, float)) and math.isfinite(warmup_epochs) and 0 <= warmup_epochs <= epochs):
        raise ModelError(f"warm-up must be 0 to {epochs} epochs (the whole run), got {warmup_epochs}")
    if cell_um is not None:
        tile_um = None if mpp is None else train_data.images.shape[1] * mpp
        if not (isinstance(cell_um, (int, float)) and math.isfinite(cell_um) and cell_um > 0):
            raise ModelError(f"the labelled cell must be a positive number of µm, got {cell_um!r}")
        if tile_um is None:
            raise ModelError(f"tiles labelled by a {cell_um:g} µm cell need their µm/px (mpp)")
        if cell_um > tile_um + 1e-9:
            raise ModelError(f"the labelled cell ({cell_um:g} µm) is larger than the tiles ({tile_um:g} µm)")
    if not 0 < target_sensitivity <= 1:
        raise ModelError(f"the target sensitivity must be more than 0 and at most 1, got {target_sensitivity}")
    if stain_augment not in STAIN_AUGMENTS:
        raise ModelError(f"unknown stain augmentation {stain_augment!r}; choose one of {', '.join(STAIN_AUGMENTS)}")
    if stain_normalise not in STAIN_NORMALISE:
        raise ModelError(f"unknown stain normalisation {stain_normalise!r}; choose one of "
                         f"{', '.join(STAIN_NORMALISE)}")
    if stain_reference is not None and stain_normalise == "none":
        raise ModelError(f"{stain_reference}: a stain reference needs a stain normalisation (reinhard or macenko)")
    settings = dict(arch=arch, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                    optimizer=optimizer, seed=int(seed), class_weighting=class_weighting, augment=augment,
                    stain_augment=stain_augment, stain_normalise=stain_normalise,
                    stain_reference=None if stain_reference is None else str(stain_reference),
                    early_stopping_patience=early_stopping_patience, lr_schedule=lr_schedule,
                    target_sensitivity=float(target_sensitivity), sampling=sampling,
                    warmup_epochs=float(warmup_epochs))
    if cell_um is not None:
        settings["cell_um"] = float(cell_um)
    parent = None if init_from is None else read_parent(init_from, arch, train_data, mpp, stain_normalise)
    interrupt = threading.Event()

    def stopping() -> bool:
        return interrupt.is_set() or (should_stop is not None and bool(should_stop()))

    args = (train_data, val_data, Path(out_dir), settings, device, mpp, progress, stopping, resume, parent)
    model_thread = engine()
    if model_thread.on_thread():
        result = _run_training(*args)
    else:
        future = model_thread.submit(_run_training, *args)
        while True:
            try:
                result = future.result()
                break
            except KeyboardInterrupt:
                if interrupt.is_set():  # a second Ctrl-C: saves are atomic, so leaving now loses nothing saved
                    raise
                interrupt.set()  # let the current batch and any save finish, then stop
        if interrupt.is_set():
            raise KeyboardInterrupt
    if onnx and result.bundle is not None:
        result.onnx = add_onnx(result.bundle, val_data)
    if int8 and result.bundle is not None:
        result.int8 = add_int8(result.bundle, train_data, val_data)
    return result


def add_onnx(bundle: Path, val_data: TileArrays) -> dict:
    """Export ``bundle`` to ``model.onnx`` checked on validation tiles: the check, or ``{"error": why}``."""
    from core.models.onnx_export import VERIFY_TILES, export_onnx

    try:
        return export_onnx(bundle, tiles=val_data.images[:VERIFY_TILES]).to_json()
    except ModelError as err:  # the MXNet model stays; ``biopsia export-onnx`` can try again
        log.warning("%s", err)
        return {"error": str(err)}


#: Tiles that calibrate the INT8 variant made at the end of training, and validation tiles that check it.
INT8_CALIBRATION_TILES = 256
INT8_CHECK_TILES = 256


def add_int8(bundle: Path, train_data: TileArrays, val_data: TileArrays) -> dict:
    """Make ``bundle``'s INT8 variant, calibrated on training tiles and checked on validation tiles.

    Returns its summary (``model.json``'s ``int8`` block), or ``{"error": why}`` when it is refused or
    cannot be made (the FP32 model stays either way; ``biopsia quantize`` can try again).
    """
    from core.models.quantize import quantize_bundle

    rng = np.random.default_rng(0)  # calibration from across the training tiles, not the first slide's
    calib = rng.permutation(len(train_data.images))[:INT8_CALIBRATION_TILES]
    try:
        return quantize_bundle(bundle, tiles=train_data.images[np.sort(calib)], held_out=val_data.images,
                               calib_tiles=INT8_CALIBRATION_TILES, check_tiles=INT8_CHECK_TILES)
    except ModelError as err:
        log.warning("%s", err)
        return {"error": str(err)}


@dataclass(frozen=True)
class Parent:
    """A model to fine-tune from: its ``model.json`` record and its verified graph and weights bytes."""

    record: dict  # {"name", "folder", "sha256"}: what the new model.json records as ``training.parent``
    symbol: bytes
    params: bytes
    stain: dict | None = None  # its fitted stain normalisation, which its weights expect: reused, not refitted


#: Micrometres per pixel closer than this (relative) count as the same.
MPP_TOLERANCE = 1e-3


def read_parent(folder, arch: str, train_data: TileArrays, mpp: float | None,
                stain_normalise: str = "none") -> Parent:
    """Read and check the model ``folder`` a run fine-tunes from (no MXNet: callable from any thread).

    Raises
    ------
    ModelError
        When it cannot be read (a damaged or tampered bundle) or its architecture, classes, tile size,
        µm/px or stain normalisation differ from the run's; the message names the folder and the mismatch.
    """
    path = resolve_bundle(folder)
    info, data = read_bundle(path)
    tile_px = int(train_data.images.shape[1])
    wrong = []
    if info.architecture != arch:
        wrong.append(f"its architecture is {info.architecture}, this run's is {arch}")
    if list(info.classes) != list(train_data.classes):
        wrong.append(f"its classes are {list(info.classes)}, this run's are {list(train_data.classes)}")
    if info.tile_px != tile_px:
        wrong.append(f"its tiles are {info.tile_px} px, this run's are {tile_px} px")
    if (info.mpp is None) != (mpp is None) or (
            mpp is not None and abs(info.mpp - mpp) > MPP_TOLERANCE * max(abs(mpp), abs(info.mpp))):
        wrong.append(f"it was trained at {_describe_mpp(info.mpp)}, this run is at {_describe_mpp(mpp)}")
    theirs = (info.stain or {}).get("method", "none")
    if theirs != stain_normalise:
        wrong.append(f"its stain normalisation is {theirs}, this run's is {stain_normalise}")
    if wrong:
        raise ModelError(f"{path}: cannot fine-tune from this model: {'; '.join(wrong)}. Choose a parent trained "
                         "on the same classes, tile size, µm/px and stain normalisation with the same "
                         "architecture, or train from scratch")
    record = {"name": model_name(path), "folder": str(path.resolve()), "sha256": safety.sha256(data[PARAMS_FILE])}
    return Parent(record, data[SYMBOL_FILE], data[PARAMS_FILE], info.stain)


def _describe_mpp(mpp: float | None) -> str:
    return "an unknown µm/px" if mpp is None else f"{mpp:g} µm/px"


def _load_parent_weights(net, parent: Parent, ctx, tile_px: int) -> None:
    """Set ``net``'s weights (initialised, not yet hybridized) to the parent's, matched by their place in the graph.

    The exported names carry each network instance's global counter (``conv0_weight`` in one,
    ``conv4_weight`` in the next), so the parent's graph and ours are walked in the same order instead.
    """
    where = parent.record["folder"]
    try:
        theirs = mx.sym.load_json(parent.symbol.decode("utf-8"))
        stored = mx.nd.load_frombuffer(parent.params)
    except Exception as exc:  # MXNetError for a graph or weights MXNet cannot read
        raise ModelError(f"{where}: MXNet cannot read the parent model ({type(exc).__name__}); "
                         "choose another parent or train from scratch") from None
    net(mx.nd.zeros((1, 3, tile_px, tile_px), ctx=ctx)).wait_to_read()  # the deferred shapes are known after one run
    ours = net(mx.sym.var("data"))
    pairs = [("arg", a, b) for a, b in zip(theirs.list_arguments(), ours.list_arguments()) if b != "data"]
    pairs += [("aux", a, b) for a, b in zip(theirs.list_auxiliary_states(), ours.list_auxiliary_states())]
    params = {p.name: p for p in net.collect_params().values()}
    expected = len(ours.list_arguments()) - 1 + len(ours.list_auxiliary_states())
    if len(stored) != expected or len(pairs) != expected:
        raise ModelError(f"{where}: the parent's weights are of another network ({len(stored)} arrays, this one "
                         f"has {expected}); choose another parent or train from scratch")
    for kind, their_name, our_name in pairs:
        value = stored.get(f"{kind}:{their_name}")
        param = params.get(our_name)
        if value is None or param is None or tuple(value.shape) != tuple(param.shape):
            raise ModelError(f"{where}: the parent's weight {their_name} does not fit this network; choose "
                             "another parent or train from scratch")
        param.set_data(value.as_in_context(ctx))


def _batches(data: TileArrays, order: np.ndarray, batch_size: int, seed: int, epoch: int, do_augment: bool,
             mean: np.ndarray, std: np.ndarray, pool: ThreadPoolExecutor, stain: str = DEFAULT_STAIN_AUGMENT):
    """Yield (x, y) numpy batches, prepared by ``pool`` up to `PREFETCH` batches ahead."""
    starts = range(0, order.size, batch_size)

    def prepare(index: int, start: int):
        idx = order[start:start + batch_size]
        tiles = data.images[idx]
        if do_augment:
            tiles = augment(tiles, np.random.default_rng((seed, epoch, index)), stain)
        return normalise(tiles, mean, std), data.labels[idx].astype(np.float32)

    pending = []
    for index, start in enumerate(starts):
        pending.append(pool.submit(prepare, index, start))
        if len(pending) > PREFETCH:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def _evaluate(net, data: TileArrays, batch_size: int, ctx, mean, std, pool, loss_fn) -> tuple[dict, np.ndarray]:
    """Validation loss, accuracy and (for two classes) screening metrics, and the class probabilities."""

    order = np.arange(len(data))
    probs, losses = [], []
    for x, y in _batches(data, order, batch_size, 0, 0, False, mean, std, pool):
        out = net(mx.nd.array(x, ctx=ctx))
        losses.append(loss_fn(out, mx.nd.array(y, ctx=ctx)).asnumpy())
        probs.append(mx.nd.softmax(out, axis=1).asnumpy())
    prob = np.concatenate(probs)
    result = {"loss": float(np.concatenate(losses).mean()),
              "accuracy": float(np.mean(prob.argmax(1) == data.labels))}
    if prob.shape[1] == 2:
        binary = BinaryMetrics(data.labels, prob[:, 1]).as_dict()
        result.update({k: binary[k] for k in ("sensitivity", "specificity", "auc", "auc_reason")})
    return result, prob


def _recalibrate_batchnorm(net, data: TileArrays, batch_size: int, ctx, mean, std, pool, batches: int = 10) -> None:
    """Refresh BatchNorm running statistics from training tiles (forward passes in training mode).

    Running statistics trail the weights, so after few updates they describe an older network and
    inference-mode predictions drift; a short pass over unaugmented training tiles brings them up to date.
    """

    # cycle through small sets, so the statistics forget their old values (BN_MOMENTUM ** batches)
    wanted = batches * batch_size
    order = np.resize(np.random.default_rng(0).permutation(len(data)), wanted)
    with autograd.train_mode():
        for x, _ in _batches(data, order, batch_size, 0, 0, False, mean, std, pool):
            net(mx.nd.array(x, ctx=ctx)).wait_to_read()


def _score(metrics: dict) -> float:
    """The validation AUC, else accuracy (several classes): reported, not used to pick the epoch."""
    auc = metrics.get("auc")
    return float(auc) if auc is not None else float(metrics["accuracy"])


def _score_or_none(metrics: dict) -> float | None:
    try:
        return _score(metrics)
    except (KeyError, TypeError, ValueError):
        return None


def _run_training(train_data, val_data, out_dir: Path, s: dict, device, mpp, progress, should_stop, resume,
                  parent: Parent | None = None):

    ctx = parse_device(device)
    mx.random.seed(s["seed"])
    rng = np.random.default_rng(s["seed"])
    n_classes = len(train_data.classes)
    tile_px = int(train_data.images.shape[1])
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    if parent is not None and parent.stain is not None:  # the normalisation the parent's weights were trained on
        stain = StainNormaliser.from_json(parent.stain, parent.record["folder"])
    else:
        stain = _fit_stain(train_data, s.get("stain_normalise", "none"), s.get("stain_reference"))
    if stain is not None:  # once, before any epoch: the pixels `loading.preprocess` gives the model at prediction
        train_data, val_data = _apply_stain(train_data, stain), _apply_stain(val_data, stain)
    batches = math.ceil(len(train_data) / s["batch_size"])
    total_updates = max(1, s["epochs"] * batches)

    net = build(s["arch"], n_classes)
    net.initialize(mx.init.Xavier(magnitude=2.0), ctx=ctx)
    if parent is not None:  # a resumed checkpoint (below) replaces these weights with its own
        _load_parent_weights(net, parent, ctx, tile_px)
    net.hybridize(static_alloc=True)
    warmup = min(int(round(s.get("warmup_epochs", 0.0) * batches)), total_updates - 1)
    ramp = dict(warmup_steps=warmup, warmup_begin_lr=s["lr"] * 0.01) if warmup > 0 else {}
    if s["lr_schedule"] == "step":
        schedule = mx.lr_scheduler.MultiFactorScheduler(
            [max(warmup + 1, int(total_updates * f)) for f in (0.5, 0.75)], factor=0.1, base_lr=s["lr"], **ramp)
    else:
        schedule = mx.lr_scheduler.CosineScheduler(total_updates, base_lr=s["lr"], final_lr=s["lr"] * 0.01, **ramp)
    opt_args = {"learning_rate": s["lr"], "lr_scheduler": schedule}
    if s["optimizer"] == "sgd":
        opt_args.update(momentum=0.9, wd=1e-4)
    elif s["optimizer"] != "adam":
        raise ModelError(f"unknown optimizer {s['optimizer']!r}; choose 'adam' or 'sgd'")
    # Parameters in structural order ("0.0.weight", ...), the same for every instance of the network,
    # so saved optimizer states line up on resume (global names like conv12_ differ between instances).
    params = [p for _, p in sorted(net._collect_params_with_prefix().items())]
    trainer = gluon.Trainer(params, s["optimizer"], opt_args)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    balanced = s.get("sampling", "shuffle") == "balanced"
    # balanced batches already give each class its share: weighting the loss as well would over-correct
    weights = _class_weights(train_data.labels, n_classes) if s["class_weighting"] and not balanced \
        else np.ones(n_classes, np.float32)

    out_dir.mkdir(parents=True, exist_ok=True)
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    state = {"epoch": -1, "best_epoch": None, "best_score": None, "stale": 0, "history": []}
    if resume and any(os.path.lexists(sibling(last_dir, end)) for end in ("", NEW, OLD)):
        state = adopt_best(load_checkpoint(last_dir, net, trainer, ctx), best_dir, _score_or_none)
        rng = np.random.default_rng((s["seed"], state["epoch"] + 1))

    cancelled = stopped_early = False
    pool = ThreadPoolExecutor(max(1, min(4, (os.cpu_count() or 2))), thread_name_prefix="biopsia-batches")
    try:
        for epoch in range(state["epoch"] + 1, s["epochs"]):
            order = _balanced_order(train_data.labels, n_classes, rng) if balanced else rng.permutation(len(train_data))
            running, seen = 0.0, 0
            for b, (x, y) in enumerate(_batches(train_data, order, s["batch_size"], s["seed"], epoch,
                                                s["augment"], mean, std, pool, s.get("stain_augment", DEFAULT_STAIN_AUGMENT))):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                xb, yb = mx.nd.array(x, ctx=ctx), mx.nd.array(y, ctx=ctx)
                wb = mx.nd.array(weights[y.astype(np.int64)], ctx=ctx).reshape((-1, 1))
                with autograd.record():
                    loss = loss_fn(net(xb), yb, wb)
                loss.backward()
                trainer.step(xb.shape[0])
                running += float(loss.sum().asscalar())
                seen += xb.shape[0]
                if progress is not None:
                    progress(ProgressEvent(epoch, s["epochs"], b + 1, batches, running / seen))
            if cancelled:
                break
            _recalibrate_batchnorm(net, train_data, s["batch_size"], ctx, mean, std, pool)
            metrics, prob = _evaluate(net, val_data, s["batch_size"], ctx, mean, std, pool, loss_fn)
            metrics.update(epoch=epoch, train_loss=running / max(seen, 1), lr=trainer.learning_rate)
            thresholds = _thresholds(val_data, prob, s)
            if thresholds is not None:  # the history shows how the chosen threshold moves
                chosen = thresholds["chosen"]
                metrics.update(threshold=thresholds[chosen],
                               threshold_specificity=thresholds["validation"][chosen]["specificity"])
            state["history"].append(metrics)
            state["epoch"] = epoch
            score = _score(metrics)
            info = ModelInfo(s["arch"], list(train_data.classes), tile_px, mpp, IMAGENET_MEAN, IMAGENET_STD,
                             training=_summary(train_data, val_data, s, epoch, parent), metrics=metrics,
                             stain=None if stain is None else stain.to_json(),
                             threshold=None if thresholds is None else thresholds[thresholds["chosen"]],
                             thresholds=thresholds)
            # the best epoch has the lowest validation loss: it rewards calibrated probabilities, which
            # thresholds need, where AUC only ranks
            # best/ first: a crash before last/ is written leaves a checkpoint that replays this epoch
            if state.get("best_loss") is None or metrics["loss"] < state["best_loss"]:
                state.update(best_score=score, best_loss=metrics["loss"], best_epoch=epoch, stale=0)
                save_bundle(best_dir, net, info)
            else:
                state["stale"] += 1
            save_checkpoint(last_dir, net, trainer, info, state)
            if progress is not None:
                progress(ProgressEvent(epoch, s["epochs"], batches, batches, metrics["train_loss"], metrics))
            patience = s["early_stopping_patience"]
            if patience is not None and state["stale"] >= patience:
                stopped_early = True
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    atomic_write_bytes(out_dir / "history.json", json.dumps(state["history"], indent=1).encode("utf-8"))
    best = read_info(best_dir) if state["best_epoch"] is not None else None
    return TrainResult(
        bundle=best_dir if state["best_epoch"] is not None else None, best_epoch=state["best_epoch"],
        best_score=state["best_score"], epochs_run=len(state["history"]), history=state["history"],
        cancelled=cancelled, stopped_early=stopped_early, device=describe_device(ctx),
        threshold=None if best is None else best.threshold, thresholds=None if best is None else best.thresholds)


def _balanced_order(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch of tile indices (as many as there are tiles) in which the classes take turns.

    Each class's tiles are shuffled and repeated as needed, so every stretch of the order (every batch)
    holds each class in equal shares; the rarer classes' tiles are seen more than once per epoch.
    """
    per_class = [np.nonzero(labels == c)[0] for c in range(n_classes)]
    rounds = math.ceil(labels.size / n_classes)
    columns = [np.resize(rng.permutation(idx), rounds) if idx.size else np.zeros(0, np.int64) for idx in per_class]
    turns = np.stack([c for c in columns if c.size], axis=1)
    # the classes in a random order within each turn, so that a batch edge favours none
    turns = rng.permuted(turns, axis=1)
    return turns.reshape(-1)[:labels.size]


def _thresholds(val_data: TileArrays, prob: np.ndarray, s: dict) -> dict | None:
    """The thresholds chosen on this epoch's validation probabilities (two classes; else None)."""
    if prob.shape[1] != 2:
        return None
    return choose_thresholds(val_data.labels, prob[:, 1], s.get("target_sensitivity", DEFAULT_TARGET_SENSITIVITY))


def _fit_stain(train_data: TileArrays, method: str, reference: str | None = None) -> StainNormaliser | None:
    """The stain normaliser fitted on the training tiles or a reference image (None for ``"none"``)."""
    if method == "none":
        return None
    images, what = train_data.images, f"{len(train_data)} training tiles"
    if reference is not None:
        images, what = read_reference(reference), f"reference image {Path(reference).name}"
    try:
        return StainNormaliser(method).fit(images, what)
    except ValueError as err:  # Macenko on tiles with hardly any stain
        where = reference if reference is not None else "training tiles"
        raise DatasetError(f"{where}: cannot fit a {method} stain normalisation ({err})") from None


def _apply_stain(data: TileArrays, stain: StainNormaliser, chunk: int = 64) -> TileArrays:
    """``data`` with stain-normalised copies of its tiles, a chunk at a time (bounded float memory)."""
    images = np.empty_like(data.images)
    for start in range(0, len(data), chunk):
        images[start:start + chunk] = stain.apply(data.images[start:start + chunk])
    return TileArrays(images, data.labels, list(data.classes))


def _summary(train_data: TileArrays, val_data: TileArrays, s: dict, epoch: int, parent: Parent | None = None) -> dict:
    """Training data and settings recorded in ``model.json`` (with the parent fine-tuned from, if any)."""
    def counts(d):
        return dict(zip(d.classes, np.bincount(d.labels, minlength=len(d.classes)).tolist()))
    summary = {"train_tiles": counts(train_data), "val_tiles": counts(val_data), "epoch": epoch,
               "settings": dict(s)}
    if parent is not None:
        summary["parent"] = dict(parent.record)
    return summary
