"""Menus and the toolbar of the main window, declared in one place.

The builders return what they make (actions, the menus filled later, the toolbar and its
magnification box); the window keeps them as its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QAction, QActionGroup, QComboBox, QMenu, QToolBar

from core.view.viewport import MAGNIFICATION_PRESETS
from gui.icons import icon
from gui.overlay_choice import FILL_KEY, KEYS, NAMES, OVERLAYS

if TYPE_CHECKING:
    from gui.main_window import MainWindow


def _action(win, text, slot, shortcut=None, icon_name=None, checkable=False, checked=False, tip=None) -> QAction:
    act = QAction(text, win)
    if icon_name:
        act.setIcon(icon(icon_name))
    if shortcut:
        act.setShortcut(QKeySequence(shortcut))
    act.setCheckable(checkable)
    if checkable:
        act.setChecked(checked)
        act.toggled.connect(slot)
    else:
        act.triggered.connect(lambda _checked=False: slot())
    tip = tip or text.replace("&", "").replace("…", "")
    if shortcut:
        tip += f" ({QKeySequence(shortcut).toString(QKeySequence.NativeText)})"
    act.setToolTip(tip)
    act.setStatusTip(tip)
    return act


def build_actions(win: "MainWindow") -> dict[str, QAction]:
    a = {
        "open": _action(win, "&Open slide…", win.open_dialog, QKeySequence.Open, "open"),
        "close": _action(win, "&Close slide", win.close_current, QKeySequence.Close),
        "export_view": _action(win, "&Export view as PNG…", win.export_view_dialog, "Ctrl+E", "screenshot"),
        "screenshot": _action(win, "Save &window screenshot…", win.screenshot_dialog, "Ctrl+Shift+E"),
        "quit": _action(win, "&Quit", win.close, QKeySequence.Quit),
        "zoom_in": _action(win, "Zoom &in", lambda: win.with_view(lambda v: v.zoom_by(1.25)), "Ctrl+=", "zoom-in"),
        "zoom_out": _action(win, "Zoom &out", lambda: win.with_view(lambda v: v.zoom_by(0.8)), "Ctrl+-", "zoom-out"),
        "zoom_fit": _action(win, "Zoom to &fit", lambda: win.with_view(lambda v: v.zoom_to_fit()), "0", "zoom-fit"),
        "zoom_1to1": _action(win, "&Full resolution (1:1)", lambda: win.with_view(lambda v: v.zoom_to_scale(1.0)),
                             "Ctrl+1", "zoom-actual"),  # keys 1-9 pick the class to draw
        "grid": _action(win, "Show &grid", win.set_grid_visible, "G", "grid", checkable=True),
        "minimap": _action(win, "Show &overview", win.set_minimap_visible, "O", "minimap", checkable=True,
                           checked=True),
        "scale_bar": _action(win, "Show &scale bar", win.set_scale_bar_visible, "S", "scale-bar", checkable=True,
                             checked=True),
        "side_by_side": _action(win, "Side by &side", win.set_side_by_side, "F6", "side-by-side", checkable=True,
                                tip="The network's heatmap beside the doctors' marks, pan and zoom in step"),
        "icc": _action(win, "Apply &colour profile", win.set_apply_icc, None, "colour-profile", checkable=True,
                       checked=True, tip="Convert the slide's embedded ICC colour profile to sRGB"),
        "set_mpp": _action(win, "Set &resolution (µm/px)…", win.set_mpp_dialog, None, "resolution"),
        "screenshots_label": _action(win, "Include label && macro in screenshots", win.set_screenshots_private,
                                     None, None, checkable=True, checked=win.prefs.screenshots_include_associated),
        "cache": _action(win, "Tile &cache size…", win.cache_size_dialog),
        "train": _action(win, "&Train…", win.show_training_panel, None, "train",
                         tip="Train a tumour classifier on the project's slides"),
        "predict": _action(win, "&Predict…", lambda: _raise_dock(win.prediction_dock), None, "predict",
                           tip="Run a model over the current slide: a tumour heatmap"),
        "evaluate": _action(win, "&Evaluate…", lambda: _raise_dock(win.evaluation_dock), None, None,
                            tip="Compare the model's heatmap with the doctors' marks"),
        "controls": _action(win, "&Mouse and keyboard", win.show_controls, "F1"),
        "about": _action(win, "&About Biopsia", win.show_about),
    }
    group = QActionGroup(win)  # one overlay family at a time (gui.overlay_choice)
    for name in OVERLAYS:
        act = _action(win, f"Show {NAMES[name].lower()}", lambda on, n=name: on and win.set_overlay(n), KEYS[name],
                      checkable=True, checked=name == "marks",
                      tip=f"Show the {NAMES[name].lower()} (one overlay at a time; the marks as outlines under "
                          "the others)")
        group.addAction(act)
        a[f"overlay_{name}"] = act
    a["mark_fill"] = _action(win, "&Fill marks", win.set_mark_fill, FILL_KEY, checkable=True, checked=True,
                             tip="Fill the marks, over any overlay (else outlines only)")
    for i, mag in enumerate(MAGNIFICATION_PRESETS, start=1):
        a[f"mag_{mag:g}"] = _action(win, f"{mag:g}x", lambda m=mag: win.set_magnification(m), f"Alt+{i}")
    return a


def _raise_dock(dock) -> None:
    dock.show()
    dock.raise_()


@dataclass(frozen=True)
class Menus:
    """The menus others fill after `build_menus`: recent files, annotation files, Edit, Panels, Tools, Model."""

    recent: QMenu
    annotations: QMenu
    edit: QMenu
    docks: QMenu
    tools: QMenu
    model: QMenu


def build_menus(win: "MainWindow", a: dict[str, QAction]) -> Menus:
    bar = win.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(a["open"])
    recent_menu = QMenu("Open &recent", win)
    file_menu.addMenu(recent_menu)
    file_menu.addAction(a["close"])
    file_menu.addSeparator()
    annotations_menu = file_menu.addMenu("&Projects and annotations")
    file_menu.addAction(a["export_view"])
    file_menu.addAction(a["screenshot"])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])

    edit_menu = bar.addMenu("&Edit")  # filled by gui/annotate.py

    view_menu = bar.addMenu("&View")
    for name in ("zoom_in", "zoom_out", "zoom_fit", "zoom_1to1"):
        view_menu.addAction(a[name])
    mag_menu = view_menu.addMenu("&Magnification")
    for mag in MAGNIFICATION_PRESETS:
        mag_menu.addAction(a[f"mag_{mag:g}"])
    view_menu.addSeparator()
    for name in ("grid", "minimap", "scale_bar", "icc"):
        view_menu.addAction(a[name])
    view_menu.addAction(a["side_by_side"])
    view_menu.addSeparator()
    for name in OVERLAYS:
        view_menu.addAction(a[f"overlay_{name}"])
    view_menu.addAction(a["mark_fill"])
    view_menu.addSeparator()
    docks_menu = view_menu.addMenu("&Panels")

    slide_menu = bar.addMenu("&Slide")
    slide_menu.addAction(a["set_mpp"])

    tools_menu = bar.addMenu("&Tools")  # filled by gui/annotate.py

    model_menu = bar.addMenu("&Model")
    model_menu.addAction(a["train"])
    model_menu.addAction(a["predict"])
    model_menu.addAction(a["evaluate"])

    settings_menu = bar.addMenu("S&ettings")
    settings_menu.addAction(a["cache"])
    settings_menu.addAction(a["screenshots_label"])

    help_menu = bar.addMenu("&Help")
    help_menu.addAction(a["controls"])
    help_menu.addAction(a["about"])
    return Menus(recent=recent_menu, annotations=annotations_menu, edit=edit_menu, docks=docks_menu,
                 tools=tools_menu, model=model_menu)


def build_toolbar(win: "MainWindow", a: dict[str, QAction]) -> tuple[QToolBar, QComboBox]:
    """The navigation toolbar and its magnification box (the window keeps the box in step with the view)."""
    tb = QToolBar("Navigation", win)
    tb.setObjectName("NavigationToolbar")
    tb.setMovable(False)
    tb.addAction(a["open"])
    tb.addSeparator()
    for name in ("zoom_out", "zoom_in", "zoom_fit", "zoom_1to1"):
        tb.addAction(a[name])
    mag_combo = QComboBox(tb)
    mag_combo.setToolTip("Magnification (Alt+1 … Alt+6)")
    mag_combo.addItem("—")
    for mag in MAGNIFICATION_PRESETS:
        mag_combo.addItem(f"{mag:g}x", mag)
    mag_combo.activated.connect(
        lambda i: win.set_magnification(mag_combo.itemData(i)) if mag_combo.itemData(i) else None
    )
    tb.addWidget(mag_combo)
    tb.addSeparator()
    for name in ("grid", "minimap", "scale_bar", "icc", "side_by_side"):
        tb.addAction(a[name])
    return tb, mag_combo
