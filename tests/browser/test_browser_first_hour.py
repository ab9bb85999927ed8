"""What a first hour in JupyterLab tripped on (issue 16), each checked in a real JupyterLab in
headless Chromium: the map fits its box, keys act only on the focused widget, the labeler
follows the store and never grabs focus, no text selection while lassoing, `?` help, and the
dark theme. These run before test_browser_widgets.py (file order), on the same notebook."""

from __future__ import annotations

import pytest

from .conftest import doc_screenshot
from .harness import wait_file

pytestmark = pytest.mark.browser


def test_labeler_does_not_grab_focus_after_run_all(page, lab_root):
    """Bug 4: after Run All an arrow key must not label a chip nobody looked at."""
    from curator_widgets import Workspace
    from curator_widgets.labels import LabelStore

    focused = page.evaluate("() => !!document.activeElement.closest('.curator-labeler')")
    assert not focused, "the labeler took the keyboard focus by itself"
    store = LabelStore(Workspace.open(lab_root / "projects" / "ws"))
    before = store.current()  # other tests of the session may have labelled already
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})  # command mode, on the notebook
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(500)
    assert store.current() == before


def test_map_opens_fitted_to_its_box(page):
    """Bug 1: fitBounds ran before the map had a size and opened at maximum zoom on a blurry patch."""
    region = page.locator(".curator-region").nth(1)
    region.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('.curator-region')[1].dataset.fitted !== undefined")
    box = page.evaluate("""() => {
        const r = document.querySelectorAll('.curator-region')[1];
        const map = r.querySelector('.curator-map').getBoundingClientRect();
        const rect = r.querySelector('path.curator-box').getBoundingClientRect();
        return {mw: map.width, mh: map.height, rw: rect.width, rh: rect.height, zoom: Number(r.dataset.zoom),
                cx: rect.x + rect.width / 2 - (map.x + map.width / 2), cy: rect.y + rect.height / 2 - (map.y + map.height / 2)};
    }""")
    # the whole box is on screen, centred, and fills a good part of the map, as fitBounds with padding does
    assert 0 < box["rw"] <= box["mw"] and 0 < box["rh"] <= box["mh"], box
    assert abs(box["cx"]) < 0.1 * box["mw"] and abs(box["cy"]) < 0.1 * box["mh"], box
    assert max(box["rw"] / box["mw"], box["rh"] / box["mh"]) > 0.3, box
    assert box["zoom"] <= 4, box


