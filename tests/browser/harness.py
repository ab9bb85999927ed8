"""Drive a real JupyterLab in headless Debian Chromium: start lab, open a notebook, run cells.

Shared by tests/browser/ and benchmarks/widgets.py. Chromium is the Debian package at
/usr/bin/chromium (CURATOR_CHROMIUM overrides); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _jupyter import JupyterProcess  # noqa: E402

CHROMIUM = os.environ.get("CURATOR_CHROMIUM", "/usr/bin/chromium")
# Without these Chromium hangs on a closed network (update checks, QUIC probes...). SwiftShader
# gives WebGL without a GPU; current Chromium needs the "unsafe" flag to allow it explicitly.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-dev-shm-usage",
                 "--mute-audio", "--hide-scrollbars"]

# JupyterLab user settings for a quiet, deterministic page: every cell stays in the DOM (no
# windowing, so off-screen widgets keep their size), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"disclaimed": False, "enabled": False},
}


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells (nbformat 4) with the venv's python3 kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def start_lab(root: Path, log: Path | None = None) -> JupyterProcess:
    """`jupyter lab` on a free loopback port, serving `root`, with the curator extension on."""
    settings = root.parent / f"{root.name}-lab-settings"
    for rel, value in LAB_SETTINGS.items():
        p = settings / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))
    workspaces = root.parent / f"{root.name}-lab-workspaces"
    workspaces.mkdir(exist_ok=True)
    proc = JupyterProcess(root, app="lab", log=log, extra=[
        "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workspaces}", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--MappingKernelManager.cull_idle_timeout=0", "--ServerApp.iopub_data_rate_limit=1e12",
    ])
    return proc.wait(180)


def launch_browser(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_notebook(browser: Any, lab: JupyterProcess, name: str, width: int = 1280, height: int = 1600) -> Any:
    """Open `name` in JupyterLab and wait until its kernel is idle."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(90_000)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
    wait_kernel_idle(page)
    return page


def wait_kernel_idle(page: Any, timeout: float = 120_000) -> None:
    page.wait_for_function("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        const s = w && w.sessionContext;
        return s && s.session && s.session.kernel && s.kernelDisplayStatus === 'idle';
    }""", timeout=timeout)


def run_cell(page: Any, index: int) -> float:
    """Run cell `index` of the open notebook; returns Date.now() (ms) right before it was sent."""
    return page.evaluate("""async (i) => {
        const app = window.jupyterapp;
        const panel = app.shell.currentWidget;
        panel.content.activeCellIndex = i;
        const t0 = Date.now();
        await app.commands.execute('notebook:run-cell');
        return t0;
    }""", index)


def run_all(page: Any) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def cell_error(page: Any) -> str | None:
    """Text of the first error output in the notebook, if any (a traceback shown in a cell)."""
    loc = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    if loc.count():
        text = loc.first.inner_text()
        if "Traceback" in text or "Error" in text:
            return text
    return None


def wait_file(path: Path, predicate: Callable[[Any], bool] = lambda v: True, timeout: float = 60.0) -> Any:
    """Poll a JSON file the kernel writes until `predicate(value)` holds; returns the value."""
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        try:
            last = json.loads(path.read_text())
            if predicate(last):
                return last
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{path} never satisfied the condition (last value: {last!r})")


# the first notebook cell: a helper that mirrors traits into JSON files the tests can read
RECORDER = '''
import json, os, time
from pathlib import Path
EVENTS = Path(os.environ.get("CURATOR_EVENTS", "events"))
EVENTS.mkdir(exist_ok=True)

def record(name, value):
    """Write what Python sees to events/<name>.json (atomically), for the browser tests."""
    tmp = EVENTS / f".{name}.tmp"
    tmp.write_text(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    os.replace(tmp, EVENTS / f"{name}.json")
'''
