"""Writing a planned dataset as a folder: MXNet RecordIO files, their lists, ``tiles.csv`` and ``manifest.json``.

The folder's layout is described in `core.tiles.dataset`; `core.tiles.folder` reads it back.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

import core
from core.errors import Cancelled, DatasetError
from core.staging import staged_folder
from core.tiles.folder import FORMAT, FORMAT_VERSION, MANIFEST
from core.tiles.planning import DatasetPlan
from core.tiles.reading import PlanReaders, ordered_positions, read_pipeline
from core.tiles.recordio import RecordWriter, pack_image_record
from core.tiles.splits import CLASSES, SPLITS

#: Tile encodings and their file suffix.
ENCODINGS = {"jpg": ".jpg", "png": ".png"}


def encode_tile(rgb: np.ndarray, encoding: str = "jpg", quality: int = 95) -> bytes:
    """A tile (uint8 RGB) as the bytes a record holds: JPEG at ``quality`` or lossless PNG.

    Raises
    ------
    DatasetError
        An encoding not offered, or one OpenCV could not make.
    """
    if encoding not in ENCODINGS:
        raise DatasetError(f"tile encoding {encoding!r} not understood; use 'jpg' or 'png'")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if encoding == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ENCODINGS[encoding], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DatasetError(f"could not encode a tile as {ENCODINGS[encoding]}")
    return buf.tobytes()


def write_dataset(plan: DatasetPlan, out_dir, encoding: str = "jpg", quality: int = 95, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None, should_stop=None,
                  encoded: Callable[[np.ndarray], Iterable[tuple[np.ndarray, list[bytes]]]] | None = None
                  ) -> dict | None:
    """Write the RecordIO files, ``.lst`` lists, ``tiles.csv`` and ``manifest.json`` into ``out_dir``.

    Tiles are read, resized and encoded on ``workers`` threads while one thread appends records. All
    files are first written into a hidden folder inside ``out_dir`` and moved into place only when every
    tile is written, so a cancelled or failed run (a full disk) leaves an earlier dataset there intact.

    Parameters
    ----------
    encoding : {"jpg", "png"}
        JPEG (``quality``) as MXNet's ``im2rec`` writes by default, or lossless PNG.
    progress : callable, optional
        ``progress(tiles_done, tiles)``.
    should_stop : callable, optional
        Checked between chunks of tiles; when true the partial files are removed and None is returned.
    encoded : callable, optional
        ``encoded(positions)`` yields ``(chunk of positions, their encoded tiles)`` in the order given, for
        tiles encoded elsewhere (`core.cohort.shards`: one task per slide on a cluster); by default the
        tiles are read and encoded here on ``workers`` threads. Either way the files are the same bytes.

    Returns
    -------
    dict or None
        The manifest, or None when cancelled.

    Raises
    ------
    DatasetError
        When the folder cannot be written (the message names it and the reason, e.g. no space left).
    """
    if encoding not in ENCODINGS:
        raise DatasetError(f"tile encoding {encoding!r} not understood; use 'jpg' or 'png'")
    out = Path(out_dir).expanduser().absolute()
    ext = ENCODINGS[encoding]
    if encoded is None:
        def encoded(positions: np.ndarray):
            return read_pipeline(plan, positions, lambda readers, part: encode_positions(plan, readers, part, encoding,
                                                                                         quality), workers)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"{out}: cannot write the dataset here: {err.strerror or err}") from err
    total = plan.label.size
    done = 0
    rows = []
    tile_l0 = {i: p.tile_l0 for i, p in enumerate(plan.plans)}
    try:
        with staged_folder(out) as staging:
            for split_name in SPLITS:
                positions = ordered_positions(plan, plan.select(split_name))
                lst = io.StringIO()
                with RecordWriter(staging / f"{split_name}.rec", staging / f"{split_name}.idx") as writer:
                    record = 0
                    for part, blobs in encoded(positions):
                        if should_stop is not None and should_stop():
                            raise Cancelled(f"{out}: writing the dataset cancelled")
                        for pos, blob in zip(part, blobs):
                            s, i, label = int(plan.slide[pos]), int(plan.index[pos]), int(plan.label[pos])
                            tile_plan, name = plan.plans[s], plan.sources[s].name
                            x, y = int(tile_plan.l0_x[i]), int(tile_plan.l0_y[i])
                            writer.write(record, pack_image_record(label, record, blob))
                            lst.write(f"{record}\t{label}\t{name}/{x}_{y}{ext}\n")
                            rows.append((split_name, record, name, x, y, tile_l0[s], plan.spec.tile_px,
                                         plan.spec.mpp, label, CLASSES[label], f"{tile_plan.tumour_fraction[i]:.3f}",
                                         f"{tile_plan.tissue_fraction[i]:.3f}"))
                            record += 1
                        done += part.size
                        if progress is not None:
                            progress(done, total)
                (staging / f"{split_name}.lst").write_text(lst.getvalue(), encoding="utf-8")
            with open(staging / "tiles.csv", "w", newline="", encoding="utf-8") as f:
                table = csv.writer(f)
                table.writerow(["split", "record", "slide", "x", "y", "size_l0", "tile_px", "mpp", "label", "class",
                                "tumour_fraction", "tissue_fraction"])
                table.writerows(rows)
            manifest = _manifest(plan, encoding, quality)
            manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest["software"] = {"biopsia": core.__version__}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    except Cancelled:
        return None
    except OSError as err:
        raise DatasetError(f"{out}: writing the dataset failed: {err.strerror or err}; nothing in the folder "
                           "was replaced") from err
    return manifest


def encode_positions(plan: DatasetPlan, readers: PlanReaders, positions: np.ndarray, encoding: str = "jpg",
                     quality: int = 95) -> list[bytes]:
    """Read and encode the plan's tiles at ``positions``, in that order (the slide named when one fails)."""
    blobs = []
    for pos in positions:
        slide = int(plan.slide[pos])
        rgb = readers.read(slide, int(plan.index[pos]))
        try:
            blobs.append(encode_tile(rgb, encoding, quality))
        except DatasetError as err:
            raise DatasetError(f"{plan.sources[slide].path}: {err}") from None
    return blobs


