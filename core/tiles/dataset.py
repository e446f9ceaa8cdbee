"""Tile datasets: slides and their marks become labelled tiles, in memory, streamed, or as MXNet RecordIO.

A dataset folder written by :func:`write_dataset`::

    <out>/train.rec, train.idx, train.lst     tiles of the training split (MXNet RecordIO + index + list)
    <out>/test.rec,  test.idx,  test.lst      tiles of the test split
    <out>/manifest.json                       settings, slides, classes, counts per split and class
    <out>/tiles.csv                           one row per tile: split, record, slide, level-0 x/y, size, µm/px, label

Records hold a JPEG/PNG-encoded RGB tile with an ``IRHeader`` whose label is the class index, so
``mx.recordio.MXIndexedRecordIO`` and ``mx.io.ImageRecordIter`` read them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core.annotations.model import Annotation
from core.errors import Cancelled, DatasetError
from core.tiles.grid import TilePlan, TileSpec

CLASSES = ["Non-tumour", "Tumour"]
SPLITS = ("train", "test")
MANIFEST = "manifest.json"


@dataclass
class SlideSource:
    """One slide with the marks that label it.

    Attributes
    ----------
    path : Path
    name : str
        Unique name within a dataset (the file stem, made unique).
    annotations : list of Annotation
        In level-0 pixels.
    fully_annotated : bool
        Unmarked tissue counts as non-tumour.
    mpp : (float, float) or None
        A µm/px override for slides that do not record it.
    declared : bool
        The user said the slide is fully annotated (``--fully-annotated``, or the slide's setting in its
        project) rather than it being assumed because a mark file lies beside it. Only a declared slide
        may have no Tumour marks on it: all its tissue is then Non-tumour (a benign slide).
    """

    path: Path
    name: str
    annotations: list[Annotation] = field(default_factory=list)
    fully_annotated: bool = True
    mpp: tuple[float, float] | None = None
    declared: bool = False


@dataclass
class DatasetPlan:
    """Every kept tile of every slide, with its label and split.

    Attributes
    ----------
    spec : TileSpec
    sources : list of SlideSource
    plans : list of TilePlan
        One per source (all tiles, dropped ones included; for previews and counts).
    slide, index : ndarray of int
        Per kept tile: its source and its index in that source's plan.
    label : ndarray of int8
        0 non-tumour, 1 tumour (indexes `CLASSES`).
    split : ndarray of int8
        0 train, 1 test (indexes `SPLITS`).
    settings : dict
        Split method, ratio, seed and labelling thresholds (recorded in the manifest).
    warnings : list of str
        Things the user should know about the labels (marks that miss their slide, slides with no marks),
        each naming the slide.
    """

    spec: TileSpec
    sources: list[SlideSource]
    plans: list[TilePlan]
    slide: np.ndarray
    index: np.ndarray
    label: np.ndarray
    split: np.ndarray
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` for both splits and both classes."""
        return {name: {cls: int(np.sum((self.split == s) & (self.label == c))) for c, cls in enumerate(CLASSES)}
                for s, name in enumerate(SPLITS)}

    def select(self, split: str | None) -> np.ndarray:
        """Positions (into ``slide``/``index``/...) of the tiles of ``split`` (all when None)."""
        if split is None:
            return np.arange(self.label.size)
        return np.flatnonzero(self.split == _split_code(split))

    def slide_splits(self) -> dict[str, str]:
        """``{slide name: "train" | "test" | "both" | "none"}``."""
        out = {}
        for i, source in enumerate(self.sources):
            found = set(self.split[self.slide == i].tolist())
            out[source.name] = ("none" if not found else "both" if len(found) > 1 else SPLITS[found.pop()])
        return out


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


# -- sources -------------------------------------------------------------------------------------
SIDECAR_SUFFIXES = (".geojson", ".json", ".xml")


def _unique_name(stem: str, taken: set[str]) -> str:
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    taken.add(name)
    return name


