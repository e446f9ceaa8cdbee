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
    libraries: dict = field(default_factory=dict)  # name -> None (loads) or why not
    driver: str | None = None  # None when libcuda.so.1 loads, else why not
    gpus: list = field(default_factory=list)
    onnx_providers: list = field(default_factory=list)
    conv_check: dict | None = None

    @property
    def route(self) -> str:
        """``"mxnet-gpu"``, ``"onnx-cuda"`` (a GPU MXNet cannot use, ONNX Runtime can) or ``"cpu"``."""
        if self.mxnet_cuda and any(g.mxnet_can_run for g in self.gpus) and not any(self.libraries.values()):
            return "mxnet-gpu"
        if self.gpus and "CUDAExecutionProvider" in self.onnx_providers:
            return "onnx-cuda"
        return "cpu"

    def lines(self) -> list[str]:
        build = "GPU (CUDA)" if self.mxnet_cuda else "CPU-only"
        out = [f"MXNet {self.mxnet_version}: {build} build, oneDNN {'on' if self.mxnet_onednn else 'off'}"]
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
        if self.conv_check:
            c = self.conv_check
            out.append(f"convolution on GPU {c['gpu']} against the CPU: forward max |Δ| {c['forward']:.1e}, "
                       f"backward max |Δ| {c['backward']:.1e}: {'ok' if c['ok'] else 'DIFFERS'}")
        out.append({"mxnet-gpu": "Route: MXNet on the GPU (--device gpu:0, or auto).",
                    "onnx-cuda": "Route: ONNX Runtime on the GPU (predict --engine onnx).",
                    "cpu": "Route: the CPU."}[self.route])
        return out

    def to_json(self) -> dict:
        return {"mxnet": self.mxnet_version, "mxnet_cuda": self.mxnet_cuda, "mxnet_onednn": self.mxnet_onednn,
                "cuda_libraries": {k: v or "loads" for k, v in self.libraries.items()}, "driver": self.driver or "loads",
                "gpus": [{"index": g.index, "name": g.name, "compute_capability": ".".join(map(str, g.compute_capability)),
                          "memory_mb": g.memory_mb, "mxnet_can_run": g.mxnet_can_run} for g in self.gpus],
                "onnx_providers": self.onnx_providers, "conv_check": self.conv_check, "route": self.route}


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
    import sys

    roots = [Path(p) / "nvidia" for p in sys.path if p and (Path(p) / "nvidia").is_dir()]
    found = {}
    for name, folder in WHEEL_FOLDERS:
        paths = [root / folder / "lib" / name for root in roots if (root / folder / "lib" / name).is_file()]
        if not paths:
            found[name] = f"not installed (nvidia-{folder.replace('_', '-')}-cu11)"
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


def gpu_report(run_conv: bool = True) -> GpuReport:
    """Everything `biopsia gpu-check` prints; never raises for a missing GPU or library (it says so)."""
    import mxnet as mx

    features = mx.runtime.Features()
    report = GpuReport(mx.__version__, features.is_enabled("CUDA"), features.is_enabled("MKLDNN"))
    report.gpus, report.driver = driver_gpus()
    if report.mxnet_cuda or report.gpus:
        wheels = preload_cuda_libraries()
        report.libraries = {name: None if wheels.get(name, "") is None else _load(name) for name in CUDA_LIBRARIES}
    try:
        import onnxruntime

        report.onnx_providers = [p for p in onnxruntime.get_available_providers() if p != "AzureExecutionProvider"]
    except ImportError:
        report.onnx_providers = []
    if run_conv and report.route == "mxnet-gpu":
        index = next(g.index for g in report.gpus if g.mxnet_can_run)
        try:
            report.conv_check = conv_check(index)
        except Exception as exc:  # MXNetError: no kernel image for this GPU, out of memory
            report.conv_check = {"gpu": index, "forward": float("nan"), "backward": float("nan"), "ok": False,
                                 "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return report


__all__ = ["gpu_report", "GpuReport", "Gpu", "mxnet_has_kernels", "preload_cuda_libraries", "CUDA_LIBRARIES"]
