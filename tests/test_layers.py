"""The floors hold: core/ imports neither Qt nor gui/ nor cli/, and gui/ never imports cli/.

Every core module is imported in one fresh interpreter whose import system refuses PyQt5 and pyqtgraph,
so a Qt import hidden behind another module is caught too, and the failure names the core module whose
own line asked for Qt. The package rules are also read from the source (function-level imports
included), so an import that only runs on first use cannot slip past.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("PyQt5", "pyqtgraph")

IMPORT_ALL = r"""
import importlib, json, pkgutil, sys, traceback

BLOCKED = {blocked!r}


class Refuse:
    # A meta-path finder that refuses the Qt packages and records which core module asked for them.
    asked = {{}}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in BLOCKED:
            return None
        frame = sys._getframe(1)
        while frame is not None and not str(frame.f_globals.get("__name__", "")).startswith("core"):
            frame = frame.f_back
        who = frame.f_globals["__name__"] if frame is not None else "?"
        Refuse.asked.setdefault(who, name)
        raise ImportError(f"{{name}} is blocked: core must not import Qt")


sys.meta_path.insert(0, Refuse())
import core

failed = {{}}
names = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "core."))
for name in names:
    try:
        importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - every failure is reported by the test
        failed[name] = f"{{type(err).__name__}}: {{err}}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED + ("gui", "cli"))
print(json.dumps({{"names": names, "failed": failed, "asked": Refuse.asked, "loaded": loaded}}))
"""


@pytest.fixture(scope="module")
def core_imports() -> dict:
    code = IMPORT_ALL.format(blocked=BLOCKED)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_every_core_module_imports_with_qt_blocked(core_imports):
    assert len(core_imports["names"]) > 40  # the walk found the packages, not just core/__init__
    asked = core_imports["asked"]
    assert not asked, "core modules that import Qt: " + ", ".join(f"{m} imports {q}" for m, q in asked.items())
    assert not core_imports["failed"], core_imports["failed"]
    assert core_imports["loaded"] == []


def _imported_names(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, at any depth, relative ones resolved."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.append((node.lineno, base))
    return names


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = ".".join(rel.with_suffix("").parts[:-1]) if path.name != "__init__.py" else ".".join(
            rel.parent.parts)
        for line, name in _imported_names(path, package):
            if name.split(".")[0] in forbidden:
                found.append(f"{rel}:{line} imports {name}")
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("core", ("gui", "cli", "main") + BLOCKED),
    ("gui", ("cli", "main")),
])
def test_a_floor_never_imports_the_one_above(folder, forbidden):
    assert _violations(folder, forbidden) == []


def test_the_source_check_sees_function_level_and_relative_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from PyQt5 import QtCore\n    from .. import gui\n", encoding="utf-8")
    assert _imported_names(module, "core.view") == [(2, "PyQt5"), (3, "core")]
    module.write_text("from ..gui import x\nimport cli.models\n", encoding="utf-8")
    assert _imported_names(module, "core.view") == [(1, "core.gui"), (2, "cli.models")]


def test_the_import_check_names_the_module_that_asks_for_qt(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "core" / "a.py").write_text("import core.b\n", encoding="utf-8")
    (tmp_path / "core" / "b.py").write_text("import pyqtgraph\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL.format(blocked=BLOCKED)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["asked"] == {"core.b": "pyqtgraph"}
    assert set(result["failed"]) == {"core.a", "core.b"}


def _private_imports(folder: str) -> list[str]:
    """Imports of a private name, or of a private module from outside its own package."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT)
        own_package = ".".join(rel.with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            parts = node.module.split(".")
            hidden = [p for p in parts if p.startswith("_") and not p.startswith("__")]
            if hidden and ".".join(parts[:parts.index(hidden[0])]) != own_package:
                private.append(node.module)
            if private:
                found.append(f"{rel}:{node.lineno} imports {', '.join(private)}")
    return found


@pytest.mark.parametrize("folder", ["core", "gui", "cli"])
def test_no_private_name_is_imported_across_modules(folder):
    assert _private_imports(folder) == []
