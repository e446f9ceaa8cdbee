"""Which engine computes a model: MXNet in FP32 (the Gluon export), MXNet in INT8, or ONNX Runtime.

Every engine takes the same input: uint8 RGB tiles through the model's one preprocessing
(`core.models.loading.preprocess`: its stain normalisation, then its mean and std), so the engines differ
only in how the network is computed. Each loaded model has the interface of `LoadedModel`: ``info``,
``folder``, ``prepare`` (any thread), ``predict`` and ``predict_prepared`` (class probabilities), and
``describe()`` for the status line.

- ``mxnet`` / ``fp32``: the Gluon export (`core.models.loading.load_bundle`);
- ``mxnet`` / ``int8``: the INT8 graph `core.models.quantize` made and kept in the bundle (oneDNN);
- ``onnx`` / ``fp32``: ``model.onnx`` (`core.models.onnx_export`) on ONNX Runtime, the CUDA execution
  provider where a GPU is asked for (or ``auto``) and installed, else the CPU one.

Load on the model thread (`core.models.engine`): MXNet needs it, and ONNX Runtime is fine there too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from core.errors import ModelError

ENGINES = ("mxnet", "onnx")
#: What ``--engine`` takes: an engine, or ``auto`` (`choose_engine`).
ENGINE_CHOICES = ("auto",) + ENGINES
PRECISIONS = ("fp32", "int8")


def check_engine(info, folder, engine: str = "mxnet", precision: str = "fp32") -> None:
    """Raise ModelError, before any work starts, when a bundle cannot be run so (no such variant in it).

    Parameters
    ----------
    info : ModelInfo
    folder : path-like
        Named in the message.
    engine, precision : str
        One of `ENGINES`, one of `PRECISIONS`.
    """
    check_names(engine, precision)
    if engine == "onnx" and info.variant_file("onnx") is None:
        raise ModelError(f"{folder}: the model has no model.onnx recorded in its model.json; make one with "
                         f"'biopsia export-onnx {folder}'")
    if precision == "int8" and info.variant_file("int8", "symbol") is None:
        raise ModelError(f"{folder}: the model has no INT8 variant recorded in its model.json; make one with "
                         f"'biopsia quantize {folder}'")


def choose_engine(engine: str, device: str, info, precision: str = "fp32") -> tuple[str, str | None]:
    """``engine`` as asked, or for ``"auto"`` the one that can use the device: ``(engine, why)``.

    ``auto`` is ``"onnx"`` where ``device`` may take a GPU (``auto``, ``gpu:N``), the driver reports one that
    MXNet 1.9.1 has no kernels for (compute capability 9.0 and newer: Hopper), ONNX Runtime's CUDA provider
    is installed and the model holds a ``model.onnx``; then ``why`` says so, for the command to print.
    Otherwise ``"mxnet"`` and no ``why``: everywhere else MXNet runs where it is asked to (the CPU when
    ``auto`` finds no GPU it can use). Asks the driver, never MXNet, so it is cheap before any work.
    """
    if engine != "auto":
        return engine, None
    text = str(device or "auto").strip().lower()
    if precision != "fp32" or not (text == "auto" or text.startswith("gpu")) or info.variant_file("onnx") is None:
        return "mxnet", None
    from core.inference.gpu_check import driver_gpus, gpu_index, mxnet_has_kernels

    gpus, _ = driver_gpus()
    gpu = next((g for g in gpus if g.index == gpu_index(text)), None)
    if gpu is None or mxnet_has_kernels(gpu.compute_capability):
        return "mxnet", None
    try:
        import onnxruntime
    except ImportError:
        return "mxnet", None
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "mxnet", None
    cc = ".".join(map(str, gpu.compute_capability))
    return "onnx", (f"{gpu.name} (compute capability {cc}) has no MXNet kernels: predicting with ONNX Runtime "
                    "on it (model.onnx)")


def check_names(engine: str, precision: str) -> None:
    """Raise ModelError for an engine or precision not known, or a pair that does not go together."""
    if engine not in ENGINES:
        raise ModelError(f"engine {engine!r} not understood; use {' or '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r} not understood; use {' or '.join(PRECISIONS)}")
    if engine == "onnx" and precision != "fp32":
        raise ModelError("the ONNX engine runs the FP32 network only; use the mxnet engine for INT8")


class OnnxModel:
    """``model.onnx`` of a bundle on ONNX Runtime, with the interface of `LoadedModel`."""

    def __init__(self, folder: Path, info, data: bytes, device: str = "auto"):
        from core.models.loading import preprocess
        from core.models.onnx_export import INPUT_NAME, OUTPUT_NAME, onnx_session
        from core.models.bundle import META_FILE
        from core.tiles.stain import normaliser_from_model

        self.folder, self.info = folder, info
        self._session = onnx_session(data, device)
        self._input, self._output = INPUT_NAME, OUTPUT_NAME
        self._mean = np.asarray(info.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(info.std, np.float32).reshape(1, 3, 1, 1)
        self.stain = normaliser_from_model(info.stain, folder / META_FILE)
        self._preprocess = preprocess

    def prepare(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        """As `LoadedModel.prepare`: the model's stain normalisation and normalisation (any thread)."""
        return self._preprocess(batch_uint8_nhwc, self._mean, self._std, self.stain)

    def predict(self, batch_uint8_nhwc: np.ndarray) -> np.ndarray:
        return self.predict_prepared(self.prepare(batch_uint8_nhwc))

    def predict_prepared(self, batch_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch_nchw, np.float32)
        return self._session.run([self._output], {self._input: x})[0]

    def describe(self) -> str:
        provider = self._session.get_providers()[0].replace("ExecutionProvider", "")
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        where = "GPU (CUDA)" if provider == "CUDA" else f"CPU ({os.cpu_count()} cores, OMP_NUM_THREADS={threads})"
        return f"ONNX Runtime on {where}"


