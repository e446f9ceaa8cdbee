"""Small generated patch folders for the patch-folder tests: textured originals and their known near-copies."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture(seed: int, side: int = 128) -> np.ndarray:
    """A uint8 RGB image of blobs at several scales, unlike any other seed's."""
    rng = np.random.default_rng(seed)
    out = np.zeros((side, side, 3), np.float32)
    for scale in (4, 8, 16):
        small = rng.random((side // scale, side // scale, 3)).astype(np.float32)
        out += cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC) / scale
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 255).astype(np.uint8)


def rotated_crop(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """``rgb`` rotated about its centre, its largest inscribed square cropped and resized back (LC25000's way)."""
    side = rgb.shape[0]
    m = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
    turned = cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR)
    t = np.radians(abs(degrees))
    keep = int(side / (np.cos(t) + np.sin(t)))
    o = (side - keep) // 2
    return cv2.resize(turned[o:o + keep, o:o + keep], (side, side), interpolation=cv2.INTER_LINEAR)


def copies(rgb: np.ndarray) -> list[np.ndarray]:
    """Near-copies of one original: a quarter turn, a mirror, a mirror of a half turn, a 15° rotated crop."""
    return [np.rot90(rgb).copy(), rgb[:, ::-1].copy(), np.rot90(rgb, 2)[::-1].copy(), rotated_crop(rgb, 15)]


def write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))


def copies_folder(root: Path, originals_per_class: int = 4, side: int = 96) -> dict[str, list[str]]:
    """Two class folders of originals, each with its near-copies; returns ``{original file: [its copies]}``."""
    groups = {}
    for c, name in enumerate(("a_class", "b_class")):
        for k in range(originals_per_class):
            base = texture(100 * c + k, side)
            first = f"{name}/o{k}.png"
            write(root / first, base)
            groups[first] = []
            for n, copy in enumerate(copies(base)):
                rel = f"{name}/o{k}_copy{n}.png"
                write(root / rel, copy)
                groups[first].append(rel)
    return groups
