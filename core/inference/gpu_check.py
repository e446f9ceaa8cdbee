"""What GPU this machine offers prediction and training, and which route can use it (`biopsia gpu-check`).

Answers without importing anything that needs a GPU: the MXNet build's features, whether each CUDA 11
library a GPU build of MXNet 1.9.1 links can be loaded, the driver's GPUs (through ``libcuda.so.1``) with
their compute capability and memory, ONNX Runtime's execution providers, and, when MXNet can run on a
GPU, a small convolution forward and backward on it compared with the CPU.

MXNet 1.9.1's GPU wheels (``mxnet-cu117``) hold kernels for sm_50, 60, 70, 80 and 86 and no PTX, so they
run on compute capability 5.x to 8.x (Maxwell to Ada) and not on 9.0 and newer (Hopper and later): there
prediction goes through ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

#: The CUDA 11 libraries libmxnet.so of mxnet-cu117 1.9.1 needs (beside the driver's libcuda.so.1).
CUDA_LIBRARIES = ("libcudart.so.11.0", "libcublas.so.11", "libcudnn.so.8", "libnccl.so.2", "libcufft.so.10",
                  "libcurand.so.10", "libcusolver.so.11", "libcusparse.so.11", "libnvrtc.so.11.2",
                  "libnvToolsExt.so.1")
#: Where each comes from in the ``nvidia-*-cu11`` wheels (``site-packages/nvidia/<folder>/lib/``), in the
#: order they can be loaded (each after the libraries it links).
WHEEL_FOLDERS = (("libcudart.so.11.0", "cuda_runtime"), ("libcublasLt.so.11", "cublas"),
                 ("libcublas.so.11", "cublas"), ("libcudnn.so.8", "cudnn"), ("libnccl.so.2", "nccl"),
                 ("libcufft.so.10", "cufft"), ("libcurand.so.10", "curand"), ("libcusparse.so.11", "cusparse"),
                 ("libcusolver.so.11", "cusolver"), ("libnvrtc.so.11.2", "cuda_nvrtc"),
                 ("libnvToolsExt.so.1", "nvtx"))
#: The CUDA 12 libraries ONNX Runtime's CUDA provider (onnxruntime-gpu 1.22) needs, from the ``nvidia-*-cu12``
#: wheels, in load order, each with the wheel that holds it. ``libcurand.so.10`` is the one soname CUDA 11 and
#: 12 share: the cu11 wheel gives it (requirements-gpu.txt).
ONNX_WHEEL_FOLDERS = (("libcudart.so.12", "cuda_runtime", "nvidia-cuda-runtime-cu12"),
                      ("libcublasLt.so.12", "cublas", "nvidia-cublas-cu12"),
                      ("libcublas.so.12", "cublas", "nvidia-cublas-cu12"),
                      ("libnvJitLink.so.12", "nvjitlink", "nvidia-nvjitlink-cu12"),
                      ("libcufft.so.11", "cufft", "nvidia-cufft-cu12"),
                      ("libcurand.so.10", "curand", "nvidia-curand-cu11"),
                      ("libnvrtc.so.12", "cuda_nvrtc", "nvidia-cuda-nvrtc-cu12"),
                      ("libcudnn.so.9", "cudnn", "nvidia-cudnn-cu12"))
#: Compute capability majors MXNet 1.9.1's kernels run on (cubins for sm_50/60/70/80/86, no PTX).
MXNET_MAJORS = (5, 6, 7, 8)


@dataclass
class Gpu:
    index: int
    name: str
    compute_capability: tuple[int, int]
    memory_mb: int

    @property
    def mxnet_can_run(self) -> bool:
        return mxnet_has_kernels(self.compute_capability)


@dataclass
class GpuReport:
    """What `gpu_report` found; `lines` says it in words."""

    mxnet_version: str
    mxnet_cuda: bool
    mxnet_onednn: bool
    mxnet_error: str | None = None  # why MXNet cannot be loaded at all (a GPU build without the driver)
    libraries: dict = field(default_factory=dict)  # name -> None (loads) or why not
    driver: str | None = None  # None when libcuda.so.1 loads, else why not
    gpus: list = field(default_factory=list)
    onnx_providers: list = field(default_factory=list)
    onnx_libraries: dict = field(default_factory=dict)  # the CUDA 12 ones of ONNX Runtime's CUDA provider
    conv_check: dict | None = None
    onnx_conv_check: dict | None = None

    @property
    def route(self) -> str:
        """``"mxnet-gpu"``, ``"onnx-cuda"`` (a GPU MXNet cannot use, ONNX Runtime can) or ``"cpu"``."""
        if self.mxnet_error is None and self.mxnet_cuda and any(g.mxnet_can_run for g in self.gpus) \
                and not any(self.libraries.values()):
            return "mxnet-gpu"
        if self.gpus and "CUDAExecutionProvider" in self.onnx_providers and not any(self.onnx_libraries.values()):
            return "onnx-cuda"
        return "cpu"

    def lines(self) -> list[str]:
        build = "GPU (CUDA)" if self.mxnet_cuda else "CPU-only"
        out = [f"MXNet {self.mxnet_version}: {build} build, oneDNN {'on' if self.mxnet_onednn else 'off'}"]
        if self.mxnet_error:
            out[0] = (f"MXNet {self.mxnet_version}: {build} build, which cannot be loaded here ({self.mxnet_error}): "
                      "Biopsia cannot train or predict with MXNet until it can. A GPU build needs the NVIDIA "
                      "driver's libcuda.so.1 even to start; without a GPU, put the CPU build back: "
                      "pip uninstall mxnet-cu117, then pip install mxnet==1.9.1")
        if not self.gpus:
            why = f" ({self.driver})" if self.driver else ""
            out.append(f"No GPU: no NVIDIA driver or GPU was found{why}. Biopsia runs on the CPU "
                       "(INT8 with --precision int8 is the fast route there).")
        for gpu in self.gpus:
            cc = ".".join(map(str, gpu.compute_capability))
            can = ("MXNet can use it" if gpu.mxnet_can_run else
                   "MXNet cannot use it (its kernels stop at compute capability 8.x); prediction runs there "
                   "through ONNX Runtime (--engine onnx)")
            out.append(f"GPU {gpu.index}: {gpu.name}, compute capability {cc}, {gpu.memory_mb:,} MB; {can}")
        if self.mxnet_cuda or self.gpus:
            missing = {k: v for k, v in self.libraries.items() if v}
            out.append("CUDA 11 libraries for MXNet: " + ("all load" if not missing else
                       "missing " + ", ".join(sorted(missing)) + " (make gpu installs them)"))
        out.append("ONNX Runtime providers: " + ", ".join(self.onnx_providers or ["none (onnxruntime not installed)"]))
        if "CUDAExecutionProvider" in self.onnx_providers:
            missing = {k: v for k, v in self.onnx_libraries.items() if v}
            out.append("CUDA 12 libraries for ONNX Runtime: " + ("all load" if not missing else
                       "missing " + ", ".join(sorted(missing)) + " (make gpu installs them)"))
        if self.onnx_conv_check:
            c = self.onnx_conv_check
            if c.get("error"):
                out.append(f"ONNX Runtime convolution on GPU {c['gpu']}: {c['error']}")
            else:
                out.append(f"ONNX Runtime convolution on GPU {c['gpu']} against the CPU: max |Δ| {c['forward']:.1e}: "
                           f"{'ok' if c['ok'] else 'DIFFERS'}")
        if self.conv_check:
            c = self.conv_check
            out.append(f"convolution on GPU {c['gpu']} against the CPU: forward max |Δ| {c['forward']:.1e}, "
                       f"backward max |Δ| {c['backward']:.1e}: {'ok' if c['ok'] else 'DIFFERS'}")
        if self.mxnet_error and self.route == "cpu":
            out.append("Route: ONNX Runtime on the CPU only (predict --engine onnx); MXNet cannot be loaded.")
            return out
        out.append({"mxnet-gpu": "Route: MXNet on the GPU (--device gpu:0, or auto).",
                    "onnx-cuda": "Route: ONNX Runtime on the GPU (predict --engine onnx).",
                    "cpu": "Route: the CPU."}[self.route])
        return out

    def to_json(self) -> dict:
        return {"mxnet": self.mxnet_version, "mxnet_cuda": self.mxnet_cuda, "mxnet_onednn": self.mxnet_onednn,
                "mxnet_error": self.mxnet_error,
                "cuda_libraries": {k: v or "loads" for k, v in self.libraries.items()}, "driver": self.driver or "loads",
                "gpus": [{"index": g.index, "name": g.name, "compute_capability": ".".join(map(str, g.compute_capability)),
                          "memory_mb": g.memory_mb, "mxnet_can_run": g.mxnet_can_run} for g in self.gpus],
                "onnx_providers": self.onnx_providers,
                "onnx_cuda_libraries": {k: v or "loads" for k, v in self.onnx_libraries.items()},
                "conv_check": self.conv_check, "onnx_conv_check": self.onnx_conv_check, "route": self.route}


def gpu_index(device: str) -> int:
    """The GPU a device string names: ``"gpu:N"`` is N; ``"gpu"``, ``"auto"`` and anything else are 0."""
    _, _, number = str(device or "").strip().lower().partition(":")
    return int(number) if number.isdigit() else 0


def mxnet_has_kernels(compute_capability: tuple[int, int]) -> bool:
    """True when MXNet 1.9.1's GPU kernels run on a GPU of this compute capability (5.0 to 8.9)."""
    return compute_capability[0] in MXNET_MAJORS


