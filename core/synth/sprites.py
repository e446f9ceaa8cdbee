"""Nucleus stamps and stroma textures, drawn once per slide and reused by every tile.

A sprite is a small float32 array of haematoxylin concentration (0 outside the
nucleus). Sprites are indexed ``bank.first[kind] + angle_bin * variants + variant``
for oriented kinds, ``bank.first[kind] + variant`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from core.synth.fields import pad_periodic, periodic_filtered_noise, periodic_warp, upsample_periodic

#: Orientation bins of oriented nuclei (spindles, flattened cells), over 0..180°.
ANGLE_BINS = 12
#: kind: (oriented, variants)
KINDS = {
    "lymph": (False, 32),
    "fibro": (True, 6),
    "epi": (True, 6),
    "myo": (True, 4),
    "endo": (True, 4),
    "tumour": (False, 256),
    "mitosis": (False, 16),
}
_SUPERSAMPLE = 4


@dataclass
class SpriteBank:
    """All nucleus stamps of one slide, with the offset of their centre pixel."""

    sprites: list = field(default_factory=list)  # float32 arrays
    first: dict = field(default_factory=dict)  # kind -> index of its first sprite
    max_radius: int = 0  # level-0 pixels from a sprite centre to its farthest edge

    def index(self, kind: str, angle: np.ndarray | None, variant: np.ndarray) -> np.ndarray:
        """Sprite indices for nuclei of ``kind`` with orientation ``angle`` (radians) and ``variant``."""
        oriented, count = KINDS[kind]
        base = self.first[kind]
        variant = np.asarray(variant, np.int64) % count
        if not oriented:
            return (base + variant).astype(np.int32)
        angle_bin = np.floor((np.asarray(angle) % math.pi) / math.pi * ANGLE_BINS).astype(np.int64) % ANGLE_BINS
        return (base + angle_bin * count + variant).astype(np.int32)


def _outline(rng, a: float, b: float, angle: float, roughness: float, bend: float = 0.0,
             taper: float = 0.0, points: int = 48) -> np.ndarray:
    """Nucleus outline (points, 2) around the origin: a rough ellipse, optionally bent and tapered."""
    phi = np.linspace(0, 2 * np.pi, points, endpoint=False)
    rho = np.ones_like(phi)
    for k in range(2, 6):
        rho += roughness * rng.normal() / k * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    x = a * rho * np.cos(phi)
    y = b * rho * np.sin(phi)
    if taper:  # spindle: thinner towards the tips
        y *= 1 - taper * (x / a) ** 2
    y += bend * (x / a) ** 2 * b
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    return np.column_stack((x * cos_a - y * sin_a, x * sin_a + y * cos_a))


def _render(rng, outline: np.ndarray, level: float, chromatin: float, grain_px: float,
            rim: float = 0.0, rim_px: float = 0.0, nucleoli: int = 0, nucleolus_px: float = 0.0,
            nucleolus_level: float = 0.0) -> np.ndarray:
    """Rasterise one nucleus: coverage x (level x chromatin texture) + membrane rim + nucleoli."""
    reach = float(np.abs(outline).max()) + 2.0
    size = int(math.ceil(reach)) * 2 + 1
    ss = _SUPERSAMPLE if size < 40 else 2 if size < 100 else 1
    big = size * ss
    centre = size * ss / 2.0
    cover = np.zeros((big, big), np.uint8)
    pts = np.round((outline * ss + centre) * 16).astype(np.int32)
    cv2.fillPoly(cover, [pts], 255, cv2.LINE_AA, 4)
    mask = cv2.resize(cover, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    grain = rng.standard_normal((size, size)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), max(0.5, grain_px))
    grain /= max(float(grain.std()), 1e-6)
    body = level * np.clip(1.0 + chromatin * grain, 0.25, 2.0)
    if rim > 0:
        inner = np.zeros_like(cover)
        scale = max(0.2, 1.0 - rim_px / max(reach - 2.0, 1.0))
        pts_in = np.round((outline * scale * ss + centre) * 16).astype(np.int32)
        cv2.fillPoly(inner, [pts_in], 255, cv2.LINE_AA, 4)
        inner_mask = cv2.resize(inner, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        body = body + rim * (mask - inner_mask)
    sprite = mask * body
    for _ in range(nucleoli):
        spot = np.zeros((big, big), np.uint8)
        off = outline[rng.integers(len(outline))] * rng.uniform(0.0, 0.45)
        cv2.circle(spot, (int((off[0] * ss + centre) * 16), int((off[1] * ss + centre) * 16)),
                   int(nucleolus_px * ss * 16), 255, -1, cv2.LINE_AA, 4)
        spot_mask = cv2.resize(spot, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        sprite = np.maximum(sprite, spot_mask * nucleolus_level)
    return np.ascontiguousarray(sprite, dtype=np.float32)


def _kind_sprite(rng, kind: str, angle: float, um: float) -> np.ndarray:
    """One random nucleus of ``kind`` (sizes in micrometres, ``um`` pixels per micrometre)."""
    u = rng.uniform
    if kind == "lymph":
        r = u(2.5, 3.3) * um
        return _render(rng, _outline(rng, r, r * u(0.88, 1.0), u(0, math.pi), 0.06), u(1.45, 1.75), 0.12,
                       0.35 * um)
    if kind == "fibro":
        a, b = u(5.5, 9.0) * um, u(1.1, 1.6) * um
        return _render(rng, _outline(rng, a, b, angle + rng.normal(0, 0.12), 0.05, bend=rng.normal(0, 0.5),
                                     taper=0.55), u(1.05, 1.35), 0.15, 0.4 * um)
    if kind == "epi":
        a = u(3.4, 4.4) * um
        return _render(rng, _outline(rng, a, a * u(0.7, 0.88), angle + rng.normal(0, 0.15), 0.05),
                       u(0.95, 1.2), 0.22, 0.4 * um, nucleoli=int(u() < 0.2), nucleolus_px=0.45 * um,
                       nucleolus_level=1.4)
    if kind == "myo":
        a = u(3.8, 5.2) * um
        return _render(rng, _outline(rng, a, u(1.2, 1.7) * um, angle + rng.normal(0, 0.1), 0.05, taper=0.3),
                       u(1.15, 1.4), 0.12, 0.4 * um)
    if kind == "endo":
        a = u(4.5, 6.0) * um
        return _render(rng, _outline(rng, a, u(1.0, 1.4) * um, angle, 0.04, bend=rng.normal(0, 0.6), taper=0.4),
                       u(1.0, 1.25), 0.12, 0.4 * um)
    if kind == "tumour":
        a = float(np.clip(rng.lognormal(math.log(5.9), 0.2), 4.3, 9.5)) * um
        outline = _outline(rng, a, a / u(1.0, 1.55), u(0, math.pi), u(0.10, 0.24))
        if u() < 0.72:  # vesicular: pale, coarse chromatin, thick membrane, prominent nucleoli
            return _render(rng, outline, u(0.45, 0.7), 0.42, 0.55 * um, rim=u(0.4, 0.6), rim_px=0.8 * um,
                           nucleoli=int(rng.integers(1, 3)), nucleolus_px=u(0.7, 1.25) * um,
                           nucleolus_level=u(1.5, 1.9))
        return _render(rng, outline, u(1.0, 1.35), 0.3, 0.5 * um, nucleoli=int(u() < 0.4),
                       nucleolus_px=0.8 * um, nucleolus_level=1.9)
    if kind == "mitosis":  # condensed chromosomes: a ragged dark bar or clump
        a = u(4.0, 6.5) * um
        outline = _outline(rng, a, a * u(0.3, 0.6), u(0, math.pi), 0.35)
        return _render(rng, outline, u(1.7, 2.1), 0.45, 0.6 * um)
    raise ValueError(kind)


def make_sprite_bank(seed: int, mpp: float) -> SpriteBank:
    """Draw every nucleus variant once for a slide at ``mpp`` micrometres per pixel."""
    rng = np.random.default_rng([seed, 10])
    um = 1.0 / mpp
    bank = SpriteBank()
    for kind, (oriented, count) in KINDS.items():
        bank.first[kind] = len(bank.sprites)
        bins = range(ANGLE_BINS) if oriented else [None]
        for angle_bin in bins:
            angle = 0.0 if angle_bin is None else (angle_bin + 0.5) * math.pi / ANGLE_BINS
            for _ in range(count):
                bank.sprites.append(_kind_sprite(rng, kind, angle, um))
    bank.max_radius = max(s.shape[0] // 2 + 1 for s in bank.sprites)
    return bank


@dataclass
class Textures:
    """Periodic textures, padded so any tile-sized window is a plain slice (see ``periodic_crop``)."""

    period: int  # of the fibre textures
    fine_period: int  # of ``loose`` and ``grain``
    fibres: list  # three fibre textures at 0°, 60°, 120°
    loose: np.ndarray  # isotropic, loose (desmoplastic / oedematous) stroma
    grain: np.ndarray  # fine multiplicative granularity for everything stained
    noise_period: int  # divides the tile size, so every bare-glass tile is the same
    noise_pos: np.ndarray  # uint8 scanner noise added to every pixel ...
    noise_neg: np.ndarray  # ... and subtracted


def render_step(tile: int) -> int:
    """Largest divisor of the tile size up to 512: regions are rendered in chunks this big."""
    return max(d for d in range(1, min(tile, 512) + 1) if tile % d == 0)


def make_textures(seed: int, mpp: float, tile: int, margin: int) -> Textures:
    """Build the stroma and noise textures of a slide (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 11])
    um = 1.0 / mpp
    fine_period = int(2 ** math.ceil(math.log2(max(256.0, min(1024.0, 500 * um)))))
    # bundles and clefts are large: a longer period (drawn at half resolution) hides their repetition
    period = 2 * fine_period
    step = render_step(tile)
    pad = step + 2 * margin
    fibres = []
    for k in range(3):
        angle = k * math.pi / 3
        fine = periodic_filtered_noise(rng, fine_period, 14 * um, 0.9 * um, angle)
        fine = np.tile(periodic_warp(rng, fine, 5 * um, 30 * um), (2, 2))
        bundle = periodic_filtered_noise(rng, fine_period, 30 * um, 4.5 * um, angle)
        bundle = upsample_periodic(periodic_warp(rng, bundle, 5 * um, 30 * um), 2)
        # collagen bundles with a faint fibrillar grain and occasional clefts between bundles
        tex = 1.0 + 0.17 * fine + 0.14 * bundle
        cleft = np.clip((bundle + 2.1) / 0.5, 0, 1)
        tex = np.clip(tex, 0.15, 1.7) * (0.25 + 0.75 * cleft)
        fibres.append(pad_periodic(tex.astype(np.float32), pad))
        del fine, bundle, tex, cleft
    period_fine = fine_period
    loose_fine = periodic_filtered_noise(rng, period_fine, 1.6 * um, 1.6 * um, 0.0)
    loose_wisp = periodic_filtered_noise(rng, period_fine, 12 * um, 1.2 * um, 0.4)
    loose_wisp = periodic_warp(rng, loose_wisp, 8 * um, 25 * um)
    loose = np.clip(0.9 + 0.15 * loose_fine + 0.2 * loose_wisp, 0.3, 1.5)
    grain = np.clip(1.0 + 0.10 * periodic_filtered_noise(rng, period_fine, 0.5 * um, 0.5 * um, 0.0), 0.7, 1.3)
    noise = np.clip(np.round(rng.normal(0, 1.1, (step, step, 3))), -3, 3).astype(np.int16)
    return Textures(
        period=period,
        fine_period=period_fine,
        fibres=fibres,
        loose=pad_periodic(loose.astype(np.float32), pad),
        grain=pad_periodic(grain.astype(np.float32), pad),
        noise_period=step,
        noise_pos=pad_periodic(np.clip(noise, 0, None).astype(np.uint8), pad),
        noise_neg=pad_periodic(np.clip(-noise, 0, None).astype(np.uint8), pad),
    )
