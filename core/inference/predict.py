"""Whole-slide prediction: a model's tumour probability for every tissue tile, as a grid aligned to the slide.

Reading threads decode and batch tiles a few batches ahead while the model thread computes, so the
network never waits for the disk. Results arrive batch by batch (``partial``), the run stops between
batches when asked, and the finished grid is saved in the project so the slide shows it again on
reopening without recomputing.

Frames: grid cell ``(row, col)`` is the tile whose top-left corner is ``origin + (col, row) * stride``
in level-0 pixels; the tile is ``tile_l0`` level-0 pixels square and ``stride <= tile_l0`` (overlap).
The grid covers the whole slide: the last column and row are the edge tiles, shifted back to end at the
slide's edge (`core.tiles.edges`), and the cells drawn for them are clipped to the slide.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError, ModelError
from core.project.layout import PREDICTIONS_DIR
from core.slide import open_slide
from core.slide.base import SlideReader
from core.tiles.edges import shift_inside
from core.tiles.grid import BACKGROUND, LOW_TISSUE, PEN, TileSpec, plan_tiles, read_order, read_tiles
from core.tiles.tissue import detect_tissue

# core.models.bundle imports MXNet (4 s here): the window imports this module at start, so the functions
# that read or run a model import it when first called.

GRID_FORMAT = "biopsia-probability-grid"
#: 2: the grid has edge cells (last column and row, tiles shifted inside the slide); 1 (older) has none.
GRID_VERSION = 2
#: Tissue share a tile needs to be predicted (lower than for training: edges of tissue count).
PREDICT_TISSUE_MIN = 0.25
#: A slide may be at most this much coarser than the model's µm/px (tiles are never upsampled more).
MPP_TOLERANCE = 1.1


@dataclass
class ProbabilityGrid:
    """Tumour probabilities on a grid of tiles over a slide.

    Attributes
    ----------
    probs : ndarray of float32, (rows, cols)
        Tumour probability per tile; NaN where nothing was predicted (no tissue, or not yet).
    origin : (int, int)
        Level-0 x, y of cell (0, 0)'s top-left corner.
    stride : int
        Level-0 pixels between neighbouring cells.
    tile_l0 : int
        Tile side in level-0 pixels.
    tile_px, mpp : int, float
        The model's tile size in pixels and micrometres per pixel.
    slide_size : (int, int)
        Level-0 width and height of the slide.
    slide : str
        Path of the slide.
    model : dict
        Identity of the model (see `model_identity`).
    complete : bool
        False for a cancelled or partial run.
    predicted : ndarray of bool, (rows, cols)
        Cells that lie in tissue and are to be predicted (done or not).
    seconds : float
        Time the run took.

    Notes
    -----
    The cells form a regular grid (`cell_rect`, `cell_at`); the edge cells of the last column and row are
    drawn clipped to the slide, and their tiles (`tile_rect`) are shifted back inside it. Grids saved
    before edge cells existed (format 1) have none, and read the same.
    """

    probs: np.ndarray
    origin: tuple[int, int]
    stride: int
    tile_l0: int
    tile_px: int
    mpp: float
    slide_size: tuple[int, int]
    slide: str = ""
    model: dict = field(default_factory=dict)
    complete: bool = False
    predicted: np.ndarray | None = None
    seconds: float = 0.0

    def __post_init__(self):
        self.probs = np.asarray(self.probs, np.float32)
        if self.predicted is None:
            self.predicted = np.isfinite(self.probs)
        self.predicted = np.asarray(self.predicted, bool)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.probs.shape)

    @property
    def done(self) -> np.ndarray:
        """Cells that have a probability."""
        return np.isfinite(self.probs)

    def tile_rect(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Level-0 ``(x, y, w, h)`` of the tile a cell's probability was read from (edge tiles shifted inside)."""
        x = int(shift_inside(self.origin[0] + col * self.stride, self.tile_l0, self.slide_size[0]))
        y = int(shift_inside(self.origin[1] + row * self.stride, self.tile_l0, self.slide_size[1]))
        return (x, y, self.tile_l0, self.tile_l0)

    def tile_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 top-left corners of every cell's tile, row-major (int64 arrays, as `tile_rect`)."""
        rows, cols = self.shape
        xs = shift_inside(self.origin[0] + np.arange(cols, dtype=np.int64) * self.stride, self.tile_l0,
                          self.slide_size[0])
        ys = shift_inside(self.origin[1] + np.arange(rows, dtype=np.int64) * self.stride, self.tile_l0,
                          self.slide_size[1])
        return np.tile(xs, rows), np.repeat(ys, cols)

    def cell_rect(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Level-0 ``(x, y, w, h)`` a cell stands for when drawn: a stride square centred on its regular tile
        position, clipped to the slide (so the last column and row may be narrower)."""
        offset = (self.tile_l0 - self.stride) / 2
        x = self.origin[0] + col * self.stride + offset
        y = self.origin[1] + row * self.stride + offset
        return (x, y, float(max(0.0, min(self.stride, self.slide_size[0] - x))),
                float(max(0.0, min(self.stride, self.slide_size[1] - y))))

    def cell_at(self, l0_x: float, l0_y: float) -> tuple[int, int] | None:
        """The cell drawn at a level-0 point, or None outside the grid or the slide."""
        if not (0 <= l0_x < self.slide_size[0] and 0 <= l0_y < self.slide_size[1]):
            return None
        offset = (self.tile_l0 - self.stride) / 2
        col = int(np.floor((l0_x - self.origin[0] - offset) / self.stride))
        row = int(np.floor((l0_y - self.origin[1] - offset) / self.stride))
        rows, cols = self.shape
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None

    # -- files ---------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the grid as ``.npz`` (arrays plus a JSON header), atomically."""
        meta = {"format": GRID_FORMAT, "format_version": GRID_VERSION, "edges": "shifted",
                "origin": list(self.origin), "stride": self.stride, "tile_l0": self.tile_l0,
                "tile_px": self.tile_px, "mpp": self.mpp,
                "slide_size": list(self.slide_size), "slide": self.slide, "model": self.model,
                "complete": self.complete, "seconds": self.seconds}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, probs=self.probs, predicted=self.predicted,
                            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path) -> "ProbabilityGrid":
        """Read a grid written by `save` (format 1, without edge cells, or 2).

        Raises
        ------
        BiopsiaError
            Missing, damaged, or not a Biopsia probability grid (the message names the file).
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode("utf-8"))
                probs, predicted = data["probs"], data["predicted"]
        except FileNotFoundError:
            raise BiopsiaError(f"{path}: prediction file is missing") from None
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as err:
            raise BiopsiaError(f"{path}: prediction file is damaged ({err}); run the prediction again") from err
        if meta.get("format") != GRID_FORMAT or not isinstance(meta.get("format_version"), int):
            raise BiopsiaError(f"{path}: not a Biopsia probability grid")
        if meta["format_version"] > GRID_VERSION:
            raise BiopsiaError(f"{path}: written by a newer Biopsia (format {meta['format_version']}); update Biopsia")
        if probs.ndim != 2 or probs.shape != predicted.shape:
            raise BiopsiaError(f"{path}: prediction arrays have inconsistent shapes")
        return cls(probs=probs, origin=tuple(meta["origin"]), stride=int(meta["stride"]),
                   tile_l0=int(meta["tile_l0"]), tile_px=int(meta["tile_px"]), mpp=float(meta["mpp"]),
                   slide_size=tuple(meta["slide_size"]), slide=meta.get("slide", ""), model=meta.get("model", {}),
                   complete=bool(meta.get("complete")), predicted=predicted, seconds=float(meta.get("seconds", 0)))


@dataclass
class PartialResult:
    """One batch of results: cells ``rows[i], cols[i]`` got probability ``probs[i]``; ``done`` of ``total``."""

    rows: np.ndarray
    cols: np.ndarray
    probs: np.ndarray
    done: int
    total: int
    tiles_per_s: float


def model_identity(model_dir, info=None) -> dict:
    """Name, folder, architecture, tile size, µm/px, creation time and a hash of the weights of a bundle.

    ``info`` is the bundle's `core.models.bundle.ModelInfo` when it was read already.
    """
    from core.models.bundle import PARAMS_FILE, read_info
    from core.models.folder import model_name

    folder = Path(model_dir)
    info = read_info(folder) if info is None else info
    digest = hashlib.sha256()
    with open(folder / PARAMS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"name": model_name(folder), "folder": str(folder.resolve()), "architecture": info.architecture,
            "classes": list(info.classes), "tile_px": info.tile_px, "mpp": info.mpp, "created": info.created,
            "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class CheckedModel:
    """A model bundle resolved, read and checked against a slide's µm/px (see `check_model`)."""

    folder: Path
    info: object  # core.models.bundle.ModelInfo
    slide_mpp: tuple[float, float]