def _manifest(plan: DatasetPlan, encoding: str, quality: int) -> dict:
    slides = []
    for i, (source, tile_plan) in enumerate(zip(plan.sources, plan.plans)):
        mine = plan.slide == i
        slides.append({
            "name": source.name, "path": str(source.path), "fully_annotated": source.fully_annotated,
            "tile_l0": tile_plan.tile_l0, "level": tile_plan.level, "grid": list(tile_plan.grid_shape),
            "tiles_per_reason": tile_plan.counts,
            "tiles": {name: {cls: int(np.sum(mine & (plan.split == s) & (plan.label == c)))
                             for c, cls in enumerate(CLASSES)} for s, name in enumerate(SPLITS)},
        })
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "classes": list(CLASSES),
        "tile_px": plan.spec.tile_px, "mpp": plan.spec.mpp, "encoding": encoding, "quality": quality,
        "split": plan.settings, "counts": plan.counts(), "slides": slides,
        "files": {name: {"rec": f"{name}.rec", "idx": f"{name}.idx", "lst": f"{name}.lst"} for name in SPLITS},
    }


def write_arrays(tiles, split: np.ndarray, out_dir, *, mpp: float | None, settings: dict, extra: dict | None = None,
                 table: dict | None = None, encoding: str = "jpg", quality: int = 95,
                 progress: Callable[[int, int], None] | None = None, should_stop=None) -> dict | None:
    """Write tiles held in memory (`core.tiles.arrays.TileArrays`, e.g. cut from a patch folder) as a dataset folder.

    The same folder as `write_dataset` (RecordIO per split, ``.lst`` lists, ``tiles.csv``, ``manifest.json``),
    staged and swapped in whole, so `core.tiles.folder.read_dataset` and ``biopsia train`` read it alike.

    Parameters
    ----------
    tiles : TileArrays
    split : ndarray of int
        Per tile: 0 train, 1 test (indexes `SPLITS`).
    mpp : float or None
        µm/px of the tiles (None when unknown: a model trained on them cannot predict slides).
    settings : dict
        How the split was made (the manifest's ``split``).
    extra : dict, optional
        More manifest keys (where the tiles came from).
    table : dict, optional
        More ``tiles.csv`` columns: name -> one value per tile.

    Returns
    -------
    dict or None
        The manifest, or None when cancelled.
    """
    if encoding not in ENCODINGS:
        raise DatasetError(f"tile encoding {encoding!r} not understood; use 'jpg' or 'png'")
    out = Path(out_dir).expanduser().absolute()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if encoding == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ext = ENCODINGS[encoding]
    split = np.asarray(split).ravel()
    table = table or {}
    tile_px = int(tiles.images.shape[1])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"{out}: cannot write the dataset here: {err.strerror or err}") from err
    rows, done = [], 0
    try:
        with staged_folder(out) as staging:
            for code, split_name in enumerate(SPLITS):
                lst = io.StringIO()
                with RecordWriter(staging / f"{split_name}.rec", staging / f"{split_name}.idx") as writer:
                    for record, pos in enumerate(np.flatnonzero(split == code).tolist()):
                        if should_stop is not None and record % 256 == 0 and should_stop():
                            raise Cancelled(f"{out}: writing the dataset cancelled")
                        ok, buf = cv2.imencode(ext, cv2.cvtColor(tiles.images[pos], cv2.COLOR_RGB2BGR), params)
                        if not ok:
                            raise DatasetError(f"could not encode tile {pos} as {ext}")
                        label = int(tiles.labels[pos])
                        writer.write(record, pack_image_record(label, record, buf.tobytes()))
                        lst.write(f"{record}\t{label}\t{pos}{ext}\n")
                        rows.append([split_name, record, pos, tile_px, mpp, label, tiles.classes[label]]
                                    + [column[pos] for column in table.values()])
                        done += 1
                        if progress is not None and (done % 64 == 0 or done == len(tiles)):
                            progress(done, len(tiles))
                (staging / f"{split_name}.lst").write_text(lst.getvalue(), encoding="utf-8")
            with open(staging / "tiles.csv", "w", newline="", encoding="utf-8") as f:
                writer_csv = csv.writer(f)
                writer_csv.writerow(["split", "record", "tile", "tile_px", "mpp", "label", "class"] + list(table))
                writer_csv.writerows(rows)
            counts = {name: {cls: int(np.sum((split == s) & (tiles.labels == c)))
                             for c, cls in enumerate(tiles.classes)} for s, name in enumerate(SPLITS)}
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "classes": list(tiles.classes),
                "tile_px": tile_px, "mpp": mpp, "encoding": encoding, "quality": quality, "split": settings,
                "counts": counts,
                "files": {name: {"rec": f"{name}.rec", "idx": f"{name}.idx", "lst": f"{name}.lst"} for name in SPLITS},
                **(extra or {}),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "software": {"biopsia": core.__version__},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    except Cancelled:
        return None
    except OSError as err:
        raise DatasetError(f"{out}: writing the dataset failed: {err.strerror or err}; nothing in the folder "
                           "was replaced") from err
    return manifest
