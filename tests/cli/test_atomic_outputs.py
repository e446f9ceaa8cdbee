"""Every file Biopsia writes is written whole or not at all: on a real full disk, after a failure mid-way,
and when a run replaces an earlier one. (The project file and autosaves have tests of their own.)"""

from __future__ import annotations

import numpy as np
import pytest

from core.demo import DEMO_MODEL
from core.inference.predict import ProbabilityGrid
from tests.cli.test_cli import biopsia


def _files(folder):
    """Every file under ``folder`` (the filler of a full disk left out), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "filler")


# -- the staged folder --------------------------------------------------------------------------------
class Boom(Exception):
    pass


def test_a_staged_folder_replaces_files_only_on_success(tmp_path):
    from core.staging import staged_folder

    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("the user's")
    (out / "train.rec").write_text("old")
    with pytest.raises(Boom):
        with staged_folder(out) as staging:
            (staging / "train.rec").write_text("new, but the run fails")
            raise Boom
    assert _files(out) == ["keep.txt", "train.rec"] and (out / "train.rec").read_text() == "old"
    with staged_folder(out) as staging:
        (staging / "train.rec").write_text("new")
    assert _files(out) == ["keep.txt", "train.rec"] and (out / "train.rec").read_text() == "new"
    with pytest.raises(Boom):
        with staged_folder(tmp_path / "fresh") as staging:
            raise Boom
    assert not (tmp_path / "fresh").exists()  # a folder made for a run that failed goes again


def test_a_replaced_folder_is_swapped_whole(tmp_path):
    from core.staging import staged_folder

    out = tmp_path / "run" / "slide"
    with staged_folder(out, replace=True) as staging:
        (staging / "grid.npz").write_text("first")
        (staging / "overlay.tif").write_text("first")
    with pytest.raises(Boom):
        with staged_folder(out, replace=True) as staging:
            (staging / "grid.npz").write_text("second, failed")
            raise Boom
    assert _files(out) == ["grid.npz", "overlay.tif"] and (out / "grid.npz").read_text() == "first"
    with staged_folder(out, replace=True) as staging:
        (staging / "grid.npz").write_text("third")
    assert _files(out) == ["grid.npz"] and (out / "grid.npz").read_text() == "third"  # nothing stale beside it
    assert [p.name for p in out.parent.iterdir()] == ["slide"]  # no hidden staging or old folder left


# -- screenshots ----------------------------------------------------------------------------------------
def test_a_screenshot_onto_a_full_disk_leaves_no_partial_png(cmu_svs, small_disk):
    disk = small_disk.mount("256k")
    (disk / "shot.png").write_bytes(b"an earlier screenshot")
    small_disk.fill(disk)
    done = biopsia("screenshot", cmu_svs, "--out", disk / "shot.png", "--size", "800x600")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{disk / 'shot.png'}: " in done.stderr and "No space left on device" in done.stderr
    assert _files(disk) == ["shot.png"] and (disk / "shot.png").read_bytes() == b"an earlier screenshot"


def test_the_window_s_screenshot_onto_a_full_disk_says_so_and_keeps_the_earlier_file(window, small_disk,
                                                                                     monkeypatch):
    from PyQt5.QtWidgets import QFileDialog

    disk = small_disk.mount("256k")
    target = disk / "window.png"
    target.write_bytes(b"earlier")
    small_disk.fill(disk)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PNG image (*.png)"))
    window.screenshot_dialog()
    assert window.errors and str(target) in window.errors[-1] and "No space left" in window.errors[-1]
    assert _files(disk) == ["window.png"] and target.read_bytes() == b"earlier"


# -- predict ----------------------------------------------------------------------------------------------
def test_predict_onto_a_full_disk_keeps_the_earlier_results_and_leaves_no_part(synthetic_slide, small_disk):
    disk = small_disk.mount("512k")
    earlier = disk / "run" / "small"
    earlier.mkdir(parents=True)
    (earlier / "grid.npz").write_bytes(b"an earlier run")
    done = biopsia("predict", synthetic_slide.slide_path, "--model", DEMO_MODEL, "--out", disk / "run",
                   "--device", "cpu", timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{synthetic_slide.slide_path}: cannot write its results to {earlier} (" in done.stderr
    assert "No space left on device); nothing of this run was kept there" in done.stderr
    assert _files(disk) == ["run/small/grid.npz"] and (earlier / "grid.npz").read_bytes() == b"an earlier run"


def test_a_rerun_replaces_the_whole_result_folder(synthetic_slide, tmp_path):
    earlier = tmp_path / "small"  # an earlier run's folder, with an overlay this run will not write
    earlier.mkdir()
    for name in ("grid.npz", "overlay.tif", "notes.txt"):
        (earlier / name).write_bytes(b"from an earlier run")
    again = biopsia("predict", synthetic_slide.slide_path, "--model", DEMO_MODEL, "--out", tmp_path, "--device",
                    "cpu", "--no-tiff", timeout=300)
    assert again.returncode == 0, again.stderr
    assert _files(earlier) == ["grid.npz", "heatmap.png", "overview.png", "tiles.csv"]  # nothing stale beside them
    assert [p.name for p in tmp_path.iterdir()] == ["small"]  # no staging or old folder left
    grid = ProbabilityGrid.load(earlier / "grid.npz")
    assert grid.complete and int(np.sum(grid.done)) > 0


def test_the_overlay_tiff_onto_a_full_disk_leaves_nothing(small_disk):
    from core.inference.heatmap import write_overlay_tiff

    rng = np.random.default_rng(0)
    grid = ProbabilityGrid(probs=rng.random((40, 60)).astype(np.float32), origin=(0, 0), stride=256, tile_l0=256,
                           tile_px=128, mpp=1.0, slide_size=(15360, 10240))
    disk = small_disk.mount("64k")
    with pytest.raises(OSError) as caught:
        write_overlay_tiff(grid, disk / "overlay.tif", (0.5, 0.5))
    assert "No space left" in str(caught.value)
    assert _files(disk) == []
