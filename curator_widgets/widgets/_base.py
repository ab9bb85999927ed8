"""What every curator widget shares: the bundled front end, a plain-text fallback, image fetching.

The JavaScript comes from ``curator_widgets/static/<name>.js`` (esbuild output, built at package
build time). Thumbnails and map tiles are fetched by the browser from the Jupyter server
extension when it is enabled; elsewhere (VS Code, Colab, a remote kernel) the widget asks the
kernel for the bytes over the comm instead, so pictures show everywhere.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Callable

import anywidget
import traitlets
from anywidget.experimental import command

from ..errors import CuratorError

STATIC = Path(__file__).resolve().parents[1] / "static"

FRONTENDS = ("JupyterLab >= 4, Jupyter Notebook >= 7, VS Code (Jupyter extension) or Colab "
             "with `pip install curator-widgets` in the kernel's environment")


def bundle_missing_esm(name: str) -> str:
    """An ES module that explains, inside the cell, that the JS bundle was never built."""
    msg = (f"curator_widgets: the front-end bundle static/{name}.js is missing from this install. "
           "Build it with `npm --prefix js ci && npm --prefix js run build` in a source checkout, "
           "or install a released wheel (pip install curator-widgets).")
    return ("export default { render({ el }) { const d = document.createElement('div');"
            " d.style.cssText = 'padding:8px;border:1px solid #c00;color:#900;font:13px sans-serif';"
            f" d.textContent = {json.dumps(msg)}; el.appendChild(d); }} }};\n")


def static_asset(name: str, ext: str) -> Path | str:
    """Path of a built asset, or an inline fallback when the bundle was not built."""
    path = STATIC / f"{name}.{ext}"
    if path.exists():
        return path
    return bundle_missing_esm(name) if ext == "js" else ""


def server_root() -> Path | None:
    """Root folder of the Jupyter server that started this kernel, if its curator extension is on.

    The server extension exports CURATOR_SERVER_ROOT into the server's environment, which every
    kernel it launches inherits; without it the browser cannot use the HTTP endpoints.
    """
    root = os.environ.get("CURATOR_SERVER_ROOT")
    return Path(root).resolve() if root else None


def workspace_key(root: Path | str | None) -> str:
    """The `{workspace}` URL segment for a workspace folder, or '' when the server cannot serve it."""
    if root is None:
        return ""
    base = server_root()
    if base is None:
        return ""
    ws = Path(root).resolve()
    if not ws.is_relative_to(base):
        return ""
    rel = ws.relative_to(base).as_posix()
    # the root itself cannot be a URL segment ('.' is normalized away): use the comm instead
    return "" if rel in ("", ".") else rel


def thumb_traits(workspace: Any) -> dict[str, str]:
    """`workspace_path` and `thumb_url` trait values for a widget showing this workspace's chips."""
    from urllib.parse import quote

    if workspace is None:
        return {"workspace_path": "", "thumb_url": ""}
    from ..workspace import Workspace

    root = (workspace.root if isinstance(workspace, Workspace) else Path(workspace)).resolve()
    key = workspace_key(root)
    return {"workspace_path": str(root), "thumb_url": f"curator/thumbs/{quote(key, safe='/')}" if key else ""}


def with_fallback(bundle: Any, summary: str) -> Any:
    """A widget's display data plus text/plain and text/html for front ends without a widget
    manager (a terminal, nbconvert, GitHub): what the widget is and where it can be used.
    `bundle` is anywidget's (data, metadata) or ipywidgets' data dict; the same shape comes back."""
    if bundle is None:
        return None
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    text = (f"{summary}\n"
            f"This is an interactive widget; this front end cannot display it. Open the notebook in "
            f"{FRONTENDS}. Every action is also a Python call (see docs/widgets.md).")
    data["text/plain"] = text
    data["text/html"] = ("<div style='padding:6px;border:1px dashed #888;font:13px sans-serif'>"
                         + html.escape(text).replace("\n", "<br>") + "</div>")
    return bundle


class TraitValueError(CuratorError, traitlets.TraitError):
    """A widget trait refused a value: one error type across widgets, with the problem and the fix,
    that traitlets also understands (a failed assignment keeps the old value)."""


class Choice(traitlets.Enum):
    """A one-of-a-set trait whose bad values raise TraitValueError naming every choice."""

    def error(self, obj: Any, value: Any, error: Exception | None = None, info: str | None = None) -> Any:
        choices = ", ".join(map(str, self.values or ()))
        raise TraitValueError(f"{self.name} must be one of {choices}, got {value!r}", f"set {self.name} to one of {choices}")


class CuratorWidget(anywidget.AnyWidget):
    """Base class: fallback text for front ends that cannot render widgets; comm image fetching."""

    _bundle: str = ""
    #: largest single binary buffer sent to the browser (see serializers.CHUNK_BYTES)
    chunk_bytes = traitlets.Int(4 * 1024 * 1024).tag(sync=True)
    #: error text shown in the widget (set by Python when a command fails)
    error = traitlets.Unicode("").tag(sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        bundle = cls.__dict__.get("_bundle")
        if bundle:
            cls._esm = static_asset(bundle, "js")  # type: ignore[attr-defined]
            css = static_asset(bundle, "css")
            if css:
                cls._css = css  # type: ignore[attr-defined]
        super().__init_subclass__(**kwargs)

    # ------------------------------------------------------------------ display fallback
    def _summary(self) -> str:
        return type(self).__name__

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_fallback(super()._repr_mimebundle_(**kwargs), self._summary())

    # ------------------------------------------------------------------ errors
    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Run a front-end-triggered action; a CuratorError is shown in the widget, not lost in a log."""
        try:
            result = fn()
        except CuratorError as e:
            self.error = e.problem + (f" (fix: {e.fix})" if e.fix else "")
            return None
        self.error = ""
        return result


class ThumbnailMixin:
    """Serves chip thumbnails over the comm when the server extension cannot (`invoke("thumb")`)."""

    workspace_path: Any
    thumb_key: Any

    def _thumb_bytes(self, chip_id: int, size: int) -> bytes:
        from ..server.thumbs import thumbnail_bytes

        if not self.workspace_path:
            raise CuratorError("this widget has no workspace to read thumbnails from",
                               "pass workspace=Workspace.open(path) when creating it")
        # the manifest's path column is cached per manifest version: no parquet read per image
        return thumbnail_bytes(Path(self.workspace_path), int(chip_id), int(size))

    @command
    def thumb(self, msg: dict, buffers: list) -> tuple[dict, list]:
        """Return one JPEG thumbnail (the browser turns it into a blob URL)."""
        try:
            data = self._thumb_bytes(int(msg["id"]), int(msg.get("size", 128)))
        except CuratorError as e:
            return {"ok": False, "error": e.problem}, []
        return {"ok": True, "mime": "image/jpeg"}, [data]
