"""An HTML report of a model against the doctors' marks, one self-contained file (images embedded) to mail or
archive: first the slides summed and one row per slide (each linked to its section), then per slide its
overview (heatmap, the network's calls outlined, the doctors' Tumour marks, a scale bar), its table in the
study's layout, its metrics and its cores (length, tumour length and percentage involved, from the marks and
from the network). A cohort of hundreds of slides reads from the table down.
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
COHORT_SLIDES, COHORT_IMAGE_SIDE = 50, 600  # a report of more slides embeds smaller overviews

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #263238; margin: 2em; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #cfd8dc; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #b0bec5; padding: 3px 10px; }
th { background: #eceff1; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { background: #e8f5e9; } td.bad { background: #ffebee; }
.slide { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.slide img { max-width: 560px; border: 1px solid #cfd8dc; }
.note { color: #607d8b; font-size: 0.9em; }
.legend { display: flex; align-items: center; gap: 0.6em; font-size: 0.9em; margin: 0.4em 0; flex-wrap: wrap; }
.bar { position: relative; width: 220px; height: 14px; border: 1px solid #90a4ae; }
.bar i { position: absolute; top: -4px; width: 2px; height: 22px; background: #000; }
.swatch { display: inline-block; width: 22px; height: 0; border-top: 3px solid; vertical-align: middle; }
a { color: #1565c0; }
"""
#: The doctors' Tumour marks on the overviews: a red no colour map here uses, drawn over the heatmap.
MARK_OUTLINE = (230, 20, 60)
CALL_OUTLINE = (255, 255, 255)


@dataclass
class ReportSlide:
    """One slide of a report: its row from `core.evaluation.compare.summarise`, an overview picture (RGB) if
    any (`report_overview`), and its cores (`core.evaluation.measure.CoreMeasure`) when measured."""

    row: dict
    overview: np.ndarray | None = None
    cores: list | None = None


def nice_length_um(span_um: float) -> float:
    """A round length (1, 2 or 5 x 10^k µm) near a fifth of ``span_um``, for a scale bar."""
    target = max(span_um / 5, 1e-6)
    power = 10 ** np.floor(np.log10(target))
    return float(min((m * power for m in (1, 2, 5, 10)), key=lambda v: abs(np.log(v / target))))


def _length_text(um: float) -> str:
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"


def report_overview(reader, grid, marks=(), threshold: float = 0.5, mpp=None, side: int = 1024,
                    cores=()) -> np.ndarray:
    """The slide's overview for the report: heatmap blended over the thumbnail, the network's calls outlined
    in white, the doctors' Tumour marks outlined in red, each core's number (``cores``: `CoreMeasure` s) and
    a scale bar when ``mpp`` is known."""
    from PIL import Image, ImageDraw, ImageFont

    from core.annotations.model import TUMOUR, is_polygonal

    thumb = reader.get_thumbnail((side, side))
    out = blended_overview(thumb, grid, 0.5, threshold)
    h, w = out.shape[:2]
    sx, sy = w / grid.slide_size[0], h / grid.slide_size[1]
    thick = max(2, round(max(w, h) / 400))
    for mark in marks:
        if mark.class_name != TUMOUR.name or not is_polygonal(mark.geometry):
            continue
        for poly in getattr(mark.geometry, "geoms", [mark.geometry]):
            for ring in (poly.exterior, *poly.interiors):
                pts = np.round(np.asarray(ring.coords)[:, :2] * (sx, sy)).astype(np.int32)
                cv2.polylines(out, [pts], True, MARK_OUTLINE, thick, cv2.LINE_AA)
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", max(12, max(w, h) // 60))
    except OSError:
        font = ImageFont.load_default()
    for core in cores:
        x0, y0 = core.bounds_l0[0] * sx, core.bounds_l0[1] * sy
        label = str(core.index)
        box = draw.textbbox((x0, y0), label, font=font)
        draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(255, 255, 255))
        draw.text((x0, y0), label, fill=(0, 0, 0), font=font)
    if mpp:
        um_per_px = float(np.mean(mpp)) / ((sx + sy) / 2)
        length = nice_length_um(w * um_per_px)
        bar = int(round(length / um_per_px))
        text = _length_text(length)
        tw, th = draw.textbbox((0, 0), text, font=font)[2:]
        x0, y0 = 10, h - 14 - th - 2 * thick - 10
        draw.rectangle([x0 - 6, y0 - 6, x0 + max(bar, tw) + 6, h - 8], fill=(255, 255, 255))
        draw.text((x0, y0), text, fill=(0, 0, 0), font=font)
        draw.rectangle([x0, h - 14 - 2 * thick, x0 + bar, h - 14], fill=(0, 0, 0))
    return np.asarray(image)


