"""What Biopsia says of its demo model: one measured statement, in its card, on the command line and in the window.

The demo model was trained on synthetic tissue only; every place a user meets it says so with the
figures measured on real tissue (``bench/real_tissue.py --demo``), and a model the user trained is not
labelled so.
"""

from __future__ import annotations

import re

from core.demo import DEMO_MODEL, DEMO_MODEL_STATEMENT, is_demo_model
from tests.cli.test_cli import biopsia
from tests.core.tiles.patchfolders import copies_folder


def test_the_statement_and_the_card_give_the_same_measured_figures():
    card = (DEMO_MODEL / "README.md").read_text(encoding="utf-8")
    assert "synthetic tissue only" in DEMO_MODEL_STATEMENT and "not meaningful on real slides" in DEMO_MODEL_STATEMENT
    # the statement's two decimals are the card's three, rounded: one measurement, not two
    stated = [float(x) for x in re.findall(r"(0\.\d\d) on ", DEMO_MODEL_STATEMENT)]
    rows = re.findall(r"\| (camelyon-mini|LC25000 lung)[^|]*\| (\d+) \| (0\.\d{3}) \|", card)
    assert [name for name, _, _ in rows] == ["camelyon-mini", "LC25000 lung"]
    assert stated == [round(float(auc), 2) for _, _, auc in rows]
    # the card under resources/ is the one `make demo-model` copies into the bundle
    assert card == (DEMO_MODEL.parent / "demo-model-README.md").read_text(encoding="utf-8")


def test_the_demo_model_is_recognised_by_folder_or_file_and_nothing_else(tmp_path):
    assert is_demo_model(DEMO_MODEL) and is_demo_model(DEMO_MODEL / "model.json")
    assert not is_demo_model(None) and not is_demo_model(tmp_path) and not is_demo_model(DEMO_MODEL.parent)


def test_test_with_the_demo_model_says_what_it_is(tmp_path):
    folder = tmp_path / "patches"
    copies_folder(folder, originals_per_class=2, side=128)
    (folder / "dataset.json").write_text('{"classes": {"a_class": "Tumour", "b_class": "Non-tumour"}}')
    done = biopsia("test", DEMO_MODEL, folder, "--patch-mpp", "1", "--device", "cpu", timeout=300)
    assert done.returncode == 0, done.stderr
    assert DEMO_MODEL_STATEMENT in done.stderr and DEMO_MODEL_STATEMENT not in done.stdout
