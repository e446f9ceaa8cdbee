"""Model bundles: a folder holding a Gluon export plus ``model.json`` describing how to use it.

Layout::

    bundle/
        model-symbol.json    network graph (Gluon ``export``)
        model-0000.params    weights
        model.json           classes, tile size, normalisation, training summary, metrics, versions

`load_bundle` and `LoadedModel.predict` call MXNet: run them on the model thread (`core.models.engine`).
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import core
from core.atomic import atomic_write_bytes
from core.errors import ModelError
from core.models.zoo import ARCHS

FORMAT_VERSION = 1
PREFIX = "model"
SYMBOL_FILE = f"{PREFIX}-symbol.json"
PARAMS_FILE = f"{PREFIX}-0000.params"
META_FILE = "model.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

    def to_json(self) -> dict:
        """The ``model.json`` document."""
        import mxnet as mx

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
        }


def save_bundle(folder, net, info: ModelInfo) -> Path:
    """Export ``net`` (hybridized, run at least once) and write ``model.json`` into ``folder``.

    Returns
    -------
    pathlib.Path
        The bundle folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        net.export(str(folder / PREFIX), epoch=0)
    except Exception as exc:  # MXNetError / OSError while writing
        raise ModelError(f"{folder}: could not export the network ({exc}); check the disk and retry") from exc
    text = json.dumps(info.to_json(), indent=2, default=_json_default)
    atomic_write_bytes(folder / META_FILE, text.encode("utf-8"))
    return folder


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _bad(path: Path, problem: str, hint: str) -> ModelError:
    return ModelError(f"{path}: {problem} ({hint})")


def resolve_bundle(path) -> Path:
    """The bundle folder meant by ``path``: the folder itself, or the ``best/`` bundle of a training folder.

    Raises
    ------
    ModelError
        When neither holds a ``model.json``.
    """
    folder = Path(path).expanduser()
    if (folder / META_FILE).is_file():
        return folder
    if (folder / "best" / META_FILE).is_file():
        return folder / "best"
    if not folder.exists():
        raise _bad(folder, "model folder does not exist", "give the folder 'biopsia train --out' wrote")
    raise _bad(folder, f"not a model: no {META_FILE} in it or in best/",
               "give the folder 'biopsia train --out' wrote, or its best/ folder")