def _legend(threshold: float, cmap: str = "viridis") -> str:
    from core.inference.colours import colormap

    table = colormap(cmap)
    stops = ", ".join(f"rgb({r},{g},{b}) {i / 10 * 100:.0f}%" for i, (r, g, b) in
                      enumerate(table[np.linspace(0, 255, 11).astype(int)]))
    return (f"<div class=legend>tumour probability 0 <span class=bar style='background: linear-gradient(to right, "
            f"{stops})'><i style='left: calc({threshold * 100:.2f}% - 1px)'></i></span> 1 "
            f"(marker: the threshold {format_threshold(threshold)})"
            f"<span><span class=swatch style='border-color: rgb{CALL_OUTLINE}; background: #607d8b'></span> "
            "network's calls</span>"
            f"<span><span class=swatch style='border-color: rgb{MARK_OUTLINE}'></span> doctors' Tumour marks</span>"
            "</div>")


def _cores_table(cores: list) -> str:
    if not cores:
        return "<p class=note>No tissue cores found.</p>"
    net = any(c.network is not None for c in cores)
    head = ("<tr><th>Core</th><th>Length mm</th><th>Tumour mm (marks)</th><th>Involved (marks)</th>"
            + ("<th>Tumour mm (network)</th><th>Involved (network)</th>" if net else "") + "</tr>")
    rows = []
    for c in cores:
        cells = (f"<td class=num>{c.index}</td><td class=num>{c.length_mm:.2f}</td>"
                 f"<td class=num>{c.marks.tumour_length_mm:.2f}</td><td class=num>{c.marks.percent_involved:.0f} %</td>")
        if net and c.network is not None:
            cells += (f"<td class=num>{c.network.tumour_length_mm:.2f}</td>"
                      f"<td class=num>{c.network.percent_involved:.0f} %</td>")
        rows.append(f"<tr>{cells}</tr>")
    return (f"<table>{head}{''.join(rows)}</table><p class=note>Tumour length from the first to the last tumour "
            "along the core's centre line (ISUP 2019); involved: that length as a share of the core's.</p>")


def _anchor(index: int) -> str:
    return f"slide-{index + 1}"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _image_tag(rgb: np.ndarray, alt: str, side: int = IMAGE_SIDE) -> str:
    scale = side / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return ""
    return (f'<img alt="{html.escape(alt)}" loading="lazy" '
            f'src="data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}">')


