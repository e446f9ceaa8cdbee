"""Shared fixtures. Every test runs offscreen with its own config, data and cache folders."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Before Qt or Biopsia read them: offscreen Qt, private XDG folders for the whole run.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
_RUN_HOME = Path(tempfile.mkdtemp(prefix="biopsia-tests-"))
atexit.register(shutil.rmtree, _RUN_HOME, ignore_errors=True)
for _var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
    os.environ[_var] = str(_RUN_HOME / _var.lower())

# The real Dask cluster on loopback and the cohort's slides: one of each for the whole run, whichever
# module asks first (a session fixture imported into several modules would start once per module).
pytest_plugins = ["tests.core.cohort.dask_cluster"]

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
SHARED_SLIDES = TESTS.parents[1] / "shared" / "data" / "slides"
CMU_SVS = DATA / "CMU-1-Small-Region.svs"


@pytest.fixture(autouse=True)
def _isolated_user_folders(tmp_path, monkeypatch):
    """Each test gets fresh config/data/cache folders, so preferences never leak between tests."""
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "home" / var.lower()))


@pytest.fixture
def shared_slides() -> Path:
    if not SHARED_SLIDES.is_dir():
        pytest.skip(f"vendor test slides not found at {SHARED_SLIDES}")
    return SHARED_SLIDES


@pytest.fixture
def cmu_svs() -> Path:
    return CMU_SVS


@pytest.fixture
def slide(tmp_path) -> Path:
    """A stand-in slide file (not an image) for tests of settings and projects, which only need its path."""
    path = tmp_path / "slides" / "case-17.svs"
    path.parent.mkdir()
    path.write_bytes(b"stand-in for a slide file")
    return path


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory):
    """A small synthetic slide (4096 x 3072 at 0.5 µm/px) with known tumour, shared by the run."""
    from core.synth import write_synthetic_slide

    out = tmp_path_factory.mktemp("synth") / "small.tiff"
    return write_synthetic_slide(out, seed=11, width=4096, height=3072, mpp=0.5)


@pytest.fixture(scope="session")
def slide_pair(tmp_path_factory):
    """Two synthetic slides (8192 x 6144 at 0.5 µm/px, seeds 29 and 30) with known tumour, for training.

    Each has its tumour marks in ``<stem>.geojson`` beside it.
    """
    from core.synth import write_synthetic_slide

    folder = tmp_path_factory.mktemp("pair")
    return [write_synthetic_slide(folder / f"pair{seed}.tiff", seed=seed, width=8192, height=6144, mpp=0.5)
            for seed in (29, 30)]


@pytest.fixture(scope="session")
def small_model(slide_pair, tmp_path_factory):
    """A compact CNN trained on ``slide_pair[1]`` (seed 30), 64 px tiles at
    2 µm/px, 12 epochs on the CPU (about 20 s); ``slide_pair[0]`` (seed 29) is a slide it never saw.

    Returns the bundle folder.
    """
    from core.tiles.dataset import load_tiles, plan_dataset, sources_from_paths
    from core.tiles.grid import TileSpec
    from core.models.train import train

    plan = plan_dataset(sources_from_paths([slide_pair[1].slide_path]), TileSpec(64, 2.0), split="random",
                        ratio=0.8, seed=0)
    result = train(load_tiles(plan, "train"), load_tiles(plan, "test"), tmp_path_factory.mktemp("model"),
                   epochs=12, batch_size=16, lr=2e-3, device="cpu", early_stopping_patience=None, mpp=2.0)
    assert result.bundle is not None
    return result.bundle


class SmallDisks:
    """Real tmpfs file systems under a test's tmp_path: ``mount(size)`` one, ``fill(folder)`` it to the last byte."""

    def __init__(self, root: Path):
        self.root, self.mounted = root, []

    def mount(self, size: str = "64k") -> Path:
        import subprocess

        folder = self.root / f"disk{len(self.mounted)}"
        folder.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                  capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pytest.skip("cannot run mount")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs: {done.stderr.decode(errors='replace').strip()}")
        self.mounted.append(folder)
        return folder

    @staticmethod
    def fill(folder: Path, keep: int = 0) -> Path:
        """Write ``folder/filler`` until the disk is full, then free ``keep`` bytes; returns the filler."""
        import errno

        filler = folder / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            for chunk in (65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * chunk) == chunk:
                        pass
                except OSError as err:
                    assert err.errno == errno.ENOSPC
            if keep:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - keep))
        finally:
            os.close(fd)
        return filler

    def unmount_all(self) -> None:
        import subprocess

        for folder in self.mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


@pytest.fixture
def small_disk(tmp_path):
    """Small real file systems (tmpfs) for full-disk tests; skips where mounting is not allowed."""
    disks = SmallDisks(tmp_path / "disks")
    disks.root.mkdir()
    yield disks
    disks.unmount_all()


DEFAULT_WINDOW_SIZE = (1400, 900)


@pytest.fixture
def make_window(qtbot, request):
    """Make Biopsia main windows, shown offscreen; each is closed and deleted after the test.

    The size is the test module's ``WINDOW_SIZE`` (width, height), else 1400 x 900.
    """
    from gui.main_window import MainWindow

    windows = []

    def make(size=None):
        win = MainWindow()
        qtbot.addWidget(win)
        win.resize(*(size or getattr(request.module, "WINDOW_SIZE", DEFAULT_WINDOW_SIZE)))
        win.show()
        qtbot.waitExposed(win)
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.close()
        win.deleteLater()


@pytest.fixture
def window(make_window):
    """One Biopsia main window (see ``make_window``)."""
    return make_window()


@pytest.fixture
def open_view(qtbot):
    """``open_view(window, path)``: open a slide in ``window`` as File ▸ Open does; returns its view once shown."""

    def open_(win, path, timeout: int = 30_000):
        with qtbot.waitSignal(win.slide_opened, timeout=timeout) as opened:
            win.open_slide(path)
        return opened.args[0]

    return open_


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Qt tests run with Python's cyclic garbage collector off; their garbage is collected after them.

    Widgets held only by reference cycles (slots that capture their owner) are freed by the cyclic
    collector, which runs whenever it likes: inside ``processEvents`` while Qt dispatches to them, or
    on a model thread. Either ends in a segfault. Here they are freed between tests, on the main
    thread, when no event is being dispatched.
    """
    uses_qt = "qtbot" in getattr(item, "fixturenames", ())
    if uses_qt:
        gc.disable()
    try:
        yield
    finally:
        if uses_qt:
            from PyQt5.QtCore import QCoreApplication, QEvent

            if QCoreApplication.instance() is not None:
                QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
            gc.enable()
            gc.collect()


def coordinate_image(width: int, height: int) -> np.ndarray:
    """Pixels that encode their own position: R = x mod 256, G = y mod 256, B = (x // 256 + y // 256) mod 256."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.dstack([xs % 256, ys % 256, (xs // 256 + ys // 256) % 256]).astype(np.uint8)


def pytest_terminal_summary(terminalreporter):
    """How many cases each seeded fuzzer ran (a long ``make fuzz`` run says what it covered)."""
    import fuzzing

    if fuzzing.CASES_RUN:
        terminalreporter.write_sep("-", "fuzz cases")
        for test, cases in sorted(fuzzing.CASES_RUN.items()):
            terminalreporter.write_line(f"{cases:>9,}  {test}")
        terminalreporter.write_line(f"{sum(fuzzing.CASES_RUN.values()):>9,}  in all")
