"""Fixtures for the end-to-end tests: one JupyterLab, one Chromium, one notebook run for the module.

Screenshots of failing tests go to artifacts/browser/; the widget screenshots for the docs go to
artifacts/screenshots/ (ignored by git) and reach docs/images/ only when asked: `make docs-images`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .harness import (RECORDER, cell_error, chromium_available, launch_browser, open_notebook, run_all,
                      start_lab, wait_file, write_notebook)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
SCREENSHOTS = REPO / "artifacts" / "screenshots"

N_POINTS = 100_000

NOTEBOOK = [
    RECORDER,
    """
import numpy as np
from curator_widgets import Workspace
from curator_widgets.widgets import RegionPicker, EmbeddingView, SampleGallery, SwipeLabeler
ws = Workspace.open("projects/ws")
print("chips", len(ws))
""",
    """
picker = RegionPicker(ws, chip_size=64, level=1, height="360px")
picker.observe(lambda ch: record("bbox", ch["new"]), names="bbox")
picker
""",
    """
# a picker that opens on a given box: the first view must fit it (issue 16 bug 1)
boxed = RegionPicker(ws, bbox=(-20, 0, 20, 30), chip_size=64, level=1, height="300px")
boxed
""",
    """
gallery = SampleGallery(ws, np.arange(len(ws)), scores=np.linspace(1, 0, len(ws)), title="all chips", height="300px")
gallery.on_select(lambda ids: record("gallery", ids))
gallery
""",
    """
labeler = SwipeLabeler(ws, ids=range(10), title="Is there land?")
labeler
""",
    """
# a second labeler on an empty task: it must show work queued later by someone else (issue 16 bug 3)
follower = SwipeLabeler(ws, task="follow", question="Is there land in this chip?", reference=[1])
follower
""",
    """
# a transient progress bar, as the library draws them (issue 16 bug 8: it must survive a reload)
from curator_widgets.progress import progress_bar
print("progress-cell")
for _ in progress_bar(range(30), desc="decode chips", leave=False, mininterval=0):
    pass
""",
    # the heaviest widget last: while it draws (seconds on a software GPU) the page's main thread is
    # busy, and anywidget gives a model 2 s to load its module before it stops applying updates
    f"""
rng = np.random.default_rng(0)
centers = rng.normal(size=(8, 2)) * 6
cluster = rng.integers(0, 8, {N_POINTS})
xy = centers[cluster] + rng.normal(size=({N_POINTS}, 2))
view = EmbeddingView(xy, color=cluster, ids=np.arange({N_POINTS}) % len(ws), workspace=ws, height="400px")
view.on_select(lambda idx: record("selection", {{"count": int(idx.size), "first": idx[:5]}}))
view
""",
    """
record("ready", {"thumb_url": labeler.thumb_url, "server_root": os.environ.get("CURATOR_SERVER_ROOT")})
""",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory):
    if not chromium_available():
        pytest.fail("Chromium is not installed at /usr/bin/chromium: apt-get install -y chromium "
                    "(or set CURATOR_CHROMIUM to a Chromium binary)")
    from curator_widgets import BlueMarbleSource, Workspace

    root = tmp_path_factory.mktemp("lab") / "root"
    ws = Workspace.create(root / "projects" / "ws")
    ws.ingest(BlueMarbleSource(level=1), region=(-60, -30, 60, 50), size=64, progress=False)
    write_notebook(root / "widgets.ipynb", NOTEBOOK)
    return root


@pytest.fixture(scope="session")
def lab(lab_root):
    os.environ["CURATOR_EVENTS"] = str(lab_root / "events")  # inherited by the server, then the kernel
    proc = start_lab(lab_root)
    try:
        yield proc
    finally:
        proc.stop()
        os.environ.pop("CURATOR_EVENTS", None)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_browser(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def notebook_page(lab, browser, lab_root):
    """The widgets notebook, opened and run once; tests then interact with its outputs."""
    page = open_notebook(browser, lab, "widgets.ipynb")
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.console_log = console  # type: ignore[attr-defined]
    run_all(page)
    try:
        wait_file(lab_root / "events" / "ready.json", timeout=180)
    except TimeoutError:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "notebook-not-ready.png"), full_page=True)
        raise AssertionError(f"the notebook did not finish: {cell_error(page)}\nconsole: {console[-20:]}\n{lab.log()}")
    err = cell_error(page)
    assert err is None, err
    yield page
    page.close()


@pytest.fixture
def page(notebook_page, request):
    """The notebook page; a failing test leaves a screenshot and the console log in artifacts/."""
    yield notebook_page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_")
        notebook_page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(notebook_page.console_log))


def doc_screenshot(locator, name: str) -> None:
    """Save a widget screenshot for the docs into the ignored artefacts folder (a test run never
    rewrites tracked files; `make docs-images` copies them into docs/images)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tmp = SCREENSHOTS / f".{name}.tmp.png"
    locator.screenshot(path=str(tmp))
    shutil.move(tmp, SCREENSHOTS / f"{name}.png")
