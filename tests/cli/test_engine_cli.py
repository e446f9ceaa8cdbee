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


def test_the_cuda_libraries_of_the_nvidia_wheels_are_found_and_loaded(tmp_path, monkeypatch):
    import ctypes.util
    import sys

    from core.inference.gpu_check import preload_cuda_libraries

    libm = ctypes.util.find_library("m")
    real = next(p for p in (Path("/lib/x86_64-linux-gnu") / libm, Path("/usr/lib/x86_64-linux-gnu") / libm,
                            Path("/lib64") / libm) if p.is_file())
    runtime = tmp_path / "nvidia" / "cuda_runtime" / "lib"
    runtime.mkdir(parents=True)
    shutil.copy(real, runtime / "libcudart.so.11.0")  # a loadable library standing in for the wheel's
    nvtx = tmp_path / "nvidia" / "nvtx" / "lib"
    nvtx.mkdir(parents=True)
    (nvtx / "libnvToolsExt.so.1").write_bytes(b"not a shared library")
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    found = preload_cuda_libraries()
    assert found["libcudart.so.11.0"] is None
    assert found["libnvToolsExt.so.1"] and "not installed" not in found["libnvToolsExt.so.1"]
    assert found["libcudnn.so.8"] == "not installed (nvidia-cudnn-cu11)"