def check_model(model_dir, slide_mpp, slide_name: str) -> CheckedModel:
    """Resolve a bundle (or a training folder holding ``best/``), read it and check it fits the slide.

    Parameters
    ----------
    model_dir : path-like
    slide_mpp : (float, float) or None
        The slide's µm/px in use.
    slide_name : str
        Named in the error messages.

    Returns
    -------
    CheckedModel
        `predict_slide` takes it instead of a folder and does not check again.

    Raises
    ------
    ModelError
        An unreadable bundle, or a model that does not fit the slide (see `check_model_for_slide`).
    """
    from core.models.bundle import read_info, resolve_bundle

    folder = resolve_bundle(model_dir)
    info = read_info(folder)
    check_model_for_slide(info, slide_mpp, slide_name, folder)
    return CheckedModel(folder, info, tuple(slide_mpp))


def check_model_for_slide(info, slide_mpp, slide_name: str, model_dir) -> None:
    """Raise ModelError when a model cannot be applied to a slide (no µm/px, too coarse, not two classes)."""
    if info.mpp is None:
        raise ModelError(f"{model_dir}: the model does not record the µm/px of its tiles, so it cannot be "
                         "applied at the right scale; train it again with Biopsia")
    if len(info.classes) != 2:
        raise ModelError(f"{model_dir}: heatmaps need a tumour / non-tumour model, this one has classes "
                         f"{info.classes}")
    if not slide_mpp:
        raise ModelError(f"{slide_name}: the slide does not say its µm/px, so the model's "
                         f"{info.mpp:g} µm/px tiles cannot be cut from it (in the window: Slide ▸ Set resolution)")
    mean = (slide_mpp[0] + slide_mpp[1]) / 2
    if mean > info.mpp * MPP_TOLERANCE:
        raise ModelError(f"{slide_name}: the slide has {mean:.3g} µm/px but the model ({model_dir}) was trained on "
                         f"{info.mpp:g} µm/px tiles, finer than this scan; use a model trained at "
                         f"{mean:.3g} µm/px or coarser")


