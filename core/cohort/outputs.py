"""One slide's prediction folder, as ``biopsia predict`` writes it: grid, tile table, heatmap, overview, overlay.

The one-process command and the cohort's workers both call `predict_to_folder`, so a slide's folder is the
same file for file whichever ran it. The folder is written as one unit (`core.staging.staged_folder`): a
failed, cancelled or killed run leaves the earlier folder, or none, never a part of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError, Cancelled
from core.inference.colours import DEFAULT_COLORMAP
from core.staging import staged_folder

#: The probability grid in a slide's output folder.
GRID_FILE = "grid.npz"


@dataclass(frozen=True)
class PredictOptions:
    """How ``predict`` runs and writes one slide; small and picklable, so it travels to cluster workers.

    ``slide_mpp`` is the µm/px given on the command line (it wins over the file's and the stored one's).
    """

    threshold: float
    device: str = "auto"
    engine: str = "mxnet"
    precision: str = "fp32"
    stride: int | None = None
    batch: int = 64
    colormap: str = DEFAULT_COLORMAP
    tiff: bool = True
    slide_mpp: tuple[float, float] | None = None


def mpp_hint(slide) -> str:
    """The advice for a slide that states no µm/px."""
    return (f"{slide}: the image does not record its micrometres per pixel (plain JPEG and PNG never do); "
            "pass --slide-mpp X, e.g. --slide-mpp 0.5 for a 20x scan")


def predict_to_folder(slide, folder, model, options: PredictOptions,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None):
    """Predict one slide and write its outputs into ``folder`` as one unit (all of them, or none).

    Parameters
    ----------
    slide : path-like
    folder : path-like
        The slide's output folder; an earlier run's is replaced only once every file of this one is written.
    model : path-like or core.inference.predict.CheckedModel
    options : PredictOptions
    progress, should_stop : callable, optional
        As for `core.inference.predict.predict_slide`.

    Returns
    -------
    core.inference.predict.ProbabilityGrid

    Raises
    ------
    BiopsiaError
        An unreadable slide, one without µm/px, or a model that does not fit it.
    Cancelled
        ``should_stop`` answered true; nothing was written.
    OSError
        The folder cannot be written; nothing of this run is kept there.
    """
    import cv2

    from core.inference.heatmap import blended_overview, heatmap_image, tiles_csv, write_overlay_tiff
    from core.inference.predict import predict_slide
    from core.project.mpp import resolve_file_mpp
    from core.slide import open_slide

    slide = Path(slide)
    with open_slide(slide) as reader:
        mpp = tuple(options.slide_mpp) if options.slide_mpp else resolve_file_mpp(slide, reader.mpp).mpp
        if mpp is None:
            raise BiopsiaError(mpp_hint(slide))
        grid = predict_slide(reader, model, device=options.device, stride=options.stride,
                             batch_size=options.batch, slide_mpp=mpp, progress=progress, should_stop=should_stop,
                             engine=options.engine, precision=options.precision)
        if not grid.complete:
            raise Cancelled(f"{slide}: prediction cancelled; nothing was written")
        thumb = reader.get_thumbnail((2048, 2048))
    if should_stop is not None and should_stop():  # a stop asked for during the last batch: still nothing
        raise Cancelled(f"{slide}: prediction cancelled; nothing was written")
    with staged_folder(folder, replace=True) as staging:
        grid.save(staging / GRID_FILE)
        atomic_write_bytes(staging / "tiles.csv", tiles_csv(grid, options.threshold).encode("utf-8"))
        heat = heatmap_image(grid, thumb.shape[1], thumb.shape[0], options.colormap)
        write_png(staging / "heatmap.png", cv2.cvtColor(heat, cv2.COLOR_RGBA2BGRA))
        overview = blended_overview(thumb, grid, 0.5, options.threshold, options.colormap)
        write_png(staging / "overview.png", cv2.cvtColor(overview, cv2.COLOR_RGB2BGR))
        if options.tiff:
            write_overlay_tiff(grid, staging / "overlay.tif", mpp)
    return grid


def write_png(path: Path, image: np.ndarray) -> None:
    """``image`` (BGR or BGRA) as a PNG file, written atomically."""
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise BiopsiaError(f"{path}: could not encode the image")
    atomic_write_bytes(path, data.tobytes())


def unique_names(paths: list[Path]) -> list[str]:
    """Output folder names for ``paths``: their stems, numbered from 2 where two slides share one."""
    names, taken = [], set()
    for path in paths:
        name, n = Path(path).stem, 2
        while name in taken:
            name, n = f"{Path(path).stem}-{n}", n + 1
        taken.add(name)
        names.append(name)
    return names
