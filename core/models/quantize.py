"""An INT8 variant of a bundle's network: MXNet's own quantisation with oneDNN fusion, checked and kept.

`quantize_bundle` runs ``mx.contrib.quantization.quantize_net_v2`` on the FP32 network: convolution,
BatchNorm and ReLU are fused by the oneDNN subgraph backend (``MKLDNN_QUANTIZE``), calibrated on a few
hundred tiles (``calib_mode`` ``"naive"``: each layer's min/max; ``"entropy"``: KL-optimal thresholds),
and computed in INT8 (VNNI where the processor has it). The classifier's fully-connected head is kept in
FP32 unless quantising it is measured faster here (``head="auto"``) or asked for (``head="int8"``): a
quantised FC layer is reported slower than FP32 on some processors.

The variant is checked before it is kept: on tiles the calibration did not see, its calls at the model's
threshold must agree with the FP32 network's on at least `MIN_AGREEMENT` (99 %) of tiles, or it is refused
(INT8 accuracy can differ by processor generation, so the check runs where the variant is made).

Kept files, beside the FP32 export and hashed in ``model.json`` (block ``int8``, with the calibration
summary): ``model-int8-symbol.json`` and ``model-int8-0000.params``. The params file holds float32 arrays
only (the head's INT8 weights are stored as whole numbers in float32, and cast back when loaded), so the
weights check of every other bundle file applies; the graph may use only the operators quantisation makes
of Biopsia's networks (`OPERATORS`).

`quantize_bundle` hands its MXNet work to the model thread itself; `load_int8` runs on it.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from core.errors import ModelError

INT8_SYMBOL = "model-int8-symbol.json"
INT8_PARAMS = "model-int8-0000.params"
MIN_AGREEMENT = 0.99
CALIB_MODES = ("naive", "entropy")
HEADS = ("auto", "fp32", "int8")
#: What quantize_net_v2 and the oneDNN backend make of Biopsia's networks (and the FP32 operators left).
OPERATORS = {"null", "_contrib_quantize_v2", "_contrib_dequantize", "_contrib_requantize",
             "_contrib_quantized_flatten", "_contrib_quantized_pooling", "_contrib_quantized_elemwise_add",
             "_contrib_quantized_act", "_contrib_quantized_fully_connected", "_contrib_quantized_conv",
             "_sg_mkldnn_conv", "_sg_mkldnn_fully_connected", "Convolution", "BatchNorm", "Activation", "Pooling",
             "FullyConnected", "Flatten", "Dropout", "elemwise_add", "_Plus", "_plus", "broadcast_add"}


def check_int8_graph(path: Path, doc) -> None:
    """Refuse an INT8 graph with operators quantisation does not make of Biopsia's networks (subgraphs too)."""
    def walk(graph, depth: int) -> None:
        if depth > 4 or not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
            raise ModelError(f"{path}: not an MXNet INT8 graph Biopsia wrote; make it again with 'biopsia quantize'")
        for node in graph["nodes"]:
            if not isinstance(node, dict) or node.get("op") not in OPERATORS:
                raise ModelError(f"{path}: the INT8 graph uses an operator Biopsia's networks do not; make it again "
                                 "with 'biopsia quantize'")
            for sub in node.get("subgraphs", []) or []:
                walk(sub, depth + 1)

    walk(doc, 0)


def _load_net(symbol_json: bytes, params: bytes, casts: dict, ctx, path: Path):
    """A SymbolBlock of the INT8 graph with its weights (``casts``: arrays stored as float32 to cast back)."""
    import mxnet as mx
    from mxnet import gluon

    try:
        symbol = mx.sym.load_json(symbol_json.decode("utf-8"))
        with warnings.catch_warnings():  # SymbolBlock warns that "data" has no declared type
            warnings.simplefilter("ignore")
            net = gluon.SymbolBlock(symbol, mx.sym.var("data"))
        weights = mx.nd.load_frombuffer(params)
        weights = {k: (v.astype(casts[k.split(":", 1)[-1]]) if k.split(":", 1)[-1] in casts else v)
                   for k, v in weights.items()}
        net.collect_params().load_dict(weights, ctx=ctx, allow_missing=False, ignore_extra=False, cast_dtype=True,
                                       dtype_source="saved")
    except ModelError:
        raise
    except Exception as exc:  # MXNetError, AssertionError: a graph or weights that do not fit
        raise ModelError(f"{path}: the INT8 network does not load ({type(exc).__name__}); make it again with "
                         "'biopsia quantize'") from None
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def load_int8(folder, ctx=None):
    """The bundle's INT8 variant as a `LoadedModel` (same preprocessing as FP32); call on the model thread.

    Raises
    ------
    ModelError
        No INT8 variant, or one whose files are changed (SHA-256), malformed or do not load.
    """
    import mxnet as mx

    from core.inference.engines import check_engine
    from core.models import safety
    from core.models.bundle import read_bundle, recover_bundle
    from core.models.loading import LoadedModel

    folder = recover_bundle(folder)
    info, data = read_bundle(folder)
    check_engine(info, folder, "mxnet", "int8")
    block = info.variants["int8"]
    sym_name, params_name = block["symbol"], block["params"]
    check_int8_graph(folder / sym_name, safety.parse_json(folder / sym_name, data[sym_name], "INT8 network graph"))
    safety.check_weights(folder / params_name, data[params_name])
    casts = block.get("casts") or {}
    if not (isinstance(casts, dict) and all(v in ("int8", "uint8", "int32") for v in casts.values())):
        raise ModelError(f"{folder / 'model.json'}: int8.casts must map weight names to int8, uint8 or int32")
    ctx = ctx or mx.cpu()
    net = _load_net(data[sym_name], data[params_name], casts, ctx, folder / sym_name)
    return LoadedModel(net, info, folder, ctx)


