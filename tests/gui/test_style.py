"""One error colour and one plot style: gui.style and gui.plot_style own them, nobody keeps a copy."""

from __future__ import annotations

import re
from pathlib import Path

from gui import style

GUI = Path(__file__).resolve().parents[2] / "gui"
OWNERS = {"style.py", "plot_style.py"}


def _sources():
    for path in sorted(GUI.rglob("*.py")):
        if path.name not in OWNERS:
            yield path, path.read_text(encoding="utf-8")


def test_no_gui_module_spells_out_the_error_or_caption_colour():
    colours = {style.ERROR.lower(), style.MUTED.lower(), "#b71c1c", "#607d8b"}
    found = [f"{path.relative_to(GUI)}: {colour}" for path, text in _sources() for colour in colours
             if colour in text.lower()]
    assert found == []


def test_no_gui_module_defines_its_own_error_style_or_builds_a_plot_widget():
    found = [f"{path.relative_to(GUI)}: {m.group(0)}" for path, text in _sources()
             for m in re.finditer(r"^\w*ERROR\w*_STYLE\s*=|pg\.PlotWidget\(|def make_plot\(", text, re.M)]
    assert found == []


def test_error_html_uses_the_one_colour():
    assert style.error_html("x.svs: bad") == f"<span style='color: {style.ERROR}'>x.svs: bad</span>"
    assert style.ERROR in style.ERROR_BOX_STYLE
