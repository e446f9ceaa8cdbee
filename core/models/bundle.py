"""Model bundles: a folder holding a Gluon export plus ``model.json`` describing how to use it.

Layout::

    bundle/
        model-symbol.json    network graph (Gluon ``export``)
        model-0000.params    weights
        model.json           classes, tile size, normalisation, training summary, metrics, versions,
                             and the size and SHA-256 of every other file of the folder

A bundle is written as one unit (`core.models.folder`): a crash or a full disk during a save leaves the
previous bundle complete. Reading checks, before MXNet sees anything, that every file is the one
``model.json`` records (size and SHA-256), that the graph uses only the operators of Biopsia's networks
and the weights file is well formed and finite (`core.models.safety`), and that ``model.json`` asks for
what a tile classifier can be: 16 to 1024 px tiles, 0.05 to 50 µm/px, finite normalisation with a
standard deviation of at least 0.001. A damaged or tampered bundle is a `ModelError`, never a model.

An optional ``"stain"`` block records the stain normalisation the model was trained with and that every
prediction applies (`core.tiles.stain.StainNormaliser`); a malformed one is refused like any other field.

Two optional variants of the network may sit beside the Gluon export, each described by a block of
``model.json`` that names its files (hashed in ``files`` like the rest): ``onnx`` (``model.onnx``,
`core.models.onnx_export`) and ``int8`` (an MXNet INT8 graph and weights, `core.models.quantize`);
`add_bundle_files` adds them to a bundle as one unit.

``model.json`` itself is the editable description (a µm/px may be corrected by hand); the weights and
graph are locked by their hashes. Bundles of format 1 (before hashes were recorded) still load, with
every check but the hashes; `ModelInfo.verified` says which kind was read. Format 2 bundles must list
their hashes: deleting them is refused like any other damage.

Loading into MXNet is `core.models.loading`.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np

import core
from core.errors import ModelError
from core.models import safety
from core.models.folder import recover, write_file, write_folder
from core.models.safety import GIB, MIB, describe, is_number
from core.models.thresholds import DEFAULT_THRESHOLD, YOUDEN, format_threshold
from core.models.zoo import ARCHS
from core.tiles.grid import MPP_RANGE as MPP, TILE_PX_RANGE as TILE_PX
from core.tiles.stain import StainNormaliser

FORMAT_VERSION = 2
PREFIX = "model"
SYMBOL_FILE = f"{PREFIX}-symbol.json"
PARAMS_FILE = f"{PREFIX}-0000.params"
META_FILE = "model.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STD_MIN, STD_MAX = 1e-3, 10.0
MAX_CLASSES = 1000
META_LIMIT = MIB
FILE_LIMITS = {".params": GIB, ".npz": 2 * GIB, ".json": 16 * MIB, ".onnx": GIB}
#: Optional variants of the network kept beside the Gluon export: the ``model.json`` block that describes
#: each and the files it names (`core.models.onnx_export`, `core.models.quantize`).
VARIANTS = {"onnx": ("file",), "int8": ("symbol", "params")}


@dataclass
class ModelInfo:
    """What ``model.json`` records about a model.

    Parameters
    ----------
    architecture : str
        A key of `core.models.zoo.ARCHS`.
    classes : list of str
        Class names in output order, e.g. ``["Non-tumour", "Tumour"]``.
    tile_px : int
        Tile side in pixels the network was trained on.
    mpp : float or None
        Micrometres per pixel of the tiles, if known.
    mean, std : tuple of float
        Per-channel normalisation (RGB order) applied to values scaled to [0, 1].
    training : dict
        Summary of the training data and settings.
    metrics : dict
        Validation metrics.
    files : dict
        ``{file name: {"sha256": hex, "bytes": n}}`` of the folder's other files, as read; empty for a
        format 1 bundle, which recorded none.
    stain : dict or None
        The stain normalisation of the tiles before ``mean``/``std`` (`core.tiles.stain.StainNormaliser.to_json`),
        fitted on the training tiles; None for none (older bundles record none).
    threshold : float or None
        The operating threshold: tiles at or above this tumour probability are called tumour by default
        (`default_threshold`); None for models that record none (the demo model, older bundles).
    thresholds : dict or None
        How it was chosen on the validation split (`core.models.thresholds.choose_thresholds`): the
        target-sensitivity and Youden thresholds, which one is ``"chosen"``, and the validation
        sensitivity and specificity at each.
    """

    architecture: str
    classes: list[str]
    tile_px: int
    mpp: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = ""
    software: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    stain: dict | None = None
    threshold: float | None = None
    thresholds: dict | None = None
    variants: dict = field(default_factory=dict)

    def variant_file(self, variant: str, key: str = "file") -> str | None:
        """The file of a variant (``"onnx"``, ``"int8"``) the folder holds, hash-checked; None when it has none."""
        block = self.variants.get(variant) or {}
        name = block.get(key)
        return name if isinstance(name, str) and name in self.files else None

    @property
    def verified(self) -> bool:
        """True when the weights and graph were checked against hashes recorded in ``model.json``."""
        return bool(self.files)

    def to_json(self) -> dict:
        """The ``model.json`` document (`save_bundle` adds ``files``)."""
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "classes": list(self.classes),
            "tile_px": int(self.tile_px),
            "mpp": None if self.mpp is None else float(self.mpp),
            "input": {
                "channel_order": "RGB",
                "layout": "NCHW",
                "dtype": "float32",
                "value_range": "uint8 pixels / 255, then (x - mean) / std",
                "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std],
            },
            "training": self.training,
            "validation_metrics": self.metrics,
            "software": {
                "biopsia": core.__version__,
                "mxnet": mx.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stain": self.stain,
            "threshold": None if self.threshold is None else float(self.threshold),
            "thresholds": self.thresholds,
        }


def save_bundle(folder, net, info: ModelInfo, extra: Callable[[Path], None] | None = None) -> Path:
    """Export ``net`` (hybridized, run at least once) with ``model.json`` as the folder ``folder``, in one step.

    Parameters
    ----------
    folder : path-like
        The bundle folder; a previous bundle there is replaced only once the new one is complete.
    net : mxnet.gluon.HybridBlock
    info : ModelInfo
    extra : callable, optional
        ``extra(staging)`` writes further files (a training checkpoint's); they are hashed in ``model.json`` too.

    Returns
    -------
    pathlib.Path
        The bundle folder.

    Raises
    ------
    ModelError
        When the folder cannot be written (a full disk, no permission); the previous bundle is kept.
    """
    folder = Path(folder)

    def fill(staging: Path) -> None:
        try:
            net.export(str(staging / PREFIX), epoch=0)
        except Exception as exc:  # MXNetError while writing (a full disk)
            raise ModelError(f"{folder}: could not export the network; check the free disk space and retry "
                             f"(the previous model there is kept)") from exc
        if extra is not None:
            extra(staging)
        files = {p.name: {"sha256": safety.sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(staging.iterdir())}
        doc = {**info.to_json(), "files": files}
        write_file(staging / META_FILE, json.dumps(doc, indent=2, default=_json_default).encode("utf-8"))

    try:
        return write_folder(folder, fill, _complete)
    except OSError as err:
        raise ModelError(f"{folder}: could not save the model ({err.strerror or err}); the previous model there "
                         "is kept, free some disk space and retry") from err


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def bundle_error(path: Path, problem: str, hint: str) -> ModelError:
    """The error for a bundle file: the path, what is wrong with it, and what to do."""
    return ModelError(f"{path}: {problem} ({hint})")


def _complete(folder: Path) -> bool:
    try:
        _read(folder)
    except ModelError:
        return False
    return True


def recover_bundle(folder) -> Path:
    """The bundle folder to read at ``folder``, once an interrupted save there is finished or undone."""
    return recover(Path(folder), _complete)


def resolve_bundle(path) -> Path:
    """The bundle folder meant by ``path``: the folder itself, or the ``best/`` bundle of a training folder.

    An interrupted save of either is finished or undone first (`core.models.folder.recover`).

    Raises
    ------
    ModelError
        When neither holds a ``model.json``.
    """
    folder = recover(Path(path).expanduser(), _complete)
    if (folder / META_FILE).is_file():
        return folder
    best = recover(folder / "best", _complete)
    if (best / META_FILE).is_file():
        return best
    if not folder.exists():
        raise bundle_error(folder, "model folder does not exist", "give the folder 'biopsia train --out' wrote")
    raise bundle_error(folder, f"not a model: no {META_FILE} in it or in best/",
               "give the folder 'biopsia train --out' wrote, or its best/ folder")


def read_info(folder, verify: bool = True) -> ModelInfo:
    """Read and check a bundle without MXNet: ``model.json``, and every file against its recorded hash.

    Parameters
    ----------
    folder : path-like
    verify : bool
        False checks only ``model.json`` and that each file is there, a plain file of the recorded size
        (for listing models quickly: about 0.2 s less per ResNet-18); `load_bundle` always verifies.

    Raises
    ------
    ModelError
        Naming the file, what is wrong and what to do.
    """
    return _read(recover(Path(folder), _complete), verify)[0]


def read_bundle(folder) -> tuple[ModelInfo, dict[str, bytes]]:
    """Every check that needs no MXNet; returns the description and the verified bytes of each file.

    Raises
    ------
    ModelError
        A missing, oversized, linked-out or damaged file, a hash that does not match, a graph or weights
        file Biopsia did not write, or a ``model.json`` out of bounds.
    """
    return _read(recover(Path(folder), _complete))


def _read(folder: Path, verify: bool = True) -> tuple[ModelInfo, dict[str, bytes]]:
    if not folder.is_dir():
        raise bundle_error(folder, "model folder does not exist", "choose a folder saved by Biopsia's training")
    meta_path = folder / META_FILE
    doc = safety.parse_json(meta_path, safety.read_member(folder, META_FILE, META_LIMIT, "model description"),
                            "model description")
    info = _parse_info(meta_path, doc)
    names = list(info.files) or [SYMBOL_FILE, PARAMS_FILE]
    data = {}
    for name in names:
        what = {SYMBOL_FILE: "network graph", PARAMS_FILE: "weights"}.get(name, f"file {name}")
        recorded = info.files.get(name, {}).get("bytes")
        data[name] = safety.read_member(folder, name, FILE_LIMITS.get(Path(name).suffix, 16 * MIB), what, recorded,
                                        contents=verify)
        if info.files and verify:
            safety.verify(folder / name, data[name], info.files[name], what)
    if not verify:
        return info, {}
    symbol_path, params_path = folder / SYMBOL_FILE, folder / PARAMS_FILE
    graph_params = safety.check_graph(symbol_path, safety.parse_json(symbol_path, data[SYMBOL_FILE], "network graph"))
    weights = safety.check_weights(params_path, data[PARAMS_FILE])
    stored = {k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k for k in weights}
    if stored != graph_params:
        raise bundle_error(params_path, f"the weights do not fit {SYMBOL_FILE}: {len(graph_params - stored)} of the graph's "
                   f"{len(graph_params)} parameters are missing and {len(stored - graph_params)} are extra",
                   "the file may be from another model; re-export the model")
    return info, data


def _parse_info(path: Path, doc) -> ModelInfo:
    """`ModelInfo` from a parsed ``model.json``, every field checked."""
    resave = "re-export the model from Biopsia or choose another model folder"
    if not isinstance(doc, dict):
        raise bundle_error(path, "model description is not a JSON object", resave)
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bundle_error(path, "format_version is missing or not a positive whole number", resave)
    if version > FORMAT_VERSION:
        raise bundle_error(path, f"model format version {version} is newer than this Biopsia reads ({FORMAT_VERSION})",
                   "update Biopsia")
    files = {}
    if version >= 2 or "files" in doc:
        files = safety.check_files_record(path, doc.get("files"))
        for needed in (SYMBOL_FILE, PARAMS_FILE):
            if needed not in files:
                raise bundle_error(path, f"'files' does not record the SHA-256 of {needed}", resave)
    arch = doc.get("architecture")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise bundle_error(path, f"the architecture ({describe(arch)}) is not one this Biopsia knows",
                   f"it knows {', '.join(sorted(ARCHS))}")
    classes = doc.get("classes")
    if not (isinstance(classes, list) and 2 <= len(classes) <= MAX_CLASSES
            and all(isinstance(c, str) and 0 < len(c) <= 200 and c.isprintable() for c in classes)
            and len(set(classes)) == len(classes)):
        raise bundle_error(path, f"classes must be a list of 2 to {MAX_CLASSES} different names, got {describe(classes)}",
                   resave)
    tile_px = doc.get("tile_px")
    if not (isinstance(tile_px, int) and not isinstance(tile_px, bool) and TILE_PX[0] <= tile_px <= TILE_PX[1]):
        raise bundle_error(path, f"tile_px must be a whole number of pixels from {TILE_PX[0]} to {TILE_PX[1]}, got "
                   f"{describe(tile_px)}", resave)
    mpp = doc.get("mpp")
    if mpp is not None and not (is_number(mpp) and MPP[0] <= mpp <= MPP[1]):
        raise bundle_error(path, f"mpp must be a number of µm/px from {MPP[0]:g} to {MPP[1]:g}, or null, got {describe(mpp)}",
                   resave)
    norm = doc.get("input")
    if not isinstance(norm, dict):
        raise bundle_error(path, "input (the normalisation of the tiles) is missing", resave)
    mean, std = norm.get("mean"), norm.get("std")
    for name, vals, low, high in (("mean", mean, 0.0, 1.0), ("std", std, STD_MIN, STD_MAX)):
        if not (isinstance(vals, list) and len(vals) == 3 and all(is_number(v) for v in vals)):
            raise bundle_error(path, f"input.{name} must be three finite numbers (R, G, B), got {describe(vals)}", resave)
        if not all(low <= v <= high for v in vals):
            raise bundle_error(path, f"input.{name} values must lie from {low:g} to {high:g} (tiles are scaled to 0..1), "
                       f"got {', '.join(describe(v) for v in vals)}", resave)
    sections = {}
    for key in ("training", "validation_metrics", "software"):
        value = doc.get(key)
        if value is not None and not isinstance(value, dict):
            raise bundle_error(path, f"{key} must be a JSON object, got {describe(value)}", resave)
        sections[key] = value or {}
    created = doc.get("created", "")
    if not isinstance(created, str):
        raise bundle_error(path, f"created must be a date text, got {describe(created)}", resave)
    stain = doc.get("stain")
    if stain is not None:  # checked: known method, finite numbers of the right shapes (ModelError naming the file)
        stain = StainNormaliser.from_json(stain, path).to_json()
    threshold, thresholds = _parse_thresholds(path, doc)
    variants = _parse_variants(path, doc, files)
    return ModelInfo(
        architecture=arch, classes=list(classes), tile_px=tile_px, mpp=None if mpp is None else float(mpp),
        mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), training=sections["training"],
        metrics=sections["validation_metrics"], created=created[:64], software=sections["software"],
        stain=stain, files=files,
        threshold=threshold, thresholds=thresholds, variants=variants)


def _parse_variants(path: Path, doc: dict, files: dict) -> dict:
    """The ``onnx`` and ``int8`` blocks of ``model.json``: each names files whose SHA-256 ``files`` records."""
    found = {}
    for key, members in VARIANTS.items():
        block = doc.get(key)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise bundle_error(path, f"{key} must be a JSON object, got {describe(block)}",
                               f"delete the {key} block, or make it again ('biopsia export-onnx' / 'biopsia quantize')")
        for member in members:
            name = block.get(member)
            if not (isinstance(name, str) and safety.FILE_NAME.fullmatch(name) and name in files):
                raise bundle_error(path, f"{key}.{member} ({describe(name)}) is not a file whose SHA-256 'files' records",
                                   f"make the {key} variant again ('biopsia export-onnx' / 'biopsia quantize')")
        found[key] = block
    return found


def add_bundle_files(folder, new: dict[str, bytes], blocks: dict[str, dict | None]) -> Path:
    """Rewrite a bundle as one unit with ``new`` files added (hashed in ``model.json``) and ``blocks`` set.

    Every file kept is rewritten from bytes verified against its recorded hash, and the rest of ``model.json``
    is kept as it is; a block set to None is removed, with the files it named.

    Raises
    ------
    ModelError
        A bundle that does not read, or a folder that cannot be written (it is then kept as it was).
    """
    folder = recover_bundle(folder)
    _, data = read_bundle(folder)
    meta_path = folder / META_FILE
    doc = safety.parse_json(meta_path, safety.read_member(folder, META_FILE, META_LIMIT, "model description"),
                            "model description")
    drop = {(doc.get(key) or {}).get(member) for key, value in blocks.items() if value is None
            for member in VARIANTS.get(key, ())} - {None}
    files = {name: body for name, body in data.items() if name not in drop} | dict(new)
    unhashed = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in files
                and p.name != META_FILE and p.name not in drop]  # README.md and the like

    def fill(staging: Path) -> None:
        for name, body in files.items():
            write_file(staging / name, body)
        for p in unhashed:
            write_file(staging / p.name, p.read_bytes())
        doc["files"] = {name: {"sha256": safety.sha256(body), "bytes": len(body)}
                        for name, body in sorted(files.items())}
        for key, value in blocks.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        write_file(staging / META_FILE, json.dumps(doc, indent=2, default=_json_default).encode("utf-8"))

    try:
        return write_folder(folder, fill, _complete)
    except OSError as err:
        raise ModelError(f"{folder}: could not write the model ({err.strerror or err}); it is kept as it was, "
                         "free some disk space and retry") from err


def _is_fraction(value) -> bool:
    return is_number(value) and 0.0 <= value <= 1.0


def _parse_thresholds(path: Path, doc: dict) -> tuple[float | None, dict | None]:
    """``threshold`` and ``thresholds`` of ``model.json``, checked: absent in older bundles."""
    fix = "retrain the model, or correct or delete the value in model.json (0.5 is then used)"
    threshold = doc.get("threshold")
    if threshold is not None and not _is_fraction(threshold):
        raise bundle_error(path, f"threshold must be a tumour probability from 0 to 1, or null, got {describe(threshold)}",
                           fix)
    record = doc.get("thresholds")
    if record is None:
        return (None if threshold is None else float(threshold)), None
    if not isinstance(record, dict):
        raise bundle_error(path, f"thresholds must be a JSON object, got {describe(record)}", fix)
    values = {k: v for k, v in record.items() if k == YOUDEN or k.startswith("sensitivity_")}
    for key, value in values.items():
        if not _is_fraction(value):
            raise bundle_error(path, f"thresholds.{key} must be a tumour probability from 0 to 1, got {describe(value)}",
                               fix)
    chosen = record.get("chosen")
    if chosen not in values:
        raise bundle_error(path, f"thresholds.chosen ({describe(chosen)}) does not name one of its thresholds "
                           f"({', '.join(sorted(values)) or 'none'})", fix)
    target = record.get("target_sensitivity")
    if target is not None and not (_is_fraction(target) and target > 0):
        raise bundle_error(path, f"thresholds.target_sensitivity must be in (0, 1], got {describe(target)}", fix)
    tiles = record.get("tiles")
    if tiles is not None and not (isinstance(tiles, int) and not isinstance(tiles, bool) and tiles > 0):
        raise bundle_error(path, f"thresholds.tiles must be a positive whole number, got {describe(tiles)}", fix)
    at = record.get("validation", {})
    if not isinstance(at, dict) or not all(
            isinstance(m, dict) and all(v is None or _is_fraction(v) for v in m.values()) for m in at.values()):
        raise bundle_error(path, "thresholds.validation must hold sensitivity and specificity from 0 to 1 per "
                           "threshold", fix)
    return (None if threshold is None else float(threshold)), record


def default_threshold(info: ModelInfo) -> tuple[float, str]:
    """The threshold to apply when the user gives none, and where it came from.

    Returns
    -------
    (threshold, source) : tuple
        ``(info.threshold, "model")``, or ``(0.5, "0.5 (the model records none)")`` for a model without one
        (the demo model, bundles trained before thresholds were chosen). The value is exact: show it as
        `format_threshold` does, never rounded.
    """
    if info.threshold is None:
        return DEFAULT_THRESHOLD, "0.5 (the model records none)"
    return float(info.threshold), "model"


def describe_threshold(info: ModelInfo, given: float | None = None,
                       how_to_choose: str = "give --threshold to choose") -> str:
    """One line saying which threshold applies and where it came from (``given`` is a user's ``--threshold``).

    ``how_to_choose`` ends the line of a model that records none: the command line's words by default."""
    if given is not None:
        return f"threshold {format_threshold(given)} (given)"
    value, source = default_threshold(info)
    if source != "model":
        return f"threshold {format_threshold(value)}: the model records none (the demo model, or trained before " \
               f"Biopsia chose thresholds); {how_to_choose}"
    record = info.thresholds or {}
    chosen = record.get("chosen")
    if chosen is None or record.get(chosen) != info.threshold:
        return f"threshold {format_threshold(value)} from the model (set in its model.json)"
    at = record.get("validation", {}).get(chosen, {})
    how = (f"at sensitivity {record['target_sensitivity']:g}" if chosen.startswith("sensitivity_")
           and record.get("target_sensitivity") is not None else "by Youden's J" if chosen == YOUDEN else chosen)
    figures = ", ".join(f"{k} {at[k]:.3f}" for k in ("sensitivity", "specificity") if at.get(k) is not None)
    figures = f"; validation {figures}" if figures else ""
    tiles = f" on {record['tiles']} {record.get('split', 'validation')} tiles" if record.get("tiles") else ""
    return f"threshold {format_threshold(value)} from the model (chosen{tiles} {how}{figures})"
