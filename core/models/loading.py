"""Loading a model bundle into MXNet: the checked graph and weights become a network ready to predict.

`core.models.bundle` checks every file without MXNet first; only what passed reaches MXNet here.
`load_bundle` and `LoadedModel.predict` call MXNet: run them on the model thread (`core.models.engine`).

`preprocess` is the one way uint8 tiles become network input, in training and in every prediction path
(`LoadedModel.prepare`, which `LoadedModel.predict`, `core.models.testing` and `core.inference.predict`
use): the model's stain normalisation (``model.json`` ``"stain"``, `core.tiles.stain`), then `normalise`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from core.errors import ModelError
from core.models import safety
from core.models.bundle import (META_FILE, PARAMS_FILE, SYMBOL_FILE, ModelInfo, bundle_error, read_bundle,
                                recover_bundle)
from core.models.safety import GIB
from core.tiles.stain import StainNormaliser, normaliser_from_model

ACTIVATION_BUDGET = 2 * GIB  # all intermediate outputs of the network for one tile, float32


class LoadedModel:
    """A network ready to predict; every method runs MXNet, so call it on the model thread.

    Attributes
    ----------
    info : ModelInfo
    folder : pathlib.Path
    ctx : mxnet.Context
    stain : StainNormaliser or None
        The stain normalisation the model was trained with (``info.stain``), applied by `prepare`.
    """

    def __init__(self, net, info: ModelInfo, folder: Path, ctx):
        self.net, self.info, self.folder, self.ctx = net, info, folder, ctx
        self._mean = np.asarray(info.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(info.std, np.float32).reshape(1, 3, 1, 1)
        self.stain = normaliser_from_model(info.stain, folder / META_FILE)

    def prepare(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """uint8 RGB NHWC tiles → stain-normalised (if the model is), normalised float32 NCHW (numpy; any thread)."""
        return preprocess(batch_uint8_nhwc, self._mean, self._std, self.stain)

    def predict(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(N, len(classes))``, for uint8 RGB tiles of shape ``(N, H, W, 3)``."""
        return self.predict_prepared(self.prepare(batch_uint8_nhwc))

    def predict_prepared(self, batch_nchw: np.ndarray) -> np.ndarray:
        """Class probabilities for tiles already through `prepare` (which any thread may run)."""
        return mx.nd.softmax(self.net(mx.nd.array(batch_nchw, ctx=self.ctx)), axis=1).asnumpy()


