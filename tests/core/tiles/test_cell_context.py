"""Tiles labelled by their centre cell (``dataset --cell``): cells make the grid, tiles show their surroundings."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from cli.app import build_parser, main
from core.annotations.formats import read_annotations
from core.errors import DatasetError
from core.slide import open_slide
from core.tiles.dataset import SlideSource, load_tiles, plan_dataset, read_manifest
from core.tiles.grid import TileSpec, plan_tiles
from core.tiles.planning import context_plan
from core.tiles.tissue import detect_tissue

TILE = TileSpec(64, 2.0)  # 128 µm tiles ...
CELL_UM = 64.0  # ... labelled by their centre 64 µm


@pytest.fixture(scope="module")
def source(synthetic_slide):
    marks = read_annotations(synthetic_slide.geojson_path).annotations
    return SlideSource(synthetic_slide.slide_path, "small", list(marks), fully_annotated=True, declared=True)


def test_the_cells_are_labelled_as_tiles_of_their_size_would_be(source):
    with open_slide(source.path) as reader:
        tissue = detect_tissue(reader)
        cells = plan_tiles(reader, TileSpec(32, 2.0), tissue, source.annotations, True)  # 64 µm tiles
        plan = context_plan(reader, TILE, CELL_UM, tissue, source.annotations, True)
        width, height = reader.dimensions
    np.testing.assert_array_equal(plan.label, cells.label)
    np.testing.assert_array_equal(plan.reason, cells.reason)
    np.testing.assert_array_equal(plan.tumour_fraction, cells.tumour_fraction)
    assert plan.grid_shape == cells.grid_shape and plan.stride == cells.tile_l0 == 128
    assert plan.tile_l0 == 256 and plan.spec == TILE
    # every tile is centred on its cell, except where that would leave the slide: then it is shifted inside
    margin = (plan.tile_l0 - cells.tile_l0) // 2
    inside_x = (cells.l0_x >= margin) & (cells.l0_x + cells.tile_l0 + margin <= width)
    inside_y = (cells.l0_y >= margin) & (cells.l0_y + cells.tile_l0 + margin <= height)
    np.testing.assert_array_equal(plan.l0_x[inside_x], cells.l0_x[inside_x] - margin)
    np.testing.assert_array_equal(plan.l0_y[inside_y], cells.l0_y[inside_y] - margin)
    assert plan.l0_x.min() == 0 and plan.l0_y.min() == 0
    assert plan.l0_x.max() + plan.tile_l0 == width and plan.l0_y.max() + plan.tile_l0 == height
    # the cell always lies within its tile
    assert np.all((cells.l0_x >= plan.l0_x) & (cells.l0_x + cells.tile_l0 <= plan.l0_x + plan.tile_l0))
    assert np.all((cells.l0_y >= plan.l0_y) & (cells.l0_y + cells.tile_l0 <= plan.l0_y + plan.tile_l0))


def test_a_dataset_of_cells_reads_each_cell_with_its_surroundings(source):
    plan = plan_dataset([source], TILE, split="random", ratio=1.0, cell_um=CELL_UM)
    plain = plan_dataset([source], TileSpec(32, 2.0), split="random", ratio=1.0)
    np.testing.assert_array_equal(plan.label, plain.label)
    np.testing.assert_array_equal(plan.index, plain.index)
    assert plan.settings["cell_um"] == CELL_UM and "cell_um" not in plain.settings
    tiles = load_tiles(plan, None)
    assert tiles.images.shape[1:] == (64, 64, 3)
    tile_plan = plan.plans[0]
    with open_slide(source.path) as reader:
        # the tile's whole 128 µm square is read, from the level nearest its 2 µm/px
        assert tile_plan.read_px * reader.level_downsamples[tile_plan.level] == pytest.approx(tile_plan.tile_l0)
        assert tile_plan.level == reader.best_level_for_downsample(tile_plan.tile_l0 / 64)
        for k in (0, len(tiles) // 2, len(tiles) - 1):
            i = int(plan.index[k])
            x, y = int(tile_plan.l0_x[i]), int(tile_plan.l0_y[i])
            region = reader.read_region(x, y, tile_plan.level, tile_plan.read_px, tile_plan.read_px)
            expected = cv2.resize(region, (64, 64), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(tiles.images[k], expected)


@pytest.mark.parametrize("cell, why", [(0.0, "positive"), (-5.0, "positive"), (math.nan, "positive"),
                                       (math.inf, "positive"), ("big", "number"), (200.0, "larger than the tile")])
def test_a_bad_cell_is_refused_before_any_slide_is_read(source, cell, why):
    with pytest.raises(DatasetError, match=why):
        plan_dataset([source], TILE, cell_um=cell)


def test_dataset_cell_from_the_command_line(synthetic_slide, tmp_path, capsys):
    out = tmp_path / "cells"
    code = main(["dataset", str(synthetic_slide.slide_path), "--tile", "64", "--mpp", "2", "--cell", "64",
                 "--split", "random", "--out", str(out)])
    assert code == 0
    assert "each labelled by its centre 64 µm cell" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["split"]["cell_um"] == 64.0 and manifest["tile_px"] == 64 and manifest["mpp"] == 2.0
    assert json.loads((out / "manifest.json").read_text())["slides"][0]["tile_l0"] == 256


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_dataset_refuses_a_bad_cell_option(value, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dataset", "s.svs", "--out", "o", "--cell", value])
    assert "--cell" in capsys.readouterr().err


def test_dataset_refuses_a_cell_larger_than_the_tile(synthetic_slide, tmp_path, capsys):
    code = main(["dataset", str(synthetic_slide.slide_path), "--tile", "64", "--mpp", "1", "--cell", "100",
                 "--out", str(tmp_path / "o")])
    assert code != 0
    err = capsys.readouterr().err
    assert "100 µm" in err and "larger than the tile" in err and "64 µm" in err
    assert not (tmp_path / "o").exists()


def test_dataset_refuses_a_cell_for_a_patch_folder(tmp_path, capsys):
    for name in ("Tumour", "Non-tumour"):
        (tmp_path / "patches" / name).mkdir(parents=True)
        for k in range(3):
            cv2.imwrite(str(tmp_path / "patches" / name / f"{k}.png"), np.full((32, 32, 3), 40 * k + 60, np.uint8))
    code = main(["dataset", str(tmp_path / "patches"), "--cell", "16", "--out", str(tmp_path / "o")])
    assert code != 0
    assert "--cell" in capsys.readouterr().err


def test_train_records_the_cell_of_a_cell_dataset(synthetic_slide, tmp_path, capsys):
    data = tmp_path / "cells"
    assert main(["dataset", str(synthetic_slide.slide_path), "--tile", "64", "--mpp", "2", "--cell", "64",
                 "--split", "random", "--out", str(data)]) == 0
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--device", "cpu"]) == 0
    assert "labelled by its centre 64 µm cell" in capsys.readouterr().err
    settings = json.loads((tmp_path / "m" / "best" / "model.json").read_text())["training"]["settings"]
    assert settings["cell_um"] == 64.0


def test_train_checks_the_cell():
    from core.errors import ModelError
    from core.models.train import train
    from core.tiles.arrays import TileArrays

    rng = np.random.default_rng(0)
    tiles = TileArrays(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), np.r_[np.zeros(4, int), np.ones(4, int)],
                       ["Non-tumour", "Tumour"])
    for bad, why in ((0.0, "positive"), (-1.0, "positive"), (math.nan, "positive"), ("64", "positive"),
                     (65.0, "larger than the tiles"), (64.0, None)):
        with pytest.raises(ModelError, match=why or "need their µm/px"):
            train(tiles, tiles, "/nonexistent/never-written", epochs=1, cell_um=bad, mpp=None if why is None else 2.0)
