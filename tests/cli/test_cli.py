"""The command line, run as a user runs it: a subprocess of main.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def biopsia(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_info_on_the_cmu_slide(cmu_svs):
    result = biopsia("info", cmu_svs, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["dimensions"] == [2220, 2967]
    assert info["mpp"][0] == pytest.approx(0.499, abs=0.001)
    assert info["objective_power"] == 20
    assert info["vendor"] == "aperio"
    assert {"label", "macro", "thumbnail"} <= set(info["associated_images"])
    text = biopsia("info", cmu_svs)
    assert text.returncode == 0
    assert "2220 x 2967 px" in text.stdout and "20x" in text.stdout and "aperio" in text.stdout


@pytest.mark.parametrize("content", [None, b"garbage bytes, not a slide"])
def test_info_on_bad_files_fails_clearly(tmp_path, content):
    path = tmp_path / "broken.svs"
    if content is not None:
        path.write_bytes(content)
    result = biopsia("info", path)
    assert result.returncode == 1
    assert "broken.svs" in result.stderr and "Traceback" not in result.stderr


def test_info_on_unreadable_vendor_files(shared_slides):
    result = biopsia("info", shared_slides / "unopenable.tiff")
    assert result.returncode == 1 and "unopenable.tiff" in result.stderr and "tried" in result.stderr


def test_screenshot_of_the_cmu_slide(tmp_path, cmu_svs):
    out = tmp_path / "shot.png"
    result = biopsia("screenshot", cmu_svs, "--out", out, "--size", "1200x800", "--mag", "5")
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image.shape[:2] == (800, 1200)
    # real H&E on screen: plenty of pink/purple pixels (red and blue above green)
    b, g, r = image[..., 0].astype(int), image[..., 1].astype(int), image[..., 2].astype(int)
    stained = (r - g > 25) & (b - g > 10)
    assert stained.mean() > 0.08


def test_screenshot_of_a_bad_slide_fails_clearly(tmp_path):
    bad = tmp_path / "bad.ndpi"
    bad.write_bytes(b"\x00" * 100)
    result = biopsia("screenshot", bad, "--out", tmp_path / "x.png")
    assert result.returncode == 1 and "bad.ndpi" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_screenshot_without_resolution_cannot_use_magnification(tmp_path):
    png = tmp_path / "plain.png"
    cv2.imwrite(str(png), np.full((300, 400, 3), 180, np.uint8))
    result = biopsia("screenshot", png, "--out", tmp_path / "y.png", "--mag", "20")
    assert result.returncode == 1 and "plain.png" in result.stderr and "µm/px" in result.stderr


@pytest.mark.parametrize("content", [b"II", b"II*", b"MM\x00"])
def test_info_on_a_file_of_two_or_three_bytes_fails_clearly(tmp_path, content):
    path = tmp_path / "tiny.svs"
    path.write_bytes(content)
    result = biopsia("info", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"biopsia: error: {path}: ")


def test_an_unexpected_error_still_names_the_file(tmp_path, monkeypatch, capsys):
    """A defect in Biopsia (here planted) is reported with the file named and a non-zero status, no traceback."""
    import cli.slides
    import main

    def broken(path, *args, **kwargs):
        raise RuntimeError("planted defect")
    monkeypatch.setattr(cli.slides, "open_slide", broken)
    monkeypatch.delenv("BIOPSIA_TRACEBACK", raising=False)
    assert main.main(["info", str(tmp_path / "case.svs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"biopsia: error: {tmp_path / 'case.svs'}: unexpected RuntimeError: planted defect")
    assert "Traceback" not in err and "BIOPSIA_TRACEBACK=1" in err


def test_synth_refuses_sizes_it_cannot_make_and_writes_nothing(tmp_path):
    small = biopsia("synth", tmp_path / "a.tiff", "--width", 240)
    assert small.returncode == 1 and "Traceback" not in small.stderr
    assert f"{tmp_path / 'a.tiff'}: width must be a whole number of pixels from 256" in small.stderr
    wrong = biopsia("synth", tmp_path / "a.png")
    assert wrong.returncode == 1 and "a.png: synthetic slide path must end with .tif, .tiff or .svs" in wrong.stderr
    coarse = biopsia("synth", tmp_path / "a.tiff", "--mpp", 30)
    assert coarse.returncode == 1 and "must be in (0.05, 20], got 30.0" in coarse.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, option", [
    (["synth", "a.tiff", "--mpp", "nan"], "--mpp"),
    (["synth", "a.tiff", "--mpp", "inf"], "--mpp"),
    (["synth", "a.tiff", "--width", "-5"], "--width"),
    (["dataset", "s.svs", "--out", "d", "--mpp", "nan"], "--mpp"),
    (["dataset", "s.svs", "--out", "d", "--mpp", "Infinity"], "--mpp"),
    (["dataset", "s.svs", "--out", "d", "--mpp", "1e-9"], "--mpp"),
    (["dataset", "s.svs", "--out", "d", "--mag", "inf"], "--mag"),
    (["dataset", "s.svs", "--out", "d", "--tile", "20000"], "--tile"),
    (["dataset", "s.svs", "--out", "d", "--ratio", "0"], "--ratio"),
    (["dataset", "s.svs", "--out", "d", "--tumour-min", "nan"], "--tumour-min"),
    (["train", "d", "--out", "m", "--lr", "nan"], "--lr"),
    (["train", "d", "--out", "m", "--epochs", "0"], "--epochs"),
    (["test", "m", "d", "--threshold", "nan"], "--threshold"),
    (["predict", "s.svs", "--model", "m", "--out", "o", "--threshold", "inf"], "--threshold"),
    (["predict", "s.svs", "--model", "m", "--out", "o", "--stride", "0"], "--stride"),
    (["predict", "s.svs", "--model", "m", "--out", "o", "--batch", "-1"], "--batch"),
    (["evaluate", "o", "--threshold", "-0.5"], "--threshold"),
    (["screenshot", "s.svs", "--out", "x.png", "--mag", "nan"], "--mag"),
    (["screenshot", "s.svs", "--out", "x.png", "--size", "100000x100000"], "--size"),
])
def test_numbers_out_of_range_are_refused_where_they_are_typed(argv, option, capsys):
    import main

    with pytest.raises(SystemExit) as exit_:
        main.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: " in err and "must be" in err and f"got '{argv[-1]}'" in err


def test_help_loads_neither_mxnet_nor_qt_nor_scipy():
    """`biopsia --help` stays quick: MXNet (2 to 4 s), Qt and scipy load only for the commands that need them."""
    code = ("import contextlib, io, sys, main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main.main(['--help'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mxnet', 'PyQt5', 'pyqtgraph', 'scipy', 'skimage'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_subcommand_has_one_handler():
    """The parser's subcommands and the table main dispatches on are the same list."""
    import argparse

    from cli.app import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    assert {"gui", "demo", "info", "predict", "evaluate", "train", "dataset"} <= set(COMMANDS)


