"""The window's thread never works for long at a stretch: from the first show to the first sharp view, and
opening each panel, on a real X server.

The heartbeat (tests/gui/heartbeat_driver.py) times every gap between 10 ms beats of the window's event
loop, with the CPU time the window's thread spent in it. A gap's wall time also counts waiting for a core,
so it depends on what else the machine runs; its CPU time is the window thread's own work, the work that
must live elsewhere (imports of MXNet, file writes, slide reading), and is what is held here to the
150 ms the issue sets. bench/startup.py prints the wall-clock gaps on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.gui.test_xvfb_window import x_display  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("heartbeat_driver.py")
LIMIT_MS = 150
PANELS = ("train", "predict", "evaluate")


def test_the_window_thread_never_works_150_ms_at_a_stretch(x_display, cmu_svs, tmp_path):  # noqa: F811
    env = {**os.environ, "DISPLAY": x_display, "QT_QPA_PLATFORM": "xcb", "XDG_CONFIG_HOME": str(tmp_path / "c"),
           "XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CACHE_HOME": str(tmp_path / "k")}
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, str(DRIVER), str(cmu_svs), "--panels", ",".join(PANELS)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == {"startup", *PANELS}, report
    assert report["startup"]["sharp_s"] > 0
    for phase, seen in report.items():
        worst = max((g["cpu_ms"] for g in seen["gaps"]), default=0)
        assert worst < LIMIT_MS, f"{phase}: the window's thread worked {worst} ms without a beat: {seen}"
        if phase != "startup":
            assert seen["call_cpu_ms"] < LIMIT_MS, f"opening {phase} took {seen['call_cpu_ms']} ms of CPU: {seen}"
    # the preferences (recent files) were written, off the window's thread, before the process ended
    prefs = json.loads((tmp_path / "c" / "biopsia" / "preferences.json").read_text(encoding="utf-8"))
    assert prefs["recent_files"] == [str(cmu_svs)]


def test_opening_the_training_panel_loads_no_mxnet_on_the_window_thread():
    """MXNet's 4 s of imports happen on the model thread, never on the window's thread opening a panel."""
    code = ("import builtins, sys, threading\n"
            "seen = []\n"
            "real = builtins.__import__\n"
            "def spy(name, *args, **kwargs):\n"
            "    if name.split('.')[0] == 'mxnet' and 'mxnet' not in sys.modules:\n"
            "        seen.append(threading.current_thread() is threading.main_thread())\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = spy\n"
            "from gui.app import ensure_app\n"
            "app = ensure_app(offscreen=True)\n"
            "from gui.main_window import MainWindow\n"
            "w = MainWindow(); w.show(); app.processEvents()\n"
            "w.actions['train'].trigger(); app.processEvents()\n"
            "assert w.training_panel.isVisible() and w.training_panel.arch.count() == 2\n"
            "print('main thread imported mxnet:', True in seen)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "main thread imported mxnet: False" in done.stdout
