"""core.evaluation.compare.threshold_for_grids: which threshold `evaluate` compares predictions at by default."""

import hashlib
import json

import pytest

from core.evaluation.compare import threshold_for_grids
from core.models.engine import engine
from tests.core.models.test_models import THRESHOLDS, _edit_model_json, _saved_bundle


@pytest.fixture
def bundle(tmp_path):
    """A small bundle whose model.json records the threshold 0.33, and its grid identity."""
    folder = tmp_path / "model"
    engine().run(_saved_bundle, folder)
    _edit_model_json(folder, threshold=0.33, thresholds=THRESHOLDS)
    sha = hashlib.sha256((folder / "model-0000.params").read_bytes()).hexdigest()
    return folder, {"name": "model", "folder": str(folder), "sha256": sha}


def test_the_threshold_recorded_with_the_predictions_comes_first(bundle):
    _, identity = bundle
    value, text = threshold_for_grids([{**identity, "threshold": 0.25}, {**identity, "threshold": 0.25}])
    assert value == 0.25 and text == "threshold 0.25 from model (recorded with the predictions)"


def test_else_the_models_own_if_its_folder_still_holds_those_weights(bundle):
    folder, identity = bundle
    value, text = threshold_for_grids([identity])
    assert value == 0.33 and text.startswith("threshold 0.33 from the model (chosen on 40 validation tiles")
    # the folder now holds another model (retrained): its threshold is not the predictions' model's
    value, text = threshold_for_grids([{**identity, "sha256": "0" * 64}])
    assert value == 0.5 and "records none" in text


def test_one_half_when_no_model_records_one_or_the_models_disagree(bundle, tmp_path):
    folder, identity = bundle
    assert threshold_for_grids([{"name": "gone", "folder": str(tmp_path / "gone")}])[0] == 0.5
    _edit_model_json(folder, threshold=..., thresholds=...)  # an old bundle
    value, text = threshold_for_grids([identity])
    assert value == 0.5 and "give --threshold" in text
    recorded_default = {**identity, "threshold": 0.5, "threshold_source": "0.5 (the model records none)"}
    assert "records none" in threshold_for_grids([recorded_default])[1]
    value, text = threshold_for_grids([{**identity, "threshold": 0.25}, {**identity, "threshold": 0.4}])
    assert value == 0.5 and "different thresholds (0.25, 0.4)" in text
    (folder / "model.json").write_text(json.dumps({"threshold": 9}))  # unreadable: not trusted, not fatal
    assert threshold_for_grids([identity])[0] == 0.5
