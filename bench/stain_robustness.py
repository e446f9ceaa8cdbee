#!/usr/bin/env python3
"""Stain robustness on real H&E: which stain augmentation and normalisation hold up under a stain shift?

Trains the compact CNN (`core.models.train.train`, the CLI's path) with each stain setting on the shared
real sets, then scores the best epoch through `core.models.testing.predict_tiles` (the prediction path,
which applies the model's recorded stain normalisation) on

* ``test``: the held-out tiles as they are;
* ``labs``: the same tiles under four fixed HED shifts, one per simulated lab (haematoxylin and eosin
  densities scaled and offset, `core.tiles.stain`), AUC averaged over the four;
* ``random``: each tile under its own strong random HED shift (densities x U(0.7, 1.3), + U(-0.1, 0.1) OD).

Sets (both read from ``../shared/data``; the script stops when they are absent):

* ``lung``: lc25000-lung, 224 px patches resized to 64 px; lung_n is Non-tumour, lung_aca and lung_scc Tumour;
  split by near-copy group (`core.tiles.groups.find_near_copies`, else an 8-transform thumbnail match).
* ``camelyon``: camelyon-mini, 64 px sub-tiles of the 512 px tiles, Tumour where most of the mask is > 127;
  split by image.

Prints one JSON line per run and a summary (mean over seeds) at the end.

    OMP_NUM_THREADS=2 .venv/bin/python bench/stain_robustness.py [--sets lung,camelyon] [--seeds 0,1]
        [--epochs 8] [--configs light/none,hed/none,...] [--hed SIGMA,BIAS]

``--hed 0.2,0.05`` trains ``hed`` runs with that jitter instead of `core.tiles.stain`'s defaults (0.05, 0.05).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.metrics import BinaryMetrics  # noqa: E402
from core.models.testing import predict_tiles  # noqa: E402
from core.models.train import train  # noqa: E402
from core.tiles.arrays import TileArrays  # noqa: E402
from core.tiles.splits import CLASSES  # noqa: E402
from core.tiles.stain import hed_to_rgb, rgb_to_hed  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LUNG, CAMELYON = DATA / "patches" / "lc25000-lung", DATA / "regions" / "camelyon-mini"
TILE = 64
CONFIGS = ("none/none", "light/none", "hed/none", "light/reinhard", "hed/reinhard", "light/macenko", "hed/macenko")
# (alpha_H, alpha_E, beta_H, beta_E): four "labs" (DAB left alone)
LABS = ((1.3, 0.8, 0.05, -0.05), (0.75, 1.25, -0.05, 0.05), (1.2, 1.2, 0.08, 0.08), (0.8, 0.8, -0.05, -0.05))


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: cannot read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _simple_groups(images: np.ndarray) -> np.ndarray:
    """Near-copies by a 16 px grey thumbnail matched over the 8 rotations and flips (fallback grouping)."""
    thumbs = np.stack([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
                       for im in images]).astype(np.float32)
    variants = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(thumbs, k, axes=(1, 2))
            variants.append((t[:, :, ::-1] if flip else t).reshape(len(images), -1))
    unit = lambda v: (v - v.mean(1, keepdims=True)) / (v.std(1, keepdims=True) * v.shape[1] ** 0.5 + 1e-6)  # noqa: E731
    base = unit(variants[0])
    best = np.max([base @ unit(v).T for v in variants], axis=0)
    parent = np.arange(len(images))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(*np.nonzero(np.triu(best, 1) > 0.9)):
        parent[find(a)] = find(b)
    return np.unique([find(i) for i in range(len(images))], return_inverse=True)[1]


def load_lung() -> tuple[TileArrays, np.ndarray, str]:
    files = sorted(p for p in LUNG.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    full = np.stack([_read_rgb(p) for p in files])
    labels = np.array([0 if p.parent.name == "lung_n" else 1 for p in files])
    try:
        from core.tiles.groups import find_near_copies
        groups, how = np.asarray(find_near_copies(list(full))), "core.tiles.groups.find_near_copies"
    except Exception as exc:  # helper P's module not there (yet): the fallback above
        groups, how = _simple_groups(full), f"thumbnail match ({type(exc).__name__} from core.tiles.groups)"
    small = np.stack([cv2.resize(im, (TILE, TILE), interpolation=cv2.INTER_AREA) for im in full])
    return TileArrays(small, labels, list(CLASSES)), groups, how


def load_camelyon() -> tuple[TileArrays, np.ndarray, str]:
    tiles, labels, groups = [], [], []
    for g, path in enumerate(sorted((CAMELYON / "images").glob("*.jpg"))):
        image = _read_rgb(path)
        mask = cv2.imread(str(CAMELYON / "masks" / path.name), cv2.IMREAD_GRAYSCALE) > 127
        for y in range(0, image.shape[0] - TILE + 1, TILE):
            for x in range(0, image.shape[1] - TILE + 1, TILE):
                tiles.append(image[y:y + TILE, x:x + TILE])
                labels.append(int(mask[y:y + TILE, x:x + TILE].mean() > 0.5))
                groups.append(g)
    return TileArrays(np.stack(tiles), np.array(labels), list(CLASSES)), np.array(groups), "by image"


def split(data: TileArrays, groups: np.ndarray, seed: int, test: float = 0.25, val: float = 0.2):
    """Whole groups to test, then to validation, until each holds its share of tiles; both classes in each."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        order = rng.permutation(np.unique(groups))
        sizes = np.array([np.sum(groups == g) for g in order])
        cum = np.cumsum(sizes) / len(groups)
        part = np.where(cum <= test, 0, np.where(cum <= test + val, 1, 2))
        which = dict(zip(order, part))
        where = np.array([which[g] for g in groups])
        sets = [TileArrays(data.images[where == k], data.labels[where == k], list(data.classes)) for k in range(3)]
        if all(len(np.unique(s.labels)) == 2 for s in sets):
            return sets[2], sets[1], sets[0]  # train, val, test
    raise SystemExit("no split with both classes in every part")


