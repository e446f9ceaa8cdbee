"""`biopsia train DATASET` validates on whole slides of the train split, never on the test split.

The best epoch and the model's threshold are chosen on validation tiles, so validating on the test split
would make `biopsia test` report on tiles the model was tuned on; validating on tiles of the slides it
trains on makes the choice optimistic. The dataset's ``tiles.csv`` says which slide each tile came from.
"""

from __future__ import annotations

import csv
import json
import re

import pytest

from core.errors import DatasetError
from core.tiles.folder import read_tile_groups
from tests.cli.test_cli import biopsia

TILES = ("--tile", "64", "--mpp", "2")
ONE_EPOCH = ("--epochs", "1", "--batch", "32", "--device", "cpu")


@pytest.fixture(scope="module")
def two_slide_sets(slide_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("val-sets")
    paths = [s.slide_path for s in slide_pair]
    both = biopsia("dataset", *paths, "--out", root / "both-train", *TILES, "--ratio", "1")
    split = biopsia("dataset", *paths, "--out", root / "one-test", *TILES, "--test-slide", "pair29")
    assert both.returncode == 0 and split.returncode == 0, both.stderr + split.stderr
    return root


def rows(folder, split):
    with open(folder / "tiles.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def test_whole_slides_of_the_train_split_validate(two_slide_sets, tmp_path):
    folder = two_slide_sets / "both-train"
    column, ids = read_tile_groups(folder, "train")
    assert column == "slide" and sorted(set(ids)) == ["pair29", "pair30"]
    done = biopsia("train", folder, "--out", tmp_path / "m", *ONE_EPOCH, timeout=600)
    assert done.returncode == 0, done.stderr
    found = re.search(r"validating on (\d+) tiles of 1 whole slides \(of 2\) held out of", done.stderr)
    assert found, done.stderr
    per_slide = {name: sum(1 for r in rows(folder, "train") if r["slide"] == name) for name in ("pair29", "pair30")}
    assert int(found.group(1)) in per_slide.values()  # one slide's every tile, no more, no less
    trained = re.search(r"training cnn on CPU[^:]*: (\d+) tiles", done.stderr)
    assert int(trained.group(1)) + int(found.group(1)) == sum(per_slide.values())


def test_the_test_split_is_not_validated_on(two_slide_sets, tmp_path):
    folder = two_slide_sets / "one-test"
    test_tiles = len(rows(folder, "test"))
    done = biopsia("train", folder, "--out", tmp_path / "m", *ONE_EPOCH, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "one slide gave all of" in done.stderr and "give --val DATASET" in done.stderr and "left for 'biopsia test'" in done.stderr
    held = int(re.search(r"(\d+) tiles \(20% of each class\) of .* held out for validation", done.stderr).group(1))
    assert held != test_tiles and held <= 0.25 * len(rows(folder, "train")) + 2
    assert f"validating on {held} " in done.stderr


def test_an_older_dataset_without_tiles_csv_says_it_validates_on_its_test_split(two_slide_sets, tmp_path):
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(two_slide_sets / "one-test", folder)
    (folder / "tiles.csv").unlink()
    done = biopsia("train", folder, "--out", tmp_path / "m", *ONE_EPOCH, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "does not record each tile's slide" in done.stderr and "validating on its test split" in done.stderr
    assert f"validating on {len(rows(two_slide_sets / 'one-test', 'test'))} " in done.stderr


def test_a_damaged_tiles_csv_is_refused_naming_it(two_slide_sets, tmp_path):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(two_slide_sets / "both-train", folder)
    lines = (folder / "tiles.csv").read_text(encoding="utf-8").splitlines()
    (folder / "tiles.csv").write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")  # record 0 gone
    with pytest.raises(DatasetError, match=r"tiles\.csv: its train rows do not list records 0 to"):
        read_tile_groups(folder, "train")
    (folder / "tiles.csv").write_text(lines[0] + "\ntrain,zero,pair29\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"tiles\.csv: unreadable"):
        read_tile_groups(folder, "train")
    done = biopsia("train", folder, "--out", tmp_path / "m", *ONE_EPOCH)
    assert done.returncode != 0 and "tiles.csv" in done.stderr and "Traceback" not in done.stderr
    assert json.loads((folder / "manifest.json").read_text())  # nothing of the dataset was touched


def test_hold_out_keeps_whole_sources_or_says_why_not():
    import numpy as np

    from core.tiles.arrays import TileArrays, hold_out_sources

    images = np.zeros((12, 4, 4, 3), np.uint8)
    labels = np.array([0, 1] * 6)
    tiles = TileArrays(images, labels)
    ids = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)
    held = hold_out_sources(tiles, ids, 0.3, seed=1)
    assert held.whole and held.held == 1 and held.sources == 3 and len(held.val) == 4 and len(held.train) == 8
    assert "of 1 whole slides (of 3) held out of the tiles" in held.describe(0.3)
    one = hold_out_sources(tiles, np.array(["a"] * 12), 0.3, seed=1)
    assert not one.whole and "one slide gave all of the tiles" in one.describe(0.3)
    assert set(np.bincount(one.val.labels)) == {2}  # stratified: each class its share
    # the only tumour tiles are in one slide: holding it out would leave training without tumour
    lonely = hold_out_sources(TileArrays(images, np.array([1] * 4 + [0] * 8)), ids, 0.3, seed=1)
    assert not lonely.whole and "keeps every class on both sides" in lonely.describe(0.3)
    with pytest.raises(DatasetError, match="11 slide ids for 12 tiles"):
        hold_out_sources(tiles, ids[:11], 0.3, seed=1)
