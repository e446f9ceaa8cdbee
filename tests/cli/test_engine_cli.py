"""`biopsia export-onnx`, `biopsia quantize`, and `predict` / `test` with --engine and --precision, run as a user
runs them, on a copy of the demo model and synthetic slides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.demo import DEMO_MODEL
from core.inference.predict import ProbabilityGrid
from core.models.bundle import add_bundle_files, read_info
from core.models.engine import engine
from core.models.loading import load_bundle
from core.models.onnx_export import sample_tiles
from tests.cli.test_cli import biopsia


@pytest.fixture(scope="module")
def bare_model(tmp_path_factory):
    """The demo model without its model.onnx."""
    folder = tmp_path_factory.mktemp("cli-model") / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    add_bundle_files(folder, {}, {"onnx": None})
    return folder


def test_without_the_variant_predict_says_how_to_make_it(bare_model, slide_pair, tmp_path):
    done = biopsia("predict", slide_pair[0].slide_path, "--model", bare_model, "--out", tmp_path / "out",
                   "--device", "cpu", "--engine", "onnx", "--no-tiff", timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"biopsia export-onnx {bare_model}" in done.stderr


def test_export_onnx_then_predict_with_onnx_runtime(bare_model, slide_pair, tmp_path):
    done = biopsia("export-onnx", bare_model, "--tiles", slide_pair[1].slide_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{bare_model / 'model.onnx'}: " in done.stdout and "max |Δp|" in done.stdout
    assert read_info(bare_model).variant_file("onnx") == "model.onnx"
    done = biopsia("predict", slide_pair[0].slide_path, "--model", bare_model, "--out", tmp_path / "out",
                   "--device", "cpu", "--engine", "onnx", "--no-tiff", timeout=300)
    assert done.returncode == 0, done.stderr
    grid = ProbabilityGrid.load(tmp_path / "out" / "pair29" / "grid.npz")
    assert grid.complete and grid.model["engine"] == "onnx" and grid.done.sum() > 150


def test_quantize_then_test_and_predict_in_int8(tmp_path, slide_pair):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    done = biopsia("quantize", folder, "--calibration", slide_pair[1].slide_path, "--calib-tiles", "80",
                   "--head", "fp32", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["calibration_tiles"] == 80 and summary["check"]["calls_agree"] >= 0.99
    # a patch folder labelled by the FP32 network: `test --precision int8` must agree with it
    tiles, _ = sample_tiles(read_info(folder), [slide_pair[0].slide_path], count=60)
    labels = engine().run(lambda: load_bundle(folder).predict(tiles)).argmax(1)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        cls = tmp_path / "patches" / ("Tumour" if label else "Non-tumour")
        cls.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cls / f"{i}.png"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
    if labels.min() == labels.max():
        pytest.skip("the slide gave tiles of one class only")
    done = biopsia("test", folder, tmp_path / "patches", "--patch-mpp", "1.0", "--precision", "int8", "--json",
                   "--device", "cpu", "--threshold", "0.5", timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "INT8" in result["device"] and result["accuracy"] >= 0.95
    done = biopsia("predict", slide_pair[0].slide_path, "--model", folder, "--out", tmp_path / "out", "--device",
                   "cpu", "--precision", "int8", "--no-tiff", timeout=300)
    assert done.returncode == 0, done.stderr
    assert ProbabilityGrid.load(tmp_path / "out" / "pair29" / "grid.npz").model["precision"] == "int8"


def test_gpu_check_says_plainly_there_is_no_gpu_and_exits_0():
    from core.inference.gpu_check import driver_gpus

    if driver_gpus()[0]:
        pytest.skip("this machine has a GPU")
    done = biopsia("gpu-check", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No GPU:" in done.stdout and "Route: the CPU." in done.stdout and "Traceback" not in done.stderr
    done = biopsia("gpu-check", "--json", timeout=120)
    report = json.loads(done.stdout)
    assert report["gpus"] == [] and report["route"] == "cpu" and "CPUExecutionProvider" in report["onnx_providers"]


def test_which_gpus_mxnet_has_kernels_for():
    from core.inference.gpu_check import Gpu, GpuReport, mxnet_has_kernels

    assert mxnet_has_kernels((5, 2)) and mxnet_has_kernels((8, 9)) and mxnet_has_kernels((7, 5))
    assert not mxnet_has_kernels((9, 0)) and not mxnet_has_kernels((10, 0)) and not mxnet_has_kernels((3, 7))
    hopper = GpuReport("1.9.1", True, True, libraries={}, gpus=[Gpu(0, "NVIDIA H200", (9, 0), 143_000)],
                       onnx_providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert hopper.route == "onnx-cuda"
    text = "\n".join(hopper.lines())
    assert "MXNet cannot use it" in text and "ONNX Runtime" in text and "compute capability 9.0" in text
    ada = GpuReport("1.9.1", True, True, libraries={"libcudnn.so.8": None}, gpus=[Gpu(0, "NVIDIA L4", (8, 9), 23_000)])
    assert ada.route == "mxnet-gpu"
    missing = GpuReport("1.9.1", True, True, libraries={"libcudnn.so.8": "not found"},
                        gpus=[Gpu(0, "NVIDIA L4", (8, 9), 23_000)])
    assert missing.route == "cpu" and "missing libcudnn.so.8" in "\n".join(missing.lines())


def stand_in_wheels(tmp_path, monkeypatch, loadable: tuple[str, str], broken: tuple[str, str]) -> None:
    """A ``site-packages/nvidia`` of two wheels, searched alone: ``loadable`` = (folder, library) holds a real
    shared library under the wheel's name, ``broken`` one that is not a shared library."""
    import ctypes.util
    import sys

    libm = ctypes.util.find_library("m")
    real = next(p for p in (Path("/lib/x86_64-linux-gnu") / libm, Path("/usr/lib/x86_64-linux-gnu") / libm,
                            Path("/lib64") / libm) if p.is_file())
    for (folder, name), content in ((loadable, None), (broken, b"not a shared library")):
        lib = tmp_path / "nvidia" / folder / "lib"
        lib.mkdir(parents=True)
        if content is None:
            shutil.copy(real, lib / name)
        else:
            (lib / name).write_bytes(content)
    # only the stand-ins: where `make gpu` installed the real wheels, they are left out of the search
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + [p for p in sys.path if not (Path(p or ".") / "nvidia").is_dir()])


