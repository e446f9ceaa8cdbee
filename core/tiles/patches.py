"""Patch folders: one subfolder of image patches per class, with an optional scale, class mapping and groups.

A patch folder is what public sets ship and other tools export::

    patches/
        dataset.json        (optional) {"mpp": 0.5, "classes": {...}, "groups": "groups.csv"}
        groups.csv          (optional) file,group
        lung_aca/*.jpeg
        lung_n/*.jpeg

`read_patch_folder` reads it as tiles a model can take: each patch is resampled from its µm/px to the
tiles' µm/px and cut into a centred grid of tiles (every tile labelled with its folder's class and
grouped with its patch), and near-copies of one original are grouped (`core.tiles.groups`) so that
splits keep them on one side. `write_patch_dataset` writes the tiles as a normal Biopsia dataset.

``dataset.json`` (every key optional; unknown keys are refused, so that a typo is not silently ignored):

``mpp``
    micrometres per pixel of the patches as stored (``--patch-mpp`` wins over it).
``classes``
    ``{folder: class name}``, e.g. ``{"lung_aca": "Tumour", "lung_scc": "Tumour", "lung_n": "Non-tumour"}``;
    ``null`` leaves a folder out. When given it must name every class folder. Class names that are exactly
    ``Non-tumour`` and ``Tumour`` take `core.tiles.splits.CLASSES` order (Tumour is label 1); other names
    are sorted. Without a mapping the classes are the folder names, sorted.
``groups``
    a ``file,group`` CSV inside the folder (file relative to the folder, e.g. ``lung_aca/lungaca1.jpeg``)
    naming every patch's group; without it near-copies are found in the pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import cv2
import numpy as np

from core.errors import Cancelled, DatasetError
from core.paths import cache_dir
from core.tiles.arrays import IMAGE_SUFFIXES, TileArrays
from core.tiles.grid import MPP_RANGE, TILE_PX_RANGE
from core.tiles.groups import (CANDIDATES, COLOUR_LIMIT, DETAIL_SIGMA, PREFILTER, THRESHOLD, THUMB_PX,
                               find_near_copies, read_groups_csv)
from core.tiles.reading import default_workers
from core.tiles.splits import CLASSES

DATASET_JSON = "dataset.json"
GROUPS_CSV = "groups.csv"
#: ``dataset.json`` is a few lines; anything larger is not one.
DATASET_JSON_MAX_BYTES = 1 << 20
#: Tiles may be cut from patches at most this much coarser than the tiles (they are never upsampled more);
#: the same tolerance as prediction's (`core.inference.predict.MPP_TOLERANCE`).
UPSAMPLE_TOLERANCE = 1.1
#: The largest patch side read (larger images are slides, not patches).
PATCH_MAX_SIDE = 8192
#: Where found groups are kept, keyed by the folder's files (names, sizes, times) and the method's settings.
GROUPS_CACHE = "patch-groups"
_KEYS = ("mpp", "classes", "groups")


@dataclass
class PatchSet:
    """Tiles cut from a patch folder, their groups, and their scale.

    Attributes
    ----------
    tiles : TileArrays
        uint8 RGB tiles, labels indexing ``tiles.classes``.
    groups : ndarray of int64
        One group id per tile (``0..n_groups-1``); tiles cut from one patch share its group.
    mpp : float or None
        µm/px of the tiles (None: the patches' scale is unknown).
    source : str or None
        Where the patches' scale came from: ``"--patch-mpp"``, ``"dataset.json"`` or None.
    patch_mpp : float or None
        µm/px of the patches as stored.
    files : list of str
        Per tile: its patch, relative to the folder (``"lung_aca/lungaca1.jpeg"``).
    patches : int
        Patch files read.
    group_source : str
        ``"groups.csv"``, ``"near-copies"`` (found in the pixels) or ``"none"`` (each patch its own group).
    folder : Path
    """

    tiles: TileArrays
    groups: np.ndarray
    mpp: float | None
    source: str | None
    patch_mpp: float | None = None
    files: list[str] = field(default_factory=list)
    patches: int = 0
    group_source: str = "none"
    folder: Path | None = None

    @property
    def n_groups(self) -> int:
        """Number of distinct groups."""
        return int(np.unique(self.groups).size)

    def describe(self) -> str:
        """One line: patches, tiles, scale and groups, e.g. for the CLI's note."""
        scale = (f"{self.patch_mpp:g} µm/px (from {self.source})" if self.patch_mpp is not None
                 else "no µm/px")
        tiles = (f"{len(self.tiles)} tiles of {self.tiles.images.shape[1]} px"
                 + (f" at {self.mpp:g} µm/px" if self.mpp is not None else ""))
        how = {"groups.csv": "from groups.csv", "near-copies": "near-copies found",
               "none": "each patch its own"}[self.group_source]
        return (f"{self.folder}: {self.patches} patches at {scale} -> {tiles}; {self.n_groups} groups ({how}); "
                f"classes {', '.join(self.tiles.classes)}")


def is_patch_folder(path) -> bool:
    """True for a folder without ``manifest.json`` or ``biopsia-project.json`` whose subfolders hold images."""
    from core.project.layout import PROJECT_FILE
    from core.tiles.folder import MANIFEST
    root = Path(path)
    if not root.is_dir() or (root / MANIFEST).exists() or (root / PROJECT_FILE).exists():
        return False
    return any(_images(d) for d in _class_dirs(root))


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def check_mpp(value, where: str) -> float:
    """A finite µm/px within `core.tiles.grid.MPP_RANGE`, else DatasetError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not MPP_RANGE[0] <= value <= MPP_RANGE[1]:
        raise DatasetError(f"{where}: the patches' µm/px must be a number from {MPP_RANGE[0]:g} to "
                           f"{MPP_RANGE[1]:g}, found {str(value)[:40]!r}")
    return float(value)


def read_dataset_json(folder) -> dict | None:
    """The checked ``dataset.json`` of a patch folder: ``{"mpp", "classes", "groups"}`` (each may be None).

    Returns None when the folder has none.

    Raises
    ------
    DatasetError
        Unreadable, too large, not a JSON object, an unknown key, a µm/px out of range, a class mapping
        that is not ``{folder: name or null}`` or names a folder that is not there, a groups file
        outside the folder or missing.
    """
    root = Path(folder)
    path = root / DATASET_JSON
    if not path.exists():
        return None
    try:
        if path.stat().st_size > DATASET_JSON_MAX_BYTES:
            raise DatasetError(f"{path}: {path.stat().st_size} bytes is too large for a dataset description "
                               f"(at most {DATASET_JSON_MAX_BYTES} bytes)")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DatasetError(f"{path}: unreadable ({str(err)[:200]}); fix or remove it") from err
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: must be a JSON object such as {{\"mpp\": 0.5}}")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                           f"known keys are {', '.join(_KEYS)}")
    out = {"mpp": None, "classes": None, "groups": None}
    if doc.get("mpp") is not None:
        out["mpp"] = check_mpp(doc["mpp"], f"{path}: 'mpp'")
    if doc.get("classes") is not None:
        out["classes"] = _check_mapping(path, root, doc["classes"])
    if doc.get("groups") is not None:
        out["groups"] = _check_groups_file(path, root, doc["groups"])
    return out


def _check_mapping(path: Path, root: Path, mapping) -> dict:
    if not isinstance(mapping, dict) or not mapping:
        raise DatasetError(f"{path}: 'classes' must map class folders to class names, e.g. "
                           "{\"lung_aca\": \"Tumour\", \"lung_n\": \"Non-tumour\"}")
    folders = {d.name for d in _class_dirs(root)}
    for name, value in mapping.items():
        if name not in folders:
            raise DatasetError(f"{path}: 'classes' names the folder {name[:100]!r}, which is not a class folder "
                               f"of {root} (found {', '.join(sorted(folders)[:10]) or 'none'})")
        if value is not None and not (isinstance(value, str) and value.strip() and len(value) <= 100):
            raise DatasetError(f"{path}: 'classes' maps {name!r} to {str(value)[:40]!r}; give a class name "
                               "(text of 1 to 100 characters) or null to leave the folder out")
    unmapped = sorted(f for f in folders if f not in mapping and _images(root / f))
    if unmapped:
        raise DatasetError(f"{path}: 'classes' does not say what {', '.join(unmapped[:5])} hold(s); map every "
                           "class folder (null leaves one out)")
    return {k: (v.strip() if v is not None else None) for k, v in mapping.items()}


def _check_groups_file(path: Path, root: Path, name) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{path}: 'groups' must name a file,group CSV in the folder, e.g. \"groups.csv\"")
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"{path}: 'groups' must be a file inside {root}, found {name[:100]!r}")
    file = root / rel
    if not file.is_file():
        raise DatasetError(f"{path}: 'groups' names {name[:100]!r}, which is not in {root}")
    return file


def read_patch_folder(path, *, patch_mpp: float | None = None, tile_px: int | None = None,
                      mpp: float | None = None, group: bool = True, workers: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> PatchSet:
    """Read a patch folder as tiles of ``tile_px`` at ``mpp`` µm/px, with their groups.

    Parameters
    ----------
    path : path-like
        The folder: one subfolder of PNG/JPEG/TIFF patches per class, an optional ``dataset.json``.
    patch_mpp : float, optional
        µm/px of the patches as stored; wins over ``dataset.json``'s ``mpp``.
    tile_px : int, optional
        Tile side. Default: the patches' side (after resampling), which must then be one square size.
    mpp : float, optional
        µm/px of the tiles. Default: the patches' (no resampling). Needs the patches' scale unless every
        patch already is one tile.
    group : bool
        Find near-copies when no groups file is given (False: each patch its own group). Found groups
        are cached (under `core.paths.cache_dir`) by the files' names, sizes and times.
    progress : callable, optional
        ``progress(patches_read, patches)``.
    should_stop : callable, optional
        Checked while reading and grouping; raises `core.errors.Cancelled` when true.

    Returns
    -------
    PatchSet

    Raises
    ------
    DatasetError
        No class folders or patches, an unreadable patch, a bad µm/px or ``dataset.json``, patches coarser
        than the tiles asked (more than `UPSAMPLE_TOLERANCE`), a patch smaller than one tile, a resampling
        asked for patches of unknown scale. Each message names the file.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: patch folder does not exist")
    doc = read_dataset_json(root) or {"mpp": None, "classes": None, "groups": None}
    if patch_mpp is not None:
        scale, source = check_mpp(patch_mpp, "--patch-mpp"), "--patch-mpp"
    elif doc["mpp"] is not None:
        scale, source = doc["mpp"], "dataset.json"
    else:
        scale, source = None, None
    if mpp is not None:
        mpp = check_mpp(mpp, f"{root}: the tiles' µm/px")
    if tile_px is not None and (isinstance(tile_px, bool) or not isinstance(tile_px, (int, np.integer))
                                or not TILE_PX_RANGE[0] <= tile_px <= TILE_PX_RANGE[1]):
        raise DatasetError(f"{root}: tile side must be {TILE_PX_RANGE[0]} to {TILE_PX_RANGE[1]} px, got {tile_px!r}")

    files, labels, classes = _listing(root, doc["classes"])
    images = _read_all(root, files, workers, progress, should_stop)
    factor = 1.0
    if mpp is not None and scale is not None:
        factor = scale / mpp
        if factor > UPSAMPLE_TOLERANCE:
            raise DatasetError(f"{root}: the patches are {scale:g} µm/px, coarser than the {mpp:g} µm/px tiles "
                               f"asked; tiles are never upsampled more than {UPSAMPLE_TOLERANCE:g} x (cut them "
                               f"at {scale:g} µm/px or coarser)")
    sizes = [(round(img.shape[1] * factor), round(img.shape[0] * factor)) for img in images]
    if mpp is not None and scale is None and tile_px is not None and any(s != (tile_px, tile_px) for s in sizes):
        odd = next(f for f, s in zip(files, sizes) if s != (tile_px, tile_px))
        raise DatasetError(f"{root / odd}: the patches' µm/px is unknown, so they cannot be cut into "
                           f"{tile_px} px tiles at {mpp:g} µm/px; give --patch-mpp X or an \"mpp\" in "
                           f"{root / DATASET_JSON}")
    if tile_px is None:
        if len(set(sizes)) > 1 or sizes[0][0] != sizes[0][1]:
            odd = next(f for f, s in zip(files, sizes) if s != sizes[0])
            raise DatasetError(f"{root / odd}: patches differ in size ({sizes[0][0]} x {sizes[0][1]} px and "
                               "others); give the tile size (--tile) to cut them into tiles of one size")
        tile_px = sizes[0][0]
        if not TILE_PX_RANGE[0] <= tile_px <= TILE_PX_RANGE[1]:
            raise DatasetError(f"{root}: patches of {tile_px} px are outside the {TILE_PX_RANGE[0]} to "
                               f"{TILE_PX_RANGE[1]} px a model takes; give --tile")

    patch_groups = _patch_groups(root, doc["groups"], files, images, group, should_stop)
    group_source = "groups.csv" if doc["groups"] is not None else ("near-copies" if group else "none")
    tiles, tile_labels, tile_groups, tile_files = [], [], [], []
    for n, (img, (w, h)) in enumerate(zip(images, sizes)):
        if w < tile_px or h < tile_px:
            at = f" ({img.shape[1]} x {img.shape[0]} px at {scale:g} µm/px)" if factor != 1 else ""
            raise DatasetError(f"{root / files[n]}: {w} x {h} px{at} is smaller than one {tile_px} px tile"
                               + (f" at {mpp:g} µm/px" if mpp is not None else "")
                               + "; remove it, or cut smaller tiles (--tile)")
        if (w, h) != (img.shape[1], img.shape[0]):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        nx, ny = w // tile_px, h // tile_px
        ox, oy = (w - nx * tile_px) // 2, (h - ny * tile_px) // 2  # the centred grid: margins split evenly
        for row in range(ny):
            for col in range(nx):
                y, x = oy + row * tile_px, ox + col * tile_px
                tiles.append(img[y:y + tile_px, x:x + tile_px])
                tile_labels.append(labels[n])
                tile_groups.append(patch_groups[n])
                tile_files.append(files[n])
    tile_mpp = mpp if mpp is not None else scale
    arrays = TileArrays(np.stack(tiles), np.asarray(tile_labels), classes)
    return PatchSet(arrays, np.asarray(tile_groups, np.int64), tile_mpp if scale is not None else None, source,
                    scale, tile_files, len(files), group_source, root)


def _listing(root: Path, mapping: dict | None) -> tuple[list[str], list[int], list[str]]:
    """Patch files (relative, POSIX), their labels, and the class names."""
    dirs = _class_dirs(root)
    if not dirs:
        raise DatasetError(f"{root}: expected one subfolder per class holding PNG/JPEG patches")
    name_of = {d.name: (mapping.get(d.name) if mapping is not None else d.name) for d in dirs}
    names = {n for n in name_of.values() if n is not None}
    classes = list(CLASSES) if names == set(CLASSES) else sorted(names)
    files, labels = [], []
    for d in dirs:
        if name_of[d.name] is None:
            continue
        for f in _images(d):
            files.append(f"{d.name}/{f.name}")
            labels.append(classes.index(name_of[d.name]))
    if not files:
        raise DatasetError(f"{root}: no PNG/JPEG patches in its class subfolders")
    return files, labels, classes


def _read_all(root: Path, files: list[str], workers: int | None, progress=None, should_stop=None) -> list[np.ndarray]:
    def read(rel: str) -> np.ndarray:
        file = root / rel
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{file}: not a readable image; remove or replace it")
        if max(bgr.shape[:2]) > PATCH_MAX_SIDE:
            raise DatasetError(f"{file}: {bgr.shape[1]} x {bgr.shape[0]} px is a slide, not a patch (at most "
                               f"{PATCH_MAX_SIDE} px a side); make a dataset from it with marks instead")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    images = []
    with ThreadPoolExecutor(default_workers(workers)) as pool:
        for image in pool.map(read, files):
            images.append(image)
            if should_stop is not None and len(images) % 64 == 0 and should_stop():
                raise Cancelled(f"{root}: reading patches cancelled")
            if progress is not None and (len(images) % 32 == 0 or len(images) == len(files)):
                progress(len(images), len(files))
    return images


def _patch_groups(root, groups_file, files, images, group: bool, should_stop) -> np.ndarray:
    if groups_file is not None:
        return read_groups_csv(groups_file, files)
    if not group:
        return np.arange(len(files), dtype=np.int64)
    key = _cache_key(root, files)
    cached = _cache_file(key)
    try:
        found = np.asarray(json.loads(cached.read_text(encoding="utf-8")), np.int64)
        if found.shape == (len(files),):
            return found
    except (OSError, ValueError, TypeError):
        pass
    found = find_near_copies(images, should_stop=should_stop)
    try:  # a cache that cannot be written only costs the next run the same few seconds
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found.tolist()), encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:
        pass
    return found


