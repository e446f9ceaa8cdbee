"""Per-slide settings kept outside the slide: round trip, corrupt files, atomic writes, which µm/px a slide has."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from core.project import slide_settings as settings_module
from core.project.mpp import MppSource, SlideMpp, resolve_mpp
from core.project.slide_settings import SlideSettingsStore, default_settings_path


@pytest.fixture
def store(tmp_path) -> SlideSettingsStore:
    return SlideSettingsStore(tmp_path / "data" / "slide-settings.json")


def test_round_trip(store, slide, monkeypatch):
    assert store.get_mpp_override(slide) is None
    store.set_mpp_override(slide, (0.25, 0.26))
    assert store.get_mpp_override(slide) == (0.25, 0.26)
    # Another window (another store on the same file) sees it, by relative or absolute path.
    other = SlideSettingsStore(store.path)
    assert other.get_mpp_override(slide) == (0.25, 0.26)
    monkeypatch.chdir(slide.parent)
    assert other.get_mpp_override(Path(slide.name)) == (0.25, 0.26)
    store.set_mpp_override(slide, 0.5)  # a single number means square pixels
    assert other.get_mpp_override(slide) == (0.5, 0.5)
    store.set_mpp_override(slide, None)
    assert store.get_mpp_override(slide) is None
    assert json.loads(store.path.read_text())["slides"] == {}


def test_several_slides_are_kept_apart(store, slide, tmp_path):
    second = tmp_path / "slides" / "case-18.svs"
    second.write_bytes(b"another slide")
    store.set_mpp_override(slide, (0.25, 0.25))
    store.set_mpp_override(second, (0.5, 0.5))
    assert store.get_mpp_override(slide) == (0.25, 0.25) and store.get_mpp_override(second) == (0.5, 0.5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), (0.25,), (0.25, "x"), True])
def test_rejects_nonsense_mpp(store, slide, bad):
    with pytest.raises(ValueError):
        store.set_mpp_override(slide, bad)
    assert not store.path.exists()


def test_missing_slide(store, tmp_path):
    assert store.get_mpp_override(tmp_path / "gone.svs") is None
    with pytest.raises(FileNotFoundError):
        store.set_mpp_override(tmp_path / "gone.svs", 0.25)


def test_a_changed_slide_forgets_its_settings(store, slide):
    store.set_mpp_override(slide, (0.25, 0.25))
    slide.write_bytes(b"a different scan saved under the same name")
    assert store.get_mpp_override(slide) is None
    store.set_mpp_override(slide, (0.3, 0.3))
    assert store.get_mpp_override(slide) == (0.3, 0.3)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b'{"slides": []}', b"\xff\xfe\x00garbage"])
def test_a_corrupt_file_is_kept_aside_and_read_as_empty(store, slide, content):
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(content)
    assert store.get_mpp_override(slide) is None
    backup = store.path.with_name(store.path.name + ".bak")
    assert backup.read_bytes() == content
    store.set_mpp_override(slide, (0.25, 0.25))
    assert store.get_mpp_override(slide) == (0.25, 0.25)
    assert json.loads(store.path.read_text())["version"] == 1


def test_writes_are_atomic(store, slide, monkeypatch):
    store.set_mpp_override(slide, (0.25, 0.25))
    before = store.path.read_bytes()
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(settings_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(settings_module.os, "replace", crash)
    with pytest.raises(OSError):
        store.set_mpp_override(slide, (0.5, 0.5))
    assert synced, "the temporary file must be fsynced before the rename"
    assert store.path.read_bytes() == before  # the old settings survive a failed save
    assert sorted(p.name for p in store.path.parent.iterdir()) == [store.path.name]  # no temporary left
    monkeypatch.undo()
    store.set_mpp_override(slide, (0.5, 0.5))
    assert store.get_mpp_override(slide) == (0.5, 0.5)
    assert sorted(p.name for p in store.path.parent.iterdir()) == [store.path.name]


def test_concurrent_writers_lose_nothing(store, tmp_path):
    slides = []
    for i in range(16):
        path = tmp_path / "slides" / f"s{i}.svs"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * i)
        slides.append(path)
    threads = [threading.Thread(target=store.set_mpp_override, args=(p, 0.1 + i / 100)) for i, p in enumerate(slides)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [store.get_mpp_override(p) for p in slides] == [(0.1 + i / 100,) * 2 for i in range(16)]


def test_default_path_is_in_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_settings_path() == tmp_path / "xdg" / "biopsia" / "slide-settings.json"
    assert SlideSettingsStore().path == default_settings_path()


def test_resolve_mpp_entered_value_wins_over_the_file(store, slide):
    calibrated, unknown = (0.5, 0.5), None
    assert resolve_mpp(slide, calibrated, store=store) == SlideMpp((0.5, 0.5), MppSource.FILE)
    assert resolve_mpp(slide, unknown, store=store) == SlideMpp(None, None)
    assert tuple(resolve_mpp(None, calibrated)) == ((0.5, 0.5), "file")  # an in-memory slide: no store asked
    store.set_mpp_override(slide, (0.25, 0.25))
    assert tuple(resolve_mpp(slide, unknown, store=store)) == ((0.25, 0.25), "user")
    assert tuple(resolve_mpp(slide, calibrated, store=store)) == ((0.25, 0.25), "user")  # the user corrects the file
    assert resolve_mpp(slide, None, store=SlideSettingsStore(store.path.with_name("other.json"))).mpp is None