def test_escape_clears_the_selection_only_when_the_plot_has_focus(page, lab_root):
    """Bug 2: Esc anywhere in JupyterLab (leaving edit mode in another cell) cleared the lasso selection."""
    scatter = page.locator(".curator-scatter")
    scatter.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.curator-scatter').dataset.points !== undefined")
    stage = scatter.locator(".curator-scatter-stage").bounding_box()
    cx, cy = stage["x"] + stage["width"] * 0.5, stage["y"] + stage["height"] * 0.5
    (lab_root / "events" / "selection.json").unlink(missing_ok=True)  # not an earlier test's selection
    page.keyboard.down("Shift")
    page.mouse.move(cx - 120, cy - 120)
    page.mouse.down()
    for x, y in ((cx + 120, cy - 120), (cx + 120, cy + 120), (cx - 120, cy + 120), (cx - 118, cy - 100)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.keyboard.up("Shift")
    sel = wait_file(lab_root / "events" / "selection.json", lambda v: v["count"] > 0)
    count = sel["count"]
    # edit a code cell, then leave edit mode with Esc: the selection stays, in the page and in Python
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(800)
    assert int(scatter.get_attribute("data-selected")) == count
    assert wait_file(lab_root / "events" / "selection.json")["count"] == count
    # with the plot focused, Esc clears it
    scatter.focus()
    page.keyboard.press("Escape")
    assert wait_file(lab_root / "events" / "selection.json", lambda v: v["count"] == 0)["count"] == 0


def test_shift_drag_lasso_selects_no_page_text(page, lab_root):
    """Bug 9: a Shift+drag that leaves the plot selected the notebook's text now and then."""
    scatter = page.locator(".curator-scatter")
    scatter.scroll_into_view_if_needed()
    stage = scatter.locator(".curator-scatter-stage").bounding_box()
    page.evaluate("() => window.getSelection().removeAllRanges()")
    x0, y0 = stage["x"] + stage["width"] * 0.5, stage["y"] + stage["height"] * 0.6
    for _ in range(3):  # it used to happen 1 time in 3
        page.keyboard.down("Shift")
        page.mouse.move(x0, y0)
        page.mouse.down()
        # out of the plot, across the toolbar and the cell above
        page.mouse.move(x0 - 200, stage["y"] - 120, steps=12)
        page.mouse.move(x0 + 100, stage["y"] - 60, steps=6)
        page.mouse.up()
        page.keyboard.up("Shift")
        assert page.evaluate("() => window.getSelection().toString()") == ""
    scatter.get_by_role("button", name="Clear selection").click()  # leave no selection to later tests
    wait_file(lab_root / "events" / "selection.json", lambda v: v["count"] == 0)


def test_labeler_follows_work_queued_elsewhere(page, lab_root):
    """Bug 3: after the loop queued a batch the labeler said "Queue empty" until labeler.refresh()."""
    from curator_widgets import Workspace
    from curator_widgets.labels import LabelStore

    follower = page.locator(".curator-labeler").nth(1)
    follower.scroll_into_view_if_needed()
    assert "Queue empty" in follower.inner_text()
    # bug 6: the card says what "positive" means and shows the reference chip to compare with
    assert "Is there land in this chip?" in follower.locator(".curator-labeler-question").inner_text()
    page.wait_for_function("() => { const i = document.querySelectorAll('.curator-labeler')[1]"
                           ".querySelector('.curator-labeler-ref img'); return i && i.naturalWidth > 0; }")
    # another process (the CLI, an active loop in another kernel) queues work: no call from the user
    LabelStore(Workspace.open(lab_root / "projects" / "ws"), task="follow").queue_add([5, 6, 7], source="loop:round1")
    page.wait_for_function("() => document.querySelectorAll('.curator-labeler')[1].dataset.shown === '5'", timeout=15_000)
    assert "3 to go" in follower.locator(".curator-labeler-status").inner_text()


def test_question_mark_shows_the_keys_in_every_widget(page):
    for selector, focus in ((".curator-scatter", ""), (".curator-labeler", ""), (".curator-gallery", ".curator-gallery-viewport"),
                            (".curator-region", ".leaflet-container")):
        widget = page.locator(selector).first
        widget.scroll_into_view_if_needed()
        (widget.locator(focus).first if focus else widget).focus()
        page.keyboard.press("?")
        help_box = widget.locator(".curator-keyhelp")
        assert help_box.is_visible(), selector
        assert help_box.locator(".curator-keyhelp-row").count() >= 4
        page.keyboard.press("?")
        assert not help_box.is_visible(), selector


def test_dark_theme_uses_jupyterlab_colours(page):
    """Every widget takes its colours from the --jp-* variables: a dark JupyterLab gets dark widgets."""
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    try:
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
        page.wait_for_timeout(500)
        lum = page.evaluate("""(sel) => sel.map((s) => {
            const c = getComputedStyle(document.querySelector(s)).backgroundColor.match(/\\d+(\\.\\d+)?/g).map(Number);
            return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
        })""", [".curator-scatter-stage", ".curator-gallery-viewport", ".curator-scatter-legend"])
        assert all(v < 0.35 for v in lum), lum
        text = page.evaluate("() => getComputedStyle(document.querySelector('.curator-labeler')).color")
        r, g, b = (int(v) for v in text[text.index("(") + 1:text.index(")")].split(",")[:3])
        assert (r + g + b) / 3 > 150, text  # light text on the dark background
        # the WebGL plot clears to the theme's background too (a corner of the canvas, where no point is)
        page.wait_for_function("""() => {
            const c = document.querySelector('.curator-scatter canvas');
            const t = document.createElement('canvas');
            t.width = c.width; t.height = c.height;
            const ctx = t.getContext('2d');
            ctx.drawImage(c, 0, 0);
            const d = ctx.getImageData(2, 2, 1, 1).data;
            return d[0] + d[1] + d[2] < 3 * 90;
        }""", timeout=30_000)
        scatter = page.locator(".curator-scatter")
        scatter.scroll_into_view_if_needed()
        doc_screenshot(scatter, "embedding_view_dark")
        labeler = page.locator(".curator-labeler").first
        labeler.scroll_into_view_if_needed()
        doc_screenshot(labeler, "swipe_labeler_dark")
    finally:
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000)


def test_progress_output_survives_a_reload(page, browser, lab):
    """Bug 8: after a reload, progress bars printed "Error displaying widget: model not found"."""
    from .harness import open_notebook

    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    again = open_notebook(browser, lab, "widgets.ipynb")  # the saved notebook in a fresh page
    try:
        cell = again.locator(".jp-Cell").filter(has=again.locator(".jp-OutputArea-output", has_text="progress-cell"))
        cell.first.scroll_into_view_if_needed()
        again.wait_for_timeout(1500)  # let the output renderers run
        text = cell.first.locator(".jp-OutputArea").inner_text()
        assert "progress-cell" in text and "Error displaying widget" not in text, text
        # the bar was HTML, saved with the notebook (a widget view would need the kernel's model)
        assert cell.first.locator(".jp-OutputArea-output[data-mime-type='text/html']").count() >= 1
    finally:
        again.close()
