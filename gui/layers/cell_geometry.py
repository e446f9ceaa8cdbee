"""Drawing a `ProbabilityGrid`'s cells with Qt: where they are on screen, which are in view, their outlines.

Shared by the heatmap and disagreement layers. Frames: grid cells ``(row, col)``; *cell units* ``(u, v)`` put cell
``(r, c)`` at ``[c, c + 1) x [r, r + 1)`` and map to level 0 through the grid's `cell_rect` geometry.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PyQt5.QtCore import QLineF, QPointF, QRectF
from PyQt5.QtGui import QImage, QPolygonF, QTransform

from core.view.viewport import Viewport


def bgra_qimage(bgra: np.ndarray) -> QImage:
    """A premultiplied ARGB32 ``QImage`` over ``bgra`` (h, w, 4) uint8, without a copy: keep the array alive."""
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, w * 4, QImage.Format_ARGB32_Premultiplied)


def cell_transform(grid, viewport: Viewport) -> QTransform:
    """Cell units to screen pixels."""
    x00, y00, _, _ = grid.cell_rect(0, 0)
    sx, sy = viewport.l0_to_screen(x00, y00)
    side = grid.stride * viewport.scale
    return QTransform(side, 0, 0, side, sx, sy)


def slide_clip(grid, viewport: Viewport) -> QRectF:
    """The slide's rectangle (``grid.slide_size`` from level-0 ``(0, 0)``) in screen pixels.

    Clip to it before drawing cells: the cell image is ``ceil``-sized, so the last column and row of cells
    reach past the slide's right and bottom edges, where `ProbabilityGrid.cell_rect` clips them.
    """
    x0, y0 = viewport.l0_to_screen(0, 0)
    x1, y1 = viewport.l0_to_screen(*grid.slide_size)
    return QRectF(x0, y0, x1 - x0, y1 - y0)


def visible_cells(grid, viewport: Viewport, margin: int = 0) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the cells that meet the view (ends exclusive), widened by ``margin``."""
    rows, cols = grid.shape
    x00, y00, _, _ = grid.cell_rect(0, 0)
    l0_x, l0_y, l0_w, l0_h = viewport.visible_l0_rect()
    col0 = int(np.clip(math.floor((l0_x - x00) / grid.stride) - margin, 0, cols))
    col1 = int(np.clip(math.ceil((l0_x + l0_w - x00) / grid.stride) + margin, 0, cols))
    row0 = int(np.clip(math.floor((l0_y - y00) / grid.stride) - margin, 0, rows))
    row1 = int(np.clip(math.ceil((l0_y + l0_h - y00) / grid.stride) + margin, 0, rows))
    return row0, row1, col0, col1


def mask_edges(mask: np.ndarray) -> list[QLineF]:
    """Cell-edge segments (cell units) between ``mask`` cells and the rest, runs along a line merged."""
    padded = np.pad(mask.astype(bool), 1)
    lines: list[QLineF] = []
    # vertical edges: between column c-1 and c (padded indices), running along rows
    v = padded[1:-1, 1:] != padded[1:-1, :-1]  # (rows, cols + 1): edge at x = c
    for x, y0, y1 in _runs(v.T):
        lines.append(QLineF(x, y0, x, y1))
    h = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (rows + 1, cols): edge at y = r
    for y, x0, x1 in _runs(h):
        lines.append(QLineF(x0, y, x1, y))
    return lines


def _runs(edges: np.ndarray):
    """``(line, start, end)`` of each run of True along axis 1 of ``edges``."""
    padded = np.pad(edges, ((0, 0), (1, 1)))
    diff = np.diff(padded.astype(np.int8), axis=1)
    line_s, start = np.nonzero(diff == 1)
    _, end = np.nonzero(diff == -1)  # both sorted row-major, so they pair up
    return zip(line_s.tolist(), start.tolist(), end.tolist())


def contour_polygons(mask: np.ndarray, factor: float) -> list[tuple[tuple[float, float, float, float], QPolygonF]]:
    """Outlines of ``mask`` (an upsampled cell mask, ``factor`` pixels per cell) in cell units, each with its
    bounding box ``(u0, v0, u1, v1)`` so a paint can skip those out of view."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        if len(contour) > 8:
            contour = cv2.approxPolyDP(contour, max(0.7, factor / 8), True)
        points = (contour[:, 0, :].astype(float) + 0.5) / factor
        if len(points) < 2:
            continue
        (u0, v0), (u1, v1) = points.min(0), points.max(0)
        out.append(((float(u0), float(v0), float(u1), float(v1)),
                    QPolygonF([QPointF(x, y) for x, y in points.tolist()])))
    return out
