"""The coarse plan of a synthetic slide: where tissue lies, where tumour grows, smooth fields.

Everything is decided here at low resolution ("layout pixels", ``scale`` level-0
pixels each) before any level-0 pixel is drawn. Tissue fragments and tumour
regions are returned as shapely polygons in level-0 pixels; the tile renderer
rasterises those very polygons, so pixels and ground truth agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon
from skimage import measure

from core.synth.fields import blob_outline, smooth_noise

#: Wanted size of one layout pixel, micrometres.
_LAYOUT_UM = 8.0
#: Longest side of the layout grid, layout pixels.
_LAYOUT_MAX = 4096


@dataclass(frozen=True)
class Layout:
    """The low-resolution plan of one synthetic slide (coordinates: level-0 pixels unless named)."""

    seed: int
    width: int
    height: int
    mpp: float
    scale: int  # level-0 pixels per layout pixel
    tissue_mask: np.ndarray  # (lay_h, lay_w) uint8, 1 where tissue
    tissue_polygons: tuple  # shapely Polygons, one per fragment
    tumour_regions: tuple  # shapely Polygon or MultiPolygon per region, inside tissue
    fields: np.ndarray  # (lay_h, lay_w, 4) float32: fibre weights 0..2, ...
    fields2: np.ndarray  # (lay_h, lay_w, 4) float32: h gain, e gain, tumour weight, lobularity
    orientation: np.ndarray  # (lay_h, lay_w) float32 fibre angle, radians

    @property
    def um(self) -> float:
        """Level-0 pixels per micrometre."""
        return 1.0 / self.mpp

    def layout_xy(self, l0_x: np.ndarray, l0_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer layout-pixel indices (col, row) of level-0 points, clipped to the grid."""
        lay_h, lay_w = self.tissue_mask.shape
        col = np.clip((np.asarray(l0_x) / self.scale).astype(np.int64), 0, lay_w - 1)
        row = np.clip((np.asarray(l0_y) / self.scale).astype(np.int64), 0, lay_h - 1)
        return col, row


