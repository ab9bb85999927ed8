"""End to end in JupyterLab + headless Chromium: tiles render, a drawn box reaches Python, a lasso
over 100k points reaches Python, arrow keys write labels and undo removes the last, thumbnails load."""

from __future__ import annotations

import pytest

from .conftest import N_POINTS, doc_screenshot
from .harness import wait_file

pytestmark = pytest.mark.browser


def test_kernel_got_the_server_root(page, lab_root):
    ready = wait_file(lab_root / "events" / "ready.json")
    assert ready["thumb_url"] == "curator/thumbs/projects/ws"  # images over HTTP, not the comm
    assert ready["server_root"] == str(lab_root)


def test_map_renders_tiles_from_the_server_extension(page):
    region = page.locator(".curator-region")
    region.scroll_into_view_if_needed()
    assert region.get_attribute("data-tiles") == "server"
    page.wait_for_function("() => Number(document.querySelector('.curator-region').dataset.tilesLoaded || 0) >= 2")
    tiles = page.locator(".curator-region img.leaflet-tile-loaded")
    assert tiles.count() >= 2
    src = tiles.first.get_attribute("src")
    assert "/curator/tiles/bluemarble/BlueMarble_NextGeneration/default/500m/" in src and "wrap=1" in src
    width = tiles.first.evaluate("img => img.naturalWidth")
    assert width == 512
    assert not region.get_attribute("data-tile-errors")


def test_drawing_a_box_updates_the_python_trait(page, lab_root):
    region = page.locator(".curator-region")
    region.scroll_into_view_if_needed()
    region.get_by_role("button", name="Draw box").click()
    box = region.locator(".curator-map").bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.35
    x1, y1 = box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x0 + (x1 - x0) * k / 5, y0 + (y1 - y0) * k / 5)
    page.mouse.up()
    bbox = wait_file(lab_root / "events" / "bbox.json", lambda v: v is not None)
    west, south, east, north = bbox
    assert west < east and south < north and -180 <= west and east <= 180
    assert region.get_attribute("data-bbox") == ",".join(f"{v:g}" for v in bbox) or region.get_attribute("data-bbox")
    # the chip grid preview for that box arrived from Python
    page.wait_for_function("() => Number(document.querySelector('.curator-region').dataset.gridCount) > 0")
    doc_screenshot(region, "region_picker")


def test_scatter_renders_100k_points_and_lasso_updates_python(page, lab_root):
    scatter = page.locator(".curator-scatter")
    scatter.scroll_into_view_if_needed()
    assert scatter.get_attribute("data-webgl") != "0", "WebGL unavailable in this Chromium"
    page.wait_for_function(f"() => document.querySelector('.curator-scatter').dataset.points === '{N_POINTS}'")
    assert int(scatter.get_attribute("data-draws")) >= 1
    # the canvas really has colored pixels (not a blank WebGL context)
    colored = page.evaluate("""() => {
        const c = document.querySelector('.curator-scatter canvas');
        const tmp = document.createElement('canvas');
        tmp.width = c.width; tmp.height = c.height;
        const ctx = tmp.getContext('2d');
        ctx.drawImage(c, 0, 0);
        const d = ctx.getImageData(0, 0, tmp.width, tmp.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 16) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
        return n;
    }""")
    assert colored > 1000
    scatter.get_by_role("button", name="Lasso").click()
    stage = scatter.locator(".curator-scatter-stage").bounding_box()
    # an ellipse over the left part of the cloud: some clusters in, some out
    cx, cy = stage["x"] + stage["width"] * 0.42, stage["y"] + stage["height"] / 2
    rx, ry = stage["width"] * 0.1, stage["height"] * 0.3
    import math

    page.mouse.move(cx + rx, cy)
    page.mouse.down()
    # stop short of the start: regl-scatterplot treats a release next to the press as a click
    for k in range(1, 37):
        a = 2 * math.pi * k / 40
        page.mouse.move(cx + rx * math.cos(a), cy + ry * math.sin(a))
        page.wait_for_timeout(15)
    page.mouse.up()
    sel = wait_file(lab_root / "events" / "selection.json", lambda v: v["count"] > 0)
    assert 100 < sel["count"] < N_POINTS
    page.wait_for_function("() => document.querySelector('.curator-scatter').dataset.selectionAcked !== undefined")
    assert int(scatter.get_attribute("data-selection-acked")) == sel["count"]
    assert int(scatter.get_attribute("data-selected")) == sel["count"]
    doc_screenshot(scatter, "embedding_view")


def test_labeler_keys_write_labels_and_undo_removes_the_last(page, lab_root):
    import time

    from curator_widgets import Workspace
    from curator_widgets.labels import LabelStore

    lab = page.locator(".curator-labeler")
    lab.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.curator-labeler').dataset.shown === '0'")
    lab.locator(".curator-labeler-card").click()  # focus the widget, as a person would
    ws = Workspace.open(lab_root / "projects" / "ws")
    notebook_state = "() => [window.jupyterapp.shell.currentWidget.content.activeCellIndex, " \
                     "window.jupyterapp.shell.currentWidget.content.widgets.length]"
    before = page.evaluate(notebook_state)

    def shown(chip: int) -> None:
        page.wait_for_function(f"() => document.querySelector('.curator-labeler').dataset.shown === '{chip}'")

    def labels_become(expected: dict[int, str]) -> None:
        deadline = time.time() + 20
        while LabelStore(ws).current() != expected and time.time() < deadline:
            page.wait_for_timeout(100)
        assert LabelStore(ws).current() == expected  # in the store on disk, not just in the page

    page.keyboard.press("ArrowRight")
    shown(1)
    page.keyboard.press("ArrowLeft")
    shown(2)
    page.keyboard.press("ArrowDown")  # in command mode JupyterLab would move to the next cell
    shown(3)
    labels_become({0: "positive", 1: "negative", 2: "unsure"})
    page.keyboard.press("Backspace")
    shown(2)
    labels_become({0: "positive", 1: "negative"})
    page.keyboard.press("Control+z")
    shown(1)
    labels_become({0: "positive"})
    # the keys went to the labeler, not to JupyterLab: same active cell, no cell added or deleted
    assert page.evaluate(notebook_state) == before
    page.keyboard.press("ArrowRight")
    shown(2)
    labels_become({0: "positive", 1: "positive"})
    assert float(lab.get_attribute("data-last-advance-ms")) < 1000
    doc_screenshot(lab, "swipe_labeler")


def test_gallery_thumbnails_load_and_selection_syncs(page, lab_root):
    gallery = page.locator(".curator-gallery")
    gallery.scroll_into_view_if_needed()
    page.wait_for_function("() => Number(document.querySelector('.curator-gallery').dataset.loaded || 0) >= 4")
    img = gallery.locator(".curator-gallery-cell[data-loaded='1'] img").first
    assert "/curator/thumbs/projects/ws/" in img.get_attribute("src")
    assert img.evaluate("i => i.naturalWidth") == 64
    rendered = int(gallery.get_attribute("data-rendered"))
    total = int(page.evaluate("() => document.querySelectorAll('.curator-gallery-cell').length"))
    assert rendered == total
    cells = gallery.locator(".curator-gallery-cell")
    cells.nth(1).click()
    cells.nth(3).click(modifiers=["Shift"])
    got = wait_file(lab_root / "events" / "gallery.json", lambda v: len(v) == 3)
    ids = [int(cells.nth(i).get_attribute("data-chip-id")) for i in (1, 2, 3)]
    assert got == ids
    doc_screenshot(gallery, "sample_gallery")
