"""The command-line side of a model's other engines: ``export-onnx`` (``model.onnx``) and ``quantize`` (INT8).

Both add a variant to an existing model folder, checked against the FP32 MXNet network before it is kept
(`core.models.onnx_export`, `core.models.quantize`); ``predict --engine onnx`` and ``--precision int8``
then use them.
"""

from __future__ import annotations

import json

from cli.options import positive
from cli.progress import note


def add_parsers(sub) -> None:
    p = sub.add_parser("export-onnx", help="add model.onnx to a model folder (checked against MXNet), for ONNX "
                                           "Runtime, OpenCV DNN, QuPath and other tools")
    p.add_argument("model", help="model folder (or its best/ bundle)")
    p.add_argument("--tiles", nargs="+", metavar="PATH",
                   help="datasets, patch folders or slides to check the export on (default: a small synthetic "
                        "slide made for it)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")

    p = sub.add_parser("quantize", help="add an INT8 variant of the network to a model folder (MXNet oneDNN), "
                                        "refused if it changes more than 1 %% of the calls")
    p.add_argument("model", help="model folder (or its best/ bundle)")
    p.add_argument("--calibration", nargs="+", metavar="PATH",
                   help="datasets, patch folders or slides whose tiles calibrate and then check the INT8 network "
                        "(default: a small synthetic slide made for it)")
    p.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive",
                   help="naive: the min/max of each layer on the calibration tiles; entropy: KL-optimal thresholds")
    p.add_argument("--calib-tiles", type=positive, default=256, help="calibration tiles (default 256; as many "
                   "others check the result)")
    p.add_argument("--head", choices=("auto", "fp32", "int8"), default="auto",
                   help="the classifier's fully-connected head: auto (INT8 only if measured faster here), fp32, int8")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def export_onnx_command(args) -> int:
    from core.models.bundle import resolve_bundle  # MXNet: loaded only for the command that needs it
    from core.models.onnx_export import export_onnx

    folder = resolve_bundle(args.model)
    check = export_onnx(folder, args.tiles, progress=note)
    if args.json:
        print(json.dumps(check.to_json() | {"bytes": check.bytes, "seconds": round(check.seconds, 2)}, indent=2))
        return 0
    print(f"{folder / 'model.onnx'}: {check.bytes / 1e6:.1f} MB, opset 13; against MXNet on {check.source}: "
          f"max |Δp| {check.max_abs_diff:.1e}, calls agree {check.calls_agree:.1%} ({check.seconds:.1f} s)")
    return 0


def quantize_command(args) -> int:
    from core.models.bundle import resolve_bundle
    from core.models.quantize import quantize_bundle

    folder = resolve_bundle(args.model)
    summary = quantize_bundle(folder, args.calibration, calib_mode=args.calib_mode, calib_tiles=args.calib_tiles,
                              check_tiles=args.calib_tiles, head=args.head, progress=note)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    check = summary["check"]
    print(f"{folder}: INT8 variant kept ({summary['calib_mode']} calibration on {summary['calibration_tiles']} "
          f"tiles; head {'INT8' if summary['quantize_head'] else 'FP32'}); against FP32 on {check['tiles']} other "
          f"tiles: calls agree {check['calls_agree']:.1%}, max |Δp| {check['max_abs_diff']:.3f}")
    return 0


COMMANDS = {"export-onnx": export_onnx_command, "quantize": quantize_command}
