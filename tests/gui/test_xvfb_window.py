"""The real window on a real X server (Xvfb), through Qt's xcb plugin, as `make run` starts it on a desktop.

Every other GUI test runs offscreen, which needs none of the X libraries the xcb plugin loads; this one
fails when one of them is missing (Qt then aborts: "could not load the Qt platform plugin xcb").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs main.py's own entry (run_gui and its event loop); once the slide shows sharp it saves the window,
# says what it saw and closes the window, which ends the application the way a user's close does.
DRIVER = r'''
import sys
from PyQt5.QtCore import QTimer
import gui.app
import main

out = sys.argv[1]
made = gui.app.ensure_app

def ensure_app(*args, **kwargs):
    app = made(*args, **kwargs)
    QTimer.singleShot(0, watch)
    return app

def watch():
    from PyQt5.QtWidgets import QApplication
    app = QApplication.instance()
    windows = [w for w in app.topLevelWidgets() if hasattr(w, "views") and w.isVisible()]
    views = windows[0].views() if windows else []
    if views and views[0].slide_layer.overview is not None and views[0].slide_layer.is_sharp():
        window = windows[0]
        window.grab_window().save(out, "PNG")
        handle = window.windowHandle()
        print("ready", app.platformName(), handle.isExposed(), window.width(), window.height(), flush=True)
        window.close()
        return
    QTimer.singleShot(50, watch)

gui.app.ensure_app = ensure_app
sys.exit(main.main(["gui", sys.argv[2]]))
'''


@pytest.fixture
def x_display():
    """A fresh Xvfb server on a display number it picks itself; yields ``":N"``."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (make test installs the xvfb package)")
    read, write = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()  # written once the server accepts connections
        if not number:
            server.kill()
            pytest.fail(f"Xvfb did not start: {server.communicate(timeout=30)[1].decode(errors='replace')}")
        yield f":{number}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_the_window_opens_on_a_real_x_server_and_closes_cleanly(x_display, cmu_svs, tmp_path):
    env = {**os.environ, "DISPLAY": x_display, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    out = tmp_path / "window.png"
    done = subprocess.run([sys.executable, "-c", DRIVER, str(out), str(cmu_svs)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    words = done.stdout.split()
    assert words[:3] == ["ready", "xcb", "True"], done.stdout  # the xcb plugin, a window mapped and exposed
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (int(words[4]), int(words[3]))
    b, g, r = (image[..., i].astype(int) for i in range(3))
    assert ((r - g > 25) & (b - g > 10)).mean() > 0.02  # the H&E slide is on screen, not an empty frame
