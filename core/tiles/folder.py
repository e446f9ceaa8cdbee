"""Reading a dataset folder back: its checked manifest, and its RecordIO tiles (or a patch folder) as arrays.

`core.tiles.export` writes the folders read here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import DatasetError
from core.tiles.arrays import TileArrays
from core.tiles.grid import MPP_RANGE, TILE_PX_RANGE
from core.tiles.reading import default_workers
from core.tiles.recordio import RecordIOError, RecordReader, unpack_image_record
from core.tiles.splits import CLASSES, split_code

FORMAT = "biopsia-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def read_manifest(folder) -> dict:
    """The checked ``manifest.json`` of a dataset folder.

    Raises
    ------
    DatasetError
        Missing, unreadable, not a Biopsia dataset, or from a newer Biopsia.
    """
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; write the dataset with 'biopsia dataset' or give a patch folder "
                           "(one subfolder per class)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable ({err}); write the dataset again") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a Biopsia dataset manifest")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise DatasetError(f"{path}: dataset format {doc.get('format_version')!r} is not one this Biopsia reads "
                           f"(up to {FORMAT_VERSION}); update Biopsia")
    classes = doc.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        raise DatasetError(f"{path}: 'classes' must list at least two class names")
    _check_scale(path, doc)
    return doc


def _check_scale(path: Path, doc: dict) -> None:
    """A manifest's tile size and µm/px, when present, are what tiles can be cut at (a model records them)."""
    mpp, tile_px = doc.get("mpp"), doc.get("tile_px")
    if mpp is not None and not (isinstance(mpp, (int, float)) and not isinstance(mpp, bool) and math.isfinite(mpp)
                                and MPP_RANGE[0] <= mpp <= MPP_RANGE[1]):
        raise DatasetError(f"{path}: 'mpp' must be a number of micrometres per pixel from {MPP_RANGE[0]:g} to "
                           f"{MPP_RANGE[1]:g}, found {mpp!r}; write the dataset again")
    if tile_px is not None and not (isinstance(tile_px, int) and not isinstance(tile_px, bool)
                                    and TILE_PX_RANGE[0] <= tile_px <= TILE_PX_RANGE[1]):
        raise DatasetError(f"{path}: 'tile_px' must be a whole number of pixels from {TILE_PX_RANGE[0]} to "
                           f"{TILE_PX_RANGE[1]}, found {tile_px!r}; write the dataset again")


#: The largest tile side a record may declare (models take at most 1,024 px tiles; room for patches).
RECORD_MAX_SIDE = 8192


def _undecodable(body: bytes) -> str | None:
    """Why an encoded tile must not reach the decoder (a damaged header that would make it allocate
    far more than the tile), or None. Reads headers only."""
    if body[:8] == b"\x89PNG\r\n\x1a\n":
        at = 8
        while at + 8 <= len(body):  # every chunk must fit in the record, or libpng allocates what it declares
            length, kind = int.from_bytes(body[at:at + 4], "big"), body[at + 4:at + 8]
            if length > len(body) - at - 12:
                return "is a damaged PNG (a chunk runs past the end of the record)"
            if kind == b"IEND":
                break
            at += 12 + length
    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "is not a readable image"
    if not (0 < width <= RECORD_MAX_SIDE and 0 < height <= RECORD_MAX_SIDE):
        return f"declares an image of {width} x {height} px (at most {RECORD_MAX_SIDE} px a side)"
    return None


