"""One cancellation class: core jobs raise `core.errors.Cancelled`, the GUI worker reports it as cancelled."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import BiopsiaError, Cancelled
from core.synth import write_synthetic_slide
from core.tiles.dataset import load_tiles, plan_dataset, sources_from_paths, write_dataset
from core.tiles.grid import TileSpec
from gui.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


def test_only_core_errors_defines_a_cancelled_class():
    found = []
    for folder in ("core", "gui", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and "cancel" in node.name.lower():
                    found.append((str(path.relative_to(ROOT)), node.name))
    assert found == [("core/errors.py", "Cancelled")], f"a second cancellation class: {found}"


def test_cancelled_is_a_biopsia_error_so_callers_that_do_not_expect_it_show_its_message():
    assert issubclass(Cancelled, BiopsiaError)


@pytest.mark.parametrize("stop_after", [0, 3])  # before any tile (planning), and while the pyramid is written
def test_cancelled_synthetic_slide_raises_the_one_class_and_leaves_nothing(tmp_path, stop_after):
    calls = []
    with pytest.raises(Cancelled, match="cancelled.tiff: synthetic slide generation cancelled"):
        write_synthetic_slide(tmp_path / "cancelled.tiff", seed=2, width=3000, height=2000,
                              progress=lambda done, total: calls.append(done),
                              should_stop=lambda: len(calls) >= stop_after)
    assert len(calls) == stop_after
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def plan(slide_pair):
    return plan_dataset(sources_from_paths([slide_pair[0].slide_path]), TileSpec(64, 2.0), split="random")


def test_cancelled_dataset_raises_the_one_class_inside_and_keeps_the_earlier_folder(plan, tmp_path, monkeypatch):
    raised = []
    real_init = Cancelled.__init__

    def spy(self, *args):
        raised.append(args)
        real_init(self, *args)

    monkeypatch.setattr(Cancelled, "__init__", spy)
    (tmp_path / "keep.txt").write_text("earlier", encoding="utf-8")
    assert write_dataset(plan, tmp_path, should_stop=lambda: True) is None  # the documented result
    assert raised and "writing the dataset cancelled" in raised[0][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert load_tiles(plan, "train", should_stop=lambda: True) is None


def _run(qtbot, fn, cancel=False):
    worker = Worker(fn)
    seen = []
    for name in ("finished", "failed", "cancelled"):
        getattr(worker, name).connect(lambda *args, n=name: seen.append((n, args)))
    with qtbot.waitSignal(worker.done, timeout=60_000):
        if cancel:
            worker.cancel()
        worker.start()
    return seen


def test_worker_reports_the_one_class_as_cancelled_not_failed(qtbot, tmp_path):
    def job(should_stop):
        write_synthetic_slide(tmp_path / "s.tiff", seed=2, width=3000, height=2000, should_stop=should_stop)

    assert [name for name, _ in _run(qtbot, job, cancel=True)] == ["cancelled"]
    assert list(tmp_path.iterdir()) == []


def test_worker_still_reports_other_biopsia_errors_as_failed(qtbot):
    def job():
        raise BiopsiaError("x.svs: not a slide")

    seen = _run(qtbot, job)
    assert [name for name, _ in seen] == ["failed"]
    assert str(seen[0][1][0]) == "x.svs: not a slide"
