"""Near-copy groups (`core.tiles.groups`) and group-aware splits (`group_pick`, `split_off`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import DatasetError
from core.tiles.arrays import TileArrays, split_off
from core.tiles.groups import find_near_copies, read_groups_csv, union_groups
from core.tiles.patches import read_patch_folder
from core.tiles.splits import group_pick
from tests.core.tiles.patchfolders import copies, copies_folder, texture

LC25000 = Path(__file__).resolve().parents[4] / "shared" / "data" / "patches" / "lc25000-lung"


def test_known_copies_are_grouped_and_originals_kept_apart():
    originals = [texture(seed) for seed in range(5)]
    images, truth = [], []
    for k, base in enumerate(originals):
        for image in [base] + copies(base):
            images.append(image)
            truth.append(k)
    groups = find_near_copies(images)
    truth = np.array(truth)
    for k in range(len(originals)):
        assert len(set(groups[truth == k].tolist())) == 1, f"copies of original {k} split: {groups[truth == k]}"
    assert len(set(groups.tolist())) == len(originals)


def test_union_groups_joins_through_a_third_member():
    assert union_groups(5, [(0, 3), (3, 4)]).tolist() == [0, 1, 2, 0, 0]


def test_groups_csv_read_and_checked(tmp_path):
    files = ["a/x.png", "a/y.png", "b/z.png"]
    good = tmp_path / "groups.csv"
    good.write_text("file,group\na/x.png,case1\na/y.png,case1\nb/z.png,case2\n", encoding="utf-8")
    assert read_groups_csv(good, files).tolist() == [0, 0, 1]
    for text, problem in [("a/x.png,1\na/y.png,1\nb/gone.png,2\nb/z.png,2\n", "gone.png"),
                          ("a/x.png,1\na/y.png,1\n", "no group"),
                          ("a/x.png,1\na/x.png,2\na/y.png,1\nb/z.png,2\n", "twice"),
                          ("a/x.png\n", "file,group")]:
        good.write_text(text, encoding="utf-8")
        with pytest.raises(DatasetError, match=problem):
            read_groups_csv(good, files)
    good.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="groups.csv"):
        read_groups_csv(good, files)


def test_group_pick_keeps_groups_whole_and_stratifies():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    groups = np.concatenate([np.repeat(np.arange(25), 4), 100 + np.repeat(np.arange(50), 2)])
    picked = group_pick(labels, groups, 0.2, rng)
    for g in np.unique(groups):
        assert len(set(picked[groups == g].tolist())) == 1, f"group {g} straddles"
    for c in (0, 1):
        assert picked[labels == c].sum() == 20
    assert not group_pick(labels, groups, 0.0, rng).any()
    one_group = group_pick(np.zeros(6, int), np.zeros(6, int), 0.5, rng)
    assert not one_group.any()  # never the only group of a class


def test_split_off_by_group_never_straddles(tmp_path):
    copies_folder(tmp_path, originals_per_class=5, side=128)
    patches = read_patch_folder(tmp_path)
    assert patches.n_groups == 10 and patches.group_source == "near-copies"
    train, val = split_off(patches.tiles, 0.2, 0, patches.groups)
    rng_mask = group_pick(patches.tiles.labels, patches.groups, 0.2, np.random.default_rng(0))
    val_groups = set(patches.groups[rng_mask].tolist())
    assert val_groups and not val_groups & set(patches.groups[~rng_mask].tolist())
    assert len(val) == rng_mask.sum() and len(train) + len(val) == len(patches.tiles)
    assert set(val.labels.tolist()) == {0, 1}
    with pytest.raises(DatasetError, match="group ids"):
        split_off(patches.tiles, 0.2, 0, patches.groups[:3])


def test_split_off_without_groups_unchanged():
    tiles = TileArrays(np.zeros((20, 8, 8, 3), np.uint8), np.repeat([0, 1], 10))
    train, val = split_off(tiles, 0.2, 3)
    assert len(val) == 4 and len(train) == 16


@pytest.fixture(scope="module")
def lc25000_groups():
    if not LC25000.is_dir():
        pytest.skip(f"shared patches not found at {LC25000}")
    return read_patch_folder(LC25000, group=True)


def test_lc25000_near_copies_found(lc25000_groups):
    patches = lc25000_groups
    # 900 patches from 750 originals (every 16th of 20 augmentations each): about 535 originals expected
    # among them if files were drawn at random; set by eye on the pairs found (see core.tiles.groups)
    assert 480 <= patches.n_groups <= 700
    sizes = np.bincount(patches.groups)
    assert sizes.max() <= 20  # no chain swallowing the set
    names = np.array([f.split("/")[0] for f in patches.files])
    mixed = sum(len(set(names[patches.groups == g].tolist())) > 1 for g in range(patches.n_groups))
    assert mixed <= 3
