"""Vectorised shapes for the scene: jittered grids, irregular blobs, rings along them, a point index.

A blob is an ellipse (centre, radii ``rx``/``ry``, ``angle``) whose radius is
modulated by a radial profile ``rho(phi)`` sampled at ``OUTLINE_POINTS`` angles.
Points are level-0 pixels; ``blob_points`` returns cv2 shift-4 integers (x 16).
"""

from __future__ import annotations

import math

import numpy as np

#: Samples of a blob's radial profile.
OUTLINE_POINTS = 28


class GridIndex:
    """Points bucketed on a square grid, for "what lies near this rectangle" queries."""

    def __init__(self, x: np.ndarray, y: np.ndarray, width: int, height: int, bucket: int = 256):
        self.bucket = bucket
        self.nbx = max(1, math.ceil(width / bucket))
        self.nby = max(1, math.ceil(height / bucket))
        bx = np.clip((np.asarray(x) // bucket).astype(np.int64), 0, self.nbx - 1)
        by = np.clip((np.asarray(y) // bucket).astype(np.int64), 0, self.nby - 1)
        key = by * self.nbx + bx
        self.order = np.argsort(key, kind="stable").astype(np.int64)
        counts = np.bincount(key, minlength=self.nbx * self.nby)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def query(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float, reach: float) -> np.ndarray:
        """Indices of points within ``reach`` of the rectangle (a superset; callers clip)."""
        bx0 = int(np.clip((l0_x0 - reach) // self.bucket, 0, self.nbx - 1))
        bx1 = int(np.clip((l0_x1 + reach) // self.bucket, 0, self.nbx - 1))
        by0 = int(np.clip((l0_y0 - reach) // self.bucket, 0, self.nby - 1))
        by1 = int(np.clip((l0_y1 + reach) // self.bucket, 0, self.nby - 1))
        parts = [self.order[self.starts[by * self.nbx + bx0]:self.starts[by * self.nbx + bx1 + 1]]
                 for by in range(by0, by1 + 1)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def jittered_grid(rng, bounds, spacing: float, jitter: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """One random point per cell of a square grid over ``bounds`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = bounds
    xs = np.arange(x0, x1, spacing)
    ys = np.arange(y0, y1, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx.ravel() + spacing * (0.5 + rng.uniform(-jitter, jitter, gx.size))
    gy = gy.ravel() + spacing * (0.5 + rng.uniform(-jitter, jitter, gy.size))
    return gx, gy


def blob_profiles(rng, n: int, roughness: float, harmonics: int = 5):
    """Radial profiles rho(phi) of ``n`` irregular blobs, shape (n, OUTLINE_POINTS)."""
    phi = np.linspace(0, 2 * np.pi, OUTLINE_POINTS, endpoint=False)[None, :]
    rho = np.ones((n, OUTLINE_POINTS))
    for k in range(2, harmonics + 1):
        rho += roughness * rng.standard_normal((n, 1)) / k ** 1.1 * np.cos(k * phi + rng.uniform(0, 6.3, (n, 1)))
    return np.clip(rho, 0.45, None)


def blob_points(cx, cy, rx, ry, angle, rho, scale=1.0) -> np.ndarray:
    """Outline points (P, 2) of one blob, as cv2 shift-4 integers."""
    phi = np.linspace(0, 2 * np.pi, len(rho), endpoint=False)
    x = rx * rho * scale * np.cos(phi)
    y = ry * rho * scale * np.sin(phi)
    ca, sa = math.cos(angle), math.sin(angle)
    pts = np.column_stack((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return np.round(pts * 16).astype(np.int32)


def ring_points(rng, cx, cy, rx, ry, angle, rho, scale, spacing, jitter=0.2):
    """Points spaced ``spacing`` apart along each blob's outline scaled by ``scale``; and their angles."""
    perim = np.pi * (rx + ry) * scale * rho.mean(axis=1)
    count = np.maximum(3, np.round(perim / spacing)).astype(np.int64)
    owner = np.repeat(np.arange(len(cx)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    phi = (k + rng.uniform(-jitter, jitter, k.size)) / count[owner] * 2 * np.pi + rng.uniform(0, 6.3, len(cx))[owner]
    pos = (phi % (2 * np.pi)) / (2 * np.pi) * rho.shape[1]
    i0 = pos.astype(np.int64) % rho.shape[1]
    frac = pos - np.floor(pos)
    r = rho[owner, i0] * (1 - frac) + rho[owner, (i0 + 1) % rho.shape[1]] * frac
    s = scale[owner] if np.ndim(scale) else scale
    x = rx[owner] * r * s * np.cos(phi)
    y = ry[owner] * r * s * np.sin(phi)
    ca, sa = np.cos(angle[owner]), np.sin(angle[owner])
    px, py = cx[owner] + x * ca - y * sa, cy[owner] + x * sa + y * ca
    # direction from the centre: nuclei of glands point radially
    radial = np.arctan2(py - cy[owner], px - cx[owner])
    return px, py, radial, owner


def inside_blobs(px, py, owner, cx, cy, rx, ry, angle, rho, shrink=1.0) -> np.ndarray:
    """Whether each point lies inside its owner blob (optionally shrunk)."""
    dx, dy = px - cx[owner], py - cy[owner]
    ca, sa = np.cos(-angle[owner]), np.sin(-angle[owner])
    u = (dx * ca - dy * sa) / rx[owner]
    v = (dx * sa + dy * ca) / ry[owner]
    phi = np.arctan2(v, u) % (2 * np.pi)
    pos = phi / (2 * np.pi) * rho.shape[1]
    i0 = pos.astype(np.int64) % rho.shape[1]
    frac = pos - np.floor(pos)
    r = rho[owner, i0] * (1 - frac) + rho[owner, (i0 + 1) % rho.shape[1]] * frac
    return np.hypot(u, v) < r * shrink
