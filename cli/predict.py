"""The command-line side of prediction: ``predict`` (batches of slides) and ``evaluate`` (against marks).

`add_parsers` adds the subcommands to ``main.py``'s parser; `run` carries one out. Progress goes to
stderr, results to stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cli import options as opt
from core.errors import BiopsiaError

GRID_FILE = "grid.npz"


def add_parsers(sub) -> None:
    from core.inference.heatmap import COLORMAPS

    p = sub.add_parser("predict", help="run a model over whole slides: probability grid, heatmaps, overlay")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("--model", required=True, help="model folder (from 'biopsia train' or the training panel)")
    p.add_argument("--out", required=True, help="folder; each slide gets OUT/<slide name>/")
    p.add_argument("--device", default="auto", help="auto (GPU when MXNet finds one), cpu or gpu:0")
    p.add_argument("--threshold", type=opt.fraction, default=0.5,
                   help="tumour probability called positive (default 0.5)")
    p.add_argument("--stride", type=opt.positive, help="level-0 pixels between tiles (default: the tile size; smaller overlaps)")
    p.add_argument("--batch", type=opt.positive, default=64)
    p.add_argument("--colormap", default="viridis", choices=COLORMAPS, help="viridis (default), magma or cividis")
    p.add_argument("--no-tiff", action="store_true", help="skip the full-size pyramidal TIFF overlay")

    p = sub.add_parser("evaluate", help="confusion matrix and metrics of predictions against the doctors' marks")
    p.add_argument("folder", help="output folder of 'biopsia predict'")
    p.add_argument("--annotations", nargs="+", metavar="PATH",
                   help="mark files (matched to slides by file name), folders of them, or project folders; "
                        "default: the file beside each slide, else the default project")
    p.add_argument("--threshold", type=opt.fraction, default=0.5)
    p.add_argument("--partly-annotated", action="store_true",
                   help="unmarked tissue is unknown, not non-tumour (only Benign marks give negatives)")
    p.add_argument("--csv", help="also write the per-slide rows and the total as CSV")
    p.add_argument("--html", help="also write a report: per slide its overview with the heatmap, table and "
                                  "metrics, then the total (one self-contained HTML file)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args, progress_bar) -> int:
    return {"predict": _predict, "evaluate": _evaluate}[args.command](args, progress_bar)


def _unique_names(paths: list[Path]) -> list[str]:
    names, taken = [], set()
    for path in paths:
        name, n = path.stem, 2
        while name in taken:
            name, n = f"{path.stem}-{n}", n + 1
        taken.add(name)
        names.append(name)
    return names


def _predict(args, progress_bar) -> int:
    from core.models.bundle import resolve_bundle
    from core.models.engine import describe_device, engine, parse_device

    model = resolve_bundle(args.model)
    device = engine().run(lambda: describe_device(parse_device(args.device)))
    print(f"predicting with {model} on {device}", file=sys.stderr)
    out_root = Path(args.out)
    slides = [Path(s) for s in args.slides]
    failed = 0
    for slide, name in zip(slides, _unique_names(slides)):
        folder = out_root / name
        try:
            grid = _predict_one(slide, folder, model, args, progress_bar(name))
        except BiopsiaError as err:  # one bad slide does not stop the batch
            print(f"biopsia: error: {err}", file=sys.stderr)
            failed += 1
            continue
        except OSError as err:  # a full disk, a folder that cannot be written: nothing of this run is kept
            detail = f"{Path(err.filename).name}: {err.strerror or err}" if err.filename else (err.strerror or err)
            print(f"biopsia: error: {slide}: cannot write its results to {folder} ({detail}); nothing of this "
                  "run was kept there", file=sys.stderr)
            failed += 1
            continue
        n = int(grid.done.sum())
        called = int(np.sum(grid.probs[grid.done] >= args.threshold))
        print(f"{folder}: {n} tiles in {grid.seconds:.1f} s ({n / max(grid.seconds, 1e-6):.0f} tiles/s); "
              f"{called} at or above {args.threshold:g} ({called / max(n, 1):.1%})")
    return 1 if failed else 0


def _predict_one(slide: Path, folder: Path, model: Path, args, progress):
    """Predict one slide and write its outputs into ``folder`` as one unit (all of them, or none)."""
    import cv2

    from core.atomic import atomic_write_bytes
    from core.inference.heatmap import blended_overview, heatmap_image, tiles_csv, write_overlay_tiff
    from core.inference.predict import predict_slide
    from core.slide import open_slide
    from core.project.slide_settings import SlideSettingsStore
    from core.staging import staged_folder

    with open_slide(slide) as reader:
        mpp = SlideSettingsStore().get_mpp_override(slide) or reader.mpp
        grid = predict_slide(reader, model, device=args.device, stride=args.stride, batch_size=args.batch,
                             slide_mpp=mpp, progress=progress)
        thumb = reader.get_thumbnail((2048, 2048))
    # an earlier run's folder is replaced only once every file of this one is on the disk
    with staged_folder(folder, replace=True) as staging:
        grid.save(staging / GRID_FILE)
        atomic_write_bytes(staging / "tiles.csv", tiles_csv(grid, args.threshold).encode("utf-8"))
        heat = heatmap_image(grid, thumb.shape[1], thumb.shape[0], args.colormap)
        _write_png(staging / "heatmap.png", cv2.cvtColor(heat, cv2.COLOR_RGBA2BGRA))
        overview = blended_overview(thumb, grid, 0.5, args.threshold, args.colormap)
        _write_png(staging / "overview.png", cv2.cvtColor(overview, cv2.COLOR_RGB2BGR))
        if not args.no_tiff:
            write_overlay_tiff(grid, staging / "overlay.tif", mpp)
    return grid


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    from core.atomic import atomic_write_bytes

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise BiopsiaError(f"{path}: could not encode the image")
    atomic_write_bytes(path, data.tobytes())


def _grids(folder: Path) -> list[Path]:
    if (folder / GRID_FILE).is_file():
        return [folder / GRID_FILE]
    found = sorted(folder.glob(f"*/{GRID_FILE}"))
    if not found:
        raise BiopsiaError(f"{folder}: no predictions ({GRID_FILE} in it or its subfolders); run 'biopsia predict' first")
    return found


def _marks_for(slide: Path, given: list[Path] | None):
    """The marks of a slide and where they came from, or (None, reason)."""
    from core.annotations.formats import read_annotations
    from core.project.model import PROJECT_FILE, Project, default_project

    sidecars = (".geojson", ".json", ".xml")
    candidates: list[Path] = []
    for path in given or []:
        if path.is_dir() and (path / PROJECT_FILE).is_file():
            project = Project.open(path)
            entry = project.find_slide(slide)
            if entry is not None and project.annotations_path(entry.id).is_file():
                return list(project.load_annotations(entry.id)), str(project.annotations_path(entry.id)), entry
        elif path.is_dir():
            candidates += [path / f"{slide.stem}{s}" for s in sidecars]
        elif path.stem == slide.stem:
            candidates.append(path)
    if given is None:
        candidates = [slide.with_suffix(s) for s in sidecars]
    for candidate in candidates:
        if candidate.is_file() and candidate != slide:
            return list(read_annotations(candidate).annotations), str(candidate), None
    if given is None:
        project = default_project()
        entry = project.find_slide(slide)
        if entry is not None and project.annotations_path(entry.id).is_file():
            return list(project.load_annotations(entry.id)), str(project.annotations_path(entry.id)), entry
    return None, "no marks found"


def _evaluate(args, progress_bar) -> int:
    from core.atomic import atomic_write_bytes
    from core.evaluation.compare import compare, summarise, summary_csv, truth_for_grid
    from core.inference.predict import ProbabilityGrid

    given = [Path(p) for p in args.annotations] if args.annotations else None
    comparisons, folders, models = [], [], []
    for path in _grids(Path(args.folder)):
        grid = ProbabilityGrid.load(path)
        found = _marks_for(Path(grid.slide), given)
        if found[0] is None:
            print(f"biopsia: warning: {grid.slide}: {found[1]}; left out", file=sys.stderr)
            continue
        marks = found[0]
        entry = found[2] if len(found) > 2 else None
        full = not args.partly_annotated
        if entry is not None and not args.partly_annotated:
            full = bool(entry.settings.get("fully_annotated", True))
        truth = truth_for_grid(grid, marks, fully_annotated=full)
        comparisons.append(compare(grid, truth, args.threshold, name=path.parent.name))
        folders.append(path.parent)
        models.append(grid.model)
    if not comparisons:
        raise BiopsiaError(f"{args.folder}: no prediction has marks to compare with; give --annotations")
    summary = summarise(comparisons, args.threshold)
    if args.csv:
        atomic_write_bytes(Path(args.csv), summary_csv(summary).encode("utf-8"))
    if args.html:
        _write_html(Path(args.html), summary, folders, models, args.threshold)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for row in summary["slides"]:
        print(f"{row['slide']}: {row['n']} tiles  sensitivity {_fmt(row['sensitivity'])}  specificity "
              f"{_fmt(row['specificity'])}  AUC {_fmt(row['auc'])}  regions of disagreement {len(row['regions'])}")
    total = summary["total"]
    print(f"\nAll slides (threshold {args.threshold:g}), tile level:")
    print(summary["table"])
    print(f"sensitivity {_fmt(total['sensitivity'])}  specificity {_fmt(total['specificity'])}  PPV {_fmt(total['ppv'])}"
          f"  NPV {_fmt(total['npv'])}  accuracy {_fmt(total['accuracy'])}  F1 {_fmt(total['f1'])}  "
          f"AUC {_fmt(total['auc'])}")
    return 0


def _write_html(path: Path, summary: dict, folders: list[Path], models: list[dict], threshold: float) -> None:
    import cv2

    from core.evaluation.report import ReportSlide, write_report

    slides = []
    for row, folder in zip(summary["slides"], folders):
        bgr = cv2.imread(str(folder / "overview.png"), cv2.IMREAD_COLOR)
        slides.append(ReportSlide(row, None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    same_model = models and all(m.get("sha256") == models[0].get("sha256") for m in models)
    write_report(path, slides, summary["total"], threshold, models[0] if same_model else None)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