def sources_from_paths(paths, fully_annotated: bool | None = None) -> list[SlideSource]:
    """Slides named on the command line: slide files, or project folders (all their slides).

    A slide file's marks come from a file beside it (``<stem>.geojson``, ``.json``, ``.xml``) or,
    failing that, from the default project when the slide is in it. A project's slides use the
    project's marks and their per-slide "fully annotated" setting unless ``fully_annotated``
    overrides it. A slide file with marks counts as fully annotated unless ``fully_annotated`` is False;
    that is an assumption (`SlideSource.declared` is False), so `plan_dataset` refuses it when no Tumour
    mark lies on the slide, rather than label all its tissue Non-tumour.

    Raises
    ------
    DatasetError
        A path that does not exist, a folder that is not a project, marks that cannot be read.
    """
    from core.annotations.formats import read_annotations
    from core.errors import AnnotationFormatError
    from core.project.model import PROJECT_FILE, Project, default_project
    from core.project.slide_settings import SlideSettingsStore

    sources: list[SlideSource] = []
    taken: set[str] = set()
    settings = SlideSettingsStore()
    fallback = None
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            if not (path / PROJECT_FILE).is_file():
                raise DatasetError(f"{path}: a folder, but not a Biopsia project (no {PROJECT_FILE}); "
                                   "name slide files or project folders")
            for source in sources_from_project(Project.open(path), fully_annotated=fully_annotated):
                source.name = _unique_name(source.name, taken)
                sources.append(source)
            continue
        if not path.is_file():
            raise DatasetError(f"{path}: no such slide file or project folder")
        marks, found = [], False
        for suffix in SIDECAR_SUFFIXES:
            sidecar = path.with_suffix(suffix)
            if sidecar.is_file() and sidecar != path:
                try:
                    marks, found = list(read_annotations(sidecar).annotations), True
                except AnnotationFormatError as err:
                    raise DatasetError(str(err)) from err
                break
        full = True if fully_annotated is None else fully_annotated
        declared = fully_annotated is True
        if not found:
            fallback = fallback or default_project()
            entry = fallback.find_slide(path)
            if entry is not None and fallback.annotations_path(entry.id).is_file():
                try:
                    marks, found = list(fallback.load_annotations(entry.id)), True
                except AnnotationFormatError as err:
                    raise DatasetError(str(err)) from err
                if fully_annotated is None:
                    full = declared = bool(entry.settings.get("fully_annotated", False))
        if not found and fully_annotated is None:
            raise DatasetError(f"{path}: no marks found (looked for {path.stem}.geojson/.json/.xml beside it and "
                               "in the default project); mark the tumour in Biopsia, put an annotation file "
                               "beside the slide, or pass --fully-annotated if the slide has no tumour")
        sources.append(SlideSource(path, _unique_name(path.stem, taken), marks, full,
                                   settings.get_mpp_override(path), declared=declared))
    if not sources:
        raise DatasetError("no slides given")
    return sources


def sources_from_project(project, slide_ids=None, fully_annotated: bool | None = None) -> list[SlideSource]:
    """Slides of an open `core.project.model.Project` (all, or those in ``slide_ids``) with their saved marks.

    A slide's µm/px comes from its project settings, else from a value entered in the window, else
    from the file.

    Raises
    ------
    DatasetError
        When a slide's mark file cannot be read (the message names it).
    """
    from core.errors import AnnotationFormatError
    from core.project.slide_settings import SlideSettingsStore

    settings = SlideSettingsStore()
    entries = project.slides if slide_ids is None else [project.slide(i) for i in slide_ids]
    sources, taken = [], set()
    for entry in entries:
        try:
            marks = list(project.load_annotations(entry.id))
        except AnnotationFormatError as err:
            raise DatasetError(str(err)) from err
        full = bool(entry.settings.get("fully_annotated", False)) if fully_annotated is None else fully_annotated
        override = entry.settings.get("mpp_override")
        # a µm/px entered in the window (Slide ▸ Set resolution) lives in the user's slide settings
        mpp = (float(override[0]), float(override[1])) if override else settings.get_mpp_override(entry.path)
        sources.append(SlideSource(Path(entry.path), _unique_name(Path(entry.path).stem, taken), marks, full, mpp,
                                   declared=full))
    return sources