def load_model(folder, device: str = "auto", engine: str = "mxnet", precision: str = "fp32"):
    """Load a bundle for the engine and precision asked; call on the model thread.

    Returns
    -------
    LoadedModel or OnnxModel
        Either has ``prepare``, ``predict``, ``predict_prepared`` and ``describe``.

    Raises
    ------
    ModelError
        An unreadable or tampered bundle (every file is checked against its SHA-256 in ``model.json``), or
        one without the variant asked for (`check_engine`).
    """
    from core.models.bundle import read_bundle, recover_bundle

    check_names(engine, precision)
    folder = recover_bundle(folder)
    # the files are checked against model.json every time; the network built from them is kept for the
    # next slide of the same files (a cohort's worker, the window predicting slide after slide)
    info, data = read_bundle(folder)
    key = (str(Path(folder).resolve()), str(device), engine, precision)
    stamp = tuple(sorted((name, hashlib.sha256(blob).hexdigest()) for name, blob in data.items()))
    cached = _LOADED.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    model = _load_model(folder, info, data, device, engine, precision)
    _LOADED.clear()  # one network kept: a cohort or a session uses one model at a time
    _LOADED[key] = (stamp, model)
    return model


#: The last network `load_model` built, by (folder, device, engine, precision), with its files' hashes.
#: Touched only on the model thread.
_LOADED: dict = {}


def _load_model(folder, info, data, device: str, engine: str, precision: str):
    from core.models.engine import describe_device, parse_device

    if engine == "onnx":
        check_engine(info, folder, engine, precision)
        from core.models.onnx_export import check_onnx

        name = info.variant_file("onnx")
        check_onnx(folder / name, data[name], len(info.classes))
        return OnnxModel(folder, info, data[name], device)
    ctx = parse_device(device)
    if precision == "int8":
        from core.models.quantize import load_int8

        model = load_int8(folder, ctx)
        model.describe = lambda: f"{describe_device(ctx)}, INT8 (MXNet oneDNN)"
        return model
    from core.models.loading import load_bundle

    model = load_bundle(folder, ctx)
    model.describe = lambda: describe_device(ctx)
    return model


__all__ = ["ENGINES", "PRECISIONS", "check_engine", "check_names", "load_model", "OnnxModel"]
