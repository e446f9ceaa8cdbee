"""Small random building blocks of the synthetic slide: smooth noise, blobs, periodic textures.

Everything here is a pure function of its random generator and arguments, so the
same seed always gives the same arrays.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.fft


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise of ``shape`` whose features are about ``scale_px`` wide."""
    rows, cols = shape
    scale_px = max(float(scale_px), 1.0)
    c_rows = max(2, int(math.ceil(rows / scale_px)) + 3)
    c_cols = max(2, int(math.ceil(cols / scale_px)) + 3)
    coarse = rng.standard_normal((c_rows, c_cols)).astype(np.float32)
    # Cubic upsampling of a coarse grid: smooth, cheap, and no FFT boundary effects.
    fine = cv2.resize(coarse, (int((c_cols - 1) * scale_px), int((c_rows - 1) * scale_px)),
                      interpolation=cv2.INTER_CUBIC)
    off_r = int(rng.integers(0, max(1, fine.shape[0] - rows + 1)))
    off_c = int(rng.integers(0, max(1, fine.shape[1] - cols + 1)))
    out = fine[off_r:off_r + rows, off_c:off_c + cols]
    if out.shape != (rows, cols):
        out = cv2.resize(fine, (cols, rows), interpolation=cv2.INTER_LINEAR)
    out = out - out.mean()
    std = float(out.std())
    return np.ascontiguousarray(out / std if std > 0 else out, dtype=np.float32)


def blob_outline(
    rng: np.random.Generator,
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    roughness: float = 0.2,
    harmonics: int = 7,
    points: int = 96,
) -> np.ndarray:
    """A closed, smooth, irregular outline as an (points, 2) float array of (x, y).

    The radius is modulated by random harmonics 2..``harmonics`` whose amplitudes
    fall off with order, so the outline is wavy but never self-intersecting for
    ``roughness`` up to about 0.35.
    """
    phi = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    radius = np.ones_like(phi)
    for k in range(2, harmonics + 1):
        amp = roughness * rng.normal() / k ** 1.1
        radius += amp * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    radius = np.clip(radius, 0.35, None)
    x = radii[0] * radius * np.cos(phi)
    y = radii[1] * radius * np.sin(phi)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    out = np.empty((points, 2), dtype=np.float64)
    out[:, 0] = center[0] + x * cos_a - y * sin_a
    out[:, 1] = center[1] + x * sin_a + y * cos_a
    return out


def periodic_filtered_noise(
    rng: np.random.Generator, size: int, sigma_along: float, sigma_across: float, angle: float
) -> np.ndarray:
    """Periodic (size x size) white noise filtered by a rotated anisotropic Gaussian, unit variance.

    Filtering in the Fourier domain makes the result tile seamlessly, so a crop at
    any offset (modulo ``size``) is valid texture.
    """
    noise = rng.standard_normal((size, size), dtype=np.float32)
    freq_y = (np.fft.fftfreq(size) * 2.0 * np.pi).astype(np.float32)
    freq_x = (np.fft.rfftfreq(size) * 2.0 * np.pi).astype(np.float32)
    fy, fx = np.meshgrid(freq_y, freq_x, indexing="ij")
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    f_along = fx * cos_a + fy * sin_a
    f_across = -fx * sin_a + fy * cos_a
    gain = np.exp(-0.5 * ((sigma_along * f_along) ** 2 + (sigma_across * f_across) ** 2))
    out = scipy.fft.irfft2(scipy.fft.rfft2(noise) * gain, s=(size, size)).astype(np.float32)
    out -= out.mean()
    std = float(out.std())
    return out / std if std > 0 else out


def upsample_periodic(tex: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of a periodic texture that stays periodic (no seam at the wrap)."""
    if factor == 1:
        return tex
    size = tex.shape[0]
    wrapped = np.pad(tex, 1, mode="wrap")
    big = cv2.resize(wrapped, ((size + 2) * factor, (size + 2) * factor), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[factor:factor + size * factor, factor:factor + size * factor])


def periodic_warp(rng: np.random.Generator, tex: np.ndarray, amplitude: float, scale: float) -> np.ndarray:
    """Displace a periodic texture by a smooth periodic field (makes straight fibres wavy)."""
    size = tex.shape[0]
    # the displacement is smooth: draw it coarsely and upsample
    factor = 1
    while factor < 8 and scale / (factor * 2) >= 3 and size % (factor * 2) == 0 and size // (factor * 2) >= 32:
        factor *= 2
    disp = []
    for _ in range(2):
        field = periodic_filtered_noise(rng, size // factor, scale / factor, scale / factor, 0.0)
        disp.append(upsample_periodic(field, factor) * amplitude)
    grid = np.arange(size, dtype=np.float32)
    map_x = (grid[None, :] + disp[0]).astype(np.float32)
    map_y = (grid[:, None] + disp[1]).astype(np.float32)
    return cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def pad_periodic(tex: np.ndarray, pad: int) -> np.ndarray:
    """Append ``pad`` wrapped rows and columns so any crop of up to ``pad`` pixels is a plain slice."""
    widths = ((0, pad), (0, pad)) + ((0, 0),) * (tex.ndim - 2)
    return np.ascontiguousarray(np.pad(tex, widths, mode="wrap"))


def periodic_crop(padded: np.ndarray, period: int, l0_x: int, l0_y: int, w: int, h: int) -> np.ndarray:
    """The (h, w) window of a padded periodic texture whose origin sits at level-0 (l0_x, l0_y)."""
    x = l0_x % period
    y = l0_y % period
    return padded[y:y + h, x:x + w]