def test_the_cuda_libraries_of_the_nvidia_wheels_are_found_and_loaded(tmp_path, monkeypatch):
    from core.inference.gpu_check import preload_cuda_libraries

    stand_in_wheels(tmp_path, monkeypatch, ("cuda_runtime", "libcudart.so.11.0"), ("nvtx", "libnvToolsExt.so.1"))
    found = preload_cuda_libraries()
    assert found["libcudart.so.11.0"] is None
    assert found["libnvToolsExt.so.1"] and "not installed" not in found["libnvToolsExt.so.1"]
    assert found["libcudnn.so.8"] == "not installed (nvidia-cudnn-cu11)"


def test_auto_engine_takes_onnx_runtime_only_on_a_gpu_mxnet_cannot_use(monkeypatch):
    import onnxruntime

    from core.inference import gpu_check
    from core.inference.engines import choose_engine
    from core.inference.gpu_check import Gpu

    with_onnx, without_onnx = read_info(DEMO_MODEL), read_info(DEMO_MODEL)
    without_onnx.variants = {k: v for k, v in without_onnx.variants.items() if k != "onnx"}
    assert without_onnx.variant_file("onnx") is None and with_onnx.variant_file("onnx") == "model.onnx"
    gpus = {"now": []}
    monkeypatch.setattr(gpu_check, "driver_gpus", lambda: (gpus["now"], None))
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_engine("auto", "auto", with_onnx) == ("mxnet", None)  # no GPU: MXNet on the CPU
    gpus["now"] = [Gpu(0, "NVIDIA L4", (8, 9), 23_000)]
    assert choose_engine("auto", "auto", with_onnx) == ("mxnet", None)  # MXNet's kernels run there
    gpus["now"] = [Gpu(0, "NVIDIA H200", (9, 0), 143_000)]
    engine_, why = choose_engine("auto", "gpu:0", with_onnx)
    assert engine_ == "onnx" and "NVIDIA H200" in why and "compute capability 9.0" in why
    assert choose_engine("auto", "auto", with_onnx)[0] == "onnx"
    assert choose_engine("auto", "cpu", with_onnx) == ("mxnet", None)  # the CPU was asked for
    assert choose_engine("auto", "auto", without_onnx) == ("mxnet", None)  # nothing for ONNX Runtime to run
    assert choose_engine("auto", "auto", with_onnx, "int8") == ("mxnet", None)  # INT8 is MXNet's
    assert choose_engine("mxnet", "auto", with_onnx) == ("mxnet", None)  # asked for by name: kept
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_engine("auto", "auto", with_onnx) == ("mxnet", None)  # onnxruntime-gpu not installed