def _cache_key(root: Path, files: list[str]) -> str:
    method = [THUMB_PX, CANDIDATES, PREFILTER, DETAIL_SIGMA, THRESHOLD, COLOUR_LIMIT, 2]
    digest = hashlib.sha256(json.dumps(method).encode())
    digest.update(str(root.absolute()).encode())
    for rel in files:
        st = (root / rel).stat()
        digest.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _cache_file(key: str) -> Path:
    return cache_dir() / GROUPS_CACHE / f"{key}.json"


def patch_split(patch_set: PatchSet, ratio: float = 0.7, seed: int = 0) -> np.ndarray:
    """Per tile: 0 train, 1 test; about ``ratio`` of each class's tiles in train, whole groups at a time."""
    from core.tiles.splits import group_pick
    if not 0 < ratio <= 1:
        raise DatasetError(f"the training share must lie in (0, 1], got {ratio}")
    tiles = patch_set.tiles
    if ratio >= 1:
        return np.zeros(len(tiles), np.int8)
    test = group_pick(tiles.labels, patch_set.groups, 1 - ratio, np.random.default_rng(seed), at_least=1)
    return test.astype(np.int8)


def write_patch_dataset(patch_set: PatchSet, out_dir, *, ratio: float = 0.7, seed: int = 0,
                        encoding: str = "jpg", quality: int = 95,
                        progress: Callable[[int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Write a patch set as a Biopsia dataset folder, split into train and test by group.

    About ``ratio`` of each class's tiles go to train, whole groups at a time (`core.tiles.splits.group_pick`),
    so near-copies never straddle the split. The manifest records the tiles' µm/px (null when unknown),
    the split and where the scale and groups came from; ``tiles.csv`` lists each tile's patch and group.

    Returns
    -------
    dict or None
        The manifest, or None when cancelled.
    """
    from core.tiles.export import write_arrays
    tiles = patch_set.tiles
    split = patch_split(patch_set, ratio, seed)
    settings = {"method": "by-group", "ratio": ratio, "seed": seed, "groups": patch_set.n_groups,
                "group_source": patch_set.group_source}
    source = {"folder": str(patch_set.folder), "patches": patch_set.patches, "patch_mpp": patch_set.patch_mpp,
              "mpp_source": patch_set.source}
    table = {"file": patch_set.files, "group": patch_set.groups.tolist()}
    return write_arrays(tiles, split, out_dir, mpp=patch_set.mpp, settings=settings,
                        extra={"patches": source}, table=table, encoding=encoding, quality=quality,
                        progress=progress, should_stop=should_stop)
