"""gui/actions.py builds the window's actions, menus and toolbar and hands them back; it sets no fields."""

from __future__ import annotations

import ast
from pathlib import Path

from PyQt5.QtWidgets import QComboBox, QMenu, QToolBar

from gui.actions import Menus, build_actions, build_menus, build_toolbar

ACTIONS = Path(__file__).resolve().parents[2] / "gui" / "actions.py"


def test_the_builders_set_no_attribute_on_the_window():
    tree = ast.parse(ACTIONS.read_text(encoding="utf-8"))
    set_on_window = [node.lineno for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AugAssign))
                     for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                     if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                     and target.value.id == "win"]
    assert set_on_window == []


def test_the_window_keeps_what_the_builders_return(window):
    titles = {action.text(): action.menu() for action in window.menuBar().actions()}
    file_menu = titles["&File"]
    assert window.recent_menu in [a.menu() for a in file_menu.actions()]
    assert window.edit_menu is titles["&Edit"] and window.tools_menu is titles["&Tools"]
    assert window.model_menu is titles["&Model"]
    assert window.tools_menu.actions(), "the annotation controller filled the Tools menu it was given"
    assert window.info_dock.toggleViewAction() in window.docks_menu.actions()
    toolbars = window.findChildren(QToolBar, "NavigationToolbar")
    assert len(toolbars) == 1 and window.mag_combo.parent() is toolbars[0]


def test_a_second_set_of_menus_is_a_fresh_object(window):
    menus = build_menus(window, build_actions(window))
    assert isinstance(menus, Menus) and all(isinstance(m, QMenu) for m in vars(menus).values())
    assert menus.recent is not window.recent_menu
    toolbar, combo = build_toolbar(window, window.actions)
    assert isinstance(toolbar, QToolBar) and isinstance(combo, QComboBox) and combo is not window.mag_combo
    assert [combo.itemText(i) for i in range(combo.count())][:3] == ["—", "1.25x", "2.5x"]
