"""The command-line side of the GPU: ``gpu-check`` says what is there and which route can use it
(`core.inference.gpu_check`); it exits 0 on a machine without a GPU, 1 when a GPU computes wrongly."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    p = sub.add_parser("gpu-check", help="the MXNet build, CUDA libraries, GPUs with their compute capability, "
                                         "ONNX Runtime providers, and a small convolution on the GPU")
    p.add_argument("--json", action="store_true", help="print JSON")


def gpu_check(args) -> int:
    from core.inference.gpu_check import gpu_report  # MXNet: loaded only for this command

    report = gpu_report()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 1 if report.conv_check and not report.conv_check["ok"] else 0


COMMANDS = {"gpu-check": gpu_check}