def layout_scale(width: int, height: int, mpp: float) -> int:
    """Level-0 pixels per layout pixel: about 8 µm, coarser for huge slides, finer for tiny ones."""
    scale = max(1, round(_LAYOUT_UM / mpp))
    scale = max(scale, math.ceil(max(width, height) / _LAYOUT_MAX))
    return int(max(1, min(scale, max(1, min(width, height) // 64))))


def _circular_noise(rng, n: int, corr: float) -> np.ndarray:
    """Smooth periodic 1-D noise of length ``n`` (unit variance, correlation ``corr`` samples)."""
    freq = np.fft.rfftfreq(n) * 2 * np.pi
    spec = np.fft.rfft(rng.standard_normal(n)) * np.exp(-0.5 * (corr * freq) ** 2)
    out = np.fft.irfft(spec, n)
    return out / max(float(out.std()), 1e-9)


def _fray(rng, ring: np.ndarray, mpp: float) -> Polygon:
    """Round the marching-squares facets of an outline and give it a finely irregular, torn edge."""
    pts = ring[:-1] if np.allclose(ring[0], ring[-1]) else ring
    for _ in range(2):  # Chaikin corner cutting
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    seg = np.hypot(*np.diff(np.vstack([pts, pts[:1]]), axis=0).T)
    arc = np.concatenate([[0], np.cumsum(seg)])
    step = max(5.0 / mpp, 2.0)  # a vertex every 5 µm (or 2 pixels)
    n = max(16, int(arc[-1] / step))
    at = np.linspace(0, arc[-1], n, endpoint=False)
    closed = np.vstack([pts, pts[:1]])
    pts = np.column_stack((np.interp(at, arc, closed[:, 0]), np.interp(at, arc, closed[:, 1])))
    tangent = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
    normal = np.column_stack((tangent[:, 1], -tangent[:, 0]))
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-9)[:, None]
    offset_um = 3.5 * _circular_noise(rng, n, 4.0) + 1.2 * _circular_noise(rng, n, 1.0)
    pts = pts + normal * (offset_um / mpp)[:, None]
    poly = Polygon(pts).buffer(0)
    if isinstance(poly, MultiPolygon):
        poly = max(poly.geoms, key=lambda p: p.area)
    return Polygon(poly.exterior).simplify(0.2 / mpp)


def _field_to_polygons(rng, field: np.ndarray, scale: int, mpp: float) -> list[Polygon]:
    """Outer contours of ``field > 0.5`` as level-0 polygons (marching squares, then frayed)."""
    padded = np.pad(field, 1, constant_values=0.0)
    polygons = []
    for contour in measure.find_contours(padded, 0.5):
        if len(contour) < 8:
            continue
        # contour is (row, col) in padded layout pixels; layout pixel centres sit at (i + 0.5) * scale.
        l0_xy = np.column_stack(((contour[:, 1] - 1 + 0.5) * scale, (contour[:, 0] - 1 + 0.5) * scale))
        poly = Polygon(l0_xy).buffer(0)
        parts = poly.geoms if isinstance(poly, MultiPolygon) else [poly]
        for part in parts:
            if not part.is_empty and part.area > 0:
                polygons.append(part)
    polygons.sort(key=lambda p: (round(p.bounds[1]), round(p.bounds[0])))
    return [_fray(rng, np.asarray(p.exterior.coords), mpp) for p in polygons]


def _draw_core(rng, canvas: np.ndarray, cx, cy, length, width, angle) -> None:
    """Draw a needle-core-like strip (gently bent, width varying, sometimes broken) into ``canvas``."""
    steps = max(8, int(length / max(width * 0.2, 1.0)))
    t = np.linspace(-0.5, 0.5, steps)
    bend = rng.normal(0, 0.06) * length
    wave = rng.normal(0, 0.015, 3) * length
    offset = bend * (1 - 4 * t ** 2) + sum(w * np.sin((k + 2) * np.pi * t + rng.uniform(0, 6.3))
                                             for k, w in enumerate(wave))
    along_x, along_y = math.cos(angle), math.sin(angle)
    xs = cx + t * length * along_x - offset * along_y
    ys = cy + t * length * along_y + offset * along_x
    half = width / 2 * (1 + 0.12 * np.interp(t, np.linspace(-0.5, 0.5, 9), rng.normal(0, 1, 9)))
    taper = np.clip((0.5 - np.abs(t)) * length / (width * 0.6), 0.25, 1.0) ** 0.5
    for x, y, r in zip(xs, ys, half * taper):
        cv2.circle(canvas, (int(round(x * 4)), int(round(y * 4))), int(round(r * 4)), 1.0, -1, cv2.LINE_8, 2)
    for _ in range(int(rng.integers(0, 3))):  # fractures across the core
        u = rng.uniform(-0.35, 0.35)
        gx, gy = cx + u * length * along_x, cy + u * length * along_y
        tilt = angle + math.pi / 2 + rng.normal(0, 0.3)
        reach = width * 1.5
        p0 = (int((gx - reach * math.cos(tilt)) * 4), int((gy - reach * math.sin(tilt)) * 4))
        p1 = (int((gx + reach * math.cos(tilt)) * 4), int((gy + reach * math.sin(tilt)) * 4))
        cv2.line(canvas, p0, p1, 0.0, max(1, int(rng.uniform(0.04, 0.15) * width)), cv2.LINE_8, 2)


def _tissue(rng, lay_w: int, lay_h: int, px_um: float, specimen: str = "biopsy") -> np.ndarray:
    """Tissue presence field (float32, layout pixels, tissue where > 0.5), holes filled.

    ``specimen="biopsy"``: needle cores and small pieces; ``"resection"``: one large piece filling most
    of the glass, as a section of a surgical specimen.
    """
    short_um, long_um = min(lay_w, lay_h) * px_um, max(lay_w, lay_h) * px_um
    margin = 0.06 * min(lay_w, lay_h)
    allowed = np.zeros((lay_h, lay_w), np.uint8)
    allowed[int(margin):lay_h - int(margin), int(margin):lay_w - int(margin)] = 1
    gap = max(1, int(round(120 / px_um)))
    placed = np.zeros((lay_h, lay_w), np.float32)
    horizontal = lay_w >= lay_h
    if specimen == "resection":
        wanted = ["section"]
    elif short_um >= 3000:
        wanted = ["core"] * int(rng.integers(2, 5)) + ["blob"] * int(rng.integers(1, 4))
    else:
        wanted = ["blob"] * int(rng.integers(1, 3))
    for kind in wanted:
        for _attempt in range(40):
            shape = np.zeros_like(placed)
            if kind == "core":
                width = min(rng.uniform(800, 1300), 0.22 * short_um) / px_um
                length = rng.uniform(0.45, 0.85) * long_um / px_um
                angle = rng.normal(0, 0.12) + (0 if horizontal else math.pi / 2)
                cx, cy = rng.uniform(0.25, 0.75) * lay_w, rng.uniform(0.12, 0.88) * lay_h
                _draw_core(rng, shape, cx, cy, length, width, angle)
            elif kind == "section":
                outline = blob_outline(rng, (lay_w / 2, lay_h / 2), (0.43 * lay_w, 0.43 * lay_h),
                                       rng.uniform(-0.1, 0.1), roughness=0.15, harmonics=6)
                cv2.fillPoly(shape, [np.round(outline * 4).astype(np.int32)], 1.0, cv2.LINE_8, 2)
            else:
                big = short_um < 3000
                radius = rng.uniform(0.28, 0.38) * min(lay_w, lay_h) if big else \
                    min(rng.uniform(900, 2600) / px_um, 0.2 * min(lay_w, lay_h))
                aspect = rng.uniform(1.0, 1.8)
                outline = blob_outline(rng, (rng.uniform(0.2, 0.8) * lay_w, rng.uniform(0.2, 0.8) * lay_h),
                                       (radius * math.sqrt(aspect), radius / math.sqrt(aspect)),
                                       rng.uniform(0, math.pi), roughness=0.3, harmonics=8)
                cv2.fillPoly(shape, [np.round(outline * 4).astype(np.int32)], 1.0, cv2.LINE_8, 2)
            area = float(shape.sum())
            if area < 20:
                continue
            if float((shape * (1 - allowed)).sum()) > 0.01 * area:
                continue
            grown = cv2.dilate((placed > 0).astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8))
            if float((shape * grown).sum()) > 0:
                continue
            placed = np.maximum(placed, shape)
            break
    if placed.sum() == 0:  # nothing fitted: one central blob
        outline = blob_outline(rng, (lay_w / 2, lay_h / 2), (lay_w * 0.3, lay_h * 0.3), 0.0, 0.2)
        cv2.fillPoly(placed, [np.round(outline * 4).astype(np.int32)], 1.0, cv2.LINE_8, 2)
    soft = cv2.GaussianBlur(placed, (0, 0), max(0.8, 35 / px_um))
    rough = smooth_noise(rng, (lay_h, lay_w), max(2.0, 140 / px_um)) * 0.16 \
        + smooth_noise(rng, (lay_h, lay_w), max(1.5, 45 / px_um)) * 0.07
    field = (soft + rough * np.clip(soft * 3, 0, 1)).astype(np.float32)
    field[:1] = field[-1:] = 0
    field[:, :1] = field[:, -1:] = 0
    mask = field > 0.5
    filled = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(filled)
    min_px = 0.03e6 / px_um ** 2  # drop crumbs under 0.03 mm²
    sizes = ndimage.sum(filled, labels, index=np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[1:] = sizes >= min_px
    if not keep.any() and count:
        keep[1 + int(np.argmax(sizes))] = True
    kept = keep[labels]
    field[filled & ~mask] = 1.0
    field[~kept] = np.minimum(field[~kept], 0.2)
    return field


def _tumours(rng, tissue_mask: np.ndarray, tissue_union, scale: int, px_um: float) -> list:
    """A few irregular tumour regions inside tissue; each returned geometry is already ∩ tissue."""
    dist = cv2.distanceTransform(tissue_mask, cv2.DIST_L2, 5)
    tissue_area = tissue_union.area
    n_regions = int(np.clip(round(math.sqrt(tissue_area * (px_um / scale) ** 2 / 1e6) / 2)
                            + rng.integers(-1, 2), 1, 6))
    rows, cols = np.nonzero(dist > max(1.5, 0.25 * dist.max()))
    weights = dist[rows, cols] ** 2
    weights /= weights.sum()
    regions, used = [], None
    total = 0.0
    for _attempt in range(60):
        if len(regions) >= n_regions:
            break
        i = rng.choice(len(rows), p=weights)
        d_um = float(dist[rows[i], cols[i]]) * px_um
        radius_um = float(np.clip(rng.uniform(0.7, 1.8) * d_um, 120, 2600))
        aspect = rng.uniform(1.0, 1.7)
        center = ((cols[i] + 0.5) * scale, (rows[i] + 0.5) * scale)
        radius = radius_um / px_um * scale
        outline = blob_outline(rng, center, (radius * math.sqrt(aspect), radius / math.sqrt(aspect)),
                               rng.uniform(0, math.pi), roughness=0.32, harmonics=10, points=160)
        poly = Polygon(outline).buffer(0)
        if used is not None and poly.intersects(used):
            continue
        inside = poly.intersection(tissue_union)
        if inside.is_empty or inside.area < 0.6 * poly.area:
            continue
        if total + inside.area > 0.38 * tissue_area:
            continue
        parts = [p for p in getattr(inside, "geoms", [inside]) if isinstance(p, Polygon)]
        parts = [p for p in parts if p.area >= 0.02 * inside.area]
        region = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        regions.append(region)
        total += region.area
        halo = poly.buffer(250 / px_um * scale)
        used = halo if used is None else used.union(halo)
    if not regions:  # fallback: a disc at the thickest point of the tissue
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        disc = shapely.Point((c + 0.5) * scale, (r + 0.5) * scale).buffer(float(dist.max()) * 0.6 * scale)
        region = disc.intersection(tissue_union)
        if isinstance(region, MultiPolygon):
            region = max(region.geoms, key=lambda p: p.area)
        regions.append(region)
    return regions


def _rasterise(geoms, scale: int, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage (float32 0..1) of level-0 geometries on the layout grid."""
    canvas = np.zeros(shape, np.uint8)
    for geom in geoms:
        for poly in getattr(geom, "geoms", [geom]):
            # layout pixel i covers level-0 [i*scale, (i+1)*scale): its centre maps to i + 0.5
            ring = (np.asarray(poly.exterior.coords) / scale - 0.5) * 16
            cv2.fillPoly(canvas, [np.round(ring).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def make_layout(seed: int, width: int, height: int, mpp: float, specimen: str = "biopsy") -> Layout:
    """Plan a synthetic slide: tissue fragments (``specimen`` "biopsy" or "resection"), tumour regions
    and smooth fields."""
    scale = layout_scale(width, height, mpp)
    lay_w, lay_h = math.ceil(width / scale), math.ceil(height / scale)
    px_um = scale * mpp  # micrometres per layout pixel
    rng = np.random.default_rng([seed, 1])
    field = _tissue(rng, lay_w, lay_h, px_um, specimen)
    tissue_polygons = _field_to_polygons(np.random.default_rng([seed, 4]), field, scale, mpp)
    tissue_union = shapely.union_all(tissue_polygons)
    tissue_mask = (_rasterise(tissue_polygons, scale, (lay_h, lay_w)) > 0.5).astype(np.uint8)
    regions = _tumours(np.random.default_rng([seed, 2]), tissue_mask, tissue_union, scale, px_um)

    rng = np.random.default_rng([seed, 3])
    fibre_scale = max(1.5, 600 / px_um)
    # one smooth scalar field (not atan2 of two) so the fibre direction has no pinwheels
    angle = (rng.uniform(0, math.pi) + 1.1 * smooth_noise(rng, (lay_h, lay_w), fibre_scale)).astype(np.float32)
    fibre_w = []
    for k in range(3):  # smooth (von Mises) weights of the 0°, 60°, 120° fibre textures
        fibre_w.append(np.exp(1.6 * np.cos(2 * (angle - k * math.pi / 3))))
    total = sum(fibre_w) + 1e-6
    fibre_w = [w / total for w in fibre_w]
    gain_h = 1 + 0.08 * smooth_noise(rng, (lay_h, lay_w), max(2.0, 900 / px_um))
    gain_e = 1 + 0.10 * smooth_noise(rng, (lay_h, lay_w), max(2.0, 1100 / px_um))
    lobular = np.clip(smooth_noise(rng, (lay_h, lay_w), max(2.0, 700 / px_um)) * 0.8 + 0.1, 0, 1)
    tumour_w = _rasterise(regions, scale, (lay_h, lay_w))
    tumour_w = cv2.GaussianBlur(tumour_w, (0, 0), max(0.5, 6 / px_um))
    fields = np.dstack(fibre_w + [np.zeros_like(angle)]).astype(np.float32)
    fields2 = np.dstack([gain_h, gain_e, tumour_w, lobular]).astype(np.float32)
    return Layout(seed=seed, width=width, height=height, mpp=mpp, scale=scale,
                  tissue_mask=tissue_mask, tissue_polygons=tuple(tissue_polygons),
                  tumour_regions=tuple(regions), fields=fields, fields2=fields2,
                  orientation=(angle % math.pi).astype(np.float32))
