"""Heatmap pictures and files from a probability grid, without Qt: the heatmap image, the blended overview
(the study's "reconstruction"), a legend, a per-tile CSV, and a pyramidal TIFF overlay for QuPath and ASAP.

Colours and the probability-to-pixel rule come from `core.inference.colours` (re-exported here), the one
table the window's heatmap layer draws with too.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import cv2
import numpy as np
import tifffile

from core.atomic import create_temp
from core.inference.colours import (COLORMAP_LABELS, COLORMAPS, DEFAULT_COLORMAP, blend_over, colormap,
                                    colour_at, colour_index, colour_probabilities, shown_cells)
from core.inference.predict import ProbabilityGrid

__all__ = ["COLORMAPS", "COLORMAP_LABELS", "DEFAULT_COLORMAP", "OVERLAY_DESCRIPTION", "blend_over",
           "blended_overview", "colormap", "colour_at", "colour_cells", "colour_index", "colour_probabilities",
           "heatmap_image", "legend_image", "shown_cells", "tiles_csv", "write_overlay_tiff"]


def colour_cells(grid: ProbabilityGrid, cmap: str = DEFAULT_COLORMAP, threshold: float = 0.0) -> np.ndarray:
    """One heatmap pixel per grid cell.

    Parameters
    ----------
    grid : ProbabilityGrid
        The probabilities; NaN cells have none.
    cmap : str
        One of `COLORMAPS`.
    threshold : float
        Cells below it are transparent.

    Returns
    -------
    ndarray of uint8, (rows, cols, 4)
        RGBA, `colour_probabilities` of ``grid.probs``.
    """
    return colour_probabilities(grid.probs, cmap, threshold)


def _cells_to_image(grid: ProbabilityGrid, cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """Place per-cell pixels on an image of the whole slide at ``width`` x ``height`` (nearest neighbour)."""
    sx, sy = grid.slide_size[0] / width, grid.slide_size[1] / height
    xs = (np.arange(width) + 0.5) * sx
    ys = (np.arange(height) + 0.5) * sy
    offset = (grid.tile_l0 - grid.stride) / 2
    cols = np.floor((xs - grid.origin[0] - offset) / grid.stride).astype(np.int64)
    rows = np.floor((ys - grid.origin[1] - offset) / grid.stride).astype(np.int64)
    valid_c = (cols >= 0) & (cols < grid.shape[1])
    valid_r = (rows >= 0) & (rows < grid.shape[0])
    out = np.zeros((height, width) + cells.shape[2:], cells.dtype)
    if 0 in grid.shape:  # a grid with no cells (a slide smaller than one tile) covers nothing
        return out
    sub = cells[np.clip(rows, 0, grid.shape[0] - 1)][:, np.clip(cols, 0, grid.shape[1] - 1)]
    mask = valid_r[:, None] & valid_c[None, :]
    out[mask] = sub[mask]
    return out


def heatmap_image(grid: ProbabilityGrid, width: int, height: int, cmap: str = DEFAULT_COLORMAP,
                  threshold: float = 0.0) -> np.ndarray:
    """The heatmap of the whole slide, each cell a stride square centred on its tile (nearest neighbour).

    The CLI's ``heatmap.png``; the window's heatmap layer draws the same pixels in its tiles mode.

    Parameters
    ----------
    grid : ProbabilityGrid
        The probabilities.
    width, height : int
        Image size; the slide's level 0 is scaled to fill it.
    cmap : str
        One of `COLORMAPS`.
    threshold : float
        Cells below it are transparent (as are cells without a probability and everything off the grid).

    Returns
    -------
    ndarray of uint8, (height, width, 4)
        RGBA.
    """
    return _cells_to_image(grid, colour_cells(grid, cmap, threshold), width, height)


def blended_overview(thumbnail_rgb: np.ndarray, grid: ProbabilityGrid, opacity: float = 0.5,
                     threshold: float = 0.5, cmap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The slide's thumbnail with the heatmap blended over the tissue and the tiles at or above ``threshold``
    outlined in white: the study's "reconstruction", in one vectorised pass.

    Parameters
    ----------
    thumbnail_rgb : ndarray of uint8, (h, w, 3)
        The whole slide at any size.
    grid : ProbabilityGrid
        The probabilities.
    opacity : float
        The heatmap's opacity (`blend_over`).
    threshold : float
        Tiles at or above it are outlined; the whole heatmap is drawn.
    cmap : str
        One of `COLORMAPS`.

    Returns
    -------
    ndarray of uint8, (h, w, 3)
    """
    height, width = thumbnail_rgb.shape[:2]
    out = blend_over(thumbnail_rgb, heatmap_image(grid, width, height, cmap), opacity)
    called = shown_cells(grid.probs, threshold).astype(np.uint8)[..., None] * 255
    mask = _cells_to_image(grid, called, width, height)[..., 0]
    if mask.any():
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(max(width, height) / 800)))
    return out