def _quantize(model, calib: np.ndarray, calib_mode: str, quantize_head: bool):
    """quantize_net_v2 of the FP32 ``model.net``: (symbol JSON bytes, float32-only params bytes, casts)."""
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    batch = min(32, len(calib))
    data = mx.io.NDArrayIter(data={"data": calib[: len(calib) // batch * batch]}, batch_size=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = quantize_net_v2(model.net, quantized_dtype="auto", quantize_mode="full",
                               exclude_layers_match=None if quantize_head else ["dense"],
                               calib_data=data, calib_mode=calib_mode, num_calib_examples=len(calib),
                               ctx=mx.cpu())
        qnet.hybridize(static_alloc=True, static_shape=True)
        qnet(mx.nd.array(calib[:1])).wait_to_read()
    with tempfile.TemporaryDirectory(prefix="biopsia-int8-") as tmp:
        qnet.export(str(Path(tmp) / "q"), epoch=0)
        symbol = (Path(tmp) / "q-symbol.json").read_bytes()
        weights = mx.nd.load(str(Path(tmp) / "q-0000.params"))
    casts = {k.split(":", 1)[-1]: np.dtype(v.dtype).name for k, v in weights.items() if v.dtype != np.float32}
    stored = {k: (v.astype("float32") if v.dtype != np.float32 else v) for k, v in weights.items()}
    with tempfile.TemporaryDirectory(prefix="biopsia-int8-") as tmp:
        mx.nd.save(str(Path(tmp) / "p"), stored)
        params = (Path(tmp) / "p").read_bytes()
    return symbol, params, casts


def _rate(net, x: np.ndarray, seconds: float = 1.0) -> float:
    """Tiles per second of ``net`` on one batch, after a warm-up (only to choose the head's precision)."""
    import mxnet as mx

    batch = mx.nd.array(x)
    net(batch).wait_to_read()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        net(batch).wait_to_read()
        done += len(x)
    return done / (time.perf_counter() - start)


def _probs(net, x: np.ndarray) -> np.ndarray:
    import mxnet as mx

    return np.concatenate([mx.nd.softmax(net(mx.nd.array(x[i:i + 64])), axis=1).asnumpy()
                           for i in range(0, len(x), 64)])


def quantize_bundle(folder, sources: Iterable | None = None, calib_mode: str = "naive", calib_tiles: int = 256,
                    check_tiles: int = 256, head: str = "auto", min_agreement: float = MIN_AGREEMENT,
                    tiles: np.ndarray | None = None, progress: Callable[[str], None] | None = None,
                    held_out: np.ndarray | None = None) -> dict:
    """Make, check and keep the INT8 variant of a bundle.

    Parameters
    ----------
    folder : path-like
        A bundle (or a training folder holding ``best/``).
    sources : iterable of path-like, optional
        Datasets, patch folders or slides whose tiles calibrate (``calib_tiles`` of them) and check (the
        others, up to ``check_tiles``); default a small synthetic slide (`core.models.onnx_export.sample_tiles`).
    calib_mode : str
        ``"naive"`` or ``"entropy"``.
    head : str
        ``"auto"`` (the FC head in INT8 only if that is measured faster here), ``"fp32"`` or ``"int8"``.
    min_agreement : float
        Share of check tiles whose call must not change.
    tiles : ndarray, optional
        uint8 RGB tiles to use instead of ``sources`` (e.g. the training and validation tiles).
    held_out : ndarray, optional
        With ``tiles``: uint8 RGB tiles that check (up to ``check_tiles``), while ``tiles`` only calibrate
        (e.g. validation and training tiles); without it, ``tiles`` are shared out at random between the two.

    Returns
    -------
    dict
        The ``int8`` block written to ``model.json``: calibration mode and tile count, the head's precision
        and the speeds that chose it, and ``check`` (tiles, calls agree, max |Δp|).

    Raises
    ------
    ModelError
        An unreadable bundle, a network MXNet cannot quantise, too few tiles, or an INT8 variant whose calls
        differ from FP32 on more than ``1 - min_agreement`` of the check tiles (then nothing is written).
    """
    import mxnet as mx

    from core.models.bundle import add_bundle_files, default_threshold, read_info, resolve_bundle
    from core.models.engine import engine
    from core.models.loading import load_bundle
    from core.models.onnx_export import sample_tiles

    if calib_mode not in CALIB_MODES:
        raise ModelError(f"calibration mode {calib_mode!r} not understood; use {' or '.join(CALIB_MODES)}")
    if head not in HEADS:
        raise ModelError(f"head {head!r} not understood; use {', '.join(HEADS)}")
    say = progress or (lambda step: None)
    folder = resolve_bundle(folder)
    info = read_info(folder)
    if tiles is None:
        say("cutting calibration and check tiles")
        tiles, source = sample_tiles(info, sources, count=calib_tiles + check_tiles)
    else:
        tiles, source = np.asarray(tiles), f"{len(tiles)} given tiles"
    if len(tiles) < 20:
        raise ModelError(f"{folder}: {len(tiles)} tiles ({source}) are too few to calibrate and check an INT8 "
                         "network; give a dataset or slides with --calibration")
    if held_out is not None:  # calibrate on tiles, check on held_out: the caller keeps them apart
        n_calib = min(calib_tiles, len(tiles))
        check = np.asarray(held_out)[:check_tiles]
        if len(check) < 10:
            raise ModelError(f"{folder}: {len(check)} held-out tiles are too few to check an INT8 network")
        tiles = np.concatenate([tiles[:n_calib], check])
        calib_idx, check_idx = np.arange(n_calib), np.arange(n_calib, len(tiles))
    else:
        n_calib = min(calib_tiles, len(tiles) // 2)  # the rest check what the calibration did not see
        rng = np.random.default_rng(0)
        order = rng.permutation(len(tiles))
        calib_idx, check_idx = order[:n_calib], order[n_calib:n_calib + check_tiles]
    threshold = default_threshold(info)[0]
    start = time.perf_counter()

    def run():
        model = load_bundle(folder)
        calib, check = model.prepare(tiles[calib_idx]), model.prepare(tiles[check_idx])
        options = [False, True] if head == "auto" else [head == "int8"]
        made, speeds = {}, {}
        for quantize_head in options:
            say(f"quantising ({calib_mode} calibration on {n_calib} tiles, head {'INT8' if quantize_head else 'FP32'})")
            try:
                made[quantize_head] = _quantize(model, calib, calib_mode, quantize_head)
            except ModelError:
                raise
            except Exception as exc:  # MXNetError: an operator quantisation cannot handle
                raise ModelError(f"{folder}: MXNet cannot quantise this network ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); it stays usable in FP32") from None
            if head == "auto":
                net = _load_net(*made[quantize_head], mx.cpu(), folder / INT8_SYMBOL)
                speeds["int8" if quantize_head else "fp32"] = _rate(net, calib[:min(64, len(calib))])
        quantize_head = options[0] if head != "auto" else speeds["int8"] > 1.05 * speeds["fp32"]
        symbol, params, casts = made[quantize_head]
        say("checking the INT8 calls against FP32")
        net = _load_net(symbol, params, casts, mx.cpu(), folder / INT8_SYMBOL)
        p32, p8 = model.predict_prepared(check)[:, -1], _probs(net, check)[:, -1]
        return symbol, params, casts, quantize_head, speeds, p32, p8

    symbol, params, casts, quantize_head, speeds, p32, p8 = engine().run(run)
    agree = float(np.mean((p32 >= threshold) == (p8 >= threshold)))
    check = {"tiles": int(len(p32)), "calls_agree": agree, "max_abs_diff": float(np.max(np.abs(p32 - p8))),
             "threshold": threshold, "min_agreement": min_agreement}
    if agree < min_agreement:
        raise ModelError(f"{folder}: the INT8 network changes the call of {1 - agree:.1%} of {len(p32)} check tiles "
                         f"({source}; threshold {threshold:g}), more than the {1 - min_agreement:.0%} allowed; not "
                         "kept (try --calib-mode entropy, or more calibration tiles; the model stays usable in FP32)")
    import platform

    block = {"symbol": INT8_SYMBOL, "params": INT8_PARAMS, "casts": casts, "calib_mode": calib_mode,
             "calibration_tiles": int(n_calib), "tiles_from": source, "quantize_head": bool(quantize_head),
             "head_choice": head, "head_tiles_per_s": {k: round(v, 1) for k, v in speeds.items()},
             "check": check, "machine": platform.machine(), "processor": _cpu_name(),
             "seconds": round(time.perf_counter() - start, 1), "mxnet": mx.__version__}
    say("writing the INT8 variant into the model folder")
    add_bundle_files(folder, {INT8_SYMBOL: symbol, INT8_PARAMS: params}, {"int8": block})
    return block


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


__all__ = ["quantize_bundle", "load_int8", "check_int8_graph", "INT8_SYMBOL", "INT8_PARAMS", "MIN_AGREEMENT"]
