"""A model bundle's network as ONNX (``model.onnx``): made with MXNet's own exporter, fixed, checked, kept.

MXNet is retired; ONNX Runtime, OpenCV's DNN module (which QuPath uses) and most other tools read ONNX.
`export_onnx` converts a bundle's graph and weights with ``mx.onnx.export_model`` (MXNet 1.9.1), then
repairs what that converter gets wrong or leaves loose:

- BatchNorm: the converter ignores ``fix_gamma`` (MXNet then multiplies by 1, whatever gamma is stored) and
  writes a missing ``eps`` as 1e-3; each ONNX ``BatchNormalization`` gets the epsilon MXNet runs with and,
  where gamma is fixed, a gamma of ones.
- the weights are listed as graph inputs too, which keeps ONNX Runtime from folding them as constants:
  they are removed from the inputs;
- the batch dimension is named ``N`` (any batch size), a ``Softmax`` turns the logits into class
  probabilities (output ``probabilities``), the opset is 13 (what the converter's translations target),
  and the metadata records classes, tile size, µm/px and the input normalisation for other tools.

The result is checked against MXNet on real tiles (tissue tiles cut from slides at the model's tile size and
µm/px: a dataset's, slides given, or a small synthetic slide made for it): the largest difference of any
class probability must be at most `TOLERANCE` (1e-4), or the export is refused naming the file. A kept
export is written into the bundle folder as one unit with its SHA-256 in ``model.json`` (``files``) and a
summary (``onnx``); `core.models.bundle` then refuses a changed ``model.onnx`` like any other file.

`export_onnx` runs MXNet: it hands its MXNet work to the model thread (`core.models.engine`) itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from core.errors import ModelError

ONNX_FILE = "model.onnx"
OPSET = 13
INPUT_NAME = "data"
OUTPUT_NAME = "probabilities"
TOLERANCE = 1e-4
#: MXNet's own BatchNorm defaults (src/operator/nn/batch_norm-inl.h): what it runs with when unset.
MX_BN_EPS, MX_BN_FIX_GAMMA = 1e-3, True
#: The ONNX operators Biopsia's networks become (and `check_onnx` accepts).
OPERATORS = {"Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten",
             "Gemm", "MatMul", "Add", "Sum", "Identity", "Dropout", "Softmax", "Reshape"}
VERIFY_TILES = 64


@dataclass
class OnnxCheck:
    """How an ONNX export compared with MXNet on the same tiles.

    Attributes
    ----------
    tiles : int
    max_abs_diff : float
        Largest |p_onnx - p_mxnet| of any class probability of any tile.
    calls_agree : float
        Share of tiles whose most probable class is the same.
    source : str
        Where the tiles came from.
    bytes : int
        Size of ``model.onnx``.
    seconds : float
    """

    tiles: int
    max_abs_diff: float
    calls_agree: float
    source: str
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"file": ONNX_FILE, "opset": OPSET, "input": INPUT_NAME, "output": OUTPUT_NAME,
                "layout": "NCHW float32, (RGB / 255 - mean) / std", "checked_tiles": self.tiles,
                "max_abs_diff": float(self.max_abs_diff), "calls_agree": float(self.calls_agree),
                "tolerance": TOLERANCE, "tiles_from": self.source, "software": _versions()}


def _versions() -> dict:
    import mxnet as mx
    import onnx
    import onnxruntime

    return {"mxnet": mx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


# -- the conversion (MXNet: on the model thread) ------------------------------------------------


def onnx_bytes(symbol_json: bytes, params: bytes, info, symbol_path: Path) -> bytes:
    """The finished ONNX model of a bundle's graph and weights (verified bytes from `read_bundle`).

    Raises
    ------
    ModelError
        The graph uses something the converter cannot translate, or the result is not valid ONNX.
    """
    import mxnet as mx
    import onnx
    from mxnet.onnx import export_model

    doc = json.loads(symbol_json.decode("utf-8"))
    symbol = mx.sym.load_json(symbol_json.decode("utf-8"))
    weights = {k.split(":", 1)[-1]: v for k, v in mx.nd.load_frombuffer(params).items()}
    side = info.tile_px
    with tempfile.TemporaryDirectory(prefix="biopsia-onnx-") as tmp:
        path = Path(tmp) / ONNX_FILE
        try:
            export_model(symbol, weights, in_shapes=[(1, 3, side, side)], in_types=[np.float32],
                         onnx_file_path=str(path), dynamic=True, dynamic_input_shapes=[(None, 3, side, side)])
        except Exception as exc:  # NotImplementedError, AttributeError, AssertionError from the converter
            raise ModelError(f"{symbol_path}: MXNet's ONNX converter cannot translate this network "
                             f"({type(exc).__name__}: {str(exc)[:200]}); the model stays usable with MXNet") from None
        model = onnx.load(str(path))
    _fix_batchnorm(model, doc, weights)
    _finish(model, info)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError
        raise ModelError(f"{symbol_path}: the ONNX conversion is not valid ONNX ({str(exc)[:200]})") from None
    return model.SerializeToString()


def _fix_batchnorm(model, doc: dict, weights: dict) -> None:
    """Give each BatchNormalization the epsilon MXNet uses and, where MXNet fixes gamma, a gamma of ones."""
    from onnx import helper, numpy_helper

    mx_nodes = {n["name"]: n.get("attrs", n.get("param", {})) for n in doc["nodes"] if n["op"] == "BatchNorm"}
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        attrs = mx_nodes.get(node.name)
        if attrs is None:
            raise ModelError(f"the ONNX converter made a BatchNormalization ({node.name}) MXNet's graph does not have")
        eps = float(attrs.get("eps", MX_BN_EPS))
        fix_gamma = str(attrs.get("fix_gamma", MX_BN_FIX_GAMMA)).lower() in ("true", "1")
        for attr in list(node.attribute):
            if attr.name == "epsilon":
                node.attribute.remove(attr)
        node.attribute.append(helper.make_attribute("epsilon", eps))
        if fix_gamma:
            gamma = inits[node.input[1]]
            ones = numpy_helper.from_array(np.ones(numpy_helper.to_array(gamma).shape, np.float32),
                                           f"{node.name}_fixed_gamma")
            model.graph.initializer.append(ones)
            node.input[1] = ones.name


def _finish(model, info) -> None:
    """Weights off the inputs, a named batch dimension, softmax probabilities, opset 13, metadata."""
    from onnx import helper

    graph = model.graph
    weights = {t.name for t in graph.initializer}
    for value in [v for v in graph.input if v.name in weights]:
        graph.input.remove(value)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(f"the ONNX conversion has {len(graph.input)} inputs and {len(graph.output)} outputs, not 1 and 1")
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    logits = graph.output[0].name
    graph.node.append(helper.make_node("Softmax", [logits], [OUTPUT_NAME], name="probabilities_softmax", axis=1))
    out = helper.make_tensor_value_info(OUTPUT_NAME, graph.output[0].type.tensor_type.elem_type, ["N", len(info.classes)])
    graph.output.remove(graph.output[0])
    graph.output.append(out)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", OPSET))
    model.ir_version = 7  # the IR of opset 13 (ONNX 1.8): readable by older runtimes and OpenCV
    model.producer_name, model.producer_version = "biopsia (mxnet.onnx.export_model)", _versions()["mxnet"]
    meta = {"classes": json.dumps(list(info.classes)), "tile_px": str(info.tile_px),
            "mpp": "" if info.mpp is None else repr(float(info.mpp)),
            "mean_rgb": json.dumps(list(info.mean)), "std_rgb": json.dumps(list(info.std)),
            "input": "NCHW float32 RGB, (pixel / 255 - mean_rgb) / std_rgb",
            "stain": json.dumps(info.stain) if info.stain else "none"}
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def check_onnx(path: Path, data: bytes, n_classes: int | None = None) -> None:
    """Refuse an ``model.onnx`` that is not one Biopsia writes: one input, one output, known operators only.

    Raises
    ------
    ModelError
        Naming the file and the problem.
    """
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:  # google.protobuf.message.DecodeError
        raise ModelError(f"{path}: not an ONNX model (it does not parse); export the model again "
                         "with 'biopsia export-onnx'") from None
    graph = model.graph
    other = sorted({n.op_type for n in graph.node if n.op_type not in OPERATORS or n.domain not in ("", "ai.onnx")})
    if other:
        raise ModelError(f"{path}: the ONNX graph uses operators Biopsia's networks do not ({', '.join(other[:5])}); "
                         "export the model again with 'biopsia export-onnx'")
    if [v.name for v in graph.input] != [INPUT_NAME] or [v.name for v in graph.output] != [OUTPUT_NAME]:
        raise ModelError(f"{path}: the ONNX graph must read '{INPUT_NAME}' and give '{OUTPUT_NAME}'; export the "
                         "model again with 'biopsia export-onnx'")
    if n_classes is not None:
        dims = graph.output[0].type.tensor_type.shape.dim
        if len(dims) != 2 or dims[1].dim_value != n_classes:
            raise ModelError(f"{path}: the ONNX graph does not give {n_classes} class probabilities")


# -- running it -----------------------------------------------------------------------------------


def onnx_session(data: bytes, device: str = "cpu", threads: int | None = None):
    """An ONNX Runtime session on ``model.onnx`` bytes: the CUDA provider for a GPU device when installed,
    else the CPU; ``threads`` (default ``OMP_NUM_THREADS``, else the cores) computes each batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    text = str(device or "auto").strip().lower()
    providers = ["CPUExecutionProvider"]
    wants_gpu = text.startswith("gpu")
    if (wants_gpu or text == "auto") and "CUDAExecutionProvider" in ort.get_available_providers() \
            and _driver_reports_a_gpu():
        from core.inference.gpu_check import gpu_index, preload_onnx_cuda_libraries

        preload_onnx_cuda_libraries()  # onnxruntime-gpu finds the nvidia-*-cu12 wheels' libraries only so
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu_index(text)}))
    session = ort.InferenceSession(data, options, providers=providers)
    if wants_gpu and session.get_providers()[0] != "CUDAExecutionProvider":
        # ONNX Runtime falls back to the CPU without a word; a GPU asked for by name is not quietly dropped
        why = ("onnxruntime-gpu is not installed (make gpu)"
               if "CUDAExecutionProvider" not in ort.get_available_providers() else
               "the NVIDIA driver reports no GPU" if len(providers) == 1 else
               "its CUDA provider could not start (biopsia gpu-check says why)")
        raise ModelError(f"ONNX Runtime cannot run on {text}: {why}; use --device auto or cpu")
    return session