def hed_shift(images: np.ndarray, alpha, beta) -> np.ndarray:
    """Tiles with H, E, DAB densities times ``alpha`` plus ``beta`` (broadcast per tile or for all)."""
    return hed_to_rgb(rgb_to_hed(images) * np.asarray(alpha, np.float32) + np.asarray(beta, np.float32))


def stain_shifted(test: TileArrays, seed: int) -> dict[str, list[np.ndarray]]:
    labs = [hed_shift(test.images, (ah, ae, 1.0), (bh, be, 0.0)) for ah, ae, bh, be in LABS]
    rng = np.random.default_rng(1000 + seed)
    n = len(test)
    alpha = rng.uniform(0.7, 1.3, (n, 1, 1, 3))
    beta = rng.uniform(-0.1, 0.1, (n, 1, 1, 3))
    alpha[..., 2], beta[..., 2] = 1.0, 0.0
    return {"labs": labs, "random": [hed_shift(test.images, alpha, beta)]}


def auc(model: Path, images: np.ndarray, labels: np.ndarray) -> float:
    probs, _ = predict_tiles(model, TileArrays(images, labels, list(CLASSES)), device="cpu")
    return float(BinaryMetrics(labels, probs[:, 1]).auc)


def run(name: str, data, groups, seed: int, config: str, epochs: int) -> dict:
    augment, normalise = config.split("/")
    train_set, val_set, test_set = split(data, groups, seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(train_set, val_set, out, arch="cnn", epochs=epochs, batch_size=64, seed=seed,
                       device="cpu", augment=True, stain_augment=augment, stain_normalise=normalise,
                       early_stopping_patience=None)
        seconds = time.perf_counter() - t0
        row = {"set": name, "seed": seed, "stain_augment": augment, "stain_normalise": normalise,
               "train": len(train_set), "val": len(val_set), "test": len(test_set), "best_epoch": result.best_epoch,
               "val_auc": result.best_score, "test_auc": auc(result.bundle, test_set.images, test_set.labels)}
        for kind, sets in stain_shifted(test_set, seed).items():
            row[f"{kind}_auc"] = float(np.mean([auc(result.bundle, s, test_set.labels) for s in sets]))
    row["seconds"] = round(seconds, 1)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="lung,camelyon")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="stain_augment/stain_normalise pairs")
    parser.add_argument("--hed", help="SIGMA,BIAS of the hed jitter (default: core.tiles.stain's)")
    args = parser.parse_args()
    if args.hed:
        import core.models.train as training
        from core.tiles.stain import hed_jitter

        sigma, bias = (float(v) for v in args.hed.split(","))
        training.hed_jitter = functools.partial(hed_jitter, sigma=sigma, bias=bias)
    loaders = {"lung": (LUNG, load_lung), "camelyon": (CAMELYON, load_camelyon)}
    rows = []
    for name in args.sets.split(","):
        folder, loader = loaders[name]
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not there (the shared real data)")
        data, groups, how = loader()
        print(json.dumps({"set": name, "tiles": len(data), "groups": int(len(np.unique(groups))), "grouping": how,
                          "tumour": int(data.labels.sum())}), flush=True)
        for config in args.configs.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(run(name, data, groups, seed, config, args.epochs))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for row in rows:
        key = f"{row['set']} {row['stain_augment']}/{row['stain_normalise']}"
        summary.setdefault(key, []).append(row)
    print(json.dumps({"summary": {k: {m: round(float(np.mean([r[m] for r in v])), 3)
                                      for m in ("val_auc", "test_auc", "labs_auc", "random_auc", "seconds")}
                                  for k, v in summary.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