def _load(name: str) -> str | None:
    try:
        ctypes.CDLL(name)
    except OSError as err:
        return str(err).split(":")[-1].strip() or "cannot be loaded"
    return None


def preload_cuda_libraries() -> dict[str, str | None]:
    """Load the CUDA 11 libraries of the ``nvidia-*-cu11`` wheels (``make gpu``) in dependency order, globally.

    A GPU build of MXNet finds them then without ``LD_LIBRARY_PATH``: call this before MXNet is imported.
    Returns ``{library: None}`` for each loaded, else why not (not installed, or the loader's error).
    """
    return _preload((name, folder, f"nvidia-{folder.replace('_', '-')}-cu11") for name, folder in WHEEL_FOLDERS)


def preload_onnx_cuda_libraries() -> dict[str, str | None]:
    """Load the CUDA 12 libraries ONNX Runtime's CUDA provider needs from the ``nvidia-*-cu12`` wheels, globally.

    onnxruntime-gpu looks for them on the loader's path only; call this before the first CUDA session
    (`core.models.onnx_export.onnx_session` does). Returns as `preload_cuda_libraries`.
    """
    return _preload(ONNX_WHEEL_FOLDERS)


def _preload(table) -> dict[str, str | None]:
    import sys

    roots = [Path(p) / "nvidia" for p in sys.path if p and (Path(p) / "nvidia").is_dir()]
    found = {}
    for name, folder, wheel in table:
        paths = [root / folder / "lib" / name for root in roots if (root / folder / "lib" / name).is_file()]
        if not paths:
            found[name] = f"not installed ({wheel})"
            continue
        try:
            ctypes.CDLL(str(paths[0]), mode=ctypes.RTLD_GLOBAL)
            found[name] = None
        except OSError as err:
            found[name] = str(err).split(":")[-1].strip() or "cannot be loaded"
    return found