def _driver_reports_a_gpu() -> bool:
    """Whether the NVIDIA driver reports a GPU. Without one, onnxruntime-gpu 1.22's CUDA provider crashes
    the process (a segmentation fault, seen on a machine without the driver) once its libraries are loaded,
    so it is never asked for then."""
    from core.inference.gpu_check import driver_gpus

    return bool(driver_gpus()[0])


def verify_onnx(data: bytes, model, batches: np.ndarray, source: str, path: Path,
                tolerance: float = TOLERANCE) -> OnnxCheck:
    """Compare ONNX Runtime with the MXNet ``model`` (`LoadedModel`) on prepared tiles; refuse past ``tolerance``.

    Runs MXNet: call on the model thread.
    """
    start = time.perf_counter()
    session = onnx_session(data, "cpu")
    ref, got = [], []
    for i in range(0, len(batches), 32):
        x = np.ascontiguousarray(batches[i:i + 32], np.float32)
        ref.append(model.predict_prepared(x))
        got.append(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
    ref, got = np.concatenate(ref), np.concatenate(got)
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    check = OnnxCheck(len(ref), diff, float(np.mean(ref.argmax(1) == got.argmax(1))), source, len(data),
                      time.perf_counter() - start)
    if not np.isfinite(diff) or diff > tolerance:
        raise ModelError(f"{path}: the ONNX export differs from MXNet by up to {diff:.2g} in a class probability "
                         f"on {check.tiles} tiles ({source}), more than the {tolerance:g} allowed; not written "
                         "(the model stays usable with MXNet)")
    return check


# -- tiles to check and calibrate on ---------------------------------------------------------------


def sample_tiles(info, sources: Iterable | None = None, count: int = VERIFY_TILES, seed: int = 0,
                 scratch: Path | None = None) -> tuple[np.ndarray, str]:
    """Up to ``count`` uint8 RGB tiles at the model's tile size and µm/px, and where they came from.

    Parameters
    ----------
    info : ModelInfo
    sources : iterable of path-like, optional
        Dataset folders (their train split), patch folders or slides; tissue tiles are cut from slides.
        None makes a small synthetic slide (known H&E-like tissue with tumour) in a temporary folder.
    count : int
    seed : int
        Which tiles are taken when there are more.

    Raises
    ------
    ModelError
        When the sources give no tile of the model's size.
    """
    rng = np.random.default_rng(seed)
    found, names = [], []
    with tempfile.TemporaryDirectory(prefix="biopsia-tiles-", dir=scratch) as tmp:
        made = not sources
        if made:
            sources = [_synthetic_slide(Path(tmp), info, count)]
        for source in sources:
            path = Path(source)
            images = _tiles_of(path, info, count, rng)
            if len(images):
                found.append(images)
                names.append("a synthetic slide" if made else path.name)
    if not found:
        raise ModelError(f"{', '.join(str(s) for s in sources)}: no tissue tiles of {info.tile_px} px at "
                         f"{info.mpp} µm/px in them to check the model on")
    tiles = np.concatenate(found)
    if len(tiles) > count:
        tiles = tiles[np.sort(rng.choice(len(tiles), count, replace=False))]
    return tiles, f"{len(tiles)} tiles of {', '.join(names)}"


def _synthetic_slide(folder: Path, info, count: int) -> Path:
    """A synthetic biopsy with about ``count`` tissue tiles of the model's size (at least 4096 x 3072 px)."""
    from core.synth import write_synthetic_slide

    mpp = min(0.5, float(info.mpp or 0.5))
    side_um = info.tile_px * float(info.mpp or 0.5)
    # 4096 x 3072 px at 0.5 µm/px held 55 tissue tiles of 128 µm, and 15,872 x 11,776 px 512: ~35 per such area
    scale = max(1.0, side_um / 128.0) * max(1.0, count / 35) ** 0.5
    width, height = int(4096 * scale * 0.5 / mpp) // 512 * 512, int(3072 * scale * 0.5 / mpp) // 512 * 512
    return write_synthetic_slide(folder / "check.tiff", seed=5, width=width, height=height, mpp=mpp).slide_path


def _tiles_of(path: Path, info, count: int, rng) -> np.ndarray:
    from core.tiles.folder import read_dataset

    if path.is_dir() or path.suffix == ".rec":
        images = read_dataset(path, "train").images
        if images.shape[1:3] != (info.tile_px, info.tile_px):
            raise ModelError(f"{path}: its tiles are {images.shape[2]} x {images.shape[1]} px, the model's "
                             f"{info.tile_px} px; give a dataset made with --tile {info.tile_px}")
        take = np.sort(rng.choice(len(images), min(count, len(images)), replace=False))
        return images[take]
    from core.inference.predict import PREDICT_TISSUE_MIN
    from core.slide import open_slide
    from core.tiles.grid import BACKGROUND, LOW_TISSUE, PEN, TileSpec, plan_tiles, read_tiles
    from core.tiles.tissue import detect_tissue

    if info.mpp is None:
        raise ModelError(f"{path}: the model records no µm/px, so tiles cannot be cut from a slide for it; give "
                         "a dataset instead")
    with open_slide(path) as reader:
        if reader.mpp is None:
            raise ModelError(f"{path}: the slide does not say its µm/px; give a dataset instead")
        plan = plan_tiles(reader, TileSpec(info.tile_px, info.mpp), detect_tissue(reader), (),
                          tissue_min=PREDICT_TISSUE_MIN)
        wanted = np.flatnonzero(~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN)))
        if wanted.size > count:
            wanted = np.sort(rng.choice(wanted, count, replace=False))
        return read_tiles(reader, plan, wanted) if wanted.size else np.zeros((0, info.tile_px, info.tile_px, 3), np.uint8)


