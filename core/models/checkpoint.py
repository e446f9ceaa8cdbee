"""The resumable checkpoint of a training run (``last/``): a bundle plus what training needs to go on.

Layout (written as one unit by `core.models.bundle.save_bundle`, every file hashed in ``model.json``)::

    last/
        model-symbol.json, model-0000.params, model.json   the bundle, as in best/
        train.params      the weights by structural name ("0.0.weight"), for a fresh network to load
        optimizer.npz     optimizer state arrays       } `core.models.optimizer_state`: no pickle
        optimizer.json    update counts, layout        }
        state.json        epoch, history, best epoch and loss, epochs without improvement

A ``trainer.states`` (MXNet's pickled optimizer, written by earlier versions) is refused, never read:
unpickling a file can run any command. Call these on the model thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx

from core.errors import ModelError
from core.models import optimizer_state, safety
from core.models.bundle import ModelInfo, read_bundle, read_info, recover_bundle, save_bundle
from core.models.folder import write_file

TRAIN_PARAMS = "train.params"
STATE_FILE = "state.json"
NEEDED = (TRAIN_PARAMS, STATE_FILE, optimizer_state.ARRAYS_FILE, optimizer_state.META_FILE)


def save_checkpoint(folder, net, trainer, info: ModelInfo, state: dict) -> Path:
    """Replace the checkpoint ``folder`` with the network, optimizer and ``state`` as they are now.

    Raises
    ------
    ModelError
        When it cannot be written; the previous checkpoint is kept.
    """
    def extra(staging: Path) -> None:
        net.save_parameters(str(staging / TRAIN_PARAMS))
        optimizer_state.save_trainer_state(trainer, staging)
        write_file(staging / STATE_FILE, json.dumps(state, indent=1).encode("utf-8"))

    return save_bundle(folder, net, info, extra=extra)


def load_checkpoint(folder, net, trainer, ctx) -> dict:
    """Load the checkpoint ``folder`` into ``net`` and ``trainer``; returns the training state.

    Raises
    ------
    ModelError
        A pickled optimizer state, a missing or damaged file (each is checked against its hash), or a
        checkpoint of another network or optimizer; the message names the file and what to do.
    """
    folder = recover_bundle(folder)
    fix = "train again without resuming, or into a new folder"
    pickled = folder / optimizer_state.PICKLED_FILE
    if pickled.exists() or pickled.is_symlink():
        raise ModelError(f"{pickled}: this optimizer state is a Python pickle (MXNet's format, written by an "
                         f"earlier Biopsia or another program); Biopsia does not read pickles because loading one "
                         f"can run any command ({fix})")
    info, data = read_bundle(folder)
    missing = [name for name in NEEDED if name not in info.files]
    if missing:
        raise ModelError(f"{folder}: not a resumable checkpoint of this Biopsia ({', '.join(missing)} not recorded "
                         f"in its model.json; {fix})")
    state = _parse_state(folder / STATE_FILE, data[STATE_FILE], fix)
    params_path = folder / TRAIN_PARAMS
    stored = safety.check_weights(params_path, data[TRAIN_PARAMS])
    params = net._collect_params_with_prefix()
    if set(stored) != set(params):
        raise ModelError(f"{params_path}: the checkpoint's weights are of another network ({len(stored)} arrays, "
                         f"this one has {len(params)}; {fix})")
    try:
        loaded = mx.nd.load_frombuffer(data[TRAIN_PARAMS])
        for name, param in params.items():
            param._load_init(loaded[name], ctx)
        net(mx.nd.zeros((1, 3, info.tile_px, info.tile_px), ctx=ctx)).wait_to_read()
    except Exception as exc:  # MXNetError, AssertionError: shapes of another network
        raise ModelError(f"{params_path}: the checkpoint's weights do not fit this network "
                         f"({type(exc).__name__}; {fix})") from None
    optimizer_state.load_trainer_state(trainer, folder, data[optimizer_state.ARRAYS_FILE],
                                       data[optimizer_state.META_FILE])
    return state


def _parse_state(path: Path, data: bytes, fix: str) -> dict:
    state = safety.parse_json(path, data, "training state")
    keys_ok = isinstance(state, dict) and isinstance(state.get("history"), list)
    if keys_ok:
        epoch, best_epoch, best_loss, stale = (state.get(k) for k in ("epoch", "best_epoch", "best_loss", "stale"))
        keys_ok = (_whole(epoch, -1) and _whole(stale, 0) and (best_epoch is None or _whole(best_epoch, 0))
                   and (best_loss is None or safety.is_number(best_loss))
                   and len(state["history"]) <= epoch + 1 and all(isinstance(h, dict) for h in state["history"]))
    if not keys_ok:
        raise ModelError(f"{path}: the training state is damaged ({fix})")
    return state


def _whole(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < 1_000_000


def adopt_best(state: dict, best_dir, score) -> dict:
    """Make ``state`` agree with the ``best/`` bundle on disk, when a crash came between saving it and the checkpoint.

    ``score(metrics)`` gives the best score of an epoch's metrics.
    """
    try:
        info = read_info(best_dir)
    except ModelError:
        return state
    epoch, loss = info.training.get("epoch"), info.metrics.get("loss")
    if _whole(epoch, 0) and safety.is_number(loss):
        state.update(best_epoch=epoch, best_loss=float(loss), best_score=score(info.metrics))
    return state