def preprocess(batch_uint8_nhwc: np.ndarray, mean: np.ndarray, std: np.ndarray,
               stain: StainNormaliser | None = None) -> np.ndarray:
    """The network input of uint8 RGB tiles: ``stain.apply`` (when given), then `normalise`.

    Training normalises its tiles' stain once before the first epoch (`core.models.train`) and predicting
    does it here, tile by tile with the same `StainNormaliser`, so both see the same pixels.
    """
    if stain is not None:
        batch = np.asarray(batch_uint8_nhwc)
        if batch.ndim in (3, 4) and batch.shape[-1] == 3 and batch.dtype == np.uint8:
            batch_uint8_nhwc = stain.apply(batch)
    return normalise(batch_uint8_nhwc, mean, std)


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
        When a file is missing, damaged or not the one ``model.json`` records, the format is newer, the
        architecture unknown, ``model.json`` out of bounds, or the weights do not fit the graph; the message
        names the file and what to do. MXNet reads only files that passed these checks.
    """
    folder = recover_bundle(folder)
    info, data = read_bundle(folder)
    ctx = ctx or mx.cpu()
    symbol_path, params_path, meta_path = folder / SYMBOL_FILE, folder / PARAMS_FILE, folder / META_FILE
    reexport = "re-export the model"
    try:
        symbol = mx.sym.load_json(data[SYMBOL_FILE].decode("utf-8"))
    except Exception as exc:  # MXNetError for a graph MXNet cannot build
        raise bundle_error(symbol_path, f"MXNet cannot build the network graph ({type(exc).__name__})", reexport) from None
    weights = safety.check_weights(params_path, data[PARAMS_FILE])
    _check_shapes(symbol, weights, info, symbol_path, params_path, meta_path)
    try:
        with warnings.catch_warnings():  # SymbolBlock warns that "data" has no declared type
            warnings.simplefilter("ignore")
            net = gluon.SymbolBlock(symbol, mx.sym.var("data"))
    except Exception as exc:
        raise bundle_error(symbol_path, f"network graph has no usable 'data' input ({type(exc).__name__})", reexport) from None
    try:
        net.collect_params().load_dict(mx.nd.load_frombuffer(data[PARAMS_FILE]), ctx=ctx, allow_missing=False,
                                       ignore_extra=False)
    except Exception as exc:  # MXNetError, AssertionError: names or shapes that do not fit
        raise bundle_error(params_path, f"weights do not fit {SYMBOL_FILE} ({type(exc).__name__})",
                   "the file may be from another model; re-export the model") from None
    try:
        probe = net(mx.nd.zeros((1, 3, info.tile_px, info.tile_px), ctx=ctx)).asnumpy()
    except Exception as exc:
        raise bundle_error(symbol_path, f"network does not run on {info.tile_px} px tiles ({type(exc).__name__})",
                   "check tile_px in model.json or re-export the model") from None
    if not np.isfinite(probe).all():
        raise bundle_error(params_path, "the network gives NaN or infinite scores on a blank tile", reexport)
    # one cached graph per batch shape, memory planned once: about 1.4x faster inference on the CPU
    net.hybridize(static_alloc=True, static_shape=True)
    return LoadedModel(net, info, folder, ctx)


def _check_shapes(symbol, weights: dict, info: ModelInfo, symbol_path: Path, params_path: Path,
                  meta_path: Path) -> None:
    """Before anything is allocated: the weights' shapes, the outputs and the memory one tile needs."""
    shape = (1, 3, info.tile_px, info.tile_px)
    try:
        with warnings.catch_warnings():  # a graph whose shapes cannot be worked out warns, then gives None
            warnings.simplefilter("ignore")
            arg_shapes, out_shapes, aux_shapes = symbol.infer_shape(data=shape)
            _, internal_shapes, _ = symbol.get_internals().infer_shape(data=shape)
    except Exception as exc:  # MXNetError: the graph cannot take such tiles
        raise bundle_error(symbol_path, f"network does not run on {info.tile_px} px tiles ({type(exc).__name__})",
                   "check tile_px in model.json or re-export the model") from None
    if arg_shapes is None or internal_shapes is None:
        raise bundle_error(symbol_path, f"the shapes of the network on {info.tile_px} px tiles cannot be worked out",
                   "re-export the model")
    needed = 4 * sum(int(np.prod(s, dtype=np.int64)) for s in internal_shapes)
    if needed > ACTIVATION_BUDGET:
        raise bundle_error(symbol_path, f"the network would need {needed / GIB:.1f} GiB for one {info.tile_px} px tile",
                   f"more than the {ACTIVATION_BUDGET / GIB:.0f} GiB a tile classifier may; not a Biopsia model")
    expected = dict(zip(symbol.list_arguments(), arg_shapes)) | dict(zip(symbol.list_auxiliary_states(), aux_shapes))
    expected.pop("data", None)
    stored = {k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k: v for k, v in weights.items()}
    wrong = sum(1 for name, s in expected.items() if tuple(stored.get(name, ())) != tuple(s))
    if wrong or len(stored) != len(expected):
        raise bundle_error(params_path, f"{wrong} of the {len(expected)} weight arrays have another shape than "
                   f"{SYMBOL_FILE} needs", "the file may be from another model; re-export the model")
    n_classes = len(info.classes)
    if len(out_shapes) != 1 or tuple(out_shapes[0]) != (1, n_classes):
        outputs = out_shapes[0][1:] if len(out_shapes) == 1 else f"{len(out_shapes)} heads"
        raise bundle_error(meta_path, f"the network gives {outputs} outputs but {n_classes} classes are named",
                   "fix the class list or re-export the model")