def predict_slide(slide, model_dir, device: str = "auto", stride: int | None = None, batch_size: int = 64,
                  workers: int | None = None, tissue=None, slide_mpp=None,
                  tissue_min: float = PREDICT_TISSUE_MIN,
                  progress: Callable[[int, int], None] | None = None,
                  partial: Callable[[PartialResult], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  started: Callable[[ProbabilityGrid], None] | None = None,
                  engine: str = "mxnet", precision: str = "fp32") -> ProbabilityGrid:
    """Predict every tissue tile of a slide with a model bundle.

    Parameters
    ----------
    slide : path-like or SlideReader
        An open reader is used as it is (and left open); a path is opened and closed.
    model_dir : path-like or CheckedModel
        A model bundle (or a training folder holding ``best/``), or one `check_model` checked for this
        slide's µm/px (it is not checked again).
    device : str
        ``"auto"``, ``"cpu"`` or ``"gpu:N"``.
    stride : int, optional
        Level-0 pixels between tiles; default the tile size (no overlap). Smaller overlaps the tiles.
    batch_size : int
    workers : int, optional
        Reading threads (default: twice the cores, at most 8).
    tissue : TissueMask, optional
        Reused when given (e.g. cached by the window).
    slide_mpp : (float, float), optional
        A µm/px entered by the user, which wins over the file's.
    tissue_min : float
        Tissue share a tile needs to be predicted.
    progress : callable, optional
        ``progress(done, total)`` after each batch.
    partial : callable, optional
        Called with a `PartialResult` after each batch (on the model thread).
    should_stop : callable, optional
        Checked between batches; when true the run ends and the grid is returned with ``complete`` False.
    started : callable, optional
        Called once before the first batch (on the calling thread) with a copy of the empty grid: its
        geometry and the ``predicted`` mask, for drawing cells as they come.
    engine : str
        ``"mxnet"`` (default) or ``"onnx"`` (the bundle's ``model.onnx`` on ONNX Runtime;
        `core.inference.engines`). Tiles are read and preprocessed the same way for every engine.
    precision : str
        ``"fp32"`` (default) or ``"int8"`` (the bundle's INT8 variant, MXNet only).

    Returns
    -------
    ProbabilityGrid

    Raises
    ------
    ModelError
        An unreadable bundle, a model that does not fit the slide, or one without the engine's variant.
    BiopsiaError
        An unreadable slide.
    """
    from core.inference.engines import check_engine

    owned = not isinstance(slide, SlideReader)
    reader = open_slide(slide) if owned else slide
    t_start = time.perf_counter()
    try:
        mpp = tuple(slide_mpp) if slide_mpp else reader.mpp
        checked = model_dir if isinstance(model_dir, CheckedModel) and model_dir.slide_mpp == mpp else None
        if checked is None:
            checked = check_model(model_dir.folder if isinstance(model_dir, CheckedModel) else model_dir, mpp,
                                  reader.display_name)
        model_dir, info = checked.folder, checked.info
        check_engine(info, model_dir, engine, precision)
        identity = model_identity(model_dir, info)
        if (engine, precision) != ("mxnet", "fp32"):
            identity |= {"engine": engine, "precision": precision}
        if tissue is None:
            tissue = detect_tissue(reader, slide_mpp=mpp)
        plan = plan_tiles(reader, TileSpec(info.tile_px, info.mpp), tissue, (), stride=stride, slide_mpp=mpp,
                          tissue_min=tissue_min)
        rows, cols = plan.grid_shape
        if rows == 0 or cols == 0:
            l0_w, l0_h = reader.dimensions
            raise ModelError(f"{reader.path}: the slide ({l0_w} x {l0_h} px) is smaller than one tile of the model "
                             f"({plan.tile_l0} x {plan.tile_l0} px here: {info.tile_px} px at {info.mpp:g} µm/px), "
                             "so nothing can be predicted; use a model with smaller tiles")
        wanted = ~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN))
        order = read_order(reader, plan, np.flatnonzero(wanted))
        grid = ProbabilityGrid(probs=np.full((rows, cols), np.nan, np.float32), origin=(0, 0),
                               stride=int(stride or plan.tile_l0), tile_l0=plan.tile_l0, tile_px=info.tile_px,
                               mpp=float(info.mpp),
                               slide_size=tuple(reader.dimensions), slide=str(reader.path), model=identity,
                               predicted=wanted.reshape(rows, cols))
        if started is not None:
            started(replace(grid, probs=grid.probs.copy(), predicted=grid.predicted.copy()))

        def read_batch(indices: np.ndarray) -> np.ndarray:
            return read_tiles(reader, plan, indices)

        batches = [order[i:i + batch_size] for i in range(0, order.size, batch_size)]
        total = int(order.size)
        complete = _run_on_model_thread(model_dir, (device, engine, precision), batches, read_batch, grid, cols,
                                        total, workers, progress, partial, should_stop, t_start)
        grid.complete = complete
        grid.seconds = time.perf_counter() - t_start
        return grid
    finally:
        if owned:
            reader.close()


