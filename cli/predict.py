"""The command-line side of prediction: ``predict`` (batches of slides) and ``evaluate`` (against marks).

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from cli import options as opt
from cli.cohort import add_cluster_options, predict_cohort, wants_cluster
from cli.progress import ProgressBar, error, metric, note, warn
from core.atomic import atomic_write_bytes
from core.cohort.outputs import GRID_FILE, PredictOptions, predict_to_folder, unique_names
from core.demo import DEMO_MODEL_STATEMENT, is_demo_model
from core.errors import BiopsiaError
from core.evaluation.compare import compare, summarise, summary_csv, threshold_for_grids, truth_for_grid
from core.evaluation.report import ReportSlide, slide_for_report, write_report
from core.inference.colours import COLORMAPS, DEFAULT_COLORMAP
from core.inference.engines import ENGINE_CHOICES
from core.inference.predict import ProbabilityGrid
from core.models.engine import describe_device, engine, parse_device
from core.models.thresholds import format_threshold
from core.project.marks import find_marks


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="run a model over whole slides: probability grid, heatmaps, overlay")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("--model", required=True, help="model folder (from 'biopsia train' or the training panel)")
    p.add_argument("--out", required=True, help="folder; each slide gets OUT/<slide name>/")
    p.add_argument("--device", default="auto", help="auto (GPU when MXNet finds one), cpu or gpu:0")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="mxnet, onnx (the model's model.onnx on ONNX Runtime; 'biopsia export-onnx' makes it), or "
                        "auto (default): MXNet, except on a GPU MXNet has no kernels for (Hopper and newer), "
                        "where ONNX Runtime's CUDA provider runs the model.onnx")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="fp32, or int8: the model's INT8 variant on MXNet oneDNN ('biopsia quantize' makes it)")
    p.add_argument("--threshold", type=opt.fraction,
                   help="tumour probability called positive (default: the model's, chosen on its validation "
                        "tiles; 0.5 if it records none)")
    p.add_argument("--stride", type=opt.positive, help="level-0 pixels between tiles (default: the tile size; smaller overlaps)")
    p.add_argument("--batch", type=opt.positive, default=64)
    p.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=COLORMAPS,
                   help=f"colours of the heatmap (default {DEFAULT_COLORMAP})")
    p.add_argument("--no-tiff", action="store_true", help="skip the full-size pyramidal TIFF overlay")
    opt.add_slide_mpp(p)
    add_cluster_options(p)

    p = sub.add_parser("evaluate", help="confusion matrix and metrics of predictions against the doctors' marks")
    p.add_argument("folder", help="output folder of 'biopsia predict'")
    p.add_argument("--annotations", nargs="+", metavar="PATH",
                   help="mark files (matched to slides by file name), folders of them, or project folders; "
                        "default: the file beside each slide, else the default project")
    p.add_argument("--threshold", type=opt.fraction,
                   help="tumour probability called positive (default: the threshold of the model that made "
                        "the predictions; 0.5 if it records none)")
    p.add_argument("--partly-annotated", action="store_true",
                   help="unmarked tissue is unknown, not non-tumour (only Benign marks give negatives)")
    p.add_argument("--csv", help="also write the per-slide rows and the total as CSV")
    p.add_argument("--html", help="also write a report: per slide its overview with the heatmap, table and "
                                  "metrics, then the total (one self-contained HTML file)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    # the grids are in level-0 pixels, so comparing needs no µm/px; taken (and stored) as the other commands do
    opt.add_slide_mpp(p)


def predict(args) -> int:
    # core.models.bundle imports MXNet (2 to 4 s to load): only here, so that `biopsia --help` stays quick
    from core.models.bundle import default_threshold, describe_threshold, read_info, resolve_bundle

    opt.state_slide_mpp(args.slides, args.slide_mpp)
    model = resolve_bundle(args.model)
    info = read_info(model, verify=False)
    given = args.threshold
    args.threshold = given if given is not None else default_threshold(info)[0]
    args.engine = resolve_engine(args, info)
    if wants_cluster(args):  # the workers choose their device; this process only plans and reports
        device = f"the cluster's workers (--device {args.device})"
    elif args.engine == "onnx":  # MXNet's device does not apply; the model line says which provider ran
        device = f"ONNX Runtime (--device {args.device})"
    else:
        device = engine().run(lambda: describe_device(parse_device(args.device)))
    note(f"predicting with {model} on {device}; {describe_threshold(info, given)}")
    if is_demo_model(model):
        note(DEMO_MODEL_STATEMENT)
    if wants_cluster(args):
        return predict_cohort(args, model, options_of(args))
    out_root = Path(args.out)
    slides = [Path(s) for s in args.slides]
    failed = 0
    for slide, name in zip(slides, unique_names(slides)):
        folder = out_root / name
        try:
            grid = predict_one(slide, folder, model, args, ProgressBar(name))
        except BiopsiaError as err:  # one bad slide does not stop the batch
            error(str(err))
            failed += 1
            continue
        except OSError as err:  # a full disk, a folder that cannot be written: nothing of this run is kept
            detail = f"{Path(err.filename).name}: {err.strerror or err}" if err.filename else (err.strerror or err)
            error(f"{slide}: cannot write its results to {folder} ({detail}); nothing of this run was kept there")
            failed += 1
            continue
        n = int(grid.done.sum())
        called = int(np.sum(grid.probs[grid.done] >= args.threshold))
        print(f"{folder}: {n} tiles in {grid.seconds:.1f} s ({n / max(grid.seconds, 1e-6):.0f} tiles/s); "
              f"{called} at or above {format_threshold(args.threshold)} ({called / max(n, 1):.1%})")
    return 1 if failed else 0


def resolve_engine(args, info) -> str:
    """``--engine auto`` made definite here, before any work, saying why when it is not MXNet.

    On a cluster it is decided by this machine's GPU (the workers are asked for the same engine).
    """
    from core.inference.engines import choose_engine

    chosen, why = choose_engine(args.engine, args.device, info, args.precision)
    if why:
        note(f"{why}; --engine mxnet to insist on MXNet, which then runs on the CPU")
    return chosen


def options_of(args) -> PredictOptions:
    """The options of ``predict``'s command line, as the one-process run and the cluster's workers take them."""
    return PredictOptions(threshold=args.threshold, device=args.device, engine=args.engine, precision=args.precision,
                          stride=args.stride, batch=args.batch, colormap=args.colormap, tiff=not args.no_tiff,
                          slide_mpp=args.slide_mpp)


def predict_one(slide: Path, folder: Path, model: Path, args, progress) -> ProbabilityGrid:
    """Predict one slide and write its outputs into ``folder`` as one unit (all of them, or none)."""
    return predict_to_folder(slide, folder, model, options_of(args), progress=progress)


def grid_files(folder: Path) -> list[Path]:
    """The probability grids in an output folder of ``predict`` (or the one grid of a slide's folder)."""
    if (folder / GRID_FILE).is_file():
        return [folder / GRID_FILE]
    found = sorted(folder.glob(f"*/{GRID_FILE}"))
    if not found:
        raise BiopsiaError(f"{folder}: no predictions ({GRID_FILE} in it or its subfolders); run 'biopsia predict' first")
    return found


def evaluate(args) -> int:
    given = [Path(p) for p in args.annotations] if args.annotations else None
    comparisons, folders, models, seen = [], [], [], []
    grids = [(path, ProbabilityGrid.load(path)) for path in grid_files(Path(args.folder))]
    opt.state_slide_mpp([grid.slide for _, grid in grids if grid.slide], args.slide_mpp)
    if args.threshold is None:
        args.threshold, source = threshold_for_grids([grid.model for _, grid in grids])
    else:
        source = f"threshold {format_threshold(args.threshold)} (given)"
    note(source)
    for path, grid in grids:
        found = find_marks(grid.slide, given)
        for warning in found.warnings:
            warn(warning)
        if not found.found:
            warn(f"{grid.slide}: {found.reason}; left out")
            continue
        full = found.fully_annotated and not args.partly_annotated
        truth = truth_for_grid(grid, found.marks, fully_annotated=full)
        comparisons.append(compare(grid, truth, args.threshold, name=path.parent.name))
        folders.append(path.parent)
        models.append(grid.model)
        seen.append((grid, found.marks))
    if not comparisons:
        raise BiopsiaError(f"{args.folder}: no prediction has marks to compare with; give --annotations")
    summary = summarise(comparisons, args.threshold)
    summary["threshold_source"] = source
    if args.csv:
        atomic_write_bytes(Path(args.csv), summary_csv(summary).encode("utf-8"))
    if args.html:
        write_html(Path(args.html), summary, folders, models, args.threshold, seen)
        note(f"report written to {Path(args.html).absolute()}")
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for row in summary["slides"]:
        print(f"{row['slide']}: {row['n']} tiles  sensitivity {metric(row['sensitivity'])}  specificity "
              f"{metric(row['specificity'])}  AUC {metric(row['auc'])}  regions of disagreement {len(row['regions'])}")
    total = summary["total"]
    print(f"\nAll slides (threshold {format_threshold(args.threshold)}), tile level:")
    print(summary["table"])
    print(f"sensitivity {metric(total['sensitivity'])}  specificity {metric(total['specificity'])}  "
          f"PPV {metric(total['ppv'])}  NPV {metric(total['npv'])}  accuracy {metric(total['accuracy'])}  "
          f"F1 {metric(total['f1'])}  AUC {metric(total['auc'])}")
    return 0


def write_html(path: Path, summary: dict, folders: list[Path], models: list[dict], threshold: float,
               seen: list) -> None:
    """The evaluation report: each slide's overview (from the slide: heatmap, calls, the doctors' marks, a
    scale bar; else its output folder's overview.png) with its rows and cores, then the total."""
    slides = []
    for row, folder, (grid, marks) in zip(summary["slides"], folders, seen):
        part = slide_for_report(row, grid.slide, grid, marks, threshold) if grid.slide else ReportSlide(row)
        if part.overview is None:
            bgr = cv2.imread(str(folder / "overview.png"), cv2.IMREAD_COLOR)
            part.overview = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        slides.append(part)
    same_model = models and all(m.get("sha256") == models[0].get("sha256") for m in models)
    write_report(path, slides, summary["total"], threshold, models[0] if same_model else None)


COMMANDS = {"predict": predict, "evaluate": evaluate}
