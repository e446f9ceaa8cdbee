#!/usr/bin/env python3
"""Real tissue: the default network against a colour-histogram baseline, on the shared real sets, in one run.

Both methods see the same training, validation and test tiles of each set, split so that no group
(near-copies of one LC25000 original; one camelyon region) straddles two splits:

``lung`` (``../shared/data/patches/lc25000-lung``)
    lung_aca and lung_scc are Tumour, lung_n Non-tumour (the ``dataset.json`` class mapping of
    `core.tiles.patches`). The set publishes no scale: the patches are taken as ``--lung-patch-mpp``
    (0.5) µm/px and cut into ``--lung-tile`` px tiles at ``--lung-mpp``. Near-copies are grouped
    (`core.tiles.groups`); a 70/30 split by group gives the test tiles, and 20 % of the training
    groups validate.
``camelyon`` (``../shared/data/regions/camelyon-mini``)
    each blurred mask becomes Tumour marks as ``annotations from-mask --threshold 127`` makes them;
    tiles of ``--camelyon-tile`` (64) px at ``--camelyon-mpp`` (1) µm/px (regions taken as
    ``--camelyon-slide-mpp`` 1 µm/px) are labelled by the one labelling rule (`core.tiles.labels`) with
    tumour coverage at least ``--tumour-min`` (0.9) for Tumour and at most ``--normal-max`` (0.1) for
    Non-tumour: tiles on a boundary, in between, are dropped as ambiguous (the masks are blurred and blocky
    there). With ``--camelyon-cell UM`` the same cells are labelled but each tile is the
    ``--camelyon-tile`` square around its cell (``biopsia dataset --tile 64 --mpp 2 --cell 64``: 128 µm
    around 64 µm, shifted inside the region at its edges); the colour baseline then also runs on the cells
    alone (``colour_cell_only``) and the network's lead is over the better one. Regions are split into
    ``--folds`` folds; each fold is tested on a model trained on the others (20 % of their regions
    validate), and the folds' predictions are pooled.

The network is `core.models.train.train` as ``biopsia train`` runs it (best epoch by validation loss, an
operating threshold chosen on the validation tiles at sensitivity 0.95 and recorded in ``model.json``).
The baseline is an L2-regularised logistic regression on per-tile 16-bin RGB and HSV histograms, with
its threshold chosen the same way on the same validation tiles. Prints JSON: per set and method, AUC,
sensitivity and specificity at the threshold, and seconds. ``--curves PNG`` also draws the loss and
validation curves of one run of each of ``--curve-archs`` on the first camelyon fold; ``--demo`` measures
the bundled demo model (trained on synthetic tissue) on both sets; ``--look PNG`` draws the first fold's
test regions with their labels and the network's probabilities. Two variants of camelyon's training:
``--camelyon-train-stride UM`` (overlapping training tiles) and ``--pretrain lung`` (every fold fine-tuned
from a network trained on the lung patches at camelyon's tile size); and of the network, ``--seeds N`` (an
ensemble of N) and ``--platt`` (each split's network rescaled on its validation tiles before pooling).

    .venv/bin/python bench/real_tissue.py --stain-augment hed --stain-normalise reinhard \
        --curves docs/images/real-tissue-curves.png --demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from core.annotations.from_mask import DEFAULT_MIN_AREA_PX, marks_from_mask, read_label_mask  # noqa: E402
from core.metrics import BinaryMetrics  # noqa: E402
from core.models.thresholds import choose_thresholds  # noqa: E402
from core.tiles.arrays import TileArrays  # noqa: E402
from core.tiles.grid import TileSpec  # noqa: E402
from core.tiles.planning import plan_dataset  # noqa: E402
from core.tiles.reading import load_tiles  # noqa: E402
from core.tiles.sources import SlideSource  # noqa: E402
from core.tiles.splits import group_pick  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LUNG = SHARED / "patches" / "lc25000-lung"
CAMELYON = SHARED / "regions" / "camelyon-mini"
LUNG_CLASSES = {"lung_aca": "Tumour", "lung_scc": "Tumour", "lung_n": "Non-tumour"}
MASK_THRESHOLD = 127  # camelyon-mini's README: above 127 is metastatic tumour
HIST_BINS = 16
VAL_SHARE = 0.2


# ---------------------------------------------------------------- data

def lung_folder(work: Path) -> Path:
    """The lung patches as a patch folder with a class mapping (links to the shared, read-only folders)."""
    folder = work / "lc25000-lung"
    folder.mkdir(parents=True, exist_ok=True)
    for name in LUNG_CLASSES:
        link = folder / name
        if not link.exists():
            link.symlink_to(LUNG / name, target_is_directory=True)
    (folder / "dataset.json").write_text(json.dumps({"classes": LUNG_CLASSES}))
    return folder


def lung_tiles(work: Path, patch_mpp: float, tile_px: int, mpp: float):
    """(tiles, groups, note) of the lung set, read by `core.tiles.patches.read_patch_folder`."""
    from core.tiles.patches import read_patch_folder

    found = read_patch_folder(lung_folder(work), patch_mpp=patch_mpp, tile_px=tile_px, mpp=mpp)
    note = {"patches": found.patches, "tiles": len(found.tiles), "groups": int(found.n_groups),
            "group_source": found.group_source, "tile_px": tile_px, "mpp": mpp, "patch_mpp": patch_mpp}
    return found.tiles, found.groups, note


def camelyon_sources(slide_mpp: float) -> list[SlideSource]:
    """Each region with the Tumour marks its mask gives (as ``annotations from-mask --threshold 127``)."""
    sources = []
    for image in sorted((CAMELYON / "images").glob("*.jpg")):
        mask_path = CAMELYON / "masks" / image.name
        grey = read_label_mask(mask_path)
        found = marks_from_mask(grey, {1: "Tumour"}, grey.shape[1], grey.shape[0], min_area_l0=DEFAULT_MIN_AREA_PX,
                                path=mask_path, threshold=MASK_THRESHOLD)
        sources.append(SlideSource(image, image.stem, found.annotations, True, (slide_mpp, slide_mpp),
                                   declared=True))
    return sources


def camelyon_plan(slide_mpp: float, tile_px: int, mpp: float, tumour_min: float, normal_max: float,
                  cell_um: float | None = None, stride_um: float | None = None):
    """(sources, the dataset plan) of the regions, every tile in train: `camelyon_tiles` reads its tiles.

    ``stride_um``: a tile every that many µm (overlapping tiles) instead of one per tile side."""
    sources = camelyon_sources(slide_mpp)
    labelling = {"tumour_min": tumour_min, "normal_max": normal_max}
    if stride_um is not None:
        labelling["stride"] = max(1, round(stride_um / slide_mpp))
    plan = plan_dataset(sources, TileSpec(tile_px, mpp), "random", 1.0, 0, None, labelling, cell_um=cell_um)
    return sources, plan


def camelyon_tiles(slide_mpp: float, tile_px: int, mpp: float, tumour_min: float, normal_max: float,
                   cell_um: float | None = None, stride_um: float | None = None):
    """(tiles, groups = region index, note), labelled by the one labelling rule as ``biopsia dataset`` does.

    With ``cell_um`` each tile is labelled by its centre cell (``biopsia dataset --cell``,
    `core.tiles.planning.context_plan`)."""
    sources, plan = camelyon_plan(slide_mpp, tile_px, mpp, tumour_min, normal_max, cell_um, stride_um)
    tiles = load_tiles(plan, None)
    reasons = {}
    for p in plan.plans:
        for r, n in zip(*np.unique(p.reason, return_counts=True)):
            reasons[int(r)] = reasons.get(int(r), 0) + int(n)
    from core.tiles.labels import REASONS
    note = {"regions": len(sources), "tiles": len(tiles), "tile_px": tile_px, "mpp": mpp, "slide_mpp": slide_mpp,
            "cell_um": cell_um,
            "tumour_min": tumour_min, "normal_max": normal_max,
            "grid": {REASONS[r]: n for r, n in sorted(reasons.items())}}
    return tiles, plan.slide.astype(np.int64), note


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def subset(tiles: TileArrays, mask: np.ndarray) -> TileArrays:
    return TileArrays(tiles.images[mask], tiles.labels[mask], tiles.classes)


def counts(tiles: TileArrays) -> dict:
    return dict(zip(tiles.classes, np.bincount(tiles.labels, minlength=len(tiles.classes)).tolist()))


# ---------------------------------------------------------------- the colour baseline

def colour_features(images: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Per tile: normalised histograms of R, G, B, H, S and V (``6 * bins`` features)."""
    out = np.empty((len(images), 6 * bins), np.float64)
    for i, tile in enumerate(images):
        hsv = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)  # OpenCV's H runs 0..179
        parts = []
        for image, tops in ((tile, (256, 256, 256)), (hsv, (180, 256, 256))):
            for c in range(3):
                h = np.bincount((image[:, :, c].astype(np.int32) * bins // tops[c]).ravel(), minlength=bins)
                parts.append(h[:bins] / max(1, h.sum()))
        out[i] = np.concatenate(parts)
    return out


class ColourLogistic:
    """Class-weighted, L2-regularised logistic regression on standardised features (L-BFGS, scipy)."""

    def __init__(self, l2: float = 10.0):
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray) -> "ColourLogistic":
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        z = (x - self.mu) / self.sd
        n = len(y)
        weight = np.where(y == 1, n / (2 * max(1, y.sum())), n / (2 * max(1, n - y.sum())))

        def loss(w):
            s = z @ w[:-1] + w[-1]
            p = 1 / (1 + np.exp(-s))
            g = weight * (p - y) / n
            value = np.sum(weight * (np.logaddexp(0, s) - y * s)) / n + 0.5 * self.l2 * np.sum(w[:-1] ** 2) / n
            return value, np.concatenate([z.T @ g + self.l2 * w[:-1] / n, [g.sum()]])

        self.w = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(((x - self.mu) / self.sd) @ self.w[:-1] + self.w[-1])))


