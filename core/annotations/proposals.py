"""The network's calls as draft marks a doctor can accept, correct or reject (``biopsia propose``).

Tiles at or above the threshold become regions: the probability grid is resampled four times finer
(bilinear) and cut at the threshold, so outlines run between tile centres at the tile scale instead of
along tile edges; outlines are simplified to a quarter of a tile, regions smaller than ``min_tiles`` tiles
are dropped, holes are kept. Each draft records where it came from in its GeoJSON properties (QuPath
keeps them): the model's name and weights hash, the threshold, when it was proposed and the region's mean
probability, with ``"biopsia_draft": true`` until a doctor accepts it. The outline as proposed is kept
beside it (WKT), so whether the doctor changed it is known after the file was saved and opened again.
"""

from __future__ import annotations

from datetime import datetime, timezone

import cv2
import numpy as np
import shapely
from shapely.geometry import box

from core.annotations.masks import vectorise
from core.annotations.model import BENIGN, TUMOUR, Annotation

#: Sub-cells per grid cell side when the probabilities are resampled for smooth outlines.
SUPERSAMPLE = 4
#: Regions smaller than this many tiles are not proposed.
MIN_TILES = 2.0
#: GeoJSON properties a draft carries (`Annotation.extra["properties"]`).
DRAFT_KEY, ORIGIN_KEY = "biopsia_draft", "biopsia_origin"
#: What a doctor's decision adds to the origin: when, and whether the outline was changed first.
ACCEPTED_AT, REJECTED_AT, EDITED = "accepted_at", "rejected_at", "edited_by_doctor"
#: The origin's copy of the outline as proposed (WKT, full precision).
PROPOSED_OUTLINE = "proposed_outline"
#: A stored outline longer than this is not read (a hostile file); the draft's change is then unknown.
MAX_OUTLINE_CHARS = 2_000_000


