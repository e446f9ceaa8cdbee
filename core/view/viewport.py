"""Viewport geometry: which part of a slide a view shows, at what scale.

Pure arithmetic, free of Qt, shared by the GUI view, screenshots and benchmarks.
Frames: ``l0_*`` level-0 pixels; ``screen_*`` widget pixels; ``scale`` is
screen pixels per level-0 pixel (1.0 is "1:1", full resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Standard microscope magnifications offered as presets.
MAGNIFICATION_PRESETS = (1.25, 2.5, 5.0, 10.0, 20.0, 40.0)
#: The most a view may enlarge level 0 (digital zoom past full resolution).
MAX_SCALE = 4.0
#: Convention used when only µm/px is known: 10x objective ≈ 1 µm per pixel.
UM_PER_PX_AT_10X = 1.0


@dataclass(frozen=True)
class Viewport:
    """What one view shows: a slide of ``l0_w`` x ``l0_h`` in a ``screen_w`` x ``screen_h`` widget."""

    l0_w: int
    l0_h: int
    screen_w: int
    screen_h: int
    l0_cx: float  # level-0 point shown at the centre of the widget
    l0_cy: float
    scale: float

    # -- construction ----------------------------------------------------
    @classmethod
    def fit(cls, l0_w: int, l0_h: int, screen_w: int, screen_h: int, margin: float = 0.97) -> "Viewport":
        """The whole slide, centred and fitted into the widget."""
        vp = cls(l0_w, l0_h, max(1, screen_w), max(1, screen_h), l0_w / 2, l0_h / 2, 1.0)
        return replace(vp, scale=vp.fit_scale(margin))

    def fit_scale(self, margin: float = 0.97) -> float:
        return margin * min(self.screen_w / self.l0_w, self.screen_h / self.l0_h)

    @property
    def min_scale(self) -> float:
        return min(self.fit_scale() / 4, 1.0)

    # -- coordinate transforms ---------------------------------------------
    def screen_to_l0(self, screen_x: float, screen_y: float) -> tuple[float, float]:
        return (
            self.l0_cx + (screen_x - self.screen_w / 2) / self.scale,
            self.l0_cy + (screen_y - self.screen_h / 2) / self.scale,
        )

    def l0_to_screen(self, l0_x: float, l0_y: float) -> tuple[float, float]:
        return (
            (l0_x - self.l0_cx) * self.scale + self.screen_w / 2,
            (l0_y - self.l0_cy) * self.scale + self.screen_h / 2,
        )

    def visible_l0_rect(self) -> tuple[float, float, float, float]:
        """(l0_x, l0_y, l0_w, l0_h) of the widget area, possibly beyond the slide."""
        l0_x, l0_y = self.screen_to_l0(0, 0)
        return l0_x, l0_y, self.screen_w / self.scale, self.screen_h / self.scale

    @property
    def downsample(self) -> float:
        """Level-0 pixels per screen pixel."""
        return 1.0 / self.scale

    # -- navigation (each returns a new Viewport) -----------------------------
    def _clamped(self, l0_cx: float, l0_cy: float, scale: float) -> "Viewport":
        scale = min(max(scale, self.min_scale), MAX_SCALE)
        # Keep at least part of the slide on screen: the centre stays over the slide.
        l0_cx = min(max(l0_cx, 0.0), float(self.l0_w))
        l0_cy = min(max(l0_cy, 0.0), float(self.l0_h))
        return replace(self, l0_cx=l0_cx, l0_cy=l0_cy, scale=scale)

    def resized(self, screen_w: int, screen_h: int) -> "Viewport":
        return replace(self, screen_w=max(1, screen_w), screen_h=max(1, screen_h))

    def panned(self, screen_dx: float, screen_dy: float) -> "Viewport":
        """Move the content by (dx, dy) screen pixels (drag direction)."""
        return self._clamped(self.l0_cx - screen_dx / self.scale, self.l0_cy - screen_dy / self.scale, self.scale)

    def zoomed_about(self, screen_x: float, screen_y: float, factor: float) -> "Viewport":
        """Zoom by ``factor`` keeping the slide point under (screen_x, screen_y) fixed."""
        l0_x, l0_y = self.screen_to_l0(screen_x, screen_y)
        scale = min(max(self.scale * factor, self.min_scale), MAX_SCALE)
        l0_cx = l0_x - (screen_x - self.screen_w / 2) / scale
        l0_cy = l0_y - (screen_y - self.screen_h / 2) / scale
        return self._clamped(l0_cx, l0_cy, scale)

    def centred_on(self, l0_x: float, l0_y: float, scale: float | None = None) -> "Viewport":
        return self._clamped(l0_x, l0_y, self.scale if scale is None else scale)

    def fitted(self) -> "Viewport":
        return Viewport.fit(self.l0_w, self.l0_h, self.screen_w, self.screen_h)


def magnification_at(scale: float, objective_power: float | None, mpp_x: float | None) -> float | None:
    """Apparent magnification of a view at ``scale`` (e.g. 20.0 for "20x").

    Uses the scanner's objective power when known, else the µm/px convention
    (10x ≈ 1 µm/px); None when neither is known.
    """
    if objective_power:
        return objective_power * scale
    if mpp_x:
        return UM_PER_PX_AT_10X * 10.0 * scale / mpp_x
    return None


def scale_for_magnification(mag: float, objective_power: float | None, mpp_x: float | None) -> float | None:
    """The view scale that shows the slide at magnification ``mag``; None when unknown."""
    if objective_power:
        return mag / objective_power
    if mpp_x:
        return mag * mpp_x / (UM_PER_PX_AT_10X * 10.0)
    return None


def nice_length_um(max_um: float) -> float:
    """The largest 1-2-5 × 10^k micrometre length not above ``max_um`` (scale bars, grids)."""
    if max_um <= 0:
        return 0.0
    exponent = math.floor(math.log10(max_um))
    for mantissa in (5, 2, 1):
        value = mantissa * 10**exponent
        if value <= max_um:
            return float(value)
    return float(10 ** (exponent - 1) * 5)


def nice_length_at_least(min_um: float) -> float:
    """The smallest 1-2-5 × 10^k length not below ``min_um`` (grid spacing)."""
    exponent = math.floor(math.log10(max(min_um, 1e-9)))
    for mantissa in (1, 2, 5, 10):
        value = mantissa * 10.0**exponent
        if value >= min_um:
            return value
    return 10.0 ** (exponent + 1)


def format_length_um(um: float) -> str:
    """``250 µm``, ``1 mm``, ``2.5 mm``."""
    if um >= 1000:
        mm = um / 1000
        return f"{mm:g} mm"
    return f"{um:g} µm"