def driver_gpus() -> tuple[list[Gpu], str | None]:
    """The GPUs the NVIDIA driver reports (through ``libcuda.so.1``), and why none when it cannot say."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "libcuda.so.1, the NVIDIA driver's library, is not installed"
    if cuda.cuInit(0) != 0:
        return [], "the NVIDIA driver is installed but finds no usable GPU"
    count = ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name, memory = ctypes.create_string_buffer(256), ctypes.c_size_t()
        cuda.cuDeviceGet(ctypes.byref(device), index)
        cuda.cuDeviceGetName(name, 256, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # ..._MINOR
        cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        gpus.append(Gpu(index, name.value.decode(errors="replace"), (major.value, minor.value),
                        int(memory.value // (1 << 20))))
    return gpus, None


def conv_check(index: int) -> dict:
    """A 3x3 convolution forward and backward on GPU ``index`` and on the CPU: the largest differences."""
    import mxnet as mx
    import numpy as np

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 3, 32, 32)).astype(np.float32), rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    results = {}
    for ctx in (mx.cpu(), mx.gpu(index)):
        xd, wd = mx.nd.array(x, ctx=ctx), mx.nd.array(w, ctx=ctx)
        xd.attach_grad()
        with mx.autograd.record():
            y = mx.nd.Convolution(xd, wd, kernel=(3, 3), num_filter=8, no_bias=True, pad=(1, 1))
        y.backward(mx.nd.ones_like(y))
        results[ctx.device_type] = (y.asnumpy(), xd.grad.asnumpy())
    forward = float(np.abs(results["cpu"][0] - results["gpu"][0]).max())
    backward = float(np.abs(results["cpu"][1] - results["gpu"][1]).max())
    return {"gpu": index, "forward": forward, "backward": backward, "ok": forward < 1e-3 and backward < 1e-3}


def _version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def onnx_conv_check(index: int) -> dict:
    """A 3x3 convolution on ONNX Runtime's CUDA provider (GPU ``index``) and on its CPU one: the largest difference.

    ONNX Runtime falls back to the CPU without a word when the CUDA provider cannot start; that is reported
    as an error here, not as a match.
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 3, 32, 32)).astype(np.float32), rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv_check",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7).SerializeToString()
    results = {}
    for provider, options in (("CPUExecutionProvider", {}), ("CUDAExecutionProvider", {"device_id": index})):
        session = ort.InferenceSession(data, providers=[(provider, options)])
        if session.get_providers()[0] != provider:
            return {"gpu": index, "forward": float("nan"), "ok": False,
                    "error": "the CUDA provider could not start (ONNX Runtime fell back to the CPU)"}
        results[provider] = session.run(["y"], {"x": x})[0]
    forward = float(np.abs(results["CPUExecutionProvider"] - results["CUDAExecutionProvider"]).max())
    return {"gpu": index, "forward": forward, "ok": forward < 1e-3}