def run_colour(train: TileArrays, val: TileArrays, test: TileArrays) -> dict:
    model = ColourLogistic().fit(colour_features(train.images), train.labels)
    chosen = choose_thresholds(val.labels, model.predict(colour_features(val.images)))
    threshold = chosen[chosen["chosen"]] if chosen else 0.5
    return {"probs": model.predict(colour_features(test.images)), "threshold": threshold}


# ---------------------------------------------------------------- the network

def run_network(train: TileArrays, val: TileArrays, test: TileArrays, out: Path, args, arch: str | None = None,
                mpp: float | None = None, cell_um: float | None = None, init_from: Path | None = None) -> dict:
    """`core.models.train.train` as ``biopsia train`` runs it (from ``init_from``'s weights when given), then
    the test tiles' probabilities and the model's threshold.

    With ``args.seeds`` above 1, that many networks (seeds ``args.seed`` on) are trained and their logits
    averaged. With ``args.platt``, the (averaged) logits are rescaled by a logistic fit on the validation tiles
    (Platt scaling), so that the splits' models speak on one scale when their test tiles are pooled. Either
    way the threshold is then chosen on the validation tiles as training chooses one
    (`core.models.thresholds.choose_thresholds`); otherwise it is the model's own."""
    from core.models.bundle import default_threshold, read_info
    from core.models.testing import predict_tiles
    from core.models.train import train as train_network

    extra = {}
    if args.stain_augment:
        extra["stain_augment"] = args.stain_augment
    if args.stain_normalise:
        extra["stain_normalise"] = args.stain_normalise
    if args.warmup is not None:
        extra["warmup_epochs"] = args.warmup
    if init_from is not None:
        extra["init_from"] = init_from
    seeds = max(1, args.seeds)
    runs = [train_network(train, val, out / f"seed-{args.seed + k}" if seeds > 1 else out, arch=arch or args.arch,
                          epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed + k,
                          device=args.device, mpp=mpp, early_stopping_patience=args.patience, cell_um=cell_um,
                          **extra) for k in range(seeds)]
    done = {"best_epoch": [r.best_epoch + 1 for r in runs], "epochs_run": [r.epochs_run for r in runs],
            "history": runs[0].history}
    if seeds == 1 and not args.platt:
        probs, _ = predict_tiles(runs[0].bundle, test, args.device)
        threshold, source = default_threshold(read_info(runs[0].bundle))
        return {"probs": probs[:, 1], "threshold": threshold, "threshold_source": source, **done,
                "best_epoch": runs[0].best_epoch + 1, "epochs_run": runs[0].epochs_run}

    def logit(tiles: TileArrays) -> np.ndarray:  # the runs' mean logit
        found = []
        for r in runs:
            p = np.clip(predict_tiles(r.bundle, tiles, args.device)[0][:, 1], 1e-7, 1 - 1e-7)
            found.append(np.log(p / (1 - p)))
        return np.mean(found, axis=0)

    val_logit, test_logit = logit(val), logit(test)
    scale, shift = platt_fit(val_logit, val.labels) if args.platt else (1.0, 0.0)
    val_p = 1 / (1 + np.exp(-(scale * val_logit + shift)))
    chosen = choose_thresholds(val.labels, val_p)
    how = (f"the {seeds} seeds' mean" if seeds > 1 else "the network") + (", Platt-scaled" if args.platt else "")
    return {"probs": 1 / (1 + np.exp(-(scale * test_logit + shift))),
            "threshold": chosen[chosen["chosen"]] if chosen else 0.5, "threshold_source": f"{how}, on validation",
            **done}


