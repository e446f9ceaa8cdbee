"""Preferences: plain JSON, never unpickled, and a damaged file falls back to the defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.paths import config_dir
from gui.settings import MAX_RECENT, Preferences


class _Payload:
    """Pickles as a call to os.mkdir: what a crafted QSettings @Variant value can hold."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_a_crafted_qsettings_file_is_never_unpickled(tmp_path):
    from PyQt5.QtCore import QSettings

    config_dir().mkdir(parents=True, exist_ok=True)
    ini = config_dir() / "biopsia.ini"
    proof = tmp_path / "code-ran"
    for key in ("recent/files", "cache/megabytes", "cache/threads", "privacy/screenshotsIncludeLabel"):
        writer = QSettings(str(ini), QSettings.IniFormat)
        writer.setValue(key, _Payload(proof))
        writer.sync()
    assert b"@Variant" in ini.read_bytes()

    prefs = Preferences()
    assert prefs.recent_files() == [] and prefs.cache_megabytes > 0 and prefs.loader_threads >= 1
    assert not prefs.screenshots_include_associated
    assert not proof.exists()

    # The file really is hostile: QSettings in a fresh process runs the payload when it reads it back.
    subprocess.run([sys.executable, "-c", "import sys; from PyQt5.QtCore import QSettings; "
                    "QSettings(sys.argv[1], QSettings.IniFormat).value('recent/files')", str(ini)],
                   check=False, timeout=60, capture_output=True)
    assert proof.exists()


def test_preferences_round_trip_through_json(tmp_path):
    prefs = Preferences()
    for i in range(MAX_RECENT + 3):
        prefs.add_recent_file(str(tmp_path / f"slide{i}.svs"))
    prefs.cache_megabytes = 2048
    prefs.screenshots_include_associated = True

    again = Preferences()
    assert again.recent_files()[0] == str(tmp_path / f"slide{MAX_RECENT + 2}.svs")
    assert len(again.recent_files()) == MAX_RECENT
    assert again.cache_megabytes == 2048 and again.screenshots_include_associated
    assert json.loads(again.path.read_text())["cache_megabytes"] == 2048


@pytest.mark.parametrize("content", [b"", b"\xff\xfe not utf-8", b"[1, 2]", b"{" * 100_000,
                                     b'{"recent_files": "x", "cache_megabytes": 1e400, "loader_threads": true}',
                                     b'{"recent_files": [1, null, ""], "cache_megabytes": -5}'])
def test_a_damaged_preferences_file_gives_the_defaults(content):
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "preferences.json").write_bytes(content)
    defaults = Preferences.__new__(Preferences)
    defaults._values = {}
    prefs = Preferences()
    assert prefs.recent_files() == []
    assert prefs.cache_megabytes == defaults.cache_megabytes
    assert prefs.loader_threads == defaults.loader_threads
    prefs.add_recent_file("/data/a.svs")  # and saving replaces the damaged file with a good one
    assert Preferences().recent_files() == ["/data/a.svs"]