def _confusion_table(row: dict) -> str:
    """The study's 2x2 table, counts with thousands separators as the window shows them."""
    tn, fp, fn, tp = row["tn"], row["fp"], row["fn"], row["tp"]
    return (
        "<table><tr><th></th><th></th><th colspan=2>True diagnosis</th><th></th></tr>"
        "<tr><th></th><th></th><th>Negative</th><th>Positive</th><th>Total</th></tr>"
        f"<tr><th rowspan=2>Screening test</th><th>Negative</th><td class='num ok'>{tn:,}</td>"
        f"<td class='num bad'>{fn:,}</td><td class=num>{tn + fn:,}</td></tr>"
        f"<tr><th>Positive</th><td class='num bad'>{fp:,}</td><td class='num ok'>{tp:,}</td>"
        f"<td class=num>{fp + tp:,}</td></tr>"
        f"<tr><th></th><th>Total</th><td class=num>{tn + fp:,}</td><td class=num>{fn + tp:,}</td>"
        f"<td class=num>{tn + fp + fn + tp:,}</td></tr></table>")


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
             f"<style>{_STYLE}</style></head><body><h1 id=top>{html.escape(title)}</h1>",
             f"<p>{model_text}Tiles within the tissue, called tumour at probability ≥ {format_threshold(threshold)}; truth from the "
             f"doctors' marks (ambiguous and excluded tiles left out). Made by Biopsia on {created}.</p>"]
    if total:
        parts.append(f"<h2>All slides ({len(slides)}), summed</h2>{_confusion_table(total)}{_metrics_table(total)}")
    head = "".join(f"<th>{label}</th>" for _, label in METRICS)
    rows = "".join(
        f"<tr><td><a href='#{_anchor(i)}'>{html.escape(s.row['slide'])}</a></td><td class=num>{s.row['n']:,}</td>"
        + "".join(f"<td class=num>{_fmt(s.row.get(k))}</td>" for k, _ in METRICS)
        + f"<td class=num>{_max_involved(s.cores, 'marks')}</td><td class=num>{_max_involved(s.cores, 'network')}</td>"
        + "</tr>" for i, s in enumerate(slides))
    parts.append(f"<h2>Slides</h2><table><tr><th>Slide</th><th>Tiles</th>{head}<th>Most involved core (marks)</th>"
                 f"<th>(network)</th></tr>{rows}</table>")
    parts.append(_legend(threshold))
    side = IMAGE_SIDE if len(slides) <= COHORT_SLIDES else COHORT_IMAGE_SIDE
    for i, s in enumerate(slides):
        regions = s.row.get("regions") or []
        fp = sum(r["tiles"] for r in regions if r["kind"] == "false positive")
        fn = sum(r["tiles"] for r in regions if r["kind"] == "false negative")
        image = _image_tag(s.overview, s.row["slide"], side) if s.overview is not None else \
            "<p class=note>(no overview image)</p>"
        cores = _cores_table(s.cores) if s.cores is not None else ""
        parts.append(f"<h2 id='{_anchor(i)}'>{html.escape(s.row['slide'])}</h2><div class=slide>{image}<div>"
                     f"{_confusion_table(s.row)}{_metrics_table(s.row)}"
                     f"<p class=note>{len(regions)} regions of disagreement: {fp} false-positive and {fn} "
                     f"false-negative tiles.</p>{cores}<p class=note><a href='#top'>back to the table</a></p>"
                     "</div></div>")
    parts.append("<p class=note>Heatmap: viridis, blended at 50 %; tiles at or above the threshold outlined "
                 "in white; the doctors' Tumour marks outlined in red.</p></body></html>")
    return "".join(parts)


def _max_involved(cores, source: str) -> str:
    values = [getattr(c, source).percent_involved for c in cores or () if getattr(c, source) is not None]
    return f"{max(values):.0f} %" if values else "–"


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
    open_marks = open_marks or {}
    slides = []
    for row, (entry, grid, _) in zip(summary["slides"], compared):
        marks = open_marks.get(entry.id)
        if marks is None:
            marks = project.load_annotations(entry.id).annotations()
        slides.append(slide_for_report(row, entry.path, grid, marks, threshold, entry))
    models = [grid.model for _, grid, _ in compared]
    same = all(m.get("sha256") == models[0].get("sha256") for m in models)
    return write_report(path, slides, summary["total"], threshold, models[0] if same else None)


def slide_for_report(row: dict, slide_path, grid, marks, threshold: float, entry=None) -> ReportSlide:
    """One slide's part of a report, read from the slide: its overview and its cores (None when unreadable)."""
    from core.evaluation.measure import measure_cores, tumour_of_grid, tumour_of_marks
    from core.project.mpp import resolve_file_mpp, resolve_mpp
    from core.tiles.tissue import detect_tissue

    try:
        with open_slide(slide_path) as reader:
            mpp = (resolve_mpp(slide_path, reader.mpp, entry) if entry is not None else
                   resolve_file_mpp(slide_path, reader.mpp)).mpp
            cores = None
            if mpp:
                tissue = detect_tissue(reader, slide_mpp=tuple(mpp))
                cores = measure_cores(tissue.to_polygons(), mpp, tumour_of_marks(marks),
                                      tumour_of_grid(grid, threshold))
            overview = report_overview(reader, grid, marks, threshold, mpp, cores=cores or ())
    except BiopsiaError:
        return ReportSlide(row, None, None)  # the slide moved or is unreadable: the report still has its numbers
    return ReportSlide(row, overview, cores)