# -- the export -----------------------------------------------------------------------------------


def export_onnx(folder, sources: Iterable | None = None, tiles: np.ndarray | None = None,
                tolerance: float = TOLERANCE, progress: Callable[[str], None] | None = None) -> OnnxCheck:
    """Export a bundle to ``model.onnx``, check it against MXNet, and keep it in the bundle.

    Parameters
    ----------
    folder : path-like
        A bundle (or a training folder holding ``best/``).
    sources : iterable of path-like, optional
        Where the check's tiles come from (see `sample_tiles`); default a small synthetic slide.
    tiles : ndarray, optional
        uint8 RGB tiles to check on instead (e.g. the validation tiles at the end of training).
    tolerance : float
        Largest difference of a class probability allowed.
    progress : callable, optional
        ``progress(step)`` with words for each step.

    Returns
    -------
    OnnxCheck

    Raises
    ------
    ModelError
        A bundle that does not read, a network the converter cannot translate, or an export that differs
        from MXNet by more than ``tolerance`` (the bundle is then left as it was).
    """
    from core.models.bundle import PARAMS_FILE, SYMBOL_FILE, add_bundle_files, read_bundle, resolve_bundle
    from core.models.engine import engine
    from core.models.loading import load_bundle

    say = progress or (lambda step: None)
    folder = resolve_bundle(folder)
    info, data = read_bundle(folder)
    if tiles is None:
        say("cutting tiles to check the export on")
        tiles, source = sample_tiles(info, sources)
    else:
        tiles, source = np.asarray(tiles)[:VERIFY_TILES], f"{min(len(tiles), VERIFY_TILES)} given tiles"
    start = time.perf_counter()

    def run() -> tuple[bytes, OnnxCheck]:
        say("converting with mx.onnx.export_model")
        body = onnx_bytes(data[SYMBOL_FILE], data[PARAMS_FILE], info, folder / SYMBOL_FILE)
        check_onnx(folder / ONNX_FILE, body, len(info.classes))
        say("checking against MXNet")
        model = load_bundle(folder)
        return body, verify_onnx(body, model, model.prepare(tiles), source, folder / ONNX_FILE, tolerance)

    body, check = engine().run(run)
    check.seconds = time.perf_counter() - start
    add_bundle_files(folder, {ONNX_FILE: body}, {"onnx": check.to_json()})
    return check


__all__ = ["ONNX_FILE", "OnnxCheck", "export_onnx", "check_onnx", "onnx_session", "sample_tiles",
           "TOLERANCE"]