def platt_fit(logit: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the logistic ``1 / (1 + exp(-(a * logit + b)))`` that best fits ``labels`` (cross-entropy)."""
    y = labels.astype(np.float64)

    def loss(w):
        s = w[0] * logit + w[1]
        p = 1 / (1 + np.exp(-s))
        return np.mean(np.logaddexp(0, s) - y * s), np.array([np.mean((p - y) * logit), np.mean(p - y)])

    a, b = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return float(a), float(b)


def summary(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, seconds: float) -> dict:
    """AUC of the pooled probabilities; sensitivity and specificity at each tile's own model's threshold."""
    auc = BinaryMetrics(labels, probs).auc
    called = probs >= thresholds
    tumour, normal = labels == 1, labels == 0
    return {"auc": round(float(auc), 4),
            "sensitivity": round(float(called[tumour].mean()), 4) if tumour.any() else None,
            "specificity": round(float((~called[normal]).mean()), 4) if normal.any() else None,
            "thresholds": sorted({round(float(t), 4) for t in np.unique(thresholds)}),
            "seconds": round(seconds, 1)}


def evaluate_splits(tiles: TileArrays, splits, work: Path, args, mpp, name: str, keep_history: dict,
                    cell_tiles: TileArrays | None = None, cell_um: float | None = None,
                    train_tiles: tuple | None = None, init_from: Path | None = None) -> dict:
    """Both methods over the splits ``[(train_mask, val_mask, test_mask), ...]``, pooled.

    ``cell_tiles`` (the same tiles cut to their labelled cell only) adds ``colour_cell_only``: the baseline on
    what the label describes, without the surroundings the network sees. The network's lead is over the
    better of the colour baselines. ``train_tiles`` ``(tiles, their groups, the groups of tiles)``: both
    methods train on those of them whose group trains (overlapping tiles, say), and validate and test on
    ``tiles`` as before. ``init_from``: the network starts from that model's weights."""
    results = {}
    methods = ("network", "colour") + (("colour_cell_only",) if cell_tiles is not None else ())
    for method in methods:
        start = time.perf_counter()
        labels, probs, thresholds, per_split = [], [], [], []
        source = cell_tiles if method == "colour_cell_only" else tiles
        for k, (tr, va, te) in enumerate(splits):
            train, val, test = subset(source, tr), subset(source, va), subset(source, te)
            if train_tiles is not None and method != "colour_cell_only":
                dense, dense_groups, groups = train_tiles
                train = subset(dense, np.isin(dense_groups, np.unique(groups[tr])))
            if method == "network":
                got = run_network(train, val, test, work / f"{name}-{k}", args, mpp=mpp, cell_um=cell_um,
                                  init_from=init_from)
                keep_history.setdefault(name, {})[k] = got.pop("history")
                keep_history.setdefault(f"{name}-probs", {})[k] = got["probs"]
            else:
                got = run_colour(train, val, test)
            log(f"{name} {method} split {k + 1}/{len(splits)}: test AUC "
                f"{BinaryMetrics(test.labels, got['probs']).auc:.4f} ({len(train)} train, {len(val)} val, "
                f"{len(test)} test tiles)")
            labels.append(test.labels)
            probs.append(got["probs"])
            thresholds.append(np.full(len(test), got["threshold"]))
            fold = {"auc": BinaryMetrics(test.labels, got["probs"]).auc, "threshold": got["threshold"],
                    "train": counts(train), "val": counts(val), "test": counts(test)}
            fold.update({k2: got[k2] for k2 in ("best_epoch", "epochs_run", "threshold_source") if k2 in got})
            per_split.append(fold)
        results[method] = summary(np.concatenate(labels), np.concatenate(probs), np.concatenate(thresholds),
                                  time.perf_counter() - start)
        results[method]["mean_split_auc"] = round(float(np.mean([f["auc"] for f in per_split])), 4)
        results[method]["per_split"] = per_split
    best_colour = max(results[m]["auc"] for m in methods if m != "network")
    results["network_minus_colour_auc"] = round(results["network"]["auc"] - best_colour, 4)
    return results


def lung_splits(tiles: TileArrays, groups: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    test = group_pick(tiles.labels, groups, 0.3, rng)
    val = np.zeros_like(test)
    val[~test] = group_pick(tiles.labels[~test], groups[~test], VAL_SHARE, rng)
    return [(~test & ~val, val, test)]


def camelyon_splits(tiles: TileArrays, groups: np.ndarray, folds: int, seed: int):
    regions = np.unique(groups)
    order = np.random.default_rng(seed).permutation(regions)
    fold_of = {int(r): i % folds for i, r in enumerate(order)}
    fold = np.array([fold_of[int(g)] for g in groups])
    out = []
    for k in range(folds):
        test = fold == k
        val = np.zeros_like(test)
        val[~test] = group_pick(tiles.labels[~test], groups[~test], VAL_SHARE, np.random.default_rng((seed, k)))
        out.append((~test & ~val, val, test))
    return out


def pretrain_on_lung(work: Path, args) -> Path:
    """The network trained on the lung patches cut to camelyon's tile size and µm/px (70 % of the groups train,
    the rest validate): the bundle the camelyon folds start from."""
    from core.models.train import train as train_network

    lung, groups, _ = lung_tiles(work, args.lung_patch_mpp, args.camelyon_tile, args.camelyon_mpp)
    val = group_pick(lung.labels, groups, 0.3, np.random.default_rng(args.seed))
    extra = {k: v for k, v in (("stain_augment", args.stain_augment), ("stain_normalise", args.stain_normalise))
             if v}
    result = train_network(subset(lung, ~val), subset(lung, val), work / "lung-parent", arch=args.arch,
                           epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed,
                           device=args.device, mpp=args.camelyon_mpp, early_stopping_patience=args.patience, **extra)
    log(f"pretrained on {len(lung)} lung tiles: best epoch {result.best_epoch + 1}")
    return result.bundle


# ---------------------------------------------------------------- the demo model and the curves

def demo_model_auc(work: Path, args) -> dict:
    """The bundled demo model on both sets, at its own tile size and µm/px (128 px at 1 µm/px)."""
    from core.demo import DEMO_MODEL
    from core.models.bundle import read_info
    from core.models.testing import test_model
    from core.tiles.patches import read_patch_folder

    info = read_info(DEMO_MODEL)
    out = {"model": str(DEMO_MODEL.relative_to(ROOT)), "tile_px": info.tile_px, "mpp": info.mpp}
    if "lung" in args.sets and LUNG.is_dir():
        # the patches (224 px, scale unpublished) are read as 128/224 µm/px so that each is one model tile
        lung = read_patch_folder(lung_folder(work), patch_mpp=info.tile_px * info.mpp / 224, tile_px=info.tile_px,
                                 mpp=info.mpp, group=False).tiles
        r = test_model(DEMO_MODEL, lung, args.device)
        out["lung"] = {"auc": round(r["auc"], 4), "tiles": r["tiles"], "sensitivity": r["sensitivity"],
                       "specificity": r["specificity"], "threshold": r["threshold"]}
    if "camelyon" in args.sets and CAMELYON.is_dir():
        tiles, _, _ = camelyon_tiles(args.camelyon_slide_mpp, info.tile_px, info.mpp, args.tumour_min,
                                     args.normal_max)
        r = test_model(DEMO_MODEL, tiles, args.device)
        out["camelyon"] = {"auc": round(r["auc"], 4), "tiles": r["tiles"], "sensitivity": r["sensitivity"],
                           "specificity": r["specificity"], "threshold": r["threshold"]}
    return out


def dashed_polyline(img: np.ndarray, pts, colour, dash: float = 9.0, gap: float = 6.0, thickness: int = 2) -> None:
    """A polyline drawn dashed, the dash pattern running on across its vertices (one line, not one per segment)."""
    period, travelled = dash + gap, 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        length = float(np.hypot(*(b - a)))
        at = 0.0
        while at < length:
            phase = travelled % period
            step = min((dash - phase) if phase < dash else (period - phase), length - at)
            if phase < dash:
                p, q = a + (b - a) * at / length, a + (b - a) * (at + step) / length
                cv2.line(img, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), colour, thickness,
                         cv2.LINE_AA)
            at += step
            travelled += step


def draw_curves(runs: dict, path: Path, title: str) -> None:
    """Training loss, validation loss and validation AUC per epoch of each run, as a PNG (OpenCV only)."""
    w, h, pad = 560, 360, 56
    colours = [(200, 90, 20), (30, 120, 220), (40, 160, 60), (150, 60, 170)]
    panels = []
    for key, label, lo, hi in (("loss", "loss (solid: training, dashed: validation)", 0.0, None),
                               ("auc", "validation AUC", None, 1.0)):
        img = np.full((h, w, 3), 255, np.uint8)
        values = [v for r in runs.values() for e in r for v in
                  ((e["train_loss"], e["loss"]) if key == "loss" else (e.get("auc") or 0.5,))]
        y0 = lo if lo is not None else max(0.0, min(values) - 0.02)
        y1 = hi if hi is not None else max(values) * 1.05
        epochs = max(len(r) for r in runs.values())
        sx = lambda e: int(pad + (w - 1.5 * pad) * e / max(1, epochs - 1))  # noqa: E731
        sy = lambda v: int(h - pad - (h - 1.6 * pad) * (v - y0) / max(1e-9, y1 - y0))  # noqa: E731
        cv2.rectangle(img, (pad, int(0.6 * pad)), (w - pad // 2, h - pad), (0, 0, 0), 1)
        for i in range(5):
            v = y0 + (y1 - y0) * i / 4
            cv2.putText(img, f"{v:.2f}", (4, sy(v) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for e in range(epochs):
            cv2.putText(img, str(e + 1), (sx(e) - 4, h - pad + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                        cv2.LINE_AA)
        cv2.putText(img, "epoch", (w // 2 - 20, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, label, (pad, int(0.45 * pad)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for (name, hist), colour in zip(runs.items(), colours):
            series = [("train_loss", False), ("loss", True)] if key == "loss" else [("auc", False)]
            for field, dashed in series:
                pts = [(sx(i), sy(e.get(field) if e.get(field) is not None else 0.5)) for i, e in enumerate(hist)]
                if dashed:
                    dashed_polyline(img, pts, colour)
                else:
                    cv2.polylines(img, [np.asarray(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
                for p in pts:
                    cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
        for i, (name, colour) in enumerate(zip(runs, colours)):
            y = int(0.6 * pad) + 18 + 18 * i
            cv2.line(img, (w - 150, y - 4), (w - 126, y - 4), colour, 2, cv2.LINE_AA)
            cv2.putText(img, name, (w - 120, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(img)
    top = np.full((30, 2 * w, 3), 255, np.uint8)
    cv2.putText(top, title, (10, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([top, np.hstack(panels)]))


def draw_calls(path: Path, sources, plan, test: np.ndarray, probs: np.ndarray, title: str) -> None:
    """The test regions of one fold: the mask's outline (green), each labelled tile's box (red: Tumour, blue:
    Non-tumour) and the network's probability in it, four regions to a row (a PNG, not for the repository:
    it holds the shared images' pixels)."""
    chosen = plan.index[test]
    region = plan.slide[test]
    panels = []
    for g in np.unique(region):
        source = sources[int(g)]
        image = cv2.imread(str(source.path))
        grey = read_label_mask(CAMELYON / "masks" / source.path.name)
        outline, _ = cv2.findContours((grey > MASK_THRESHOLD).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, outline, -1, (0, 200, 0), 2)
        tile_plan = plan.plans[int(g)]
        side = int(tile_plan.tile_l0)
        for j, prob in zip(chosen[region == g], probs[region == g]):
            x, y = int(tile_plan.l0_x[j]), int(tile_plan.l0_y[j])
            colour = (0, 0, 230) if tile_plan.label[j] == 1 else (230, 0, 0)
            cv2.rectangle(image, (x + 2, y + 2), (x + side - 3, y + side - 3), colour, 1)
            for ink, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                cv2.putText(image, f"{prob:.2f}", (x + side // 8, y + side // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX,
                            0.45 * side / 64, ink, width, cv2.LINE_AA)
        cv2.putText(image, source.name, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 230, 230), 2, cv2.LINE_AA)
        panels.append(image)
    while len(panels) % 4:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.hstack(panels[i:i + 4]) for i in range(0, len(panels), 4)]
    sheet = np.vstack(rows)
    top = np.full((34, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(top, title, (10, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([top, sheet]))


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="lung,camelyon", help="comma-separated: lung, camelyon")
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=None, help="warm-up epochs (default: train's)")
    parser.add_argument("--stain-augment", default=None, help="hed, light or none (default: train's)")
    parser.add_argument("--stain-normalise", default=None, help="none, reinhard or macenko (default: train's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="networks per split (seeds --seed on), their logits averaged: an ensemble")
    parser.add_argument("--platt", action="store_true",
                        help="rescale each split's network on its validation tiles (Platt scaling) before pooling")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--folds", type=int, default=4, help="camelyon: folds of regions")
    parser.add_argument("--lung-patch-mpp", type=float, default=0.5)
    parser.add_argument("--lung-tile", type=int, default=112)
    parser.add_argument("--lung-mpp", type=float, default=1.0)
    parser.add_argument("--camelyon-slide-mpp", type=float, default=1.0)
    parser.add_argument("--camelyon-tile", type=int, default=64)
    parser.add_argument("--camelyon-mpp", type=float, default=1.0)
    parser.add_argument("--camelyon-cell", type=float, default=None,
                        help="µm: label each tile by its centre cell of this side (dataset --cell; e.g. 64 with "
                             "--camelyon-mpp 2); the colour baseline is then also run on the cells alone")
    parser.add_argument("--camelyon-train-stride", type=float, default=None,
                        help="µm: train on overlapping tiles, one every this many µm of the training regions "
                             "(validation and test tiles stay on the grid)")
    parser.add_argument("--pretrain", choices=("lung",), default=None,
                        help="camelyon: first train the network on the lung patches at camelyon's tile size and "
                             "µm/px, and fine-tune every fold from it (train's init_from, as retrain does)")
    parser.add_argument("--tumour-min", type=float, default=0.9)
    parser.add_argument("--normal-max", type=float, default=0.1)
    parser.add_argument("--curves", type=Path, help="PNG of the loss and validation curves (first camelyon fold)")
    parser.add_argument("--curve-archs", default="cnn,resnet18")
    parser.add_argument("--demo", action="store_true", help="also measure the bundled demo model")
    parser.add_argument("--look", type=Path, help="PNG of the first camelyon fold's test regions: mask outline, "
                                                  "tile labels and the network's probabilities (not to commit)")
    args = parser.parse_args()
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    args.camelyon_cell = args.camelyon_cell or None

    report = {"benchmark": "real_tissue", "arch": args.arch, "epochs": args.epochs, "lr": args.lr,
              "warmup_epochs": "train's default" if args.warmup is None else args.warmup, "stain_augment":
              args.stain_augment or "train's default", "stain_normalise": args.stain_normalise or "train's default",
              "seeds": args.seeds, "platt": args.platt, "cpu_threads": os.environ.get("OMP_NUM_THREADS")}
    histories: dict = {}
    with tempfile.TemporaryDirectory(prefix="biopsia-real-") as tmp:
        work = Path(tmp)
        if "lung" in args.sets:
            if not LUNG.is_dir():
                report["lung"] = {"skipped": f"{LUNG} is not here"}
            else:
                start = time.perf_counter()
                tiles, groups, note = lung_tiles(work, args.lung_patch_mpp, args.lung_tile, args.lung_mpp)
                note["read_seconds"] = round(time.perf_counter() - start, 1)
                report["lung"] = {"data": note, **evaluate_splits(tiles, lung_splits(tiles, groups, args.seed), work,
                                                                  args, args.lung_mpp, "lung", histories)}
        if "camelyon" in args.sets:
            if not CAMELYON.is_dir():
                report["camelyon"] = {"skipped": f"{CAMELYON} is not here"}
            else:
                start = time.perf_counter()
                tiles, groups, note = camelyon_tiles(args.camelyon_slide_mpp, args.camelyon_tile, args.camelyon_mpp,
                                                     args.tumour_min, args.normal_max, args.camelyon_cell)
                cell_tiles = None
                if args.camelyon_cell is not None:  # the same cells alone, at the regions' own pixels
                    cell_px = round(args.camelyon_cell / args.camelyon_slide_mpp)
                    cell_tiles, cell_groups, _ = camelyon_tiles(args.camelyon_slide_mpp, cell_px,
                                                                args.camelyon_slide_mpp, args.tumour_min,
                                                                args.normal_max)
                    assert np.array_equal(cell_tiles.labels, tiles.labels) and np.array_equal(cell_groups, groups)
                train_tiles = None
                if args.camelyon_train_stride:
                    if args.camelyon_cell is not None:
                        parser.error("--camelyon-train-stride and --camelyon-cell do not go together")
                    dense, dense_groups, _ = camelyon_tiles(args.camelyon_slide_mpp, args.camelyon_tile,
                                                            args.camelyon_mpp, args.tumour_min, args.normal_max,
                                                            stride_um=args.camelyon_train_stride)
                    train_tiles = (dense, dense_groups, groups)
                    note["train_stride_um"], note["train_tiles"] = args.camelyon_train_stride, len(dense)
                note["read_seconds"] = round(time.perf_counter() - start, 1)
                parent = None
                if args.pretrain == "lung":
                    start = time.perf_counter()
                    parent = pretrain_on_lung(work, args)
                    note["pretrained_on_lung_seconds"] = round(time.perf_counter() - start, 1)
                splits = camelyon_splits(tiles, groups, args.folds, args.seed)
                report["camelyon"] = {"data": note, **evaluate_splits(tiles, splits, work, args, args.camelyon_mpp,
                                                                      "camelyon", histories, cell_tiles,
                                                                      args.camelyon_cell, train_tiles, parent)}
                if args.look:
                    sources, plan = camelyon_plan(args.camelyon_slide_mpp, args.camelyon_tile, args.camelyon_mpp,
                                                  args.tumour_min, args.normal_max, args.camelyon_cell)
                    auc = report["camelyon"]["network"]["per_split"][0]["auc"]
                    draw_calls(args.look, sources, plan, splits[0][2], histories["camelyon-probs"][0],
                               f"camelyon-mini, fold 1 of {args.folds}: the network's tumour probability per test "
                               f"tile (red box: Tumour, blue: Non-tumour; green: mask outline); AUC {auc:.3f}")
                    report["camelyon"]["look"] = str(args.look)
                if args.curves:
                    runs = {}
                    for arch in args.curve_archs.split(","):
                        if arch == args.arch and 0 in histories.get("camelyon", {}):
                            runs[arch] = histories["camelyon"][0]
                            continue
                        tr, va, te = splits[0]
                        start = time.perf_counter()
                        got = run_network(subset(tiles, tr), subset(tiles, va), subset(tiles, te),
                                          work / f"curves-{arch}", args, arch=arch, mpp=args.camelyon_mpp,
                                          cell_um=args.camelyon_cell)
                        runs[arch] = got["history"]
                        report.setdefault("curves", {})[arch] = {
                            "test_auc": round(BinaryMetrics(subset(tiles, te).labels, got["probs"]).auc, 4),
                            "seconds": round(time.perf_counter() - start, 1)}
                    for arch, hist in runs.items():
                        report.setdefault("curves", {}).setdefault(arch, {}).update(
                            train_loss=[round(e["train_loss"], 4) for e in hist],
                            val_loss=[round(e["loss"], 4) for e in hist],
                            val_auc=[round(e["auc"], 4) if e.get("auc") is not None else None for e in hist])
                    cell = "" if args.camelyon_cell is None else f" labelled by their centre {args.camelyon_cell:g} um"
                    draw_curves(runs, args.curves, f"camelyon-mini, fold 1 of {args.folds}: {args.camelyon_tile} px "
                                f"tiles at {args.camelyon_mpp:g} um/px{cell}, {args.epochs} epochs at most")
                    report["curves"]["png"] = str(args.curves)
        if args.demo:
            report["demo_model"] = demo_model_auc(work, args)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