# -- planning ------------------------------------------------------------------------------------
def plan_dataset(sources: list[SlideSource], spec: TileSpec = TileSpec(), split: str = "by-slide",
                 ratio: float = 0.7, seed: int = 0, test_slides=None, labelling: dict | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> DatasetPlan | None:
    """Detect tissue, lay the tile grid and label every slide, then split the kept tiles.

    Parameters
    ----------
    sources : list of SlideSource
    spec : TileSpec
        Tile size and µm/px.
    split : {"by-slide", "random"}
        ``by-slide``: whole slides go to train or test (about ``ratio`` of the tiles in train; with
        ``test_slides`` naming the test slides explicitly). ``random``: tiles are split at random
        within each class, so both splits keep the class balance.
    ratio : float
        Share of tiles in the training split (0 < ratio ≤ 1; 1 puts everything in train).
    seed : int
        Seeds the split; the same inputs and seed give the same split.
    test_slides : iterable of str, optional
        Names (`SlideSource.name`) of the slides that form the test split (by-slide only).
    labelling : dict, optional
        Keyword arguments for `core.tiles.grid.plan_tiles` (``tumour_min``, ``normal_max``, ``tissue_min``...).
    progress : callable, optional
        ``progress(slides_done, slides)``.
    should_stop : callable, optional
        Checked between slides; when it returns True planning stops and None is returned.

    Raises
    ------
    DatasetError
        No slides, bad split settings, no labelled tiles at all (with the counts per reason), or a slide
        taken as fully annotated without being declared so (`SlideSource.declared`) that has no Tumour
        mark on it: its marks are empty or miss it, and every tile would be Non-tumour. Marks that lie
        partly or wholly outside their slide are reported in `DatasetPlan.warnings`.
    """
    from core.errors import BiopsiaError
    from core.slide import open_slide
    from core.tiles.grid import plan_tiles
    from core.tiles.tissue import detect_tissue

    if not sources:
        raise DatasetError("no slides given")
    if split not in ("by-slide", "random"):
        raise DatasetError(f"split {split!r} not understood; use 'by-slide' or 'random'")
    if not 0 < ratio <= 1:
        raise DatasetError(f"the training share must lie in (0, 1], got {ratio}")
    names = [s.name for s in sources]
    test_slides = None if test_slides is None else list(test_slides)
    unknown = [n for n in (test_slides or []) if n not in names]
    if unknown:
        raise DatasetError(f"test slides {unknown} are not among the slides ({names})")
    if test_slides is not None and split != "by-slide":
        raise DatasetError("test slides can only be named with the by-slide split")

    warnings: list[str] = []
    for source in sources:  # every slide's marks before any tissue is looked for: a refusal comes at once
        try:
            with open_slide(source.path) as reader:
                size = reader.dimensions
        except BiopsiaError as err:
            raise DatasetError(str(err)) from err
        warnings += _check_marks(source, *size)
    plans: list[TilePlan] = []
    for i, source in enumerate(sources):
        if should_stop is not None and should_stop():
            return None
        try:
            with open_slide(source.path) as reader:
                tissue = detect_tissue(reader, slide_mpp=source.mpp)
                plans.append(plan_tiles(reader, spec, tissue, source.annotations, source.fully_annotated,
                                        slide_mpp=source.mpp, **(labelling or {})))
        except BiopsiaError as err:
            raise DatasetError(str(err)) from err
        if progress is not None:
            progress(i + 1, len(sources))

    kept = [p.kept for p in plans]
    slide = np.concatenate([np.full(k.size, i, np.int32) for i, k in enumerate(kept)])
    index = np.concatenate(kept).astype(np.int64)
    label = np.concatenate([p.label[k] for p, k in zip(plans, kept)]).astype(np.int8)
    if label.size == 0:
        reasons = {}
        for p in plans:
            for name, n in p.counts.items():
                reasons[name] = reasons.get(name, 0) + n
        raise DatasetError(f"no labelled tiles on {', '.join(names)} (tiles per reason: {reasons}); mark "
                           "Tumour or Benign regions, or set the slides as fully annotated")
    rng = np.random.default_rng(seed)
    if split == "random":
        split_code = np.ones(label.size, np.int8)
        for c in np.unique(label):
            members = rng.permutation(np.flatnonzero(label == c))
            split_code[members[:round(ratio * members.size)]] = 0
    else:
        split_code = np.zeros(label.size, np.int8)
        if test_slides is not None:
            chosen = {names.index(n) for n in test_slides}
        else:
            chosen = _test_slides_by_ratio([k.size for k in kept], ratio, rng)
        split_code[np.isin(slide, list(chosen))] = 1
    settings = {"split": split, "ratio": ratio, "seed": seed, "labelling": dict(labelling or {}),
                "test_slides": [names[i] for i in sorted(set(slide[split_code == 1].tolist()))]}
    return DatasetPlan(spec, list(sources), plans, slide, index, label, split_code, settings, warnings)


def _check_marks(source: SlideSource, l0_w: int, l0_h: int) -> list[str]:
    """Warnings about marks that miss the slide; DatasetError when an undeclared slide would be all Non-tumour."""
    from shapely.geometry import box

    from core.annotations.model import TUMOUR

    frame = None
    partly = outside = tumour_on = 0
    for mark in source.annotations:
        x0, y0, x1, y1 = mark.bounds
        if x0 >= 0 and y0 >= 0 and x1 <= l0_w and y1 <= l0_h:
            on = True
        elif x1 <= 0 or y1 <= 0 or x0 >= l0_w or y0 >= l0_h:
            on = False
        else:
            frame = frame or box(0, 0, l0_w, l0_h)
            on = bool(mark.geometry.intersects(frame))
            partly += on
        outside += not on
        tumour_on += on and mark.class_name == TUMOUR.name
    warnings = []
    size = f"{l0_w} x {l0_h} px"
    if outside:
        warnings.append(f"{source.path}: {outside} of {len(source.annotations)} marks lie entirely outside the "
                        f"slide ({size}) and are ignored; were they drawn on another slide or scan?")
    if partly:
        warnings.append(f"{source.path}: {partly} marks reach beyond the slide's edge ({size}); only their part "
                        "on the slide counts")
    if source.fully_annotated and not tumour_on and not source.declared:
        found = ("its marks are empty" if not source.annotations else
                 f"none of its {len(source.annotations)} marks is a Tumour region on the slide")
        raise DatasetError(f"{source.path}: {found}, so every tile would be labelled Non-tumour; mark the "
                           "tumour, or if the slide is benign say so (--fully-annotated, or tick Fully annotated "
                           "for it in the project)")
    if not source.fully_annotated and outside == len(source.annotations):
        warnings.append(f"{source.path}: no marks on the slide, and it is not fully annotated, so it gives no tiles")
    return warnings


def _test_slides_by_ratio(sizes: list[int], ratio: float, rng: np.random.Generator) -> set[int]:
    """Slides (in a seeded order) go to test until train keeps about ``ratio`` of the tiles.

    With two or more slides and ``ratio < 1`` both splits get at least one slide.
    """
    total = sum(sizes)
    if ratio >= 1 or len(sizes) < 2 or total == 0:
        return set()
    order = rng.permutation(len(sizes))
    test, in_test = set(), 0
    want_test = (1 - ratio) * total
    for i in order:
        if len(test) == len(sizes) - 1:
            break
        if not test or abs(in_test + sizes[i] - want_test) < abs(in_test - want_test):
            test.add(int(i))
            in_test += sizes[i]
    return test


# -- reading tiles -------------------------------------------------------------------------------
def _workers(workers: int | None) -> int:
    import os

    return max(1, workers or min(8, 2 * (os.cpu_count() or 2)))


class _Readers:
    """One open reader per slide of a plan, opened on first use, shared by the reading threads."""

    def __init__(self, plan: DatasetPlan):
        import threading

        self.plan, self._readers, self._lock = plan, {}, threading.Lock()

    def get(self, slide: int):
        from core.errors import BiopsiaError
        from core.slide import open_slide

        with self._lock:
            if slide not in self._readers:
                try:
                    self._readers[slide] = open_slide(self.plan.sources[slide].path)
                except BiopsiaError as err:
                    raise DatasetError(str(err)) from err
            return self._readers[slide]

    def read(self, slide: int, i: int) -> np.ndarray:
        from core.tiles.grid import read_tile

        return read_tile(self.get(slide), self.plan.plans[slide], i)

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def _ordered(plan: DatasetPlan, positions: np.ndarray) -> np.ndarray:
    """``positions`` sorted by slide and then row-major on the slide, so reads stay local."""
    slides = plan.slide[positions]
    xs, ys = np.empty(positions.size, np.int64), np.empty(positions.size, np.int64)
    for s in np.unique(slides):
        mine = slides == s
        index = plan.index[positions[mine]]
        xs[mine], ys[mine] = plan.plans[s].l0_x[index], plan.plans[s].l0_y[index]
    return positions[np.lexsort((xs, ys, slides))]


def _pipeline(plan: DatasetPlan, positions: np.ndarray, work: Callable, workers: int | None, chunk: int = 16):
    """Run ``work(readers, chunk_positions)`` on reading threads, a few chunks ahead; yield results in order."""
    from concurrent.futures import ThreadPoolExecutor

    readers = _Readers(plan)
    n_workers = _workers(workers)
    chunks = [positions[i:i + chunk] for i in range(0, positions.size, chunk)]
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="biopsia-tiles")
    try:
        pending: list = []
        for part in chunks:
            pending.append((part, pool.submit(work, readers, part)))
            if len(pending) > 3 * n_workers:
                done_part, future = pending.pop(0)
                yield done_part, future.result()
        for done_part, future in pending:
            yield done_part, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        readers.close()


