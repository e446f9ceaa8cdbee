"""`biopsia train --stain-augment / --stain-normalise / --stain-reference`, run as a user runs them."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import biopsia
from tests.core.tiles.patchfolders import copies_folder


@pytest.fixture(scope="module")
def patch_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stain-patches")
    copies_folder(root, originals_per_class=3, side=64)
    return root


def test_train_records_the_stain_settings_and_normaliser(patch_folder, tmp_path):
    out = tmp_path / "model"
    result = biopsia("train", patch_folder, "--out", out, "--epochs", "1", "--batch", "8", "--device", "cpu",
                     "--val-ratio", "0.3", "--stain-augment", "hed", "--stain-normalise", "macenko", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "stain: macenko normalisation fitted on the training tiles" in result.stderr
    info = json.loads((out / "best" / "model.json").read_text(encoding="utf-8"))
    assert info["stain"]["method"] == "macenko" and len(info["stain"]["stain_matrix"]) == 2
    assert info["training"]["settings"]["stain_augment"] == "hed"
    assert info["training"]["settings"]["stain_normalise"] == "macenko"


def test_bad_stain_options_are_refused(patch_folder, tmp_path):
    bad = biopsia("train", patch_folder, "--out", tmp_path / "m", "--stain-augment", "strong")
    assert bad.returncode == 2 and "--stain-augment" in bad.stderr and "hed" in bad.stderr
    bad = biopsia("train", patch_folder, "--out", tmp_path / "m", "--stain-normalise", "vahadane")
    assert bad.returncode == 2 and "--stain-normalise" in bad.stderr
    missing = biopsia("train", patch_folder, "--out", tmp_path / "m", "--epochs", "1", "--device", "cpu",
                      "--stain-normalise", "reinhard", "--stain-reference", tmp_path / "nothing.png", timeout=300)
    assert missing.returncode != 0 and "nothing.png" in missing.stderr and "stain reference" in missing.stderr
    alone = biopsia("train", patch_folder, "--out", tmp_path / "m", "--epochs", "1", "--device", "cpu",
                    "--stain-reference", tmp_path / "nothing.png", timeout=300)
    assert alone.returncode != 0 and "needs a stain normalisation" in alone.stderr
