#!/usr/bin/env python3
"""Assisted annotation: how many doctor actions do the network's proposals save, for the same final model?

On synthetic slides whose tumour is known, a simulated doctor who draws the truth annotates 4 new slides two
ways, starting from a model trained on one annotated slide, and retraining (Model ▸ Retrain with new marks:
`core.models.retrain.retrain_job`, a warm start) after each slide in both routes:

* ``manual``: every tumour region drawn from scratch with the polygon tool;
* ``assisted``: the current model's proposals (`core.annotations.proposals.propose_marks` at its threshold);
  a draft whose IoU with the truth it overlaps is at least 0.8 is accepted as it is, one that overlaps the
  truth less well is corrected with the brush to the truth and then accepted, one over no tumour is
  rejected, and a tumour region no draft touched is drawn from scratch.

Actions counted, the same way in both routes:

* drawing a region: one vertex per corner of its outline simplified to `DRAW_TOLERANCE_UM` (what a doctor's
  polygon at a working magnification keeps), holes included, plus one click to close it;
* accepting or rejecting a draft: a click to select it and a key (A or R): 2;
* correcting: one brush stroke of `BRUSH_UM` per `STROKE_UM` of length, for each part of the difference
  between the draft and the truth larger than a speck (a quarter of the brush's square), then the accept.

The final models of both routes are tested on a fifth slide neither saw (tile AUC against the truth).
Goals: ``assisted`` needs at most a third of ``manual``'s actions, for the same final AUC (within 0.01), and
every accepted mark's IoU with the truth is at least 0.8. Prints JSON.

    .venv/bin/python bench/assist.py [--epochs 3] [--size 12288x9216] [--specimen resection|biopsy]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # as main.py: MXNet uses every core

import numpy as np  # noqa: E402
from shapely.geometry import MultiPolygon, Polygon  # noqa: E402
from shapely.ops import unary_union  # noqa: E402

from core.annotations.model import Annotation  # noqa: E402
from core.annotations.proposals import accept_draft, propose_marks, reject_draft  # noqa: E402
from core.annotations.store import AnnotationStore  # noqa: E402
from core.evaluation.compare import truth_for_grid  # noqa: E402
from core.metrics import auc_score  # noqa: E402
from core.paths import cache_dir  # noqa: E402
from core.project.model import Project  # noqa: E402
from core.synth import write_synthetic_slide  # noqa: E402
from core.tiles.grid import TileSpec  # noqa: E402

SPEC = TileSpec(64, 2.0)  # 64 px tiles at 2 µm/px: 256 level-0 px on the 0.5 µm/px slides
MPP = 0.5
FIRST_SEED, NEW_SEEDS, UNSEEN_SEED = 40, (41, 42, 43, 44), 45
DRAW_TOLERANCE_UM = 10.0
BRUSH_UM, STROKE_UM = 100.0, 1000.0
ACCEPT_IOU = 0.8
DECIDE_ACTIONS = 2  # a click to select, a key to decide


def slides(size: tuple[int, int], specimen: str) -> dict:
    """The synthetic slides: the first (annotated), the new ones, the unseen one (cached; the same pixels)."""
    folder = cache_dir() / "bench" / "assist"
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    made = {}
    for seed in (FIRST_SEED, *NEW_SEEDS, UNSEEN_SEED):
        made[seed] = write_synthetic_slide(folder / f"assist-{specimen}-{w}x{h}-seed{seed}.tiff", seed=seed,
                                           width=w, height=h, mpp=MPP, specimen=specimen)
    return made


def parts(shape) -> list[Polygon]:
    if shape.is_empty:
        return []
    return [shape] if isinstance(shape, Polygon) else [g for g in getattr(shape, "geoms", []) if isinstance(g, Polygon)]


def draw_actions(region) -> int:
    """Vertices of ``region`` drawn with the polygon tool at `DRAW_TOLERANCE_UM`, plus a click to close each."""
    tolerance = DRAW_TOLERANCE_UM / MPP
    total = 0
    for poly in parts(region):
        simple = poly.simplify(tolerance, preserve_topology=True)
        rings = [simple.exterior, *simple.interiors]
        total += sum(max(3, len(r.coords) - 1) for r in rings) + len(rings)
    return total


def brush_strokes(draft, truth) -> int:
    """Strokes to brush ``draft`` into ``truth``: each part of their difference, one per `STROKE_UM` of length."""
    brush = BRUSH_UM / MPP
    stroke_area = brush * STROKE_UM / MPP
    strokes = 0
    for part in parts(draft.symmetric_difference(truth).buffer(0)):
        if part.area >= brush * brush / 4:
            strokes += max(1, math.ceil(part.area / stroke_area))
    return strokes


def iou(a, b) -> float:
    union = a.union(b).area
    return float(a.intersection(b).area / union) if union else 0.0


def manual_marks(truth: list[Polygon]) -> tuple[list[Annotation], dict]:
    regions = parts(unary_union(truth))
    counts = {"drawn": len(regions), "vertices_and_clicks": sum(draw_actions(r) for r in regions)}
    counts["actions"] = counts["vertices_and_clicks"]
    return [Annotation(r, "Tumour") for r in regions], counts


def assisted_marks(truth: list[Polygon], drafts: list[Annotation]) -> tuple[list[Annotation], dict, list[float]]:
    """The simulated doctor's decisions on ``drafts``; the marks, the counts, each accepted mark's IoU."""
    regions = parts(unary_union(truth))
    done = [False] * len(regions)
    marks, ious = [], []
    counts = dict(accepted=0, corrected=0, rejected=0, drawn=0, brush_strokes=0, decisions=0, vertices_and_clicks=0)
    for draft in drafts:
        touched = [i for i, r in enumerate(regions) if r.intersects(draft.geometry)
                   and r.intersection(draft.geometry).area > 0]
        if not touched:
            marks.append(reject_draft(draft))
            counts["rejected"] += 1
            counts["decisions"] += DECIDE_ACTIONS
            continue
        target = unary_union([regions[i] for i in touched])
        overlap = iou(draft.geometry, target)
        if overlap >= ACCEPT_IOU:
            kept = accept_draft(draft)
            counts["accepted"] += 1
        else:
            counts["brush_strokes"] += brush_strokes(draft.geometry, target)
            kept = accept_draft(draft, geometry=target)
            counts["corrected"] += 1
        counts["decisions"] += DECIDE_ACTIONS
        ious.append(iou(kept.geometry, target))
        marks.append(kept)
        for i in touched:
            done[i] = True
    for region, covered in zip(regions, done):
        if not covered:  # a tumour no draft touched: drawn as in the manual route
            marks.append(Annotation(region, "Tumour"))
            counts["drawn"] += 1
            counts["vertices_and_clicks"] += draw_actions(region)
    counts["actions"] = counts["brush_strokes"] + counts["decisions"] + counts["vertices_and_clicks"]
    return marks, counts, ious


def predict(slide, model):
    from core.inference.predict import predict_slide

    return predict_slide(slide.slide_path, model, device="cpu", slide_mpp=(MPP, MPP))


def test_auc(slide, model) -> float:
    grid = predict(slide, model)
    truth = truth_for_grid(grid, [Annotation(p, "Tumour") for p in slide.tumour_polygons], fully_annotated=True)
    keep = (truth >= 0) & ~np.isnan(grid.probs)
    auc, why = auc_score(truth[keep], grid.probs[keep])
    if auc is None:
        raise SystemExit(f"{slide.slide_path}: {why}")
    return auc


def threshold_of(model) -> float:
    from core.models.bundle import default_threshold, read_info, resolve_bundle

    return default_threshold(read_info(resolve_bundle(model)))[0]


def first_model(folder: Path, first, epochs: int) -> Path:
    from core.models.train import train
    from core.tiles.dataset import load_tiles, plan_dataset, sources_from_paths

    plan = plan_dataset(sources_from_paths([first.slide_path]), SPEC, split="random", ratio=0.8, seed=0)
    result = train(load_tiles(plan, "train"), load_tiles(plan, "test"), folder, epochs=epochs, batch_size=32,
                   lr=2e-3, device="cpu", early_stopping_patience=None, mpp=SPEC.mpp, onnx=False)
    return result.bundle


def route(name: str, work: Path, made: dict, start_model: Path, retrain_epochs: int) -> dict:
    from core.models.retrain import retrain_job
    from core.models.training_job import run_job

    project = Project.create(work / name, f"assist-{name}")
    first = made[FIRST_SEED]
    entry = project.add_slide(first.slide_path)
    project.save_annotations(entry.id, AnnotationStore([Annotation(p, "Tumour") for p in first.tumour_polygons]))
    project.update_settings(entry.id, fully_annotated=True)
    model, per_slide, all_ious, seconds = start_model, [], [], {"proposing": 0.0, "retraining": 0.0}
    for seed in NEW_SEEDS:
        slide = made[seed]
        if name == "manual":
            marks, counts = manual_marks(slide.tumour_polygons)
        else:
            t0 = time.perf_counter()
            drafts = propose_marks(predict(slide, model), threshold_of(model))
            seconds["proposing"] += time.perf_counter() - t0
            marks, counts, ious = assisted_marks(slide.tumour_polygons, drafts)
            all_ious += ious
            counts["drafts"] = len(drafts)
        entry = project.add_slide(slide.slide_path)
        project.save_annotations(entry.id, AnnotationStore(marks))
        project.update_settings(entry.id, fully_annotated=True)  # every tumour region is marked now
        t0 = time.perf_counter()
        result = run_job(retrain_job(project, model, epochs=retrain_epochs, device="cpu"), lambda _r: None,
                         lambda: False)
        seconds["retraining"] += time.perf_counter() - t0
        model = result.bundle
        per_slide.append(dict(counts, seed=seed))
    total = {k: sum(s[k] for s in per_slide) for k in per_slide[0] if k != "seed"}
    out = {"actions": total["actions"], "totals": total, "per_slide": per_slide,
           "final_auc": round(test_auc(made[UNSEEN_SEED], model), 4), "seconds": {k: round(v, 1) for k, v in
                                                                                 seconds.items()}}
    if name != "manual":
        out["accepted_iou_min"] = round(min(all_ious), 4) if all_ious else None
        out["accepted_marks"] = len(all_ious)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="12288x9216", help="each synthetic slide's WxH at 0.5 µm/px")
    parser.add_argument("--specimen", choices=("resection", "biopsy"), default="resection",
                        help="resection: larger pieces of tissue holding several tumour regions")
    parser.add_argument("--first-epochs", type=int, default=12, help="epochs of the model trained on one slide")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each retraining")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    start = time.perf_counter()
    made = slides(size, args.specimen)
    with tempfile.TemporaryDirectory(prefix="biopsia-assist-") as tmp:
        work = Path(tmp)
        model = first_model(work / "first", made[FIRST_SEED], args.first_epochs)
        initial_auc = test_auc(made[UNSEEN_SEED], model)
        manual = route("manual", work, made, model, args.epochs)
        assisted = route("assisted", work, made, model, args.epochs)
    ratio = assisted["actions"] / manual["actions"]
    auc_gap = assisted["final_auc"] - manual["final_auc"]
    iou_min = assisted.get("accepted_iou_min")
    print(json.dumps({
        "slides": {"size": list(size), "specimen": args.specimen, "mpp": MPP, "first": FIRST_SEED, "new": list(NEW_SEEDS),
                   "unseen": UNSEEN_SEED, "tile": [SPEC.tile_px, SPEC.mpp]},
        "initial_auc": round(initial_auc, 4),
        "manual": manual, "assisted": assisted,
        "actions_ratio": round(ratio, 3), "auc_difference": round(auc_gap, 4),
        "goals": {"actions_ratio_at_most_one_third": ratio <= 1 / 3, "auc_within_0.01": abs(auc_gap) <= 0.01,
                  "accepted_iou_at_least_0.8": iou_min is None or iou_min >= ACCEPT_IOU},
        "seconds": round(time.perf_counter() - start, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