def propose_marks(grid, threshold: float, min_tiles: float = MIN_TILES, class_name: str = TUMOUR.name,
                  when: datetime | None = None) -> list[Annotation]:
    """Draft marks from a `core.inference.predict.ProbabilityGrid`'s calls at ``threshold``, largest first.

    Parameters
    ----------
    grid : ProbabilityGrid
    threshold : float
        Tiles at or above it are tumour (the model's threshold, as `predict` uses it).
    min_tiles : float
        Regions smaller than this many tiles' area (a tile is ``stride`` x ``stride`` level-0 px) are dropped.
    class_name : str
        The drafts' class.
    when : datetime, optional
        The time recorded as ``proposed_at`` (now by default).

    Returns
    -------
    list of Annotation
        In level-0 pixels, clipped to the slide, each with ``extra["properties"]`` saying it is a draft
        and where it came from.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a threshold lies between 0 and 1, got {threshold}")
    probs = np.nan_to_num(np.asarray(grid.probs, np.float32), nan=0.0)
    if probs.size == 0 or not (probs >= threshold).any():
        return []
    rows, cols = probs.shape
    # pad by one cell of zeros so regions at the grid's edge close, then resample between cell centres
    padded = np.pad(probs, 1)
    fine = cv2.resize(padded, ((cols + 2) * SUPERSAMPLE, (rows + 2) * SUPERSAMPLE), interpolation=cv2.INTER_LINEAR)
    called = (fine >= threshold).astype(np.uint8)
    step = grid.stride / SUPERSAMPLE  # level-0 px per sub-cell
    offset = (grid.tile_l0 - grid.stride) / 2  # cell (0, 0) is drawn from origin + offset (`cell_rect`)
    origin = (grid.origin[0] + offset - grid.stride, grid.origin[1] + offset - grid.stride)
    tile_area = float(grid.stride) ** 2
    pieces = vectorise(called, downsample=step, min_area_l0=min_tiles * tile_area, origin=origin,
                       simplify=grid.stride / 4)
    slide = box(0, 0, grid.slide_size[0], grid.slide_size[1])
    stamp = (when or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    model = grid.model or {}
    out = []
    for piece in pieces:
        shape = piece.intersection(slide)
        if shape.is_empty or shape.area < min_tiles * tile_area or shape.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        origin_props = {"model": model.get("name"), "sha256": model.get("sha256"), "threshold": float(threshold),
                        "proposed_at": stamp, "mean_probability": round(_mean_inside(grid, probs, shape), 4),
                        PROPOSED_OUTLINE: shapely.to_wkt(shape, rounding_precision=-1)}
        out.append(Annotation(shape, class_name, extra={"properties": {DRAFT_KEY: True, ORIGIN_KEY: origin_props}}))
    out.sort(key=lambda a: -a.area_l0)
    return out


def _mean_inside(grid, probs: np.ndarray, shape) -> float:
    """The mean probability of the predicted cells whose centres lie in ``shape``."""
    from shapely import contains_xy

    rows, cols = probs.shape
    offset = (grid.tile_l0 - grid.stride) / 2 + grid.stride / 2
    xs = grid.origin[0] + offset + np.arange(cols) * grid.stride
    ys = grid.origin[1] + offset + np.arange(rows) * grid.stride
    gx, gy = np.meshgrid(xs, ys)
    inside = contains_xy(shape, gx, gy) & np.isfinite(np.asarray(grid.probs, np.float32))
    return float(probs[inside].mean()) if inside.any() else 0.0


def is_draft(annotation: Annotation) -> bool:
    """Whether a mark is a draft the network proposed and no doctor has accepted yet."""
    return bool((annotation.extra.get("properties") or {}).get(DRAFT_KEY))


def _decided(draft: Annotation, stamp_key: str, when: datetime | None, **more) -> dict:
    props = dict(draft.extra.get("properties") or {})
    if not props.get(DRAFT_KEY):
        raise ValueError(f"mark {draft.id} is not a draft of the network")
    props.pop(DRAFT_KEY)
    origin = dict(props.get(ORIGIN_KEY) or {})
    origin[stamp_key] = (when or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    origin.update(more)
    props[ORIGIN_KEY] = origin
    return {**draft.extra, "properties": props}


def proposed_outline(annotation: Annotation):
    """The outline the network proposed for ``annotation`` (a shapely geometry), or None when it has none or
    its stored copy cannot be read."""
    origin = (annotation.extra.get("properties") or {}).get(ORIGIN_KEY)
    text = origin.get(PROPOSED_OUTLINE) if isinstance(origin, dict) else None
    if not isinstance(text, str) or not text or len(text) > MAX_OUTLINE_CHARS:
        return None
    try:
        shape = shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError, TypeError):
        return None
    if shape is None or shape.is_empty or shape.geom_type not in ("Polygon", "MultiPolygon"):
        return None
    return shape


def outline_changed(outline, proposed) -> bool:
    """Whether ``outline`` differs from ``proposed`` by more than rounding: a symmetric difference over a
    level-0 pixel and a millionth of the area (saving may round coordinates; moving a vertex by one pixel
    counts)."""
    if outline.equals(proposed):
        return False
    if not (outline.is_valid and proposed.is_valid):
        return True
    return outline.symmetric_difference(proposed).area > max(1.0, 1e-6 * proposed.area)


def accept_draft(draft: Annotation, geometry=None, when: datetime | None = None) -> Annotation:
    """The ordinary mark a doctor's accepted draft becomes: its origin kept, when it was accepted, and whether
    the doctor changed its outline first.

    ``geometry`` is the outline to keep (by default the draft's own, as the doctor left it). It is compared
    with the outline stored at proposing (`proposed_outline`), so an edit made before the file was saved
    and opened again still counts; a draft without a readable stored outline is compared with its own
    geometry when ``geometry`` is given, and records ``edited_by_doctor`` as None (unknown) otherwise.
    """
    outline = geometry if geometry is not None else draft.geometry
    reference = proposed_outline(draft)
    if reference is None and geometry is not None:
        reference = draft.geometry
    edited = None if reference is None else outline_changed(outline, reference)
    extra = _decided(draft, ACCEPTED_AT, when, **{EDITED: edited})
    return Annotation(geometry if geometry is not None else draft.geometry, draft.class_name, draft.note,
                      draft.id, extra=extra)


def reject_draft(draft: Annotation, when: datetime | None = None) -> Annotation:
    """What a rejected draft leaves: a Benign mark over it (the doctor said this is not tumour, which a
    partly annotated slide's dataset takes as non-tumour), recording the draft's origin and the rejection."""
    extra = _decided(draft, REJECTED_AT, when)
    return Annotation(draft.geometry, BENIGN.name, draft.note, draft.id, extra=extra)
