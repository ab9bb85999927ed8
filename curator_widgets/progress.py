"""Progress bars that survive a page reload: plain text in a terminal, one HTML line in a notebook.

tqdm.auto draws an ipywidget in Jupyter. Its model lives only in the kernel, so after a page
reload, a kernel restart, or once a `leave=False` bar closes, JupyterLab shows "Error displaying
widget: model not found" in its place. An HTML output updated in place through a display handle
is saved with the notebook and reads the same everywhere (JupyterLab, Notebook 7, VS Code, nbviewer).
"""

from __future__ import annotations

import html
import io
from typing import Any, Callable

from tqdm.std import tqdm as text_tqdm


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where an HTML display is possible)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every notebook install
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def bar_html(n: float, total: float | None, text: str) -> str:
    """One line: a native <progress> element and tqdm's own text (counts, rate, ETA)."""
    bar = f"<progress value='{n:g}' max='{(total or 1):g}' style='width:12em;vertical-align:middle'></progress> " if total else ""
    return (f"<div class='curator-progress-line' style='font-family:var(--jp-code-font-family,monospace);"
            f"font-size:var(--jp-code-font-size,12px)'>{bar}{html.escape(text)}</div>")


class HTMLProgress(text_tqdm):
    """tqdm whose display is an HTML output updated in place (`sink` gets each new line's HTML)."""

    def __init__(self, *args: Any, sink: Callable[[str], None] | None = None, **kwargs: Any):
        self._sink = sink or _display_handle()
        kwargs.setdefault("mininterval", 0.5)  # at most two output updates a second
        kwargs["file"] = io.StringIO()  # the text form goes nowhere; display() draws the HTML
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:  # noqa: D102 - tqdm's hook
        if getattr(self, "disable", False):
            return
        text = self.format_meter(**self.format_dict) if msg is None else msg
        self._sink(bar_html(self.n, self.total, text) if text else "")

    def close(self) -> None:  # noqa: D102 - tqdm's hook
        if getattr(self, "disable", False):
            return super().close()
        leave = self.leave
        super().close()
        if not leave:
            self._sink("")  # a transient bar leaves no line behind


def _display_handle() -> Callable[[str], None]:
    """A sink that shows the first line and then updates that same output."""
    from IPython.display import HTML, display

    handle: list[Any] = []

    def sink(markup: str) -> None:
        if handle:
            handle[0].update(HTML(markup))
        else:
            handle.append(display(HTML(markup), display_id=True))

    return sink


def progress_bar(*args: Any, **kwargs: Any) -> text_tqdm:
    """tqdm's arguments; an HTML bar in a notebook, tqdm's text bar elsewhere."""
    if in_notebook() and not kwargs.get("disable"):
        return HTMLProgress(*args, **kwargs)
    return text_tqdm(*args, **kwargs)
