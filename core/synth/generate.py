"""``write_synthetic_slide``: a deterministic H&E-like whole-slide image with known tumour regions."""

from __future__ import annotations

import errno
import math
import numbers
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shapely.geometry import MultiPolygon, Polygon

from core.annotations.formats import write_annotations
from core.atomic import create_temp
from core.annotations.model import Annotation, AnnotationClass
from core.errors import Cancelled
from core.synth.layout import make_layout
from core.synth.pyramid import PyramidSpec, PyramidWriter
from core.synth.render import MARGIN, TileRenderer
from core.synth.scene import make_scene
from core.synth.sprites import make_sprite_bank, make_textures

MIN_SIDE, MAX_SIDE = 256, 200_000
SUFFIXES = (".tif", ".tiff", ".svs")
TUMOUR_CLASS = AnnotationClass("Tumour", (200, 0, 0))
_UUID_NAMESPACE = uuid.UUID("5b0f4f7e-5d7c-4a53-9a59-2d1c1c6f8b10")


@dataclass(frozen=True)
class SynthResult:
    """What ``write_synthetic_slide`` wrote, with its ground truth.

    Attributes
    ----------
    slide_path, geojson_path : Path
        The slide file and the tumour annotations beside it.
    tumour_polygons : list of shapely Polygon
        Tumour ground truth in level-0 pixels (tumour ∩ tissue); a region the
        tissue split in two contributes one Polygon per part.
    tissue_polygons : list of shapely Polygon
        Tissue fragments in level-0 pixels.
    width, height : int
        Level-0 size in pixels.
    mpp : float
        Micrometres per level-0 pixel.
    """

    slide_path: Path
    geojson_path: Path
    tumour_polygons: list
    tissue_polygons: list
    width: int
    height: int
    mpp: float


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(out_path, seed, width, height, mpp, tile, quality) -> Path:
    path = Path(out_path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"synthetic slide path must end with .tif, .tiff or .svs, got {path.name!r}")
    for name, value in (("width", width), ("height", height)):
        if not _is_int(value) or not MIN_SIDE <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be a whole number of pixels from {MIN_SIDE} to {MAX_SIDE}, got {value!r}")
    if isinstance(mpp, bool) or not isinstance(mpp, numbers.Real) or not math.isfinite(mpp) or not 0.05 < mpp <= 20:
        raise ValueError(f"mpp (micrometres per pixel) must be in (0.05, 20], got {mpp!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not _is_int(tile) or tile % 16 or not 64 <= tile <= 4096:
        raise ValueError(f"tile must be a multiple of 16 from 64 to 4096, got {tile!r}")
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(errno.ENOENT, "output folder does not exist", str(folder))
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "output folder is a file, not a folder", str(folder))
    return path


def _polygon_parts(geom) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty else []
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def tumour_annotations(regions, seed: int) -> list[Annotation]:
    """Tumour regions as annotations with ids that depend only on the seed (level-0 pixels)."""
    annotations = []
    for i, region in enumerate(regions):
        parts = _polygon_parts(region)
        if not parts:
            continue
        geom = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        ann_id = uuid.uuid5(_UUID_NAMESPACE, f"synthetic-{seed}-tumour-{i}").hex
        annotations.append(Annotation(geom, TUMOUR_CLASS.name, id=ann_id))
    return annotations


