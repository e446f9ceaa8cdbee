"""A Gluon Trainer's optimizer state as plain arrays and JSON: a checkpoint that cannot run code.

MXNet's ``Trainer.save_states`` pickles the optimizer, and ``load_states`` unpickles whatever file it is
given, so a crafted checkpoint runs commands. Here the state is an ``.npz`` of float32 arrays (read with
``allow_pickle=False``, each member's header checked against the shape it must have before its data is
read) and a JSON file with the update counts; the optimizer itself is rebuilt from the training settings.

``optimizer.json``::

    {"format": "biopsia-optimizer-state", "format_version": 1, "optimizer": "adam",
     "num_update": 120, "update_counts": {"0": 120, ...},
     "states": {"0": ["s0_0", "s0_1"], "1": "s1", "2": null, ...}}

Each state is null, the name of an array in ``optimizer.npz``, or a list of such (Adam: mean, variance).
Call these on the model thread.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import mxnet as mx
import numpy as np

from core.errors import ModelError
from core.models.folder import write_file
from core.models.safety import describe, parse_json

ARRAYS_FILE = "optimizer.npz"
META_FILE = "optimizer.json"
PICKLED_FILE = "trainer.states"  # what MXNet's Trainer.save_states wrote, refused on resume
FORMAT = "biopsia-optimizer-state"
FORMAT_VERSION = 1
MAX_NESTING = 3
MAX_HEADER = 4096


def _updater(trainer):
    if getattr(trainer, "_update_on_kvstore", None) or len(getattr(trainer, "_updaters", ())) != 1:
        raise ModelError("optimizer state can be saved only for training on one device")
    return trainer._updaters[0]


def _flatten(state, name: str, arrays: dict, depth: int = 0):
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[name] = state.asnumpy()
        return name
    if isinstance(state, (tuple, list)) and depth < MAX_NESTING:
        return [_flatten(s, f"{name}_{i}", arrays, depth + 1) for i, s in enumerate(state)]
    raise ModelError(f"optimizer state of type {type(state).__name__} cannot be saved")


def save_trainer_state(trainer, folder) -> None:
    """Write ``optimizer.npz`` and ``optimizer.json`` for ``trainer`` into ``folder`` (new files, fsynced)."""
    folder = Path(folder)
    updater = _updater(trainer)
    optimizer = trainer._optimizer
    arrays: dict[str, np.ndarray] = {}
    states = {str(index): _flatten(state, f"s{index}", arrays) for index, state in sorted(updater.states.items())}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "optimizer": type(optimizer).__name__.lower(),
            "num_update": int(optimizer.num_update),
            "update_counts": {str(k): int(v) for k, v in sorted(optimizer._index_update_count.items())},
            "states": states}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_file(folder / ARRAYS_FILE, buffer.getvalue())
    write_file(folder / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))


def load_trainer_state(trainer, folder, arrays_data: bytes, meta_data: bytes) -> None:
    """Give ``trainer`` the optimizer state read from ``folder`` (its files' verified bytes).

    Parameters
    ----------
    trainer : mxnet.gluon.Trainer
        Built with the same parameters, in the same order, and the same optimizer as the saved one.
    folder : path-like
        Where the files are, for messages.
    arrays_data, meta_data : bytes
        The contents of ``optimizer.npz`` and ``optimizer.json``.

    Raises
    ------
    ModelError
        Another optimizer, states that do not fit the parameters, or damaged files; nothing is unpickled.
    """
    folder = Path(folder)
    meta_path, arrays_path = folder / META_FILE, folder / ARRAYS_FILE
    fix = "train again without resuming, or into a new folder"
    meta = parse_json(meta_path, meta_data, "optimizer state")
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("format_version") == FORMAT_VERSION):
        raise ModelError(f"{meta_path}: not a Biopsia optimizer state of format {FORMAT_VERSION} ({fix})")
    optimizer = trainer._optimizer
    if meta.get("optimizer") != type(optimizer).__name__.lower():
        raise ModelError(f"{meta_path}: the checkpoint was trained with another optimizer than "
                         f"{type(optimizer).__name__.lower()} ({fix}, or with the same optimizer)")
    params = trainer._params
    num_update, counts, states = meta.get("num_update"), meta.get("update_counts"), meta.get("states")
    if not (_count(num_update) and isinstance(counts, dict) and isinstance(states, dict)
            and all(_index(k, len(params)) and _count(v) for k, v in counts.items())
            and all(_index(k, len(params)) for k in states)):
        raise ModelError(f"{meta_path}: the optimizer state's counts or indices do not fit this network "
                         f"(found {describe(states)}; {fix})")
    updater = _updater(trainer)
    restored = {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(arrays_data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ModelError(f"{arrays_path}: the optimizer arrays are not a readable .npz file ({fix})") from None
    with archive:
        for key, layout in states.items():
            index = int(key)
            ctx = params[index].list_ctx()[0]
            template = optimizer.create_state_multi_precision(index, params[index].data(ctx))
            restored[index] = _fill(template, layout, archive, arrays_path, fix)
    for index, state in restored.items():
        updater.states[index] = state
        updater.states_synced[index] = True
    optimizer.num_update = int(num_update)
    optimizer._index_update_count.clear()
    optimizer._index_update_count.update({int(k): int(v) for k, v in counts.items()})
    mx.nd.waitall()


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 62


def _index(key, n: int) -> bool:
    return isinstance(key, str) and key.isdigit() and len(key) < 8 and int(key) < n


def _fill(template, layout, archive: zipfile.ZipFile, path: Path, fix: str):
    """``template`` (a fresh state of the right shapes) with its arrays read from ``archive`` by ``layout``."""
    if template is None or layout is None:
        if template is None and layout is None:
            return None
        raise ModelError(f"{path}: the optimizer state does not fit this network's parameters ({fix})")
    if isinstance(template, mx.nd.NDArray):
        if not isinstance(layout, str):
            raise ModelError(f"{path}: the optimizer state does not fit this network's parameters ({fix})")
        template[:] = _array(archive, layout, template.shape, path, fix)
        return template
    if not (isinstance(layout, list) and isinstance(template, (tuple, list)) and len(layout) == len(template)):
        raise ModelError(f"{path}: the optimizer state does not fit this network's parameters ({fix})")
    filled = [_fill(t, piece, archive, path, fix) for t, piece in zip(template, layout)]
    return tuple(filled) if isinstance(template, tuple) else filled


def _array(archive: zipfile.ZipFile, name: str, shape: tuple, path: Path, fix: str) -> np.ndarray:
    """One float32 array of ``shape``; its header is checked before any of its data is read."""
    damaged = f"{path}: the optimizer arrays are damaged or do not fit this network ({fix})"
    try:
        member = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise ModelError(damaged) from None
    if member.file_size > 4 * int(np.prod(shape, dtype=np.int64)) + 4096:
        raise ModelError(damaged)
    size = int(np.prod(shape, dtype=np.int64))
    try:
        with archive.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ModelError(damaged)
            length_bytes = fh.read(2 if version == (1, 0) else 4)
            length = int.from_bytes(length_bytes, "little")
            if len(length_bytes) not in (2, 4) or length > MAX_HEADER:  # numpy would literal_eval all of it
                raise ModelError(damaged)
            header = io.BytesIO(np.lib.format.magic(*version) + length_bytes + fh.read(length))
            np.lib.format.read_magic(header)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            file_shape, fortran, dtype = read_header(header)
            if tuple(file_shape) != tuple(shape) or dtype != np.dtype("<f4") or fortran:
                raise ModelError(damaged)
            data = fh.read(4 * size + 1)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError,
            SyntaxError, RecursionError, MemoryError):  # bad header, CRC, truncation, odd compression
        raise ModelError(damaged) from None
    values = np.frombuffer(data, "<f4") if len(data) % 4 == 0 else None
    if values is None or values.size != size or not np.isfinite(values).all():
        raise ModelError(damaged)
    return values.reshape(shape)
