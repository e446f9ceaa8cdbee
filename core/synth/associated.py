"""Label, macro and thumbnail images, and the ImageDescription texts of a synthetic slide."""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Size of a standard glass slide, millimetres.
GLASS_MM = (75.0, 25.0)
#: Pixels per millimetre of the macro (overview camera) image.
_MACRO_PX_PER_MM = 16
APERIO_PREFIX = "Aperio Image Library v12.0.0"


def objective_power(mpp: float) -> int:
    """Nominal objective magnification for a pixel size: 20x at 0.5 µm, 40x at 0.25 µm."""
    return max(1, int(round(10.0 / mpp)))


def generic_description(seed: int, mpp: float, width: int, height: int, tile: int, quality: int) -> str:
    """ImageDescription of level 0 in the plain (generic TIFF) layout."""
    return (f"Biopsia synthetic slide seed={seed} mpp={mpp:g} width={width} height={height} "
            f"tile={tile} quality={quality}")


def aperio_description(seed: int, mpp: float, width: int, height: int, tile: int, quality: int,
                       name: str) -> str:
    """Aperio-style ImageDescription of level 0 (OpenSlide reads ``aperio.*`` properties from it)."""
    fields = [
        f"{APERIO_PREFIX} \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}",
        f"AppMag = {objective_power(mpp)}",
        f"MPP = {mpp:g}",
        f"Filename = {name}",
        f"Title = Biopsia synthetic slide seed={seed} mpp={mpp:g}",
        "ScanScope ID = BIOPSIA-SYNTH",
        f"Biopsia Seed = {seed}",
    ]
    return "|".join(fields)


def aperio_level_description(width: int, height: int, tile: int, quality: int, lv_w: int, lv_h: int) -> str:
    """Aperio-style ImageDescription of a reduced level or of the thumbnail."""
    return (f"{APERIO_PREFIX} \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) "
            f"-> {lv_w}x{lv_h} JPEG/RGB Q={quality}")


def aperio_associated_description(name: str, w: int, h: int) -> str:
    """Description of a label or macro page: OpenSlide takes the first word of the second line."""
    return f"{APERIO_PREFIX}\n{name} {w}x{h}"


def fit_within(rgb: np.ndarray, longest: int) -> np.ndarray:
    """Area-downsample ``rgb`` so its longest side is at most ``longest`` pixels."""
    h, w = rgb.shape[:2]
    factor = max(w, h) / float(longest)
    if factor <= 1:
        return rgb.copy()
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def label_image(seed: int, size: int = 480) -> np.ndarray:
    """A slide label: a fake 2-D barcode, a 1-D barcode and the text "SYNTHETIC seed N"."""
    rng = np.random.default_rng([seed, 30])
    img = np.full((size, size, 3), (236, 236, 228), np.uint8)
    cells = 14
    cell = size // 3 // cells
    code = rng.integers(0, 2, (cells, cells)).astype(bool)
    code[:, 0] = True  # finder pattern of a data-matrix code: solid L ...
    code[-1, :] = True
    code[0, ::2] = True  # ... and dotted opposite edges
    code[0, 1::2] = False
    code[::2, -1] = False
    code[1::2, -1] = True
    x0 = y0 = size // 12
    for r, c in zip(*np.nonzero(code)):
        cv2.rectangle(img, (x0 + c * cell, y0 + r * cell), (x0 + (c + 1) * cell - 1, y0 + (r + 1) * cell - 1),
                      (20, 20, 20), -1)
    bars_y0, bars_y1 = int(size * 0.5), int(size * 0.66)
    x = size // 12
    while x < size - size // 12:
        w = int(rng.integers(2, 7))
        if rng.uniform() < 0.55:
            cv2.rectangle(img, (x, bars_y0), (x + w - 1, bars_y1), (20, 20, 20), -1)
        x += w
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = size / 480.0
    cv2.putText(img, "SYNTHETIC", (size // 12, int(size * 0.8)), font, 1.3 * scale, (20, 20, 20),
                max(1, int(3 * scale)), cv2.LINE_AA)
    cv2.putText(img, f"seed {seed}", (size // 12, int(size * 0.93)), font, 1.1 * scale, (20, 20, 20),
                max(1, int(2 * scale)), cv2.LINE_AA)
    cv2.putText(img, "Biopsia", (x0 + cells * cell + size // 20, y0 + cell * 4), font, 0.9 * scale,
                (60, 60, 160), max(1, int(2 * scale)), cv2.LINE_AA)
    return img


def macro_image(overview: np.ndarray, label: np.ndarray, width: int, height: int, mpp: float) -> np.ndarray:
    """A photo-like view of the whole glass slide: the label at the left, the scanned tissue to its right."""
    glass_w = int(GLASS_MM[0] * _MACRO_PX_PER_MM)
    glass_h = int(GLASS_MM[1] * _MACRO_PX_PER_MM)
    img = np.empty((glass_h, glass_w, 3), np.uint8)
    img[:] = (214, 218, 222)  # glass seen by the macro camera, a little darker than in the scan
    label_w = int(22 * _MACRO_PX_PER_MM)
    label_img = cv2.resize(cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE), (label_w - 8, glass_h - 8),
                           interpolation=cv2.INTER_AREA)
    img[4:glass_h - 4, 4:label_w - 4] = label_img
    # the scanned area, scaled to the macro, fitted into the glass right of the label
    area_w_mm, area_h_mm = width * mpp / 1000.0, height * mpp / 1000.0
    room_w, room_h = glass_w - label_w - 16, glass_h - 16
    px_per_mm = min(_MACRO_PX_PER_MM, room_w / max(area_w_mm, 1e-6), room_h / max(area_h_mm, 1e-6))
    out_w = max(1, min(room_w, int(round(area_w_mm * px_per_mm))))
    out_h = max(1, min(room_h, int(round(area_h_mm * px_per_mm))))
    scan = cv2.resize(overview, (out_w, out_h), interpolation=cv2.INTER_AREA)
    # tissue darkens the glass the way it does in a photo: multiply, glass stays glass
    left = label_w + 8 + (room_w - out_w) // 2
    top = 8 + (room_h - out_h) // 2
    patch = img[top:top + out_h, left:left + out_w].astype(np.float32)
    img[top:top + out_h, left:left + out_w] = np.clip(patch * scan.astype(np.float32) / 243.0, 0, 255) \
        .astype(np.uint8)
    return img


def thumbnail_size(width: int, height: int, longest: int = 1024) -> tuple[int, int]:
    """(w, h) of the Aperio thumbnail page, aspect kept."""
    factor = max(1.0, max(width, height) / float(longest))
    return max(1, math.floor(width / factor)), max(1, math.floor(height / factor))