def _run_on_model_thread(model_dir, device, batches, read_batch, grid, cols, total, workers, progress, partial,
                         should_stop, t_start) -> bool:
    """Feed batches read by a thread pool to the network on the model thread; True when all were done.

    ``device`` is ``(device, engine, precision)``.
    """
    from core.inference.engines import load_model
    from core.models.engine import engine

    n_workers = max(1, workers or min(8, 2 * (os.cpu_count() or 2)))

    def run() -> bool:
        model = load_model(model_dir, *device)
        prepared = lambda indices: model.prepare(read_batch(indices))  # noqa: E731 - normalised on the readers
        pool = ThreadPoolExecutor(n_workers, thread_name_prefix="biopsia-predict")
        try:
            pending, next_batch, done = [], 0, 0
            ahead = max(2, n_workers + 1)
            while next_batch < len(batches) or pending:
                while next_batch < len(batches) and len(pending) < ahead:
                    pending.append((batches[next_batch], pool.submit(prepared, batches[next_batch])))
                    next_batch += 1
                if should_stop is not None and should_stop():
                    return False
                indices, future = pending.pop(0)
                probs = model.predict_prepared(future.result())[:, 1].astype(np.float32)
                r, c = np.divmod(indices, cols)
                grid.probs[r, c] = probs
                done += indices.size
                if progress is not None:
                    progress(done, total)
                if partial is not None:
                    rate = done / max(time.perf_counter() - t_start, 1e-6)
                    partial(PartialResult(r, c, probs, done, total, rate))
            return True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return engine().run(run)


# -- predictions kept in a project ---------------------------------------------------------------


def prediction_path(project, slide_id: str, identity: dict) -> Path:
    """``<project>/predictions/<slide-id>/<model name>-<weights hash>.npz``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in identity.get("name", "model"))
    return Path(project.folder) / PREDICTIONS_DIR / slide_id / f"{safe}-{identity.get('sha256', '')[:12]}.npz"


def saved_predictions(project, slide_id: str) -> list[Path]:
    """The slide's saved grids, newest first."""
    folder = Path(project.folder) / PREDICTIONS_DIR / slide_id
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)


def load_latest_prediction(project, slide_id: str) -> tuple[ProbabilityGrid, Path] | None:
    """The slide's newest saved grid that can be read (damaged ones are skipped), or None."""
    for path in saved_predictions(project, slide_id):
        try:
            return ProbabilityGrid.load(path), path
        except BiopsiaError:
            continue
    return None


__all__ = ["ProbabilityGrid", "PartialResult", "predict_slide", "model_identity", "check_model_for_slide",
           "CheckedModel", "check_model",
           "prediction_path", "saved_predictions", "load_latest_prediction"]
