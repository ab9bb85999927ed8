"""CuratorApp on a real workspace (Blue Marble chips, a trained run, its projection) in JupyterLab:
the two-column layout at 1000 px, one column in a narrow panel, the docs screenshot, and the
scatter's Similar button (nearest chips highlighted and shown in the gallery)."""

from __future__ import annotations

import pytest

from .conftest import ARTIFACTS, doc_screenshot
from .harness import cell_error, open_notebook, run_all, wait_file, write_notebook

pytestmark = pytest.mark.browser

APP_NOTEBOOK = [
    """
import json, os
from pathlib import Path
from curator_widgets.widgets import CuratorApp
app = CuratorApp("projects/ws", run="app-run", epochs=1)
app.train(epochs=1)  # a real (if short) SSL run: embeddings, index and the 2-D projection
app.view.select(list(range(6)))
app.k.value = 8  # the app's k box sets the view's similar_k
app.view.on_similar(lambda res: Path(os.environ["CURATOR_EVENTS"], "similar.json").write_text(json.dumps(
    {"ids": res.ids.tolist(), "highlight": app.view.highlight.tolist(), "gallery": app.gallery.ids.tolist()})))
# what Python sees of the selection, for the side-panel check below
app.view.on_select(lambda idx: Path(os.environ["CURATOR_EVENTS"], "app_selection.json").write_text(json.dumps(int(idx.size))))
app
""",
    """
Path(os.environ["CURATOR_EVENTS"], "app.json").write_text(json.dumps({"points": app.view.n, "status": app.status.value}))
""",
]


def test_curator_app_two_columns_then_one(lab, browser, lab_root, notebook_page):
    write_notebook(lab_root / "app.ipynb", APP_NOTEBOOK)
    page = open_notebook(browser, lab, "app.ipynb", width=1000, height=1100)
    try:
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebook gets the window's width
        run_all(page)
        try:
            info = wait_file(lab_root / "events" / "app.json", timeout=300)
        except TimeoutError:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app-not-ready.png"), full_page=True)
            raise AssertionError(f"the app notebook did not finish: {cell_error(page)}")
        assert info["points"] > 0 and "trained, embedded and projected" in info["status"]
        app = page.locator(".jp-OutputArea-output .widget-tab").first
        app.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('.curator-scatter') && "
                               "document.querySelector('.curator-scatter').dataset.points > 0")
        page.wait_for_function("() => Number(document.querySelector('.curator-gallery').dataset.loaded || 0) >= 4")

        def boxes():
            return page.evaluate("""() => {
                const s = document.querySelector('.curator-scatter').getBoundingClientRect();
                const g = document.querySelector('.curator-gallery').getBoundingClientRect();
                return {sx: s.x, sy: s.y, sw: s.width, gx: g.x, gy: g.y, gw: g.width};
            }""")

        wide = boxes()  # at 1000 px: the scatter and the gallery side by side
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-1000px.png"))
        assert wide["gx"] >= wide["sx"] + wide["sw"] - 1 and abs(wide["gy"] - wide["sy"]) < 60, wide
        assert page.locator(".curator-scatter-legend .curator-legend-title").inner_text() == "labels"
        doc_screenshot(page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-tab")).first, "curator_app")
        # "similar to selection": the view's toolbar button searches with the 6 selected chips
        scatter = page.locator(".curator-scatter")
        page.wait_for_function("() => document.querySelector('.curator-scatter').dataset.selected === '6'")
        scatter.get_by_role("button", name="Similar").click()
        found = wait_file(lab_root / "events" / "similar.json", timeout=60)
        assert len(found["ids"]) == 8 and not set(found["ids"]) & set(range(6))  # the app's k box: 8
        assert sorted(found["highlight"]) == sorted(found["ids"]) and found["gallery"] == found["ids"]
        page.wait_for_function("() => document.querySelector('.curator-scatter').dataset.similar === '8'")
        page.set_viewport_size({"width": 560, "height": 1100})  # a narrow side panel
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "app-560px.png"))
        narrow = boxes()  # one column: the gallery below the scatter, both as wide as the panel allows
        assert narrow["gy"] >= narrow["sy"] + 100 and abs(narrow["gx"] - narrow["sx"]) < 2, narrow
        assert cell_error(page) is None
        side_panel_view(page, lab_root)
    finally:
        page.close()


def side_panel_view(page, lab_root) -> None:
    """JupyterLab's "Create New View for Output" on the app's cell, docked beside the notebook (as a
    person drags it): a second view of the same widgets, one column wide, whose buttons still work."""
    page.set_viewport_size({"width": 1000, "height": 1100})
    page.evaluate("""async () => {
        const app = window.jupyterapp;
        const nb = app.shell.currentWidget;
        nb.content.activeCellIndex = 0;
        await app.commands.execute('notebook:create-output-view', { path: nb.context.path, index: 0 });
        let view;
        for (let i = 0; i < 100 && !view; i++) {
            const el = document.querySelector('.jp-LinkedOutputView');
            view = el && [...app.shell.widgets('main')].find((w) => w.node === el || w.node.contains(el));
            if (!view) await new Promise((r) => setTimeout(r, 100));
        }
        if (!view) throw new Error('no output view; main area: ' +
            [...app.shell.widgets('main')].map((w) => w.node.className).join(' | '));
        app.shell.add(view, 'main', { ref: nb.id, mode: 'split-right' });
    }""")
    panel = page.locator(".jp-LinkedOutputView")
    panel.locator(".curator-scatter").wait_for()
    page.wait_for_function("() => document.querySelector('.jp-LinkedOutputView .curator-scatter').dataset.points > 0")
    page.wait_for_timeout(800)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-side-panel.png"))
    side = page.evaluate("""() => {
        const q = (s) => document.querySelector('.jp-LinkedOutputView ' + s).getBoundingClientRect();
        const p = document.querySelector('.jp-LinkedOutputView').getBoundingClientRect();
        const s = q('.curator-scatter'), g = q('.curator-gallery');
        return {pw: p.width, sx: s.x, sy: s.y, sw: s.width, sh: s.height, gx: g.x, gy: g.y, gw: g.width};
    }""")
    assert side["pw"] < 600, side  # docked beside the notebook: half the window
    assert side["gy"] >= side["sy"] + side["sh"] - 1 and abs(side["gx"] - side["sx"]) < 2, side  # one column
    assert side["sw"] > 0.8 * side["pw"] - 40 and side["gw"] > 0.8 * side["pw"] - 40, side  # each as wide as the panel
    # the notebook's own scatter narrowed when the view docked beside it: it refits, so no point is cut off
    page.wait_for_function("""() => {
        const root = [...document.querySelectorAll('.curator-scatter')].find((e) => !e.closest('.jp-LinkedOutputView'));
        const s = root.curatorScatter, c = root.querySelector('canvas');
        const [w, h, v] = [c.clientWidth, c.clientHeight, s.get('cameraView')];
        return w > 0 && s.get('points').every(([x, y]) => {
            const px = (1 + (h / w) * (v[0] * x + v[4] * y + v[12])) * w / 2, py = (1 - (v[1] * x + v[5] * y + v[13])) * h / 2;
            return px >= -1 && px <= w + 1 && py >= -1 && py <= h + 1;
        });
    }""", timeout=15_000)
    # usable: the side view's Clear selection clears the selection in Python
    panel.locator(".curator-scatter").get_by_role("button", name="Clear selection").click()
    assert wait_file(lab_root / "events" / "app_selection.json", lambda v: v == 0, timeout=30) == 0
