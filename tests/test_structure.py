"""The package's shape: no import cycles (tools/import_graph.py, which CI runs through this test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_package_has_no_import_cycles():
    ig = _tool()
    g = ig.graph()
    assert "curator_widgets.sampling" in g and "curator_widgets.class_stats" in g["curator_widgets.sampling"]
    assert ig.cycles(g) == []


def test_the_check_finds_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    ig = _tool()
    pkg = tmp_path / "curator_widgets"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub.b import g\n\ndef f():\n    return g()\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f  # lazy, still a cycle\n    return f\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    g = ig.graph(tmp_path)
    assert g["curator_widgets.c"] == set()
    assert ig.cycles(g) == [["curator_widgets.a", "curator_widgets.sub.b"]]
