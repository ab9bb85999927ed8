"""Two people label one task at once, each in their own JupyterLab page and kernel, on one
PostgreSQL store (a hub's shared database): never the same chip, no label lost (issue 19)."""

from __future__ import annotations

import time

import pytest

from .harness import cell_error, open_notebook, run_all, write_notebook

pytestmark = pytest.mark.browser

CELL = """
from curator_widgets import LabelStore, Workspace
from curator_widgets.widgets import SwipeLabeler
ws = Workspace.open("projects/ws")
store = LabelStore(ws, task="team", annotator={who!r}, url={url!r})
labeler = SwipeLabeler(ws, store=store, ids={ids!r}, team=True, prefetch=2)
labeler
"""


def _labeler_ready(page, timeout: float = 120_000) -> None:
    page.wait_for_function("() => { const el = document.querySelector('.curator-labeler');"
                           " return el && el.dataset.shown && el.dataset.shown !== ''; }", timeout=timeout)


def test_two_pages_label_one_task_at_once_without_sharing_a_chip(lab, browser, lab_root, postgres_server):
    from curator_widgets import LabelStore, Workspace

    url = postgres_server.create_database()
    write_notebook(lab_root / "team_ann.ipynb", [CELL.format(who="ann", url=url, ids=list(range(30)))])
    write_notebook(lab_root / "team_ben.ipynb", [CELL.format(who="ben", url=url, ids=[])])
    pages = {}
    try:
        for who in ("ann", "ben"):
            pages[who] = open_notebook(browser, lab, f"team_{who}.ipynb", height=1200)
            run_all(pages[who])
        for who, page in pages.items():
            _labeler_ready(page)
            assert cell_error(page) is None, cell_error(page)
            page.locator(".curator-labeler-card").click()  # focus the card, as a person would
        presses = 8
        shown_js = "() => document.querySelector('.curator-labeler').dataset.shown"
        for _ in range(presses):  # both kernels write while the other labels
            before = {who: p.evaluate(shown_js) for who, p in pages.items()}
            pages["ann"].keyboard.press("ArrowRight")
            pages["ben"].keyboard.press("ArrowLeft")
            for who, p in pages.items():  # as a person would: the next key once the next chip is on screen
                p.wait_for_function(f"() => {{ const s = ({shown_js})(); return s && s !== {before[who]!r}; }}",
                                    timeout=30_000)
        ws = Workspace.open(lab_root / "projects" / "ws")
        store = LabelStore(ws, task="team", url=url)
        deadline = time.time() + 60
        while len(store.events()) < 2 * presses and time.time() < deadline:
            time.sleep(0.2)
        ev = store.events()
        assert len(ev) == 2 * presses and (ev["kind"] == "label").all()  # no label lost, none doubled
        assert ev["chip_id"].is_unique  # never the same chip to both people
        by = ev.groupby("annotator")["label"].agg(set).to_dict()
        assert by == {"ann": {"positive"}, "ben": {"negative"}}  # each key press kept its person's label
        shown = {who: int(p.locator(".curator-labeler").get_attribute("data-shown")) for who, p in pages.items()}
        assert shown["ann"] != shown["ben"] and not set(shown.values()) & set(ev["chip_id"])
        pages["ann"].wait_for_function("() => document.querySelector('.curator-labeler-team').textContent"
                                       ".includes('ben " + str(presses) + "')", timeout=30_000)
        assert "you (ann) 8" in pages["ann"].locator(".curator-labeler-team").inner_text()
    finally:
        for page in pages.values():
            page.close()
