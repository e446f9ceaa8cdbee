"""How a tifffile series maps onto what ``TiffFileReader`` reads: planes, colours, metadata.

A ``Plane`` is one pyramid level: the pages that hold its channels, how its
tiles or strips are laid out, and how stored samples become RGB.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import SlideError
from core.slide.base import DAMAGED_HINT, LABEL, MACRO, THUMBNAIL, composite_on_white

__all__ = ["Plane", "TiffMeta", "associated_series", "find_planes", "tiff_metadata", "to_rgb8"]

MINISWHITE, MINISBLACK, RGB, PALETTE, SEPARATED = 0, 1, 2, 3, 5
#: Micrometres per OME length unit.
_OME_UNITS_UM = {"µm": 1.0, "μm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6,
                 "Å": 1e-4, "pm": 1e-6, "in": 25400.0}
#: Micrometres per TIFF ResolutionUnit (2 inch, 3 centimetre; tifffile adds 4 mm and 5 µm).
_RESUNIT_UM = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}
_MAX_ASSOCIATED_PIXELS = 1 << 25  # as MAX_REGION_PIXELS: a macro image is a few megapixels
_MAX_PROPERTY = 16_384


class Plane:
    """One pyramid level of a TIFF series: geometry, segment layout and colour model."""

    def __init__(self, path: Path | None, pages: list, photometric: int, channels: list[tuple[int, int]]):
        kf = pages[0].keyframe
        self.pages = pages
        self.photometric = photometric
        self.channels = channels  # (index into pages, sample within page) per stored channel read
        self.height, self.width = int(kf.imagelength), int(kf.imagewidth)
        self.samples = int(kf.samplesperpixel)
        self.separate = kf.planarconfig == 2 and self.samples > 1
        #: Every channel read is sample 0, 1, ... of one page's interleaved samples, so one copy takes them all.
        self.interleaved_prefix = (not self.separate and len({p for p, _ in channels}) == 1
                                   and [c for _, c in channels] == list(range(len(channels))))
        self.dtype = np.dtype(kf.dtype)
        self.file_dtype = self.dtype.newbyteorder(kf.parent.byteorder)
        self.bits = int(kf.bitspersample)
        extrasamples = tuple(kf.extrasamples or ())
        self.has_alpha = bool(extrasamples) and extrasamples[0] in (1, 2) and len(channels) in (2, 4)
        self.premultiplied = self.has_alpha and extrasamples[0] == 1
        self.colormap = None
        if photometric == PALETTE and kf.colormap is not None:
            cmap = np.asarray(kf.colormap)
            self.colormap = np.ascontiguousarray((cmap >> 8 if cmap.max() > 255 else cmap).astype(np.uint8).T)
        if kf.is_tiled:
            self.chunk_h, self.chunk_w = int(kf.tilelength), int(kf.tilewidth)
        else:
            rows = int(kf.rowsperstrip or 0)
            self.chunk_h, self.chunk_w = (rows if 0 < rows < self.height else self.height), self.width
        if min(self.width, self.height, self.chunk_w, self.chunk_h) <= 0:
            raise SlideError(path, f"a level declares {self.width} x {self.height} px in blocks of "
                                   f"{self.chunk_w} x {self.chunk_h} px", DAMAGED_HINT)
        self.n_tx = -(-self.width // self.chunk_w)
        self.n_ty = -(-self.height // self.chunk_h)
        self.per_plane = self.n_tx * self.n_ty
        expected = self.per_plane * (self.samples if self.separate else 1)
        for page in pages:
            # Touch lazily loaded values now, while a single thread holds the file.
            if len(page.dataoffsets) != expected or len(page.databytecounts) != expected:
                raise SlideError(path, f"its tile table lists {len(page.dataoffsets)} segments, "
                                       f"{expected} expected", DAMAGED_HINT)
            _ = page.jpegtables, page.keyframe.jpegheader, page.keyframe.decode
        self.rows_addressable = (not kf.is_tiled and kf.compression == 1 and kf.predictor == 1
                                 and kf.fillorder == 1 and self.bits == 8 * self.dtype.itemsize)

    def segment_indices(self, x0: int, y0: int, x1: int, y1: int, sample: int) -> list[int]:
        """Indices of the tiles or strips that meet level pixels [y0:y1, x0:x1] for one sample."""
        base = sample * self.per_plane if self.separate else 0
        tx0, tx1 = x0 // self.chunk_w, (x1 - 1) // self.chunk_w
        ty0, ty1 = y0 // self.chunk_h, (y1 - 1) // self.chunk_h
        return [base + ty * self.n_tx + tx for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    def segment_origin(self, index: int) -> tuple[int, int]:
        """(level y, level x) of a segment's top-left pixel."""
        within = index % self.per_plane
        return (within // self.n_tx) * self.chunk_h, (within % self.n_tx) * self.chunk_w

    def intensity_scale(self, sample: np.ndarray):
        """(lo, hi) per channel mapping stored values to 0..255, or None for 8-bit and palette data."""
        if self.dtype == np.uint8 or self.photometric == PALETTE:
            return None
        n = sample.shape[2]
        if self.dtype == bool:
            return np.zeros(n, np.float32), np.ones(n, np.float32)
        integer = self.dtype.kind in "ui"
        if integer and self.bits < 8 * self.dtype.itemsize:  # e.g. 12-bit data in 16-bit words
            return np.zeros(n, np.float32), np.full(n, 2.0**self.bits - 1, np.float32)
        flat = sample.reshape(-1, n).astype(np.float64)
        finite = np.where(np.isfinite(flat), flat, 0.0)
        lo = np.zeros(n) if self.dtype.kind == "u" else np.percentile(finite, 0.1, axis=0)
        hi = np.percentile(finite, 99.9, axis=0)
        colour = self.photometric in (RGB, SEPARATED, 6) or (n >= 3 and self.samples >= 3)
        if colour:  # one mapping for all colour channels keeps the stain colours balanced
            lo, hi = np.full(n, lo.min()), np.full(n, hi.max())
        if self.has_alpha:
            lo[-1], hi[-1] = 0.0, (np.iinfo(self.dtype).max if integer else 1.0)
        hi = np.where(hi > lo, hi, lo + 1.0)
        return lo.astype(np.float32), hi.astype(np.float32)


def find_planes(path: Path | None, series) -> list[Plane]:
    """A ``Plane`` per level of ``series`` (finest first), or SlideError when the layout is unsupported."""
    planes = []
    for level in series.levels:
        pages = list(level.pages)
        if not pages or any(p is None for p in pages):
            raise SlideError(path, "a pyramid level has missing pages", DAMAGED_HINT)
        kf = pages[0].keyframe
        if int(getattr(kf, "imagedepth", 1) or 1) > 1:
            raise SlideError(path, "3-D (volume) TIFF tiles are not supported")
        plane = _plane_for(path, level, pages, kf)
        if planes and (plane.width >= planes[-1].width and plane.height >= planes[-1].height):
            break  # not a reduced level; tifffile grouped something else
        planes.append(plane)
    if not planes:
        raise SlideError(path, "the TIFF holds no image")
    return planes


def _plane_for(path, level, pages, kf) -> Plane:
    """Pick the pages and samples that make the displayed RGB of one level."""
    samples = int(kf.samplesperpixel)
    photometric = int(kf.photometric)
    channel_pages = _channel_pages(level, pages, kf) if len(pages) > 1 and samples == 1 else []
    if len(channel_pages) > 1:
        # Channel-first (OME "CYX"): one grey page per channel; show 3 as RGB, else the first as grey.
        chosen = channel_pages[:3] if len(channel_pages) >= 3 else channel_pages[:1]
        return Plane(path, chosen, RGB if len(chosen) == 3 else MINISBLACK, [(i, 0) for i in range(len(chosen))])
    if samples == 1:
        sample_list = [0]
    elif photometric == SEPARATED and samples >= 4:
        sample_list = [0, 1, 2, 3]
    elif samples == 2:
        sample_list = [0, 1]
    else:
        alpha = samples >= 4 and bool(kf.extrasamples) and kf.extrasamples[0] in (1, 2)
        sample_list = [0, 1, 2, 3] if alpha else [0, 1, 2]
    if photometric not in (MINISWHITE, MINISBLACK, PALETTE, SEPARATED):
        photometric = RGB if samples >= 3 else MINISBLACK
    return Plane(path, pages[:1], photometric, [(0, s) for s in sample_list])


def _channel_pages(level, pages, kf) -> list:
    """The first plane's page for each channel C, other axes (Z, T...) at index 0."""
    axes, shape = level.get_axes(False), level.get_shape(False)
    leading = [(a, n) for a, n in zip(axes[: axes.index("Y")], shape) if a != "S"]
    if int(np.prod([n for _, n in leading])) != len(pages) or "C" not in [a for a, _ in leading]:
        return []
    c_at = [a for a, _ in leading].index("C")
    stride = int(np.prod([n for _, n in leading[c_at + 1 :]]))
    return [pages[c * stride] for c in range(leading[c_at][1])]


def to_rgb8(native: np.ndarray, scale, photometric: int, has_alpha: bool = False,
            premultiplied: bool = False, colormap: np.ndarray | None = None) -> np.ndarray:
    """Stored samples (h, w, n) as (h, w, 3) uint8 RGB, alpha blended onto white.

    Parameters
    ----------
    native : ndarray
        Samples as decoded, any dtype.
    scale : (lo, hi) arrays per channel, or None
        Linear mapping to 0..255; None uses the dtype's full range.
    photometric : int
        TIFF photometric interpretation (0 min-is-white, 1 grey, 2 RGB, 3 palette, 5 CMYK).
    has_alpha, premultiplied : bool
        Whether the last channel is alpha, and whether colours were multiplied by it.
    colormap : (N, 3) uint8 ndarray, optional
        Palette for photometric 3.

    Returns
    -------
    ndarray
    """
    if photometric == PALETTE and colormap is not None:
        return colormap[np.clip(native[:, :, 0], 0, len(colormap) - 1)]
    data = native if native.dtype == np.uint8 else _rescale(native, scale)
    if photometric == MINISWHITE:
        data = 255 - data
    if photometric == SEPARATED and data.shape[2] >= 4:
        ink = data[:, :, :3].astype(np.uint16)
        white = (255 - data[:, :, 3:4]).astype(np.uint16)
        data = ((255 - ink) * white // 255).astype(np.uint8)
    alpha = data[:, :, -1:] if has_alpha else None
    colour = data[:, :, :-1] if has_alpha else data
    rgb = np.repeat(colour[:, :, :1], 3, axis=2) if colour.shape[2] < 3 else colour[:, :, :3]
    if alpha is None:
        return np.ascontiguousarray(rgb)
    if premultiplied:
        return np.clip(rgb.astype(np.int16) + (255 - alpha), 0, 255).astype(np.uint8)
    return composite_on_white(np.concatenate([rgb, alpha], axis=2))


def _rescale(native: np.ndarray, scale) -> np.ndarray:
    """Any-dtype samples to uint8 with the slide's (lo, hi) mapping."""
    if scale is None:
        if native.dtype == bool:
            return native.astype(np.uint8) * 255
        if native.dtype.kind in "ui":
            info = np.iinfo(native.dtype)
            scale = (np.float32(info.min), np.float32(info.max))
        else:
            scale = (np.float32(0.0), np.float32(1.0))
    lo, hi = scale
    out = (native.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5
    return np.clip(np.nan_to_num(out), 0, 255).astype(np.uint8)


@dataclass
class TiffMeta:
    """What a TIFF says about itself."""

    vendor: str = "tiff"
    mpp: tuple[float, float] | None = None
    objective: float | None = None
    icc_profile: bytes | None = None
    properties: dict = field(default_factory=dict)


def tiff_metadata(tif, page) -> TiffMeta:
    """Vendor, micrometres per pixel, objective power, ICC profile and properties of an open TIFF."""
    meta = TiffMeta()
    for flag, vendor in (("is_ome", "ome-tiff"), ("is_svs", "aperio"), ("is_ndpi", "hamamatsu"),
                         ("is_philips", "philips"), ("is_scn", "leica")):
        if getattr(tif, flag, False):
            meta.vendor = vendor
            break
    props = meta.properties
    for code, name in ((270, "ImageDescription"), (271, "Make"), (272, "Model"), (305, "Software"),
                       (306, "DateTime"), (282, "XResolution"), (283, "YResolution"), (296, "ResolutionUnit")):
        tag = page.tags.get(code)
        if tag is not None:
            value = str(tag.value)  # an OME-XML description can run to megabytes
            props[f"tiff.{name}"] = value if len(value) <= _MAX_PROPERTY else value[:_MAX_PROPERTY] + " [...]"
    props["tifffile.compression"] = str(getattr(page.compression, "name", page.compression))
    icc = page.tags.get(34675)
    meta.icc_profile = bytes(icc.value) if icc is not None and icc.value else None
    if meta.vendor == "ome-tiff":
        meta.mpp, meta.objective = _ome_scale(tif.ome_metadata or "", props)
    elif meta.vendor == "aperio":
        desc = props.get("tiff.ImageDescription", "")
        mpp = re.search(r"\bMPP\s*=\s*([0-9.]+)", desc)
        mag = re.search(r"\bAppMag\s*=\s*([0-9.]+)", desc)
        value = _number(mpp.group(1)) if mpp else None
        meta.mpp = (value, value) if value else None
        meta.objective = _number(mag.group(1)) if mag else None
    if meta.mpp is None:
        meta.mpp = _resolution_mpp(page)
    return meta


def _ome_scale(xml: str, props: dict) -> tuple[tuple[float, float] | None, float | None]:
    """(mpp, objective) from OME-XML: the first image's PhysicalSizeX/Y and its objective's magnification."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    local = {el: el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    pixels = next((el for el, tag in local.items() if tag == "Pixels"), None)
    mpp = None
    if pixels is not None:
        sizes = []
        for axis in "XY":
            value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
            if value is not None:
                props[f"ome.PhysicalSize{axis}"] = f"{value} {unit}"
            factor = _OME_UNITS_UM.get(unit)
            number = _number(value)
            sizes.append(number * factor if number is not None and factor else None)
        if None not in sizes:
            mpp = (sizes[0], sizes[1])
    settings = next((el for el, tag in local.items() if tag == "ObjectiveSettings"), None)
    wanted = settings.get("ID") if settings is not None else None
    objective = None
    for el, tag in local.items():
        if tag == "Objective" and el.get("NominalMagnification") and (wanted is None or el.get("ID") == wanted):
            objective = _number(el.get("NominalMagnification"))
            props["ome.NominalMagnification"] = el.get("NominalMagnification")
            break
    return mpp, objective


def _number(text: str | None) -> float | None:
    """A metadata value as float, or None when it is missing or not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _resolution_mpp(page) -> tuple[float, float] | None:
    """Micrometres per pixel from the XResolution/YResolution tags and their unit."""
    unit_um = _RESUNIT_UM.get(int(page.resolutionunit or 1))
    x_res, y_res = page.resolution
    if unit_um is None or not x_res or not y_res:
        return None
    return unit_um / x_res, unit_um / y_res


def associated_series(tif) -> dict:
    """Label, macro and thumbnail series of a TIFF, by OpenSlide's names."""
    found = {}
    for series in tif.series[1:]:
        name = (series.name or "").lower()
        kind = LABEL if "label" in name else MACRO if ("macro" in name or "overview" in name) else (
            THUMBNAIL if "thumbnail" in name else None)
        if kind and kind not in found and series.size <= _MAX_ASSOCIATED_PIXELS * 4 and series.ndim in (2, 3):
            found[kind] = series
    return found
