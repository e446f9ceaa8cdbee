"""Every gland, tumour nest, vessel and nucleus of a synthetic slide, in level-0 pixels.

The scene is generated once, vectorised, from the layout; tiles then draw the
objects that reach them. Because objects are global, two neighbouring tiles draw
the same nucleus identically and no seam appears at tile borders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from core.synth.layout import Layout
from core.synth.shapes import GridIndex, blob_points, blob_profiles, inside_blobs, jittered_grid, ring_points
from core.synth.sprites import SpriteBank

# Structure kinds, drawn in this order (lower first) where they overlap.
LOBULE, DUCT, ACINUS, VESSEL, NEST = range(5)


@dataclass
class Structure:
    """A filled outline (gland, nest, vessel, lobule) with its stain values; points are level-0 x 16."""

    kind: int
    outer: np.ndarray  # (n, 2) int32, level-0 pixels x 16 (cv2 shift=4)
    e: float  # eosin of the cytoplasm / wall
    hb: float  # haematoxylin tint of the cytoplasm
    halo: np.ndarray | None = None  # retraction cleft drawn white under the nest
    lumens: tuple = ()  # outlines, same units as ``outer``
    lumen_e: float = 0.02
    rbc: np.ndarray | None = None  # (k, 3) red cells in the lumen: x, y, r, level-0 x 16


@dataclass
class Scene:
    """Structures and nuclei of a slide, with spatial indices."""

    structures: list
    structure_bbox: np.ndarray  # (n, 4) level-0 x0, y0, x1, y1
    structure_index: GridIndex
    structure_reach: float
    nuclei: tuple  # two layers (stroma, epithelium): each (x int32, y int32, sprite int32)
    nucleus_index: tuple  # GridIndex per layer


class _Builder:
    """Accumulates structures and nuclei while the scene is generated."""

    def __init__(self, layout: Layout, bank: SpriteBank):
        self.layout = layout
        self.bank = bank
        self.um = 1.0 / layout.mpp
        self.structures: list[Structure] = []
        self.bboxes: list[tuple[float, float, float, float]] = []  # level-0 x0, y0, x1, y1
        self.nuclei = ([], [])  # per layer: list of (x, y, sprite)
        lay_um = layout.scale * layout.mpp
        tumour = (layout.fields2[..., 2] > 0.5).astype(np.uint8)
        tissue = layout.tissue_mask
        # distances in micrometres, on the layout grid
        self.tumour_in = cv2.distanceTransform(tumour, cv2.DIST_L2, 5) * lay_um
        self.tumour_out = cv2.distanceTransform(1 - tumour, cv2.DIST_L2, 5) * lay_um
        self.tissue_in = cv2.distanceTransform(tissue, cv2.DIST_L2, 5) * lay_um
        ys, xs = np.nonzero(tissue)
        s = layout.scale
        self.tissue_bounds = ((xs.min() - 1) * s, (ys.min() - 1) * s, (xs.max() + 2) * s, (ys.max() + 2) * s) \
            if len(xs) else (0, 0, layout.width, layout.height)

    def at(self, grid: np.ndarray, x, y) -> np.ndarray:
        col, row = self.layout.layout_xy(x, y)
        return grid[row, col]

    def add_nuclei(self, layer: int, x, y, sprite) -> None:
        if len(x):
            self.nuclei[layer].append((np.round(x).astype(np.int32), np.round(y).astype(np.int32),
                                       np.asarray(sprite, np.int32)))

    def add_structure(self, st: Structure) -> None:
        pts = st.outer if st.halo is None else st.halo
        x0, y0 = pts.min(axis=0) / 16
        x1, y1 = pts.max(axis=0) / 16
        self.structures.append(st)
        self.bboxes.append((x0, y0, x1, y1))


def _stroma_cells(b: _Builder, rng) -> None:
    """Fibroblasts along the fibre direction, and lymphocytes (scattered, clustered, peritumoral)."""
    um2 = b.um ** 2
    x0, y0, x1, y1 = b.tissue_bounds
    area_um2 = (x1 - x0) * (y1 - y0) / um2
    lay = b.layout
    area_px = (x1 - x0) * (y1 - y0)
    # at very coarse pixel sizes nuclei are sub-pixel: cap their number by pixel area
    thin = min(1.0, area_px / 30.0 / (area_um2 / 300))
    # fibroblasts
    n = rng.poisson(area_um2 / 330 * thin)
    x, y = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    keep = b.at(lay.tissue_mask, x, y) > 0
    tum = b.at(lay.fields2[..., 2], x, y)
    density = (1 / 1500) * (1 - tum) + (1 / 950) * tum  # desmoplastic stroma is more cellular
    keep &= rng.uniform(0, 1 / 330, n) < density
    x, y = x[keep], y[keep]
    angle = b.at(lay.orientation, x, y) + rng.normal(0, 0.18, len(x))
    b.add_nuclei(0, x, y, b.bank.index("fibro", angle, rng.integers(0, 1 << 30, len(x))))
    # lymphocytes
    n = rng.poisson(area_um2 / 300 * thin)
    x, y = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    keep = b.at(lay.tissue_mask, x, y) > 0
    near = b.at(b.tumour_out, x, y)
    inside = b.at(b.tumour_in, x, y) > 0
    lob = b.at(lay.fields2[..., 3], x, y)
    density = np.full(n, 1 / 9000)
    density += (1 / 700) * np.clip(1 - near / 350, 0, 1) * (~inside)  # peritumoral band
    density += (1 / 2500) * inside
    density += (1 / 600) * np.clip((lob - 0.75) * 4, 0, 1)  # lymphoid aggregates in some lobular areas
    keep &= rng.uniform(0, 1 / 300, n) < density
    x, y = x[keep], y[keep]
    b.add_nuclei(0, x, y, b.bank.index("lymph", None, rng.integers(0, 1 << 30, len(x))))


def _lobules(b: _Builder, rng) -> None:
    """Benign lobules: loose pale stroma holding clusters of small acini."""
    um = b.um
    lay = b.layout
    cx, cy = jittered_grid(rng, b.tissue_bounds, 800 * um, 0.4)
    lob = b.at(lay.fields2[..., 3], cx, cy)
    radius_um = rng.uniform(170, 360, len(cx))
    keep = (b.at(lay.tissue_mask, cx, cy) > 0) & (rng.uniform(0, 1, len(cx)) < 0.25 + 0.9 * lob)
    keep &= b.at(b.tumour_out, cx, cy) > radius_um * 0.8
    cx, cy, r = cx[keep], cy[keep], radius_um[keep] * um
    n = len(cx)
    aspect = rng.uniform(1.0, 1.6, n)
    rx, ry, ang = r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi, n)
    rho = blob_profiles(rng, n, 0.3)
    for i in range(n):
        b.add_structure(Structure(LOBULE, blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i]),
                                  e=rng.uniform(0.30, 0.38), hb=rng.uniform(0.07, 0.10)))
    # acini inside lobules
    spacing = max(58 * um, 4.0)
    ax, ay, owner = [], [], []
    for i in range(n):
        gx, gy = jittered_grid(rng, (cx[i] - rx[i] - ry[i], cy[i] - rx[i] - ry[i], cx[i] + rx[i] + ry[i],
                                      cy[i] + rx[i] + ry[i]), spacing, 0.3)
        ax.append(gx)
        ay.append(gy)
        owner.append(np.full(len(gx), i))
    if not n:
        return
    ax, ay, owner = np.concatenate(ax), np.concatenate(ay), np.concatenate(owner)
    inside = inside_blobs(ax, ay, owner, cx, cy, rx, ry, ang, rho, shrink=0.88)
    inside &= rng.uniform(0, 1, len(ax)) < 0.85
    ax, ay = ax[inside], ay[inside]
    acin_r = rng.uniform(17, 25, len(ax)) * um
    ok = (b.at(lay.tissue_mask, ax, ay) > 0) & (b.at(b.tumour_out, ax, ay) > acin_r / um + 15)
    _glands(b, rng, ax[ok], ay[ok], acin_r[ok], ACINUS)


def _glands(b: _Builder, rng, cx, cy, r, kind) -> None:
    """Acini or ducts: cytoplasm ring, lumen, luminal nuclei (radial) and myoepithelial nuclei."""
    n = len(cx)
    if not n:
        return
    um = b.um
    aspect = rng.uniform(1.0, 1.35 if kind == ACINUS else 2.0, n)
    rx, ry, ang = r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi, n)
    rho = blob_profiles(rng, n, 0.16 if kind == ACINUS else 0.22)
    mean_r = np.sqrt(rx * ry)
    if kind == ACINUS:
        lumen = np.clip(rng.uniform(0.22, 0.45, n) * mean_r, 2.5 * um, None) / mean_r
    else:
        lumen = np.clip(1 - rng.uniform(18, 30, n) * um / mean_r, 0.3, 0.85)
    secretion = rng.uniform(0, 1, n) < 0.25
    for i in range(n):
        outer = blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i])
        inner = blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i], lumen[i])
        b.add_structure(Structure(kind, outer, e=rng.uniform(0.36, 0.46), hb=rng.uniform(0.09, 0.13),
                                  lumens=(inner,), lumen_e=0.2 if secretion[i] else 0.02))
    # luminal nuclei, one ring per ~11 µm of epithelium
    thickness = (1 - lumen) * mean_r / um
    layers = np.clip(np.round(thickness / 11), 1, 3).astype(np.int64)
    for layer in range(3):
        sel = layers > layer
        if not sel.any():
            continue
        frac = (layer + 0.5) / layers[sel]
        scale = lumen[sel] + (1 - lumen[sel]) * (0.15 + 0.7 * frac)
        px, py, radial, _ = ring_points(rng, cx[sel], cy[sel], rx[sel], ry[sel], ang[sel], rho[sel], scale,
                                         7.2 * um + layer * um)
        px += rng.normal(0, 0.6 * um, len(px))
        py += rng.normal(0, 0.6 * um, len(py))
        b.add_nuclei(1, px, py, b.bank.index("epi", radial, rng.integers(0, 1 << 30, len(px))))
    # myoepithelial cells just inside the basement membrane, flattened along it
    scale = 1 - 1.8 * um / mean_r
    px, py, radial, _ = ring_points(rng, cx, cy, rx, ry, ang, rho, scale, 16 * um, 0.35)
    keep = rng.uniform(0, 1, len(px)) < 0.7
    b.add_nuclei(1, px[keep], py[keep], b.bank.index("myo", radial[keep] + np.pi / 2,
                                                     rng.integers(0, 1 << 30, int(keep.sum()))))


def _ducts(b: _Builder, rng) -> None:
    um = b.um
    cx, cy = jittered_grid(rng, b.tissue_bounds, 850 * um, 0.45)
    r = rng.uniform(45, 120, len(cx)) * um
    keep = (b.at(b.tissue_in, cx, cy) > r / um * 0.7) & (rng.uniform(0, 1, len(cx)) < 0.6)
    keep &= b.at(b.tumour_out, cx, cy) > r / um * 1.6 + 40
    _glands(b, rng, cx[keep], cy[keep], r[keep], DUCT)


def _vessels(b: _Builder, rng) -> None:
    """Capillaries and venules: thin pink wall, flat endothelial nuclei, red cells in the lumen."""
    um = b.um
    cx, cy = jittered_grid(rng, b.tissue_bounds, 210 * um, 0.45)
    keep = (b.at(b.layout.tissue_mask, cx, cy) > 0) & (rng.uniform(0, 1, len(cx)) < 0.4)
    cx, cy = cx[keep], cy[keep]
    n = len(cx)
    if not n:
        return
    r = rng.uniform(3.5, 11, n) * um
    aspect = rng.uniform(1.0, 2.6, n)
    rx, ry, ang = r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi, n)
    rho = blob_profiles(rng, n, 0.12)
    wall = 1 + 2.4 * um / np.sqrt(rx * ry)
    congested = rng.uniform(0, 1, n) < 0.55
    for i in range(n):
        rbc = None
        if congested[i]:
            k = int(np.clip(rx[i] * ry[i] / (12 * um * um), 1, 40))
            t = rng.uniform(0, 2 * np.pi, k)
            s = np.sqrt(rng.uniform(0, 0.7, k))
            ca, sa = math.cos(ang[i]), math.sin(ang[i])
            ux, uy = rx[i] * s * np.cos(t), ry[i] * s * np.sin(t)
            rbc = np.column_stack((cx[i] + ux * ca - uy * sa, cy[i] + ux * sa + uy * ca,
                                   np.full(k, 3.4 * um)))
            rbc = np.round(rbc * 16).astype(np.int32)
        b.add_structure(Structure(VESSEL, blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i], wall[i]),
                                  e=rng.uniform(0.55, 0.7), hb=0.05,
                                  lumens=(blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i]),),
                                  lumen_e=0.04, rbc=rbc))
    scale = (1 + wall) / 2
    px, py, radial, _ = ring_points(rng, cx, cy, rx, ry, ang, rho, scale, 22 * um, 0.3)
    b.add_nuclei(1, px, py, b.bank.index("endo", radial + np.pi / 2, rng.integers(0, 1 << 30, len(px))))


def _nests(b: _Builder, rng) -> None:
    """Carcinoma: crowded nests, cords, small tubules and cribriform nests with punched-out lumens."""
    um = b.um
    lay = b.layout
    cx, cy = jittered_grid(rng, b.tissue_bounds, 88 * um, 0.45)
    depth = b.at(b.tumour_in, cx, cy)
    keep = (depth > 0) & (rng.uniform(0, 1, len(cx)) < 0.93) & (b.at(lay.tissue_mask, cx, cy) > 0)
    cx, cy, depth = cx[keep], cy[keep], depth[keep]
    n = len(cx)
    if not n:
        return
    kind = rng.choice(4, n, p=[0.25, 0.3, 0.3, 0.15])  # solid, cribriform, tubule, cord
    r = np.where(kind == 0, rng.lognormal(math.log(34), 0.3, n),
                 np.where(kind == 1, rng.lognormal(math.log(46), 0.25, n),
                          np.where(kind == 2, rng.uniform(14, 28, n), rng.uniform(18, 36, n))))
    r = np.clip(np.minimum(r, depth + 12), 9, None)
    aspect = np.where(kind == 3, rng.uniform(3.0, 6.0, n), rng.uniform(1.0, 1.7, n))
    rx, ry = r * np.sqrt(aspect) * um, r / np.sqrt(aspect) * um
    fit = np.minimum(1.0, (depth + 8) / 1.25 * um / np.maximum(rx, ry))  # stay inside the tumour outline
    rx, ry = np.maximum(rx * fit, 4 * um), np.maximum(ry * fit, 4 * um)
    ang = rng.uniform(0, np.pi, n)
    rho = blob_profiles(rng, n, 0.28)
    # lumens: up to 8 circles per nest (cx, cy, r in level-0 pixels; r = 0 where absent)
    max_lumens = 8
    lum = np.zeros((n, max_lumens, 3))
    for i in np.nonzero(kind == 1)[0]:
        count = int(np.clip(rx[i] * ry[i] / (380 * um * um), 2, max_lumens))
        t = rng.uniform(0, 2 * np.pi, count)
        s = np.sqrt(rng.uniform(0, 0.5, count))
        lum[i, :count, 0] = cx[i] + rx[i] * s * np.cos(t) * math.cos(ang[i]) - ry[i] * s * np.sin(t) * math.sin(ang[i])
        lum[i, :count, 1] = cy[i] + rx[i] * s * np.cos(t) * math.sin(ang[i]) + ry[i] * s * np.sin(t) * math.cos(ang[i])
        lum[i, :count, 2] = rng.uniform(3.5, 8.5, count) * um
    tub = np.nonzero(kind == 2)[0]
    lum[tub, 0, 0], lum[tub, 0, 1] = cx[tub], cy[tub]
    lum[tub, 0, 2] = np.sqrt(rx[tub] * ry[tub]) * rng.uniform(0.3, 0.5, len(tub))
    halo = rng.uniform(0, 1, n) < 0.7
    for i in range(n):
        outer = blob_points(cx[i], cy[i], rx[i], ry[i], ang[i], rho[i])
        gap = None
        if halo[i]:  # retraction cleft: a crescent, wider on one side
            shift = rng.uniform(2.0, 6.0) * um
            toward = rng.uniform(0, 2 * np.pi)
            gap = blob_points(cx[i] + shift * math.cos(toward), cy[i] + shift * math.sin(toward), rx[i], ry[i],
                           ang[i], rho[i], 1 + 2.0 * um / np.sqrt(rx[i] * ry[i]))
        lumens = []
        for lx, ly, lr in lum[i]:
            if lr > 0:
                lrho = blob_profiles(rng, 1, 0.1)[0]
                lumens.append(blob_points(lx, ly, lr, lr * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi), lrho))
        b.add_structure(Structure(NEST, outer, e=rng.uniform(0.33, 0.38), hb=rng.uniform(0.04, 0.06),
                                  halo=gap, lumens=tuple(lumens), lumen_e=0.02))
    # tumour nuclei: a dense jittered lattice inside each nest, none inside lumens
    spacing = max(10.5 * um, 3.0)
    px, py, owner = [], [], []
    for i in range(n):
        reach = max(rx[i], ry[i]) * rho[i].max()
        gx, gy = jittered_grid(rng, (cx[i] - reach, cy[i] - reach, cx[i] + reach, cy[i] + reach), spacing, 0.3)
        px.append(gx)
        py.append(gy)
        owner.append(np.full(len(gx), i))
    px, py, owner = np.concatenate(px), np.concatenate(py), np.concatenate(owner)
    keep = inside_blobs(px, py, owner, cx, cy, rx, ry, ang, rho, shrink=0.93)
    for j in range(max_lumens):
        lx, ly, lr = lum[owner, j, 0], lum[owner, j, 1], lum[owner, j, 2]
        keep &= (lr == 0) | (np.hypot(px - lx, py - ly) > lr + 3.0 * um)
    px, py = px[keep], py[keep]
    # overlapping nests bring two lattices together: drop the later of any two nuclei that nearly coincide
    if len(px) > 1:
        pairs = cKDTree(np.column_stack((px, py))).query_pairs(0.6 * spacing, output_type="ndarray")
        drop = np.zeros(len(px), bool)
        drop[pairs.max(axis=1)] = True
        px, py = px[~drop], py[~drop]
    mitotic = rng.uniform(0, 1, len(px)) < 0.015
    sprite = np.where(mitotic, b.bank.index("mitosis", None, rng.integers(0, 1 << 30, len(px))),
                      b.bank.index("tumour", None, rng.integers(0, 1 << 30, len(px))))
    b.add_nuclei(1, px, py, sprite)


def make_scene(layout: Layout, bank: SpriteBank) -> Scene:
    """Generate all structures and nuclei of a slide (deterministic in ``layout.seed``)."""
    b = _Builder(layout, bank)
    seed = layout.seed
    _lobules(b, np.random.default_rng([seed, 20]))
    _ducts(b, np.random.default_rng([seed, 21]))
    _vessels(b, np.random.default_rng([seed, 22]))
    _nests(b, np.random.default_rng([seed, 23]))
    _stroma_cells(b, np.random.default_rng([seed, 24]))
    # draw order: by kind, then by creation order
    order = sorted(range(len(b.structures)), key=lambda i: (b.structures[i].kind, i))
    structures = [b.structures[i] for i in order]
    bbox = np.array([b.bboxes[i] for i in order], np.float64).reshape(-1, 4)
    reach = float(np.max(np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]))) / 2 + 2 if len(bbox) else 0.0
    centre_x = (bbox[:, 0] + bbox[:, 2]) / 2 if len(bbox) else np.zeros(0)
    centre_y = (bbox[:, 1] + bbox[:, 3]) / 2 if len(bbox) else np.zeros(0)
    nuclei, indices = [], []
    for layer in range(2):
        parts = b.nuclei[layer]
        if parts:
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            s = np.concatenate([p[2] for p in parts])
        else:
            x = y = s = np.zeros(0, np.int32)
        nuclei.append((x, y, s))
        indices.append(GridIndex(x, y, layout.width, layout.height))
    return Scene(structures=structures, structure_bbox=bbox,
                 structure_index=GridIndex(centre_x, centre_y, layout.width, layout.height),
                 structure_reach=reach, nuclei=tuple(nuclei), nucleus_index=tuple(indices))
