"""Seeded fuzzer for model bundles: tampered copies give a ModelError, never a damaged model that loads.

Each case copies one small bundle Biopsia saved and damages it: a value, key or the structure of
``model.json`` changed; bytes of the weights or graph flipped, cut off or appended; a file replaced by
a link out of the folder, a link loop, a folder or a FIFO; a file removed; the weights or graph changed
and their hashes forged to match (so the checks behind the hashes are fuzzed too). Every case runs
`read_info`, the checks made before MXNet; one in three that pass them is also loaded into MXNet and
run on a tile.

What must hold, whatever the seed: only `ModelError` escapes; weights or a graph whose bytes changed
without their hash never load; a bundle that loads asks for what a model may (16 to 1024 px tiles,
0.05 to 50 µm/px, finite normalisation, distinct class names) and gives finite probabilities; each
case takes bounded time; the bundle the copies come from never changes. A failure names its seed;
replay it with ``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelError
from core.models.bundle import META_FILE, PARAMS_FILE, SYMBOL_FILE, ModelInfo, read_info, save_bundle
from core.models.loading import load_bundle
from core.models.engine import engine
from core.models.zoo import build
from fuzzing import peak_memory_mb, reset_peak_memory, seeds

CASES = 300
TILE = 32
CASE_LIMIT_S = 20.0
RSS_GROWTH_LIMIT_MB = 1536
VALUES = [None, True, False, 0, -1, 1, 15, 16, 1024, 1025, 20000, 2 ** 63, -2 ** 63, 0.0, 1e-9, 0.05, 50.0, 1e308,
          float("nan"), float("inf"), float("-inf"), "", "cnn", "resnet18", "x" * 5000, "\u202e\x1b[2J\x00",
          [], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1e-4, 1, 1], {}, {"sha256": "0" * 64, "bytes": 1},
          ["Tumour", "Tumour"], ["a"], [[[[[[[[]]]]]]]]]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, bytes]:
    def job():
        import mxnet as mx

        net = build("cnn")
        net.initialize(mx.init.Xavier())
        net.hybridize()
        net(mx.nd.zeros((1, 3, TILE, TILE)))
        return save_bundle(tmp_path_factory.mktemp("fuzz-source") / "model", net,
                           ModelInfo("cnn", ["Non-tumour", "Tumour"], TILE, mpp=0.5))

    folder = engine().run(job)
    return {p.name: p.read_bytes() for p in folder.iterdir()} | {"_folder": str(folder).encode()}


def _walk(doc, path=()):
    """Every (path, value) in a JSON document."""
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _walk(value, path + (key,))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _walk(value, path + (index,))


def _set(doc, path, value):
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _flip(data: bytes, rng: random.Random, region: tuple[int, int] | None = None) -> bytes:
    out = bytearray(data)
    low, high = region or (0, len(out))
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        out[rng.randrange(low, max(low + 1, min(high, len(out))))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _rehash(files: dict[str, bytes]) -> None:
    doc = json.loads(files[META_FILE])
    for name in (PARAMS_FILE, SYMBOL_FILE):
        doc["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    files[META_FILE] = json.dumps(doc).encode()


def _mutate(files: dict[str, bytes], rng: random.Random) -> tuple[str, set[str]]:
    """Damage ``files`` in place; returns the kind of damage and the hashed files whose bytes changed."""
    kind = rng.choice(["json-value", "json-value", "json-key", "json-structure", "params", "symbol",
                       "forged-params", "forged-symbol", "truncate", "append"])
    doc = json.loads(files[META_FILE])
    if kind == "json-value":
        path, _ = rng.choice(list(_walk(doc))[1:])
        doc = _set(doc, path, json.loads(json.dumps(rng.choice(VALUES))))
        files[META_FILE] = json.dumps(doc).encode()
    elif kind == "json-key":
        parents = [(p, v) for p, v in _walk(doc) if isinstance(v, dict) and v]
        path, parent = rng.choice(parents)
        key = rng.choice(sorted(parent))
        action = rng.choice(["drop", "rename", "add"])
        if action == "drop":
            del parent[key]
        elif action == "rename":
            parent[key + rng.choice(["_", " ", "\u00e9"])] = parent.pop(key)
        else:
            parent[rng.choice(["extra", "files", "tile_px", "__proto__"])] = rng.choice(VALUES)
        files[META_FILE] = json.dumps(doc).encode()
    elif kind == "json-structure":
        text = files[META_FILE]
        choice = rng.randrange(5)
        if choice == 0:
            files[META_FILE] = json.dumps([doc]).encode()
        elif choice == 1:
            files[META_FILE] = text[:rng.randrange(len(text))]
        elif choice == 2:
            files[META_FILE] = _flip(text, rng)
        elif choice == 3:
            depth = rng.choice([33, 500, 50_000])
            files[META_FILE] = text.replace(b'"training": {', b'"training": {"x": ' + b"[" * depth + b"]" * depth
                                            + b", ", 1)
        else:
            files[META_FILE] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    elif kind in ("params", "symbol"):
        name = PARAMS_FILE if kind == "params" else SYMBOL_FILE
        header = (0, 200) if rng.random() < 0.5 else None  # the layout header, or anywhere
        files[name] = _flip(files[name], rng, header)
        return kind, {name}
    elif kind == "forged-params":
        files[PARAMS_FILE] = _flip(files[PARAMS_FILE], rng, (0, 200) if rng.random() < 0.7 else None)
        _rehash(files)
    elif kind == "forged-symbol":
        graph = json.loads(files[SYMBOL_FILE])
        path, value = rng.choice([(p, v) for p, v in _walk(graph) if not isinstance(v, (dict, list))])
        replacement = rng.choice(VALUES + ["sigmoid", "_zeros", "(100000, 100000)", "(3, 3)", "99999999", -5,
                                           [0, 0, 0], 10 ** 6])
        graph = _set(graph, path, json.loads(json.dumps(replacement)))
        files[SYMBOL_FILE] = json.dumps(graph).encode()
        _rehash(files)
    elif kind == "truncate":
        name = rng.choice([PARAMS_FILE, SYMBOL_FILE, META_FILE])
        files[name] = files[name][:rng.randrange(len(files[name]))]
        return kind, {name} - {META_FILE}
    else:
        name = rng.choice([PARAMS_FILE, SYMBOL_FILE])
        files[name] = files[name] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return kind, {name}
    return kind, set()


def _write(folder: Path, files: dict[str, bytes], rng: random.Random, outside: Path) -> str:
    """Write the case's files; sometimes one becomes a link, a folder, a FIFO or goes missing."""
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if rng.random() < 0.12:
        name = rng.choice([PARAMS_FILE, SYMBOL_FILE, META_FILE])
        (folder / name).unlink()
        how = rng.choice(["outside", "loop", "folder", "fifo", "missing", "inside"])
        if how == "outside":
            (folder / name).symlink_to(outside)
        elif how == "loop":
            (folder / name).symlink_to(name)
        elif how == "folder":
            (folder / name).mkdir()
        elif how == "fifo":
            os.mkfifo(folder / name)
        elif how == "inside":
            (folder / "copy.bin").write_bytes(files[name])
            (folder / name).symlink_to("copy.bin")
        return how
    return ""


