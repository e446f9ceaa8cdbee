"""Draw any level-0 region of a synthetic slide as RGB pixels.

Stains are modelled by Beer-Lambert absorption: each pixel carries a haematoxylin
and an eosin concentration, and its colour is ``glass * exp(-(H*h + E*e))``.
Every input (textures, fields, structures, nuclei) is a function of level-0
coordinates only, so a region renders the same whichever tile asks for it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.synth.fields import periodic_crop
from core.synth.layout import Layout
from core.synth.scene import LOBULE, Scene
from core.synth.sprites import SpriteBank, Textures

#: Colour of bare glass (RGB).
GLASS = (243.0, 242.0, 246.0)
#: Optical density per unit concentration (R, G, B) of haematoxylin and eosin.
HAEMATOXYLIN = (0.62, 0.80, 0.42)
EOSIN = (0.17, 0.80, 0.48)
#: Extra pixels rendered around a region so the final blur has real neighbours.
MARGIN = 2

# texture selector values in the material map
_FIBROUS, _LOOSE, _SMOOTH = 0, 1, 2


class TileRenderer:
    """Renders regions of one synthetic slide; safe to use from several threads at once."""

    def __init__(self, layout: Layout, scene: Scene, bank: SpriteBank, textures: Textures):
        self.layout = layout
        self.scene = scene
        self.bank = bank
        self.tex = textures
        mat = np.zeros((3, 3), np.float32)
        mat[:, 0] = [-v for v in HAEMATOXYLIN]
        mat[:, 1] = [-v for v in EOSIN]
        mat[:, 2] = [math.log(v) for v in GLASS]
        self._stain = mat
        self._polys = []
        for poly in layout.tissue_polygons:
            pts = np.round(np.asarray(poly.exterior.coords) * 16).astype(np.int64)
            self._polys.append((poly.bounds, pts))

    # -- helpers -------------------------------------------------------------
    def _tissue_state(self, x0: int, y0: int, w: int, h: int) -> int:
        """0: no tissue near the region, 1: partly tissue, 2: tissue everywhere."""
        s = self.layout.scale
        mask = self.layout.tissue_mask
        r0, r1 = max(0, y0 // s - 2), min(mask.shape[0], (y0 + h) // s + 3)
        c0, c1 = max(0, x0 // s - 2), min(mask.shape[1], (x0 + w) // s + 3)
        window = mask[r0:r1, c0:c1]
        if window.size == 0 or not window.any():
            return 0
        inside = r0 > 0 and c0 > 0 and r1 < mask.shape[0] and c1 < mask.shape[1]
        return 2 if inside and window.all() else 1

    def _alpha(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        cover = np.zeros((h, w), np.uint8)
        shift = np.array([x0 * 16, y0 * 16], np.int64)
        for (bx0, by0, bx1, by1), pts in self._polys:
            if bx1 < x0 or by1 < y0 or bx0 > x0 + w or by0 > y0 + h:
                continue
            cv2.fillPoly(cover, [(pts - shift).astype(np.int32)], 255, cv2.LINE_AA, 4)
        return cover.astype(np.float32) * (1 / 255.0)

    def _warp(self, grid: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Bilinear sample of a layout-grid field at the level-0 pixel centres of the region."""
        s = self.layout.scale
        # layout coordinate of level-0 pixel x is (x + 0.5) / s - 0.5
        m = np.array([[1 / s, 0, (x0 + 0.5) / s - 0.5], [0, 1 / s, (y0 + 0.5) / s - 0.5]], np.float64)
        return cv2.warpAffine(grid, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def _stamp(self, target: np.ndarray, layer: int, x0: int, y0: int) -> None:
        """Stamp the nuclei of ``layer`` reaching the region into ``target`` (maximum blend)."""
        h, w = target.shape
        xs, ys, ids = self.scene.nuclei[layer]
        idx = self.scene.nucleus_index[layer].query(x0, y0, x0 + w, y0 + h, self.bank.max_radius)
        if not len(idx):
            return
        sprites = self.bank.sprites
        for cx, cy, sid in zip((xs[idx] - x0).tolist(), (ys[idx] - y0).tolist(), ids[idx].tolist()):
            sp = sprites[sid]
            half = sp.shape[0] >> 1
            ty0, tx0 = cy - half, cx - half
            ty1, tx1 = ty0 + sp.shape[0], tx0 + sp.shape[1]
            if ty1 <= 0 or tx1 <= 0 or ty0 >= h or tx0 >= w:
                continue
            sy0, sx0 = max(0, -ty0), max(0, -tx0)
            sy1, sx1 = sp.shape[0] - max(0, ty1 - h), sp.shape[1] - max(0, tx1 - w)
            dst = target[max(0, ty0):min(h, ty1), max(0, tx0):min(w, tx1)]
            np.maximum(dst, sp[sy0:sy1, sx0:sx1], out=dst)

    def _structures(self, e, hb, nuc, mat, x0: int, y0: int) -> None:
        """Fill glands, nests, vessels and lobules reaching the region, in global draw order."""
        h, w = e.shape
        sc = self.scene
        idx = sc.structure_index.query(x0, y0, x0 + w, y0 + h, sc.structure_reach)
        if not len(idx):
            return
        bb = sc.structure_bbox[idx]
        hit = (bb[:, 2] >= x0) & (bb[:, 0] <= x0 + w) & (bb[:, 3] >= y0) & (bb[:, 1] <= y0 + h)
        shift = np.array([x0 * 16, y0 * 16], np.int32)
        order = np.sort(idx[hit]).tolist()
        for i in order:  # retraction clefts first, so no cleft cuts through a neighbouring nest
            halo = sc.structures[i].halo
            if halo is not None:
                for grid, value in ((e, 0.02), (hb, 0.0), (nuc, 0.0), (mat, _SMOOTH)):
                    cv2.fillPoly(grid, [halo - shift], value, cv2.LINE_8, 4)
        for i in order:
            st = sc.structures[i]
            outer = [st.outer - shift]
            if st.kind == LOBULE:
                cv2.fillPoly(e, outer, st.e, cv2.LINE_8, 4)
                cv2.fillPoly(hb, outer, st.hb, cv2.LINE_8, 4)
                cv2.fillPoly(mat, outer, _LOOSE, cv2.LINE_8, 4)
                continue
            for grid, value in ((e, st.e), (hb, st.hb), (nuc, 0.0), (mat, _SMOOTH)):
                cv2.fillPoly(grid, outer, value, cv2.LINE_8, 4)
            if st.lumens:
                lumens = [lm - shift for lm in st.lumens]
                cv2.fillPoly(e, lumens, st.lumen_e, cv2.LINE_8, 4)
                cv2.fillPoly(hb, lumens, 0.0, cv2.LINE_8, 4)
            if st.rbc is not None:
                for rx, ry, rr in (st.rbc - np.array([shift[0], shift[1], 0], np.int32)).tolist():
                    cv2.circle(e, (rx, ry), rr, 1.15, -1, cv2.LINE_8, 4)

    def composite(self, h_conc: np.ndarray, e_conc: np.ndarray) -> np.ndarray:
        """Beer-Lambert colour of stain concentrations: (h, w, 3) uint8 RGB (before blur and noise)."""
        stains = cv2.merge([h_conc, e_conc])
        od = cv2.transform(stains, self._stain)
        return cv2.convertScaleAbs(cv2.exp(od))

    def _finish(self, rgb: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Optical blur, crop the margin, add scanner noise."""
        rgb = cv2.GaussianBlur(rgb, (3, 3), 0.65)
        rgb = np.ascontiguousarray(rgb[MARGIN:MARGIN + h, MARGIN:MARGIN + w])
        t = self.tex
        pos = periodic_crop(t.noise_pos, t.noise_period, x0, y0, w, h)
        neg = periodic_crop(t.noise_neg, t.noise_period, x0, y0, w, h)
        return cv2.subtract(cv2.add(rgb, pos), neg)

    # -- public ---------------------------------------------------------------
    def background(self, w: int, h: int) -> np.ndarray:
        """Bare glass as rendered in any region whose origin is a multiple of the tile size."""
        step = self.tex.noise_period
        zero = np.zeros((step + 2 * MARGIN, step + 2 * MARGIN), np.float32)
        glass = self._finish(self.composite(zero, zero), 0, 0, step, step)
        reps = (-(-h // step), -(-w // step), 1)
        return np.ascontiguousarray(np.tile(glass, reps)[:h, :w])

    def has_tissue(self, l0_x: int, l0_y: int, w: int, h: int) -> bool:
        """Whether any tissue may be drawn in the region (False means plain glass)."""
        return self._tissue_state(l0_x - MARGIN, l0_y - MARGIN, w + 2 * MARGIN, h + 2 * MARGIN) > 0

    def render(self, l0_x: int, l0_y: int, w: int, h: int) -> np.ndarray:
        """RGB pixels (h, w, 3) uint8 of the level-0 region at (l0_x, l0_y), any size."""
        step = self.tex.noise_period
        if w <= step and h <= step:
            return self._render_tile(l0_x, l0_y, w, h)
        out = np.empty((h, w, 3), np.uint8)
        for dy in range(0, h, step):
            for dx in range(0, w, step):
                cw, ch = min(step, w - dx), min(step, h - dy)
                out[dy:dy + ch, dx:dx + cw] = self._render_tile(l0_x + dx, l0_y + dy, cw, ch)
        return out

    def _render_tile(self, l0_x: int, l0_y: int, w: int, h: int) -> np.ndarray:
        """``render`` for a region no larger than the texture padding (one render step)."""
        x0, y0 = l0_x - MARGIN, l0_y - MARGIN
        rw, rh = w + 2 * MARGIN, h + 2 * MARGIN
        state = self._tissue_state(x0, y0, rw, rh)
        if state == 0:
            zero = np.zeros((rh, rw), np.float32)
            return self._finish(self.composite(zero, zero), l0_x, l0_y, w, h)
        t = self.tex
        weights = self._warp(self.layout.fields, x0, y0, rw, rh)
        f2 = self._warp(self.layout.fields2, x0, y0, rw, rh)
        gain_h, gain_e, tumour = f2[..., 0], f2[..., 1], f2[..., 2]
        fib = [periodic_crop(f, t.period, x0, y0, rw, rh) for f in t.fibres]
        fibrous = fib[0] * weights[..., 0] + fib[1] * weights[..., 1] + fib[2] * weights[..., 2]
        loose = periodic_crop(t.loose, t.fine_period, x0, y0, rw, rh)
        e = np.full((rh, rw), 0.58, np.float32)
        hb = np.full((rh, rw), 0.10, np.float32)
        if float(tumour.max()) > 0.002:
            # desmoplastic stroma: looser and paler, which also offsets the darker, crowded nests
            # so that tumour keeps about the mean colour of benign tissue
            fibrous = fibrous + tumour * ((0.45 * fibrous + 0.55 * loose) - fibrous)
            e = e - 0.08 * tumour
            hb = hb - 0.06 * tumour
        mat = np.zeros((rh, rw), np.uint8)
        nuc = np.zeros((rh, rw), np.float32)
        self._stamp(nuc, 0, x0, y0)
        self._structures(e, hb, nuc, mat, x0, y0)
        self._stamp(nuc, 1, x0, y0)
        grain = periodic_crop(t.grain, t.fine_period, x0, y0, rw, rh)
        texture = np.where(mat == _FIBROUS, fibrous, np.where(mat == _LOOSE, loose, 1.0)) * grain
        e = e * texture * (1.0 - 0.45 * np.minimum(nuc, 1.0)) * gain_e
        hcon = (hb * grain + nuc) * gain_h
        if state == 1:
            alpha = self._alpha(x0, y0, rw, rh)
            e *= alpha
            hcon *= alpha
        rgb = self.composite(hcon.astype(np.float32), e.astype(np.float32))
        return self._finish(rgb, l0_x, l0_y, w, h)