def write_synthetic_slide(
    out_path,
    *,
    seed: int = 0,
    width: int = 40000,
    height: int = 30000,
    mpp: float = 0.5,
    svs: bool = False,
    tile: int = 512,
    quality: int = 85,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    specimen: str = "biopsy",
) -> SynthResult:
    """Write a synthetic H&E-like slide with known tumour regions, and its GeoJSON beside it.

    The image shows tissue fragments (needle cores and pieces) on glass: fibrous
    stroma, lobules of small glands, ducts, vessels and lymphocytes, and a few
    carcinoma regions whose texture (crowded pleomorphic nuclei, nests,
    cribriform lumens, desmoplastic stroma) differs from benign tissue while
    their mean colour stays close to it. The same seed and size always give the
    same pixels.

    Parameters
    ----------
    out_path : path-like
        Slide file to write, ending in ``.tif``/``.tiff`` (generic pyramidal TIFF)
        or ``.svs`` (Aperio layout). The GeoJSON is ``out_path.with_suffix('.geojson')``.
    seed : int
        Random seed (non-negative).
    width, height : int
        Level-0 size in pixels, 256 to 200,000.
    mpp : float
        Micrometres per level-0 pixel, in (0.05, 20]; 0.5 is a 20x scan.
    svs : bool
        Write the Aperio SVS layout (thumbnail, label and macro images); implied by a ``.svs`` suffix.
    tile : int
        Tile size in pixels (multiple of 16).
    quality : int
        JPEG quality, 1 to 100.
    progress : callable, optional
        ``progress(done, total)``, called as tiles are written.
    should_stop : callable, optional
        Checked between tiles; when it returns True the partial file is deleted
        and `core.errors.Cancelled` (a ``BiopsiaError``) is raised.
    specimen : {"biopsy", "resection"}
        Needle cores and small pieces (default), or one large section filling most of the glass.

    Returns
    -------
    SynthResult

    Raises
    ------
    ValueError
        For out-of-range arguments or an unsupported file suffix.
    OSError
        When the output folder is missing or cannot be written (no file is left behind).
    Cancelled
        When cancelled through ``should_stop`` (a ``BiopsiaError``).
    """
    path = _check_args(out_path, seed, width, height, mpp, tile, quality)
    if specimen not in ("biopsy", "resection"):
        raise ValueError(f"specimen must be 'biopsy' or 'resection', got {specimen!r}")
    svs = bool(svs) or path.suffix.lower() == ".svs"
    seed, width, height, tile, quality, mpp = int(seed), int(width), int(height), int(tile), int(quality), float(mpp)

    def stop_requested() -> bool:
        return should_stop is not None and bool(should_stop())

    def cancelled() -> Cancelled:
        return Cancelled(f"{path}: synthetic slide generation cancelled")

    # the stroma textures do not depend on the layout: draw them alongside it
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-setup") as setup:
        texture_job = setup.submit(make_textures, seed, mpp, tile, MARGIN)
        layout = make_layout(seed, width, height, mpp, specimen)
        if stop_requested():
            raise cancelled()
        bank = make_sprite_bank(seed, mpp)
        scene = make_scene(layout, bank)
        textures = texture_job.result()
    if stop_requested():
        raise cancelled()
    renderer = TileRenderer(layout, scene, bank, textures)
    spec = PyramidSpec(width=width, height=height, mpp=mpp, tile=tile, quality=quality, svs=svs, seed=seed,
                       name=path.stem)
    try:
        fd, tmp = create_temp(path)
        os.close(fd)
    except OSError as err:
        raise type(err)(err.errno, f"cannot write a slide in this folder: {err.strerror}", str(path.parent)) from err
    try:
        PyramidWriter(renderer, spec).write(tmp, progress=progress, should_stop=should_stop)
        os.replace(tmp, path)
    except Cancelled:
        tmp.unlink(missing_ok=True)
        raise cancelled() from None
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise type(err)(err.errno, f"cannot write synthetic slide: {err.strerror}", str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    geojson_path = path.with_suffix(".geojson")
    write_annotations(geojson_path, tumour_annotations(layout.tumour_regions, seed), [TUMOUR_CLASS])
    tumour_polygons = [p for region in layout.tumour_regions for p in _polygon_parts(region)]
    return SynthResult(slide_path=path, geojson_path=geojson_path, tumour_polygons=tumour_polygons,
                       tissue_polygons=list(layout.tissue_polygons), width=width, height=height, mpp=mpp)
