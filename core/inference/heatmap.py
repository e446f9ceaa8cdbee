"""Heatmap pictures and files from a probability grid, without Qt: colour maps, the blended overview
(the study's "reconstruction"), a per-tile CSV, and a pyramidal TIFF overlay for QuPath and ASAP.

The colour maps are perceptually uniform (viridis by default; magma, cividis) and built from anchor
colours of the published maps, linearly interpolated to 256 entries.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from core.inference.predict import ProbabilityGrid

_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                "#b5de2b", "#fde725"],
    "magma": ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d", "#fd9668",
              "#feca8d", "#fcfdbf"],
    "cividis": ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8779", "#a69d75", "#c4b56c",
                "#e4cf5b", "#fee838"],
}
COLORMAPS = tuple(_ANCHORS)


def colormap(name: str = "viridis") -> np.ndarray:
    """A (256, 3) uint8 RGB lookup table.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the choices).
    """
    if name not in _ANCHORS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in _ANCHORS[name]], np.float64)
    at = np.linspace(0, 1, len(rgb))
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, at, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def colour_cells(grid: ProbabilityGrid, cmap: str = "viridis", threshold: float = 0.0) -> np.ndarray:
    """RGBA uint8 image with one pixel per cell: colour-mapped probability, transparent where none or below
    ``threshold``."""
    lut = colormap(cmap)
    probs = np.nan_to_num(grid.probs, nan=0.0)
    rgba = np.zeros(grid.shape + (4,), np.uint8)
    rgba[..., :3] = lut[np.clip((probs * 255).round(), 0, 255).astype(np.int64)]
    rgba[..., 3] = np.where(grid.done & (probs >= threshold), 255, 0)
    return rgba


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


def heatmap_image(grid: ProbabilityGrid, width: int, height: int, cmap: str = "viridis") -> np.ndarray:
    """RGBA heatmap of the whole slide at ``width`` x ``height`` (transparent off tissue)."""
    return _cells_to_image(grid, colour_cells(grid, cmap), width, height)


def blended_overview(thumbnail_rgb: np.ndarray, grid: ProbabilityGrid, opacity: float = 0.5,
                     threshold: float = 0.5, cmap: str = "viridis") -> np.ndarray:
    """The slide's thumbnail with the heatmap alpha-blended over the tissue, and the tiles at or above
    ``threshold`` outlined in white: the study's "reconstruction", in one vectorised pass."""
    height, width = thumbnail_rgb.shape[:2]
    heat = heatmap_image(grid, width, height, cmap)
    alpha = (heat[..., 3:4].astype(np.float32) / 255.0) * float(opacity)
    out = thumbnail_rgb.astype(np.float32) * (1 - alpha) + heat[..., :3].astype(np.float32) * alpha
    out = out.round().astype(np.uint8)
    called = (grid.done & (np.nan_to_num(grid.probs) >= threshold)).astype(np.uint8)[..., None] * 255
    mask = _cells_to_image(grid, called, width, height)[..., 0]
    if mask.any():
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(max(width, height) / 800)))
    return out


def legend_image(width: int = 256, height: int = 48, cmap: str = "viridis", threshold: float | None = None):
    """A horizontal colour bar with ticks at 0, 0.5 and 1 (and the threshold), RGB uint8."""
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
    """One row per predicted tile: row, col, level-0 x/y and size, probability, call (and the marks' truth)."""
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
    """
    import os

    import tifffile

    from core.atomic import create_temp

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