def read_info(folder) -> ModelInfo:
    """Read and check ``model.json`` of a bundle, without MXNet.

    Raises
    ------
    ModelError
        Naming the file, what is wrong and what to do.
    """
    path = Path(folder) / META_FILE
    resave = "re-export the model from Biopsia or choose another model folder"
    if not path.is_file():
        raise _bad(path, "model description is missing", f"a model folder needs {META_FILE}; {resave}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"model description is unreadable: {exc}", resave) from exc
    if not isinstance(doc, dict):
        raise _bad(path, "model description is not a JSON object", resave)
    version = doc.get("format_version")
    if not isinstance(version, int):
        raise _bad(path, "format_version is missing or not an integer", resave)
    if version > FORMAT_VERSION:
        raise _bad(path, f"model format version {version} is newer than this Biopsia reads ({FORMAT_VERSION})",
                   "update Biopsia")
    arch = doc.get("architecture")
    if arch not in ARCHS:
        raise _bad(path, f"architecture {arch!r} is unknown", f"this Biopsia knows {', '.join(sorted(ARCHS))}")
    classes = doc.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        raise _bad(path, "classes must be a list of at least two names", resave)
    tile_px = doc.get("tile_px")
    if not isinstance(tile_px, int) or isinstance(tile_px, bool) or tile_px <= 0:
        raise _bad(path, f"tile_px must be a positive whole number of pixels, got {tile_px!r}", resave)
    mpp = doc.get("mpp")
    if mpp is not None and (not isinstance(mpp, (int, float)) or isinstance(mpp, bool) or mpp <= 0):
        raise _bad(path, f"mpp must be a positive number or null, got {mpp!r}", resave)
    norm = doc.get("input") or {}
    mean, std = norm.get("mean"), norm.get("std")
    for name, vals in (("mean", mean), ("std", std)):
        if not (isinstance(vals, list) and len(vals) == 3 and all(isinstance(v, (int, float)) for v in vals)):
            raise _bad(path, f"input.{name} must be three numbers (R, G, B)", resave)
    if any(v <= 0 for v in std):
        raise _bad(path, "input.std values must be positive", resave)
    return ModelInfo(
        architecture=arch, classes=classes, tile_px=tile_px, mpp=mpp, mean=tuple(mean), std=tuple(std),
        training=doc.get("training") or {}, metrics=doc.get("validation_metrics") or {},
        created=doc.get("created", ""), software=doc.get("software") or {},
    )


class LoadedModel:
    """A network ready to predict; every method runs MXNet, so call it on the model thread.

    Attributes
    ----------
    info : ModelInfo
    folder : pathlib.Path
    ctx : mxnet.Context
    """

    def __init__(self, net, info: ModelInfo, folder: Path, ctx):
        self.net, self.info, self.folder, self.ctx = net, info, folder, ctx
        self._mean = np.asarray(info.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(info.std, np.float32).reshape(1, 3, 1, 1)

    def prepare(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """uint8 RGB NHWC tiles → normalised float32 NCHW (numpy; any thread)."""
        return normalise(batch_uint8_nhwc, self._mean, self._std)

    def predict(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(N, len(classes))``, for uint8 RGB tiles of shape ``(N, H, W, 3)``."""
        return self.predict_prepared(self.prepare(batch_uint8_nhwc))

    def predict_prepared(self, batch_nchw: np.ndarray) -> np.ndarray:
        """Class probabilities for tiles already through `prepare` (which any thread may run)."""
        import mxnet as mx

        return mx.nd.softmax(self.net(mx.nd.array(batch_nchw, ctx=self.ctx)), axis=1).asnumpy()


def normalise(batch_uint8_nhwc: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 RGB NHWC → float32 NCHW, ``(x / 255 - mean) / std``; mean/std shaped ``(1, 3, 1, 1)``."""
    batch = np.asarray(batch_uint8_nhwc)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ModelError(f"tiles must be RGB arrays shaped (N, H, W, 3), got {batch.shape}")
    x = batch.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return (x - mean) / std


def load_bundle(folder, ctx=None) -> LoadedModel:
    """Load and check a bundle folder; call on the model thread.

    Parameters
    ----------
    folder : path-like
    ctx : mxnet.Context, optional
        Defaults to the CPU.

    Raises
    ------
    ModelError
        When a file is missing or unreadable, the format is newer, the architecture unknown, or the
        weights do not match the graph; the message names the file and what to do.
    """
    import mxnet as mx
    from mxnet import gluon

    folder = Path(folder)
    if not folder.is_dir():
        raise _bad(folder, "model folder does not exist", "choose a folder saved by Biopsia's training")
    info = read_info(folder)
    ctx = ctx or mx.cpu()
    symbol_path, params_path = folder / SYMBOL_FILE, folder / PARAMS_FILE
    for path, what in ((symbol_path, "network graph"), (params_path, "network weights")):
        if not path.is_file():
            raise _bad(path, f"{what} file is missing", "copy the whole model folder, or re-export the model")
    try:
        symbol = mx.sym.load(str(symbol_path))
    except Exception as exc:  # MXNetError for malformed JSON graphs
        raise _bad(symbol_path, f"network graph is unreadable ({_first_line(exc)})",
                   "re-export the model") from exc
    try:
        with warnings.catch_warnings():  # SymbolBlock warns that "data" has no declared type
            warnings.simplefilter("ignore")
            net = gluon.SymbolBlock(symbol, mx.sym.var("data"))
    except Exception as exc:
        raise _bad(symbol_path, f"network graph has no 'data' input ({_first_line(exc)})",
                   "re-export the model") from exc
    try:
        net.collect_params().load(str(params_path), ctx=ctx, allow_missing=False, ignore_extra=False)
    except Exception as exc:  # MXNetError (truncated/corrupt), AssertionError (names don't match)
        raise _bad(params_path, f"weights are unreadable or do not match {SYMBOL_FILE} ({_first_line(exc)})",
                   "the file may be truncated or from another model; re-export the model") from exc
    n_classes = len(info.classes)
    try:
        probe = net(mx.nd.zeros((1, 3, info.tile_px, info.tile_px), ctx=ctx))
        out_shape = probe.shape
    except Exception as exc:
        raise _bad(symbol_path, f"network does not run on {info.tile_px} px tiles ({_first_line(exc)})",
                   "check tile_px in model.json or re-export the model") from exc
    if out_shape != (1, n_classes):
        raise _bad(folder / META_FILE, f"the network gives {out_shape[1:]} outputs but {n_classes} classes are named",
                   "fix the class list or re-export the model")
    # one cached graph per batch shape, memory planned once: about 1.4x faster inference on the CPU
    net.hybridize(static_alloc=True, static_shape=True)
    return LoadedModel(net, info, folder, ctx)


def _first_line(exc: BaseException) -> str:
    # MXNetError text starts with a C++ stack trace; the reason is on its last line.
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("File ")]
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "[bt]", "Stack trace"))]
    return lines[-1][:300] if lines else type(exc).__name__
