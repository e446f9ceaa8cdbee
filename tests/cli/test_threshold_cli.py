"""The model's threshold as the default of `biopsia test`, `predict` and `evaluate`; --threshold overrides it.

The commands run in this process (`main.main`, as `biopsia` does): a subprocess each would load MXNet again.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest

from core.inference.predict import ProbabilityGrid
from core.slide import open_slide


@pytest.fixture
def biopsia(capsys, monkeypatch):
    """Run ``biopsia ARGS`` in this process: its exit status, stdout and stderr."""
    import sys

    import main
    from cli.progress import ProgressBar

    class Stderr:  # whatever sys.stderr is when written to
        def __getattr__(self, name):
            return getattr(sys.stderr, name)

    # progress bars default to the sys.stderr of when cli.progress was imported, which may be closed by now
    monkeypatch.setattr(ProgressBar.__init__, "__defaults__", (Stderr(),))

    def run(*args):
        capsys.readouterr()
        code = main.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


class Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _copy_model(small_model, folder, **change):
    """A copy of the small model's bundle with ``model.json`` changed (``...`` deletes a key)."""
    shutil.copytree(small_model, folder)
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    doc.update(change)
    for key in [k for k, v in change.items() if v is ...]:
        del doc[key]
    path.write_text(json.dumps(doc))
    return folder


@pytest.fixture(scope="module")
def patches(slide_pair, tmp_path_factory):
    """A patch folder of 64 px tiles at 2 µm/px from the slide the small model never saw (tumour or not)."""
    root = tmp_path_factory.mktemp("patches")
    with open_slide(slide_pair[0].slide_path) as reader:
        region = reader.read_region(0, 0, 0, 4096, 4096)
    small = cv2.resize(region, (1024, 1024), interpolation=cv2.INTER_AREA)
    for name in ("Non-tumour", "Tumour"):
        (root / name).mkdir()
    for i in range(12):  # which class a tile is put in does not matter here: only the threshold is checked
        tile = small[(i // 4) * 64:(i // 4) * 64 + 64, (i % 4) * 256:(i % 4) * 256 + 64]
        cv2.imwrite(str(root / ("Tumour" if i % 2 else "Non-tumour") / f"{i}.png"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
    return root


def test_test_uses_the_models_threshold_unless_given_one(biopsia, small_model, patches):
    recorded = json.loads((small_model / "model.json").read_text())["threshold"]
    assert recorded is not None and recorded != 0.5
    done = biopsia("test", small_model, patches, "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["threshold"] == recorded and result["threshold_source"] == "model"
    assert result["threshold_text"].startswith(f"threshold {recorded!r} from the model (chosen on ")
    given = json.loads(biopsia("test", small_model, patches, "--json", "--threshold", "0.5").stdout)
    assert given["threshold"] == 0.5 and given["threshold_source"] == "given"
    text = biopsia("test", small_model, patches, "--device", "cpu")
    assert f"threshold {recorded!r} from the model" in text.stdout and "Screening test" in text.stdout


def test_an_old_model_gives_one_half_and_says_so_and_a_tampered_one_is_refused(biopsia, small_model, patches, tmp_path):
    old = _copy_model(small_model, tmp_path / "old", threshold=..., thresholds=...)
    done = biopsia("test", old, patches, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "threshold 0.5: the model records none" in done.stdout
    bad = _copy_model(small_model, tmp_path / "bad", threshold=3)
    done = biopsia("test", bad, patches)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{bad / 'model.json'}: threshold must be a tumour probability from 0 to 1, or null, got 3" in done.stderr


def test_predict_calls_tiles_at_the_models_threshold_unless_given_one(biopsia, small_model, slide_pair, tmp_path):
    recorded = json.loads((small_model / "model.json").read_text())["threshold"]
    with open_slide(slide_pair[0].slide_path) as reader:
        region = reader.read_region(0, 0, 0, 2048, 2048)
    slide = tmp_path / "region.png"
    cv2.imwrite(str(slide), cv2.cvtColor(cv2.resize(region, (512, 512), interpolation=cv2.INTER_AREA),
                                         cv2.COLOR_RGB2BGR))
    done = biopsia("predict", slide, "--model", small_model, "--out", tmp_path / "out", "--slide-mpp", "2",
                   "--no-tiff", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert f"threshold {recorded!r} from the model (chosen on " in done.stderr
    grid = ProbabilityGrid.load(tmp_path / "out" / "region" / "grid.npz")
    called = int(np.sum(grid.probs[grid.done] >= recorded))
    assert f"{called} at or above {recorded!r}" in done.stdout
    given = biopsia("predict", slide, "--model", small_model, "--out", tmp_path / "out2", "--slide-mpp", "2",
                    "--no-tiff", "--device", "cpu", "--threshold", "0.5")
    assert given.returncode == 0 and "threshold 0.5 (given)" in given.stderr and "at or above 0.5 (" in given.stdout


def test_evaluate_compares_at_the_threshold_of_the_model_that_predicted(biopsia, small_model, slide_pair, tmp_path):
    """A grid over the marked slide: tumour tiles at 0.45, others at 0.05; the model's threshold is set to 0.4."""
    from core.evaluation.compare import truth_for_grid
    from core.project.marks import find_marks

    model = _copy_model(small_model, tmp_path / "model", threshold=0.4)  # set by hand: allowed, said so
    sha = hashlib.sha256((model / "model-0000.params").read_bytes()).hexdigest()
    slide = slide_pair[0].slide_path
    grid = ProbabilityGrid(np.zeros((24, 32), np.float32), (0, 0), 256, 256, 64, 2.0, (8192, 6144), str(slide),
                           {"name": "model", "folder": str(model), "sha256": sha}, complete=True)
    truth = truth_for_grid(grid, find_marks(slide).marks)
    grid.probs = np.where(truth == 1, 0.45, np.where(truth == 0, 0.05, np.nan)).astype(np.float32)
    grid.save(tmp_path / "run" / "pair29" / "grid.npz")
    done = biopsia("evaluate", tmp_path / "run", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["threshold"] == 0.4 and summary["total"]["sensitivity"] == 1.0
    assert "threshold 0.4 from the model (set in its model.json)" in done.stderr
    assert summary["threshold_source"] == "threshold 0.4 from the model (set in its model.json)"
    given = json.loads(biopsia("evaluate", tmp_path / "run", "--json", "--threshold", "0.5").stdout)
    assert given["threshold"] == 0.5 and given["total"]["sensitivity"] == 0.0
    text = biopsia("evaluate", tmp_path / "run")
    assert "All slides (threshold 0.4), tile level:" in text.stdout
