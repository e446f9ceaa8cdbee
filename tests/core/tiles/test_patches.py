"""Patch folders (`core.tiles.patches`): scale, cutting, class mapping, dataset.json, bad input, datasets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.errors import DatasetError
from core.tiles.dataset import read_dataset, read_manifest
from core.tiles.patches import is_patch_folder, read_dataset_json, read_patch_folder, write_patch_dataset
from core.tiles.splits import CLASSES
from tests.core.tiles.patchfolders import copies_folder, texture, write


def folder(tmp_path, side=448, per_class=2, names=("Non-tumour", "Tumour")):
    for c, name in enumerate(names):
        for k in range(per_class):
            write(tmp_path / name / f"p{k}.png", texture(10 * c + k, side))
    return tmp_path


def test_a_448_px_patch_at_half_a_micron_gives_four_tiles_or_one(tmp_path):
    root = folder(tmp_path)
    four = read_patch_folder(root, patch_mpp=0.5, tile_px=224, group=False)
    assert len(four.tiles) == 16 and four.tiles.images.shape[1:] == (224, 224, 3)
    assert four.mpp == 0.5 and four.source == "--patch-mpp"
    # the top-left tile is the patch's top-left quarter, untouched
    first = read_patch_folder(root, patch_mpp=0.5, group=False)
    assert np.array_equal(four.tiles.images[0], first.tiles.images[0][:224, :224])
    one = read_patch_folder(root, patch_mpp=0.5, tile_px=224, mpp=1.0, group=False)
    assert len(one.tiles) == 4 and one.mpp == 1.0
    # resampled, not cropped: the mean colour of the patch is kept
    assert np.allclose(one.tiles.images[0].mean(axis=(0, 1)), first.tiles.images[0].mean(axis=(0, 1)), atol=1.5)


def test_every_tile_takes_its_folders_class_and_its_patchs_group(tmp_path):
    patches = read_patch_folder(folder(tmp_path), patch_mpp=0.5, tile_px=224, group=False)
    assert patches.tiles.classes == CLASSES
    assert patches.tiles.labels.tolist() == [0] * 8 + [1] * 8
    assert [f.split("/")[0] for f in patches.files] == ["Non-tumour"] * 8 + ["Tumour"] * 8
    assert patches.groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4


def test_dataset_json_gives_the_scale_and_patch_mpp_wins(tmp_path):
    root = folder(tmp_path, side=256)
    (root / "dataset.json").write_text(json.dumps({"mpp": 0.25}), encoding="utf-8")
    from_file = read_patch_folder(root, tile_px=128, mpp=0.5, group=False)
    assert from_file.source == "dataset.json" and from_file.patch_mpp == 0.25 and len(from_file.tiles) == 4
    from_option = read_patch_folder(root, patch_mpp=0.5, tile_px=128, mpp=0.5, group=False)
    assert from_option.source == "--patch-mpp" and len(from_option.tiles) == 16
    (root / "dataset.json").unlink()
    unknown = read_patch_folder(root, group=False)
    assert unknown.mpp is None and unknown.source is None


def test_class_mapping_makes_three_folders_tumour_and_non_tumour(tmp_path):
    root = folder(tmp_path, side=64, names=("lung_aca", "lung_n", "lung_scc"))
    (root / "dataset.json").write_text(json.dumps({"mpp": 1.0, "classes": {
        "lung_aca": "Tumour", "lung_scc": "Tumour", "lung_n": "Non-tumour"}}), encoding="utf-8")
    patches = read_patch_folder(root, group=False)
    assert patches.tiles.classes == CLASSES
    by_folder = {f.split("/")[0]: int(lab) for f, lab in zip(patches.files, patches.tiles.labels)}
    assert by_folder == {"lung_aca": 1, "lung_n": 0, "lung_scc": 1}
    (root / "dataset.json").write_text(json.dumps({"classes": {
        "lung_aca": "Tumour", "lung_scc": None, "lung_n": "Non-tumour"}}), encoding="utf-8")
    assert "lung_scc" not in {f.split("/")[0] for f in read_patch_folder(root, group=False).files}


@pytest.mark.parametrize("value", [-0.5, 0, 1e9, math.nan, math.inf, "0.5", True])
def test_absurd_patch_mpp_refused(tmp_path, value):
    root = folder(tmp_path, side=64)
    with pytest.raises(DatasetError, match="µm/px"):
        read_patch_folder(root, patch_mpp=value, group=False)


@pytest.mark.parametrize("doc, problem", [
    ("{not json", "unreadable"),
    ("[0.5]", "JSON object"),
    ('{"mpp": "0.5"}', "µm/px"),
    ('{"mpp": 1e308}', "µm/px"),
    ('{"mpp": -1}', "µm/px"),
    ('{"mpp": NaN}', "µm/px"),
    ('{"mmp": 0.5}', "unknown key"),
    ('{"classes": ["Tumour"]}', "map class folders"),
    ('{"classes": {"Tumour": "Tumour", "Non-tumour": "Non-tumour", "elsewhere": "Tumour"}}', "elsewhere"),
    ('{"classes": {"Tumour": "Tumour"}}', "Non-tumour"),
    ('{"classes": {"Tumour": 1, "Non-tumour": "Non-tumour"}}', "class name"),
    ('{"groups": "../groups.csv"}', "inside"),
    ('{"groups": "/etc/passwd"}', "inside"),
    ('{"groups": "absent.csv"}', "absent.csv"),
    ('{"groups": 3}', "CSV"),
    ("[" * 100000, "unreadable"),
])
def test_malformed_or_hostile_dataset_json_refused(tmp_path, doc, problem):
    root = folder(tmp_path, side=64)
    (root / "dataset.json").write_text(doc, encoding="utf-8")
    with pytest.raises(DatasetError, match=problem) as err:
        read_patch_folder(root, group=False)
    assert "dataset.json" in str(err.value)


def test_huge_dataset_json_refused_unread(tmp_path):
    root = folder(tmp_path, side=64)
    (root / "dataset.json").write_bytes(b" " * (2 << 20) + b"{}")
    with pytest.raises(DatasetError, match="too large"):
        read_dataset_json(root)


def test_groups_csv_naming_missing_files_refused(tmp_path):
    root = folder(tmp_path, side=64)
    (root / "groups.csv").write_text("file,group\nTumour/p0.png,1\nTumour/gone.png,1\n", encoding="utf-8")
    (root / "dataset.json").write_text('{"groups": "groups.csv"}', encoding="utf-8")
    with pytest.raises(DatasetError, match="gone.png"):
        read_patch_folder(root)
    (root / "groups.csv").write_text("Tumour/p0.png,1\nTumour/p1.png,1\nNon-tumour/p0.png,2\n"
                                     "Non-tumour/p1.png,3\n", encoding="utf-8")
    patches = read_patch_folder(root)
    assert patches.group_source == "groups.csv" and patches.n_groups == 3


def test_patch_smaller_than_a_tile_named(tmp_path):
    root = folder(tmp_path, side=256)
    write(root / "Tumour" / "tiny.png", texture(99, 100))
    with pytest.raises(DatasetError, match="tiny.png.*smaller than one 224 px tile"):
        read_patch_folder(root, patch_mpp=0.5, tile_px=224, group=False)
    with pytest.raises(DatasetError, match="tiny.png.*differ in size"):
        read_patch_folder(root, patch_mpp=0.5, group=False)


def test_upsampling_and_unknown_scale_refused(tmp_path):
    root = folder(tmp_path, side=256)
    with pytest.raises(DatasetError, match="coarser than the 0.5 µm/px"):
        read_patch_folder(root, patch_mpp=1.0, tile_px=128, mpp=0.5, group=False)
    with pytest.raises(DatasetError, match="--patch-mpp"):
        read_patch_folder(root, tile_px=128, mpp=0.5, group=False)
    same = read_patch_folder(root, tile_px=256, mpp=0.5, group=False)  # one patch, one tile: allowed
    assert same.mpp is None


def test_unreadable_patch_and_empty_folder(tmp_path):
    root = folder(tmp_path, side=64)
    (root / "Tumour" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        read_patch_folder(root, group=False)
    with pytest.raises(DatasetError, match="subfolder"):
        read_patch_folder(tmp_path / "Tumour", group=False)
    assert is_patch_folder(root) and not is_patch_folder(root / "Tumour")


def test_patch_dataset_is_a_normal_dataset_split_by_group(tmp_path):
    copies_folder(tmp_path / "patches", originals_per_class=5, side=128)
    patches = read_patch_folder(tmp_path / "patches", patch_mpp=0.5, tile_px=64, mpp=1.0)
    assert len(patches.tiles) == 50 and patches.n_groups == 10
    manifest = write_patch_dataset(patches, tmp_path / "ds", ratio=0.6, seed=1)
    assert read_manifest(tmp_path / "ds")["mpp"] == 1.0 and manifest["tile_px"] == 64
    assert manifest["split"]["groups"] == 10 and manifest["patches"]["mpp_source"] == "--patch-mpp"
    train, test = read_dataset(tmp_path / "ds", "train"), read_dataset(tmp_path / "ds", "test")
    assert len(train) + len(test) == 50 and len(test) > 0 and set(test.labels.tolist()) == {0, 1}
    import csv
    with open(tmp_path / "ds" / "tiles.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    split_of = {}
    for row in rows:
        split_of.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values()), "a group straddles train and test"


def test_progress_and_cancel(tmp_path):
    from core.errors import Cancelled
    root = folder(tmp_path, side=64, per_class=40)
    seen = []
    read_patch_folder(root, group=False, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (80, 80)
    with pytest.raises(Cancelled):
        read_patch_folder(root, should_stop=lambda: True)


def test_found_groups_are_cached(tmp_path):
    from core.paths import cache_dir
    root = tmp_path / "patches"
    copies_folder(root, originals_per_class=2, side=128)
    first = read_patch_folder(root)
    cached = list((cache_dir() / "patch-groups").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == first.groups.tolist()
    cached[0].write_text(json.dumps(list(range(len(first.groups)))))  # the cache is what the next run uses
    assert read_patch_folder(root).n_groups == len(first.groups)
