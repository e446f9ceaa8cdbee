"""An HTML report of a model against the doctors' marks: per slide its overview with the heatmap, its table
in the study's layout and its metrics; then the slides summed. One self-contained file (images embedded),
to mail or archive.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError
from core.evaluation.compare import compare_project
from core.inference.heatmap import blended_overview
from core.models.thresholds import format_threshold
from core.slide import open_slide

METRICS = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"),
           ("accuracy", "Accuracy"), ("f1", "F1"), ("auc", "AUC"))
IMAGE_SIDE = 900  # longest side of embedded overviews, in pixels

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #263238; margin: 2em; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #cfd8dc; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #b0bec5; padding: 3px 10px; }
th { background: #eceff1; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { background: #e8f5e9; } td.bad { background: #ffebee; }
.slide { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.slide img { max-width: 560px; border: 1px solid #cfd8dc; }
.note { color: #607d8b; font-size: 0.9em; }
"""


@dataclass
class ReportSlide:
    """One slide of a report: its row from `core.evaluation.compare.summarise` and an overview picture (RGB) if any."""

    row: dict
    overview: np.ndarray | None = None


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _image_tag(rgb: np.ndarray, alt: str) -> str:
    scale = IMAGE_SIDE / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}">'


def _confusion_table(row: dict) -> str:
    tn, fp, fn, tp = row["tn"], row["fp"], row["fn"], row["tp"]
    return (
        "<table><tr><th></th><th></th><th colspan=2>True diagnosis</th><th></th></tr>"
        "<tr><th></th><th></th><th>Negative</th><th>Positive</th><th>Total</th></tr>"
        f"<tr><th rowspan=2>Screening test</th><th>Negative</th><td class='num ok'>{tn}</td>"
        f"<td class='num bad'>{fn}</td><td class=num>{tn + fn}</td></tr>"
        f"<tr><th>Positive</th><td class='num bad'>{fp}</td><td class='num ok'>{tp}</td><td class=num>{fp + tp}</td></tr>"
        f"<tr><th></th><th>Total</th><td class=num>{tn + fp}</td><td class=num>{fn + tp}</td>"
        f"<td class=num>{tn + fp + fn + tp}</td></tr></table>")


def _metrics_table(row: dict) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in METRICS)
    cells = "".join(f"<td class=num>{_fmt(row.get(key))}</td>" for key, _ in METRICS)
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"


def report_html(slides: list[ReportSlide], total: dict | None, threshold: float, model: dict | None = None,
                title: str = "Network against the doctors' marks") -> str:
    """The report as HTML text."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model_text = ""
    if model:
        model_text = (f"Model <b>{html.escape(str(model.get('name', '?')))}</b> ({html.escape(str(model.get('architecture', '')))}, "
                      f"{model.get('tile_px', '?')} px tiles at {model.get('mpp', '?')} µm/px, weights "
                      f"{html.escape(str(model.get('sha256', ''))[:12])}). ")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{model_text}Tiles within the tissue, called tumour at probability ≥ {format_threshold(threshold)}; truth from the "
             f"doctors' marks (ambiguous and excluded tiles left out). Made by Biopsia on {created}.</p>"]
    if total:
        parts.append(f"<h2>All slides ({len(slides)}), summed</h2>{_confusion_table(total)}{_metrics_table(total)}")
        rows = "".join(
            f"<tr><td>{html.escape(s.row['slide'])}</td><td class=num>{s.row['n']}</td>"
            + "".join(f"<td class=num>{_fmt(s.row.get(k))}</td>" for k, _ in METRICS) + "</tr>" for s in slides)
        head = "".join(f"<th>{label}</th>" for _, label in METRICS)
        parts.append(f"<table><tr><th>Slide</th><th>Tiles</th>{head}</tr>{rows}</table>")
    for s in slides:
        regions = s.row.get("regions") or []
        fp = sum(r["tiles"] for r in regions if r["kind"] == "false positive")
        fn = sum(r["tiles"] for r in regions if r["kind"] == "false negative")
        image = _image_tag(s.overview, s.row["slide"]) if s.overview is not None else \
            "<p class=note>(no overview image)</p>"
        parts.append(f"<h2>{html.escape(s.row['slide'])}</h2><div class=slide>{image}<div>"
                     f"{_confusion_table(s.row)}{_metrics_table(s.row)}"
                     f"<p class=note>{len(regions)} regions of disagreement: {fp} false-positive and {fn} "
                     f"false-negative tiles.</p></div></div>")
    parts.append("<p class=note>Heatmap: viridis, blended at 50 %; tiles at or above the threshold outlined "
                 "in white.</p></body></html>")
    return "".join(parts)


def write_report(path, slides: list[ReportSlide], total: dict | None, threshold: float, model: dict | None = None) -> Path:
    """Write `report_html` to ``path`` atomically."""
    path = Path(path)
    atomic_write_bytes(path, report_html(slides, total, threshold, model).encode("utf-8"))
    return path


def write_project_report(project, path, threshold: float = 0.5, open_marks: dict | None = None) -> Path:
    """The report for every slide of a project that has a saved prediction (overviews from the slides).

    Raises
    ------
    BiopsiaError
        When no slide has a saved prediction.
    """
    summary, compared = compare_project(project, threshold, open_marks)
    if not compared:
        raise BiopsiaError(f"{project.folder}: no slide of the project has a saved prediction yet")
    slides = []
    for row, (entry, grid, _) in zip(summary["slides"], compared):
        try:
            with open_slide(entry.path) as reader:
                overview = blended_overview(reader.get_thumbnail((1024, 1024)), grid, 0.5, threshold)
        except BiopsiaError:
            overview = None  # the slide moved or is unreadable: the report still has its numbers
        slides.append(ReportSlide(row, overview))
    models = [grid.model for _, grid, _ in compared]
    same = all(m.get("sha256") == models[0].get("sha256") for m in models)
    return write_report(path, slides, summary["total"], threshold, models[0] if same else None)
