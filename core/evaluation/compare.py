"""The network against the doctors: tile-level comparison of a probability grid with a slide's marks.

Per slide: the truth of each grid tile from the marks (as the tile dataset labels them), the confusion
matrix in the study's layout, screening metrics, and the disagreement map with its regions (false
positives: the network says tumour where the doctors did not; false negatives: the reverse), largest first.
Across slides: the same, summed and per slide, as CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.inference.predict import ProbabilityGrid, load_latest_prediction
from core.metrics import BinaryMetrics
from core.models.thresholds import DEFAULT_THRESHOLD, format_threshold
from core.tiles.labels import LabelRules, label_tiles

#: Disagreement map values.
NOT_COMPARED, AGREE_NEGATIVE, AGREE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = -1, 0, 1, 2, 3


def truth_for_grid(grid: ProbabilityGrid, annotations, fully_annotated: bool = True,
                   rules: LabelRules | None = None) -> np.ndarray:
    """What the marks say of each grid tile: 1 tumour, 0 non-tumour, -1 unknown (ambiguous, excluded, unmarked).

    The labels are the tile dataset's (`core.tiles.labels.label_tiles`, the rules `core.tiles.grid.plan_tiles`
    uses) on the grid's tiles, from the marks alone: which tiles have tissue is the prediction's business
    (it leaves the others NaN).

    Parameters
    ----------
    grid : ProbabilityGrid
    annotations : iterable of Annotation
        The slide's marks in level-0 pixels.
    fully_annotated : bool
        Unmarked tissue is non-tumour (else only tissue inside Benign marks is).
    rules : LabelRules, optional
        Thresholds (default: the dataset's defaults).

    Returns
    -------
    ndarray of int8, (rows, cols)
    """
    rows, cols = grid.shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    l0_x = grid.origin[0] + xs.ravel() * grid.stride
    l0_y = grid.origin[1] + ys.ravel() * grid.stride
    labels = label_tiles(annotations, l0_x, l0_y, grid.tile_l0, grid.slide_size, fully_annotated,
                         rules or LabelRules())
    return labels.label.reshape(rows, cols)


@dataclass
class Region:
    """A connected group of disagreeing tiles."""

    kind: str  # "false positive" or "false negative"
    tiles: int
    bbox_l0: tuple[int, int, int, int]  # x, y, w, h
    centre_l0: tuple[float, float]
    mean_probability: float


@dataclass
class SlideComparison:
    """A slide's tile-level comparison at one threshold.

    Attributes
    ----------
    name : str
    metrics : BinaryMetrics
        Over tiles that have both a probability and a known truth.
    disagreement : ndarray of int8
        `NOT_COMPARED`, `AGREE_NEGATIVE`, `AGREE_POSITIVE`, `FALSE_POSITIVE` or `FALSE_NEGATIVE` per cell.
    regions : list of Region
        Disagreement regions, largest first.
    grid : ProbabilityGrid or None
        The grid compared (its geometry places the disagreement map on the slide).
    """

    name: str
    metrics: BinaryMetrics
    disagreement: np.ndarray
    regions: list[Region] = field(default_factory=list)
    grid: ProbabilityGrid | None = None

    def as_dict(self) -> dict:
        out = {"slide": self.name, **self.metrics.as_dict()}
        out["regions"] = [{"kind": r.kind, "tiles": r.tiles, "bbox_l0": list(r.bbox_l0),
                           "centre_l0": list(r.centre_l0), "mean_probability": r.mean_probability}
                          for r in self.regions]
        return out


def compare(grid: ProbabilityGrid, truth: np.ndarray, threshold: float = 0.5, name: str = "") -> SlideComparison:
    """Compare predicted tiles with the marks' truth (from `truth_for_grid`) at ``threshold``.

    Raises
    ------
    ValueError
        When ``truth`` does not have the grid's shape.
    """
    truth = np.asarray(truth)
    if truth.shape != grid.shape:
        raise ValueError(f"truth is {truth.shape} but the grid is {grid.shape}")
    probs = grid.probs.copy()  # one snapshot: the grid may still be filling in
    done = np.isfinite(probs)
    known = done & (truth >= 0)
    metrics = BinaryMetrics(truth[known], probs[known], threshold)
    called = np.zeros(grid.shape, bool)
    called[done] = probs[done] >= threshold
    disagreement = np.full(grid.shape, NOT_COMPARED, np.int8)
    disagreement[known & ~called & (truth == 0)] = AGREE_NEGATIVE
    disagreement[known & called & (truth == 1)] = AGREE_POSITIVE
    disagreement[known & called & (truth == 0)] = FALSE_POSITIVE
    disagreement[known & ~called & (truth == 1)] = FALSE_NEGATIVE
    regions = _regions(grid, probs, disagreement, FALSE_POSITIVE, "false positive") + \
        _regions(grid, probs, disagreement, FALSE_NEGATIVE, "false negative")
    regions.sort(key=lambda r: r.tiles, reverse=True)
    return SlideComparison(name or grid.slide, metrics, disagreement, regions, grid)


def _regions(grid: ProbabilityGrid, probs: np.ndarray, disagreement: np.ndarray, code: int,
             kind: str) -> list[Region]:
    mask = (disagreement == code).astype(np.uint8)
    if not mask.any():
        return []
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for k in range(1, count):
        x, y, w, h, n = (int(v) for v in stats[k])
        x0, y0, _, _ = grid.cell_rect(y, x)
        size = grid.stride
        cx, cy = centroids[k]
        out.append(Region(kind, n, (int(x0), int(y0), int(w * size), int(h * size)),
                          (float(grid.cell_rect(0, 0)[0] + (cx + 0.5) * size),
                           float(grid.cell_rect(0, 0)[1] + (cy + 0.5) * size)),
                          float(np.nanmean(probs[labels == k]))))
    return out


def summarise(comparisons: list[SlideComparison], threshold: float = 0.5) -> dict:
    """Per-slide rows and the sum over slides (tiles pooled), as plain values."""
    if not comparisons:
        return {"threshold": threshold, "slides": [], "total": None}
    labels = np.concatenate([c.metrics.labels for c in comparisons])
    probs = np.concatenate([c.metrics.probabilities for c in comparisons])
    total = BinaryMetrics(labels, probs, threshold)
    return {"threshold": threshold, "slides": [c.as_dict() for c in comparisons],
            "total": {"slide": "all slides", **total.as_dict()}, "table": total.confusion_table_text()}


def threshold_for_grids(models: list[dict]) -> tuple[float, str]:
    """The threshold to compare grids at when the user gives none, and a line saying where it came from.

    Each grid records the model that made it (`core.inference.predict.model_identity`): its threshold
    when the grid holds one, else the one in that model's ``model.json`` if the folder still holds the
    same weights (SHA-256), else none. One threshold from every grid's model is used; without one, or
    when the models disagree, 0.5, said so.

    Parameters
    ----------
    models : list of dict
        ``grid.model`` of each grid.

    Returns
    -------
    (threshold, text) : tuple
    """
    found = {}
    for model in models:
        value, source = _recorded_threshold(model)
        found.setdefault(value, source)
    if len(found) == 1 and None not in found:
        value, source = next(iter(found.items()))
        return value, source
    if len(found) > 1:
        values = ", ".join("none" if v is None else format_threshold(v) for v in found)
        return DEFAULT_THRESHOLD, (f"threshold 0.5: the predictions come from models with different thresholds "
                                   f"({values}); give --threshold to choose")
    return DEFAULT_THRESHOLD, ("threshold 0.5: the model of the predictions records none (the demo model, or "
                               "trained before Biopsia chose thresholds); give --threshold to choose")


def _recorded_threshold(model: dict) -> tuple[float | None, str]:
    """The threshold of the model a grid records, and where it was found (None when none is)."""
    name = model.get("name", "the model")
    if model.get("threshold") is not None and model.get("threshold_source", "model") == "model":
        return float(model["threshold"]), f"threshold {format_threshold(model['threshold'])} from {name} (recorded with the predictions)"
    folder = model.get("folder")
    if not folder or not Path(folder).is_dir():
        return None, ""
    from core.errors import ModelError
    from core.models.bundle import PARAMS_FILE, default_threshold, describe_threshold, read_info

    try:
        info = read_info(folder, verify=False)
    except ModelError:
        return None, ""
    recorded = info.files.get(PARAMS_FILE, {}).get("sha256")
    if model.get("sha256") and recorded != model["sha256"]:  # the folder holds another model now
        return None, ""
    value, source = default_threshold(info)
    return (value if source == "model" else None), describe_threshold(info)


CSV_COLUMNS = ("slide", "n", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1",
               "auc")


def summary_csv(summary: dict) -> str:
    """The per-slide rows and the total as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    rows = list(summary["slides"]) + ([summary["total"]] if summary.get("total") else [])
    for row in rows:
        writer.writerow(["" if row.get(k) is None else (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS])
    return out.getvalue()


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=1)


def compare_project(project, threshold: float = 0.5, open_marks: dict | None = None) -> tuple[dict, list]:
    """Every project slide that has a saved prediction against its marks.

    ``open_marks`` ({slide id: marks}) replaces the saved marks of slides being edited. Returns the
    `summarise` dict and, per compared slide, ``(entry, grid, comparison)``.
    """
    open_marks = open_marks or {}
    compared = []
    for entry in project.slides:
        found = load_latest_prediction(project, entry.id)
        if found is None:
            continue
        marks = open_marks.get(entry.id)
        if marks is None:
            marks = project.load_annotations(entry.id).annotations()
        grid = found[0]
        truth = truth_for_grid(grid, marks, fully_annotated=entry.settings.fully_annotated)
        compared.append((entry, grid, compare(grid, truth, threshold, name=entry.name)))
    return summarise([c for _, _, c in compared], threshold), compared