def test_a_gpu_asked_of_onnx_runtime_is_not_quietly_dropped():
    import onnxruntime

    from core.errors import ModelError
    from core.models.onnx_export import onnx_session

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    data = (DEMO_MODEL / "model.onnx").read_bytes()
    assert onnx_session(data, "auto").get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match=r"cannot run on gpu:0: onnxruntime-gpu is not installed \(make gpu\)"):
        onnx_session(data, "gpu:0")


def test_onnx_runtimes_cuda_12_libraries_are_found_and_reported(tmp_path, monkeypatch):
    from core.inference.gpu_check import Gpu, GpuReport, preload_onnx_cuda_libraries

    stand_in_wheels(tmp_path, monkeypatch, ("cuda_runtime", "libcudart.so.12"), ("cudnn", "libcudnn.so.9"))
    found = preload_onnx_cuda_libraries()
    assert found["libcudart.so.12"] is None
    assert found["libcudnn.so.9"] and "not installed" not in found["libcudnn.so.9"]
    assert found["libcufft.so.11"] == "not installed (nvidia-cufft-cu12)"
    assert found["libcurand.so.10"] == "not installed (nvidia-curand-cu11)"  # the soname CUDA 11 and 12 share
    hopper = [Gpu(0, "NVIDIA H200", (9, 0), 143_000)]
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    broken = GpuReport("1.9.1", False, True, gpus=hopper, onnx_providers=providers, onnx_libraries=found)
    text = "\n".join(broken.lines())
    assert broken.route == "cpu" and "CUDA 12 libraries for ONNX Runtime: missing" in text and "libcufft.so.11" in text
    ready = GpuReport("1.9.1", False, True, gpus=hopper, onnx_providers=providers,
                      onnx_libraries=dict.fromkeys(found), onnx_conv_check={"gpu": 0, "forward": 2e-6, "ok": True})
    text = "\n".join(ready.lines())
    assert ready.route == "onnx-cuda" and "CUDA 12 libraries for ONNX Runtime: all load" in text
    assert "ONNX Runtime convolution on GPU 0 against the CPU: max |Δ| 2.0e-06: ok" in text
    assert ready.to_json()["onnx_cuda_libraries"]["libcudart.so.12"] == "loads"


def test_the_onnx_gpu_convolution_check_does_not_mistake_a_cpu_fallback_for_a_match():
    import onnxruntime

    from core.inference.gpu_check import onnx_conv_check

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    check = onnx_conv_check(0)
    assert check["ok"] is False and "fell back to the CPU" in check["error"]


def test_gpu_check_answers_when_mxnet_itself_cannot_be_loaded(monkeypatch):
    """mxnet-cu117 without the NVIDIA driver fails at import (libcuda.so.1): gpu-check still says what there is."""
    import builtins

    from core.inference.gpu_check import driver_gpus, gpu_report

    if driver_gpus()[0]:
        pytest.skip("this machine has a GPU")
    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "mxnet":
            raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing)
    report = gpu_report()
    text = "\n".join(report.lines())
    assert report.mxnet_error == "libcuda.so.1: cannot be loaded" and report.route == "cpu"
    assert "which cannot be loaded here (libcuda.so.1: cannot be loaded)" in text
    assert "pip install mxnet==1.9.1" in text and text.endswith("MXNet cannot be loaded.")
    assert report.to_json()["mxnet_error"] == "libcuda.so.1: cannot be loaded"