def test_main_only_hands_over():
    """main.py parses nothing itself: `main.main` is the command line's own entry point."""
    import cli.app
    import main

    assert main.main is cli.app.main
    assert len((ROOT / "main.py").read_text().splitlines()) < 60


def test_core_never_prints_nor_parses_arguments():
    """Printing and argument parsing live in cli/: core reports through callbacks and return values."""
    import ast

    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "input"):
                found.append(f"{where} calls {node.func.id}()")
            elif isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr", "argv") \
                    and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"{where} uses sys.{node.attr}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{where} imports {n}" for n in names if n.split(".")[0] in ("argparse", "tqdm", "cli")]
    assert found == []


def test_colour_map_choices_are_cores():
    """`predict --colormap` offers exactly core's colour maps, with core's default."""
    import argparse

    from cli.app import build_parser
    from core.inference.colours import COLORMAPS, DEFAULT_COLORMAP

    parser = build_parser()
    predict = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["predict"]
    option = next(a for a in predict._actions if "--colormap" in a.option_strings)
    assert tuple(option.choices) == COLORMAPS and option.default == DEFAULT_COLORMAP
    for name in COLORMAPS:
        assert parser.parse_args(["predict", "s.svs", "--model", "m", "--out", "o", "--colormap", name]).colormap == name