def gpu_report(run_conv: bool = True) -> GpuReport:
    """Everything `biopsia gpu-check` prints; never raises for a missing GPU or library (it says so)."""
    wheels = preload_cuda_libraries()  # before MXNet: a GPU build finds its CUDA 11 libraries so
    try:
        import mxnet as mx
    except OSError as err:  # a GPU build that cannot load: no driver (libcuda.so.1), or a CUDA library missing
        build = next((d for d in ("mxnet-cu117", "mxnet") if _version(d)), None)
        report = GpuReport(f"{_version(build)} ({build})" if build else "?", build == "mxnet-cu117", False,
                           mxnet_error=str(err).split(":")[0].strip() + ": cannot be loaded")
    else:
        features = mx.runtime.Features()
        report = GpuReport(mx.__version__, features.is_enabled("CUDA"), features.is_enabled("MKLDNN"))
    report.gpus, report.driver = driver_gpus()
    if report.mxnet_cuda or report.gpus:
        report.libraries = {name: None if wheels.get(name, "") is None else _load(name) for name in CUDA_LIBRARIES}
    try:
        import onnxruntime

        report.onnx_providers = [p for p in onnxruntime.get_available_providers() if p != "AzureExecutionProvider"]
    except ImportError:
        report.onnx_providers = []
    if "CUDAExecutionProvider" in report.onnx_providers:
        report.onnx_libraries = preload_onnx_cuda_libraries()
    if run_conv and report.route == "mxnet-gpu":
        index = next(g.index for g in report.gpus if g.mxnet_can_run)
        try:
            report.conv_check = conv_check(index)
        except Exception as exc:  # MXNetError: no kernel image for this GPU, out of memory
            report.conv_check = {"gpu": index, "forward": float("nan"), "backward": float("nan"), "ok": False,
                                 "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if run_conv and report.gpus and report.route in ("onnx-cuda", "mxnet-gpu") and \
            "CUDAExecutionProvider" in report.onnx_providers and not any(report.onnx_libraries.values()):
        try:
            report.onnx_conv_check = onnx_conv_check(report.gpus[0].index)
        except Exception as exc:  # onnxruntime's Fail / RuntimeException: no kernel image, out of memory
            report.onnx_conv_check = {"gpu": report.gpus[0].index, "forward": float("nan"), "ok": False,
                                      "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return report


__all__ = ["gpu_report", "GpuReport", "Gpu", "gpu_index", "mxnet_has_kernels", "preload_cuda_libraries",
           "preload_onnx_cuda_libraries", "onnx_conv_check", "CUDA_LIBRARIES", "ONNX_WHEEL_FOLDERS"]