def _read_chunk(plan: DatasetPlan):
    tile_px = plan.spec.tile_px

    def work(readers: _Readers, part: np.ndarray) -> np.ndarray:
        out = np.empty((part.size, tile_px, tile_px, 3), np.uint8)
        for j, pos in enumerate(part):
            out[j] = readers.read(int(plan.slide[pos]), int(plan.index[pos]))
        return out
    return work


def iter_tiles(plan: DatasetPlan, split: str | None = None, batch_size: int = 256, workers: int | None = None,
               should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream tiles straight from the slides, without writing them.

    Yields ``(images uint8 (B, H, W, 3), labels int64 (B,), positions (B,))`` in slide order; reading runs
    on ``workers`` threads a few batches ahead. Stops early (without error) when ``should_stop()`` is true.
    """
    positions = _ordered(plan, plan.select(split))
    chunk = max(1, min(16, batch_size))
    images, pos_list, held = [], [], 0
    for part, tiles in _pipeline(plan, positions, _read_chunk(plan), workers, chunk):
        if should_stop is not None and should_stop():
            return
        images.append(tiles)
        pos_list.append(part)
        held += part.size
        if held >= batch_size:
            batch, pos = np.concatenate(images), np.concatenate(pos_list)
            yield batch[:batch_size], plan.label[pos[:batch_size]].astype(np.int64), pos[:batch_size]
            images, pos_list, held = [batch[batch_size:]], [pos[batch_size:]], held - batch_size
    if held:
        batch, pos = np.concatenate(images), np.concatenate(pos_list)
        yield batch, plan.label[pos].astype(np.int64), pos


def load_tiles(plan: DatasetPlan, split: str | None = None, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None, should_stop=None):
    """All tiles of ``split`` in memory, as `core.models.train.TileArrays` (classes `CLASSES`).

    Returns None when ``should_stop()`` became true before every tile was read.
    """
    from core.models.train import TileArrays

    total = plan.select(split).size
    images = np.empty((total, plan.spec.tile_px, plan.spec.tile_px, 3), np.uint8)
    labels = np.empty(total, np.int64)
    done = 0
    for batch, batch_labels, _ in iter_tiles(plan, split, workers=workers, should_stop=should_stop):
        images[done:done + len(batch)] = batch
        labels[done:done + len(batch)] = batch_labels
        done += len(batch)
        if progress is not None:
            progress(done, total)
    if done < total:
        return None
    return TileArrays(images, labels, list(CLASSES))


# -- dataset folders -------------------------------------------------------------------------------
FORMAT = "biopsia-dataset"
FORMAT_VERSION = 1
ENCODINGS = {"jpg": ".jpg", "png": ".png"}


def write_dataset(plan: DatasetPlan, out_dir, encoding: str = "jpg", quality: int = 95, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None, should_stop=None) -> dict | None:
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

    Returns
    -------
    dict or None
        The manifest, or None when cancelled.

    Raises
    ------
    DatasetError
        When the folder cannot be written (the message names it and the reason, e.g. no space left).
    """
    import csv
    import io
    import json
    from datetime import datetime, timezone

    import cv2

    import core
    from core.tiles.recordio import RecordWriter, pack_image_record
    from core.staging import staged_folder

    if encoding not in ENCODINGS:
        raise DatasetError(f"tile encoding {encoding!r} not understood; use 'jpg' or 'png'")
    out = Path(out_dir).expanduser().absolute()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if encoding == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ext = ENCODINGS[encoding]

    def work(readers: _Readers, part: np.ndarray) -> list[bytes]:
        blobs = []
        for pos in part:
            rgb = readers.read(int(plan.slide[pos]), int(plan.index[pos]))
            ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise DatasetError(f"could not encode a tile of {plan.sources[int(plan.slide[pos])].path} as {ext}")
            blobs.append(buf.tobytes())
        return blobs

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
                positions = _ordered(plan, plan.select(split_name))
                lst = io.StringIO()
                with RecordWriter(staging / f"{split_name}.rec", staging / f"{split_name}.idx") as writer:
                    record = 0
                    for part, blobs in _pipeline(plan, positions, work, workers):
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


def read_manifest(folder) -> dict:
    """The checked ``manifest.json`` of a dataset folder.

    Raises
    ------
    DatasetError
        Missing, unreadable, not a Biopsia dataset, or from a newer Biopsia.
    """
    import json

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
    import math

    from core.tiles.grid import MPP_RANGE, TILE_PX_RANGE

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
    import io

    from PIL import Image, UnidentifiedImageError

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
    """All image records of one ``.rec`` file (with its ``.idx``) as `core.models.train.TileArrays`.

    Raises
    ------
    DatasetError
        A damaged file or index, an image that does not decode, tiles of different sizes, a label
        outside ``classes``.
    """
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from core.tiles.recordio import RecordIOError, RecordReader, unpack_image_record
    from core.models.train import TileArrays

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

    with ThreadPoolExecutor(_workers(workers)) as pool:
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
    """Tiles of one split as `core.models.train.TileArrays`, from a dataset folder or a patch folder.

    ``path`` is a folder written by `write_dataset` (``manifest.json`` + RecordIO), a ``.rec`` file,
    or a patch folder with one subfolder per class (then ``split`` is ignored: all patches).

    Raises
    ------
    DatasetError
        Missing or damaged files, a record that does not decode, a split with no tiles.
    """
    from core.models.train import TileArrays

    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".rec":
        manifest_dir = path.parent
        classes = read_manifest(manifest_dir)["classes"] if (manifest_dir / MANIFEST).is_file() else None
        return read_records(path, classes, workers)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder or .rec file")
    if not (path / MANIFEST).is_file():
        return TileArrays.from_folder(path)
    manifest = read_manifest(path)
    _split_code(split)
    counts = manifest.get("counts", {}).get(split, {})
    if counts and sum(counts.values()) == 0:
        raise DatasetError(f"{path}: the {split} split holds no tiles ({manifest.get('split', {})}); write the "
                           "dataset with more slides, or with --split random")
    files = (manifest.get("files") or {}).get(split) or {"rec": f"{split}.rec"}
    return read_records(path / files["rec"], manifest["classes"], workers)
