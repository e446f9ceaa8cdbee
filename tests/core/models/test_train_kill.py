"""A training killed or interrupted while it saves never loses or garbles the best model.

Each run is a fresh interpreter (MXNet must not be forked) that trains a tiny network on the same output
folder, resuming where the previous run was killed. Kills land at chosen steps of the save (before or
after each fsync, rename and removal) and at random moments; after each one the best model must load,
its weights must be the ones its ``model.json`` describes (the recorded validation loss is recomputed
from them), and its loss must be the lowest of every epoch a run reported saved: no save was lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelError
from core.models.bundle import read_info, resolve_bundle
from core.models.loading import load_bundle
from core.models.engine import engine

ROOT = Path(__file__).resolve().parents[3]
TILE = 16

CHILD = r'''
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
out, mode, at = sys.argv[2], sys.argv[3], int(sys.argv[4])
import numpy as np
from tests.core.models.test_train_kill import tiles
import mxnet as mx

steps = [0]
def step(name, before):
    steps[0] += 1
    if steps[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)

def counted(fn, name):
    def wrapper(*args, **kwargs):
        step(name, True)
        result = fn(*args, **kwargs)
        step(name, False)
        return result
    return wrapper

if mode == "steps":
    from core.models import folder
    folder.fsync_path = counted(folder.fsync_path, "fsync")
    folder._remove = counted(folder._remove, "remove")
    os.replace = counted(os.replace, "rename")
    mx.gluon.HybridBlock.export = counted(mx.gluon.HybridBlock.export, "export")
elif mode == "interrupt":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, even if started with it ignored
    real_export, exports = mx.gluon.HybridBlock.export, [0]
    def export(self, path, *args, **kwargs):
        real_export(self, path, *args, **kwargs)
        if not os.path.basename(os.path.dirname(path)).startswith("best"):
            return
        exports[0] += 1
        if exports[0] == at:  # Ctrl-C after the at-th export into best/, before its model.json is written
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    mx.gluon.HybridBlock.export = export

from core.models.train import train

def progress(event):
    if event.metrics is not None:  # reported after the epoch's saves are complete
        print(json.dumps({"saved": event.epoch, "loss": event.metrics["loss"]}), flush=True)

print("ready", flush=True)
easy = mode == "interrupt"
try:
    train(tiles(8, 1, easy), tiles(8, 1 if easy else 2, easy), out, epochs=int(os.environ.get("EPOCHS", "8")),
          batch_size=16, lr=5e-3,
          seed=0, device="cpu", early_stopping_patience=None, augment=False, progress=progress, resume=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
'''


def tiles(n_per_class: int, seed: int, easy: bool = False):
    """Noisy pink tiles (Non-tumour) and purple ones (Tumour), alike enough that the loss takes epochs to fall.

    ``easy`` tiles differ so much that the validation loss falls at every one of the first epochs.
    """
    from core.tiles.arrays import TileArrays

    rng = np.random.default_rng(seed)
    palette = [[230, 190, 215], [120, 60, 140]] if easy else [[200, 150, 190], [180, 130, 175]]
    colours = np.repeat(np.array(palette, np.float32), n_per_class, axis=0)
    noise = rng.normal(0, 40, (2 * n_per_class, TILE, TILE, 3))
    images = np.clip(colours[:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return TileArrays(images, np.repeat([0, 1], n_per_class))


def _child(tmp_path: Path, out: Path, mode: str, at: int, kill_after: float | None = None, epochs: int = 8):
    """Run one training interpreter; returns its return code and the epochs it reported saved."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EPOCHS": str(epochs), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(ROOT), str(out), mode, str(at)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if kill_after is not None:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert proc.returncode in (0, -signal.SIGKILL, 130), stderr
    return proc.returncode, reports


def _check_best(out: Path, lowest: float | None, val=None) -> int:
    """The best model loads, its model.json describes its weights, and no reported save was lost."""
    folder = resolve_bundle(out)
    info = read_info(folder)
    assert info.verified
    val = val or tiles(8, 2)
    probs = engine().run(lambda: load_bundle(folder).predict(val.images))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(val)), val.labels], 1e-12, None))))
    assert loss == pytest.approx(info.metrics["loss"], rel=1e-4, abs=1e-5), (loss, info.metrics)
    epoch = info.training["epoch"]
    assert epoch == info.metrics["epoch"]
    if lowest is not None:
        assert info.metrics["loss"] <= lowest * (1 + 1e-6), (info.metrics, lowest)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith("best.")]
    assert leftovers == [], leftovers
    return epoch


def test_sigkill_during_saves_never_loses_the_best_model(tmp_path):
    rng = random.Random(9)
    out = tmp_path / "run"
    lowest, killed, seen = None, 0, []
    # kill points: chosen steps of the save protocol, then random moments
    plan = [("steps", rng.randrange(1, 40), None) for _ in range(3)] + [("none", 0, rng.uniform(0.0, 1.0))
                                                                        for _ in range(2)]
    for mode, at, after in plan:
        code, reports = _child(tmp_path, out, mode, at, kill_after=after)
        killed += code == -signal.SIGKILL
        lowest = min([r["loss"] for r in reports] + ([lowest] if lowest is not None else []), default=None)
        if (out / "best").exists() or (out / "best.new").exists() or (out / "best.old").exists():
            seen.append(_check_best(out, lowest))
    assert killed >= 3, plan  # the step kills always land: each run has more than 40 steps of saving left
    assert seen, "no run got as far as saving a model"
    code, reports = _child(tmp_path, out, "none", 0, epochs=9)  # and the run can still be finished
    assert code == 0 and reports and reports[-1]["saved"] == 8
    _check_best(out, min([r["loss"] for r in reports] + [lowest]))


def test_ctrl_c_while_saving_finishes_the_save_then_stops(tmp_path):
    out = tmp_path / "run"
    code, reports = _child(tmp_path, out, "interrupt", 2)  # while epoch 1 replaces epoch 0's best
    assert code == 130 and reports[-1]["saved"] == 1, reports
    epoch = _check_best(out, min(r["loss"] for r in reports), tiles(8, 1, easy=True))
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["epoch"] == reports[-1]["saved"] and epoch == state["best_epoch"]
    assert not [p for p in out.iterdir() if p.name.endswith((".new", ".old"))]


def test_a_full_disk_keeps_the_previous_best_and_checkpoint(small_disk):
    from core.models.train import train

    mount = small_disk.mount("24m")
    out = mount / "run"
    data = tiles(8, 1), tiles(8, 2)
    settings = dict(batch_size=16, seed=0, device="cpu", early_stopping_patience=None, augment=False)
    train(*data, out, epochs=1, **settings)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    filler = small_disk.fill(mount)
    with pytest.raises(ModelError, match=r"run/(best|last): could not (save the model|export the network)"):
        train(*data, out, epochs=3, resume=True, **settings)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing saved before changed, no staging folder left
    filler.unlink()
    result = train(*data, out, epochs=3, resume=True, **settings)
    assert result.epochs_run == 3 and read_info(out / "best").verified