def read_records(rec_path, classes=None, workers: int | None = None):
    """All image records of one ``.rec`` file (with its ``.idx``) as `core.tiles.arrays.TileArrays`.

    Raises
    ------
    DatasetError
        A damaged file or index, an image that does not decode, tiles of different sizes, a label
        outside ``classes``.
    """
    rec_path = Path(rec_path)
    for needed in (rec_path, rec_path.with_suffix(".idx")):
        if not needed.is_file():
            raise DatasetError(f"{needed}: missing (a dataset needs each .rec file and its .idx index); "
                               "write the dataset again")
    try:
        reader = RecordReader(rec_path)
    except (RecordIOError, OSError) as err:
        raise DatasetError(str(err)) from err
    keys = reader.keys

    def decode(key: int):
        try:
            label, _, body = unpack_image_record(reader.read(key), f"{rec_path}, record {key}")
        except RecordIOError as err:
            raise DatasetError(str(err)) from err
        problem = _undecodable(body)
        if problem:
            raise DatasetError(f"{rec_path}: record {key} {problem}; write the dataset again")
        bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{rec_path}: record {key} is not a readable image; write the dataset again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label

    with ThreadPoolExecutor(default_workers(workers)) as pool:
        decoded = list(pool.map(decode, keys))
    if not decoded:
        raise DatasetError(f"{rec_path}: holds no tiles")
    shapes = {img.shape for img, _ in decoded}
    if len(shapes) > 1:
        raise DatasetError(f"{rec_path}: tiles of different sizes {sorted(shapes)}")
    labels = np.array([lab for _, lab in decoded], np.float64)
    if np.any(labels != np.round(labels)) or labels.min() < 0:
        raise DatasetError(f"{rec_path}: labels must be whole class numbers, found {sorted(set(labels.tolist()))[:5]}")
    labels = labels.astype(np.int64)
    classes = list(classes) if classes else (list(CLASSES) if labels.max() < 2 else
                                             [str(i) for i in range(labels.max() + 1)])
    if labels.max() >= len(classes):
        raise DatasetError(f"{rec_path}: label {labels.max()} but only {len(classes)} classes {classes}")
    return TileArrays(np.stack([img for img, _ in decoded]), labels, classes)


def read_dataset(path, split: str = "train", workers: int | None = None):
    """Tiles of one split as `core.tiles.arrays.TileArrays`, from a dataset folder or a patch folder.

    ``path`` is a folder written by `write_dataset` (``manifest.json`` + RecordIO), a ``.rec`` file,
    or a patch folder with one subfolder per class (then ``split`` is ignored: all patches, as they are;
    `core.tiles.patches.read_patch_folder` cuts them at a scale and groups them).

    Raises
    ------
    DatasetError
        Missing or damaged files, a record that does not decode, a split with no tiles.
    """
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".rec":
        manifest_dir = path.parent
        classes = read_manifest(manifest_dir)["classes"] if (manifest_dir / MANIFEST).is_file() else None
        return read_records(path, classes, workers)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder or .rec file")
    if not (path / MANIFEST).is_file():  # a patch folder, its dataset.json (scale, classes) honoured
        from core.tiles.patches import read_patch_folder
        return read_patch_folder(path, group=False, workers=workers).tiles
    manifest = read_manifest(path)
    split_code(split)
    counts = manifest.get("counts", {}).get(split, {})
    if counts and sum(counts.values()) == 0:
        raise DatasetError(f"{path}: the {split} split holds no tiles ({manifest.get('split', {})}); write the "
                           "dataset with more slides, or with --split random")
    files = (manifest.get("files") or {}).get(split) or {"rec": f"{split}.rec"}
    return read_records(path / files["rec"], manifest["classes"], workers)


TILES_CSV = "tiles.csv"
GROUP_COLUMNS = ("slide", "group")  # a slide dataset's tiles come from slides, a patch folder's from groups


def read_tile_groups(folder, split: str = "train", count: int | None = None) -> tuple[str, np.ndarray] | None:
    """Where each tile of one split came from, in record order: ``(column, ids)``, from ``tiles.csv``.

    ``column`` is ``"slide"`` for a dataset cut from slides, ``"group"`` for one cut from a patch folder
    with near-copy groups. Validation held out by these ids never shares a slide (or an original) with
    training. None when the folder has no ``tiles.csv`` or it names neither column.

    Raises
    ------
    DatasetError
        ``tiles.csv`` unreadable, a record number missing or repeated, or not ``count`` records.
    """
    path = Path(folder) / TILES_CSV
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            column = next((c for c in GROUP_COLUMNS if c in (reader.fieldnames or ())), None)
            if column is None:
                return None
            rows = [(int(row["record"]), row[column]) for row in reader if row.get("split") == split]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable ({err}); write the dataset again") from err
    records = sorted(r for r, _ in rows)
    if records != list(range(len(rows))) or (count is not None and len(rows) != count):
        raise DatasetError(f"{path}: its {split} rows do not list records 0 to {(count or len(rows)) - 1} once "
                           "each; write the dataset again")
    ids = np.empty(len(rows), dtype=object)
    for record, value in rows:
        ids[record] = value
    return column, ids