def _check_loaded(info, seed: int, kind: str) -> None:
    assert isinstance(info.tile_px, int) and 16 <= info.tile_px <= 1024, (seed, kind, info.tile_px)
    assert info.mpp is None or (math.isfinite(info.mpp) and 0.05 <= info.mpp <= 50), (seed, kind, info.mpp)
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in info.mean), (seed, kind, info.mean)
    assert all(math.isfinite(v) and 1e-3 <= v <= 10 for v in info.std), (seed, kind, info.std)
    assert len(set(info.classes)) == len(info.classes) >= 2, (seed, kind, info.classes)


def test_tampered_bundles_give_model_errors_never_damaged_models(source, tmp_path):
    originals = {name: data for name, data in source.items() if not name.startswith("_")}
    source_folder = Path(source["_folder"].decode())
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": "do not show"}')
    rss_before = reset_peak_memory()
    outcomes = {"refused": 0, "read": 0, "loaded": 0}
    for seed in seeds(CASES):
        rng = random.Random(seed)
        files = dict(originals)
        kind, changed = _mutate(files, rng)
        folder = tmp_path / f"case-{seed}"
        how = _write(folder, files, rng, outside)
        where = f"seed {seed} ({kind}{', ' + how if how else ''})"
        started = time.monotonic()
        try:
            info = read_info(folder)
            loaded = None
            if rng.random() < 1 / 3:
                model = engine().run(load_bundle, folder)
                probs = engine().run(model.predict, np.full((1, info.tile_px, info.tile_px, 3), 200, np.uint8))
                assert probs.shape == (1, len(info.classes)) and np.isfinite(probs).all(), where
                loaded = model
        except ModelError as err:
            outcomes["refused"] += 1
            assert "do not show" not in str(err), f"{where}: the message quotes a file: {err}"
        except Exception as err:  # anything but a ModelError is a bug: report the seed
            pytest.fail(f"{where}: {type(err).__name__}: {err}")
        else:
            actually_changed = {name for name in changed if files[name] != originals[name]}
            assert not actually_changed, f"{where}: {sorted(actually_changed)} changed but the bundle was accepted"
            _check_loaded(info, seed, kind)
            outcomes["loaded" if loaded else "read"] += 1
        assert time.monotonic() - started < CASE_LIMIT_S, f"{where}: took {time.monotonic() - started:.1f} s"
        shutil.rmtree(folder)  # a long run makes thousands of cases
    growth_mb = peak_memory_mb() - rss_before
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"peak memory grew by {growth_mb:.0f} MB"
    assert {p.name: p.read_bytes() for p in source_folder.iterdir()} == originals  # the source never changed
    assert outcomes["refused"] and outcomes["read"] + outcomes["loaded"], outcomes