def legend_image(width: int = 256, height: int = 48, cmap: str = DEFAULT_COLORMAP, threshold: float | None = None):
    """A horizontal colour bar with ticks at 0, 0.5 and 1 (and the threshold) on white, for reports.

    Parameters
    ----------
    width, height : int
        Image size; the bar fills the top half.
    cmap : str
        One of `COLORMAPS`.
    threshold : float, optional
        Marked on the bar when given.

    Returns
    -------
    ndarray of uint8, (height, width, 3)
        RGB.
    """
    bar_h = height // 2
    img = np.full((height, width, 3), 255, np.uint8)
    img[:bar_h] = colormap(cmap)[np.linspace(0, 255, width).round().astype(int)][None]
    for value, text in ((0.0, "0"), (0.5, "0.5"), (1.0, "1")):
        x = min(width - 1, int(value * (width - 1)))
        cv2.line(img, (x, bar_h), (x, bar_h + 4), (0, 0, 0), 1)
        size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0]
        cv2.putText(img, text, (int(np.clip(x - size[0] / 2, 0, width - size[0])), height - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    if threshold is not None:
        x = int(np.clip(threshold, 0, 1) * (width - 1))
        cv2.line(img, (x, 0), (x, bar_h), (255, 255, 255), 2)
        cv2.line(img, (x, 0), (x, bar_h), (0, 0, 0), 1)
    return img


def tiles_csv(grid: ProbabilityGrid, threshold: float = 0.5, truth: np.ndarray | None = None) -> str:
    """The per-tile table, one row per predicted tile.

    Parameters
    ----------
    grid : ProbabilityGrid
        The probabilities.
    threshold : float
        Tiles at or above it are called tumour (column ``tumour``).
    truth : ndarray of int8, (rows, cols), optional
        The marks' labels (1 tumour, 0 not, -1 unknown), added as ``marked_tumour`` (empty where unknown).

    Returns
    -------
    str
        CSV text: row, col, level-0 x, y and size, probability, tumour call (and marked_tumour).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "col", "x", "y", "size", "probability", "tumour"] +
                    (["marked_tumour"] if truth is not None else []))
    rows, cols = np.nonzero(grid.done)
    for r, c in zip(rows.tolist(), cols.tolist()):
        x, y, size, _ = grid.tile_rect(r, c)
        p = float(grid.probs[r, c])
        line = [r, c, x, y, size, f"{p:.4f}", int(p >= threshold)]
        if truth is not None:
            line.append("" if truth[r, c] < 0 else int(truth[r, c]))
        writer.writerow(line)
    return out.getvalue()


OVERLAY_DESCRIPTION = "Biopsia tumour probability: 0 = not predicted, 1 + 254 * p"


def write_overlay_tiff(grid: ProbabilityGrid, path, slide_mpp: tuple[float, float] | None = None,
                       tile: int = 512) -> Path:
    """A pyramidal, tiled TIFF the size of the slide's level 0: one 8-bit channel, 0 off tissue and
    ``1 + round(254 * p)`` on predicted tiles (a likelihood map as ASAP shows it; QuPath opens it too).

    Levels are top-level pages (each a quarter of the one before) with resolution tags, lossless deflate;
    tiles are made on the fly from the grid, so a 100,000-pixel slide needs no full-size image in memory.
    The file is written beside ``path`` and renamed over it, so a failed write leaves any old file intact.

    Parameters
    ----------
    grid : ProbabilityGrid
        The probabilities.
    path : str or Path
        Where to write (its folder is made).
    slide_mpp : (float, float), optional
        The slide's micrometres per pixel; by default the grid's tile geometry gives it.
    tile : int
        TIFF tile side; the pyramid stops at the first level no larger than one tile.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        When the file cannot be written (nothing is left behind).
    """
    path = Path(path)
    values = np.where(grid.done, 1 + np.round(254 * np.nan_to_num(grid.probs)), 0).astype(np.uint8)
    width, height = grid.slide_size
    dims = [(width, height)]
    while max(dims[-1]) > tile:
        w, h = dims[-1]
        dims.append((max(1, w // 4), max(1, h // 4)))
    offset = (grid.tile_l0 - grid.stride) / 2

    def tiles(lv_w: int, lv_h: int):
        ds_x, ds_y = width / lv_w, height / lv_h
        for ty in range(0, lv_h, tile):
            ys = (np.arange(ty, ty + tile) + 0.5) * ds_y
            rows = np.floor((ys - grid.origin[1] - offset) / grid.stride).astype(np.int64)
            ok_r = (rows >= 0) & (rows < grid.shape[0]) & (np.arange(ty, ty + tile) < lv_h)
            for tx in range(0, lv_w, tile):
                xs = (np.arange(tx, tx + tile) + 0.5) * ds_x
                cols = np.floor((xs - grid.origin[0] - offset) / grid.stride).astype(np.int64)
                ok_c = (cols >= 0) & (cols < grid.shape[1]) & (np.arange(tx, tx + tile) < lv_w)
                block = values[np.clip(rows, 0, grid.shape[0] - 1)][:, np.clip(cols, 0, grid.shape[1] - 1)]
                block[~(ok_r[:, None] & ok_c[None, :])] = 0
                yield np.ascontiguousarray(block)

    mpp = slide_mpp or (grid.tile_l0 * grid.mpp / grid.tile_px,) * 2
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)  # hidden, beside the target: the rename below is atomic
    os.close(fd)  # tifffile wants a file object with a name
    try:
        with open(tmp, "wb") as fh:
            with tifffile.TiffWriter(fh, bigtiff=width * height > 2 ** 31) as tif:
                for level, (lv_w, lv_h) in enumerate(dims):
                    scale = width / lv_w
                    tif.write(tiles(lv_w, lv_h), shape=(lv_h, lv_w), dtype=np.uint8, tile=(tile, tile),
                              compression="zlib", photometric="minisblack",
                              resolution=(1e4 / (mpp[0] * scale), 1e4 / (mpp[1] * scale)),
                              resolutionunit="CENTIMETER", subfiletype=0 if level == 0 else 1, metadata=None,
                              software="Biopsia", description=OVERLAY_DESCRIPTION)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
