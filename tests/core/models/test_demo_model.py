"""The bundled demo model: a checked bundle that finds the tumour on synthetic slides it never saw.

On a synthetic slide the model never saw, predicted tiles agree with the ground truth at sensitivity
and specificity of at least 0.9 each.
"""

from pathlib import Path

import pytest

from core.annotations.formats import read_annotations
from core.evaluation.compare import compare, truth_for_grid
from core.models.bundle import read_info
from core.inference.predict import predict_slide

DEMO_MODEL = Path(__file__).resolve().parents[3] / "resources" / "demo-model"


def test_the_bundle_says_what_it_is():
    info = read_info(DEMO_MODEL)
    assert (info.architecture, info.tile_px, info.mpp) == ("cnn", 128, 1.0)
    assert info.classes == ["Non-tumour", "Tumour"]
    assert info.training["train_tiles"]["Tumour"] > 100
    assert "not for diagnosis" in (DEMO_MODEL / "README.md").read_text()


@pytest.mark.parametrize("index", [0, 1])
def test_it_finds_the_tumour_on_unseen_slides(slide_pair, index):
    slide = slide_pair[index]
    grid = predict_slide(slide.slide_path, DEMO_MODEL, device="cpu")
    truth = truth_for_grid(grid, read_annotations(slide.geojson_path).annotations)
    metrics = compare(grid, truth, 0.5).metrics
    assert metrics.counts.total > 150 and metrics.counts.tp + metrics.counts.fn > 25
    assert metrics.sensitivity >= 0.9 and metrics.specificity >= 0.9, metrics.as_dict()
