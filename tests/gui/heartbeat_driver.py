"""Start the real window as `biopsia SLIDE` does and time its event loop until the slide is sharp, then open
each panel: one JSON line on stdout. Run by tests/gui/test_startup_heartbeat.py and bench/startup.py.

    python tests/gui/heartbeat_driver.py SLIDE [--panels train,predict,evaluate]

A 10 ms timer beats on the window's thread. For every gap between beats over 50 ms it records the wall
time and the window thread's own CPU time in that gap (`time.thread_time`): the CPU time is the work the
window's thread did, the rest is waiting (for a core, the GIL or the disk). ``startup`` covers the first
beat (the window shown, the event loop running) to the first sharp view; each panel, its opening action
until the next beat.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PyQt5.QtCore import QTimer  # noqa: E402

import gui.app  # noqa: E402
from cli.app import main  # noqa: E402

GAP = 0.05
slide = sys.argv[1]
panels = sys.argv[sys.argv.index("--panels") + 1].split(",") if "--panels" in sys.argv else []
state = {"last": None, "cpu": 0.0, "gaps": [], "phase": "startup", "out": {}, "t0": None}


def beat():
    now, cpu = time.perf_counter(), time.thread_time()
    if state["t0"] is None:
        state["t0"] = now
    if state["last"] is not None and now - state["last"] > GAP:
        state["gaps"].append({"at_s": round(now - state["t0"], 3), "wall_ms": round((now - state["last"]) * 1000),
                              "cpu_ms": round((cpu - state["cpu"]) * 1000)})
    state["last"], state["cpu"] = now, cpu


def window():
    from PyQt5.QtWidgets import QApplication

    found = [w for w in QApplication.instance().topLevelWidgets() if hasattr(w, "views") and w.isVisible()]
    return found[0] if found else None


def watch():
    w = window()
    views = w.views() if w is not None else []
    if views and all(v.slide_layer.overview is not None and v.slide_layer.is_sharp() for v in views):
        state["out"]["startup"] = {"sharp_s": round(time.perf_counter() - state["t0"], 3), "gaps": state["gaps"]}
        QTimer.singleShot(200, lambda: next_panel(w, list(panels)))
        return
    QTimer.singleShot(20, watch)


def next_panel(w, left):
    if not left:
        print(json.dumps(state["out"]), flush=True)
        w.close()
        return
    name = left.pop(0)
    state["gaps"] = []
    start = (time.perf_counter(), time.thread_time())
    w.actions[name].trigger()
    state["out"][name] = {"call_wall_ms": round((time.perf_counter() - start[0]) * 1000),
                          "call_cpu_ms": round((time.thread_time() - start[1]) * 1000)}

    def done():
        state["out"][name]["gaps"] = state["gaps"]
        next_panel(w, left)

    QTimer.singleShot(500, done)


made = gui.app.ensure_app


def ensure_app(*args, **kwargs):
    app = made(*args, **kwargs)
    timer = QTimer(app)
    timer.timeout.connect(beat)
    timer.start(10)
    QTimer.singleShot(0, watch)
    return app


gui.app.ensure_app = ensure_app
sys.exit(main(["gui", slide]))
