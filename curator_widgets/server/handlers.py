"""Tornado handlers for `/curator/tiles/...` and `/curator/thumbs/...`, behind Jupyter's auth.

Both subclass jupyter_server's APIHandler, so a request without a valid token or login cookie
gets 403 (not a login-page redirect, which an <img> could not use) and errors are JSON.
Work that touches disk or decodes images runs in a thread pool, off the server's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import CuratorError
from .safepath import resolve_workspace
from .thumbs import snap_size, thumbnail
from .tiles import TILES, parse_request

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="curator-http")
AUTH_RESOURCE = "contents"  # tiles and thumbnails read files: same permission as /files/
CHIP_ID = re.compile(r"^[0-9]{1,18}$")  # ASCII digits only ('²'.isdigit() is True), below 2**63


class ServerFault(CuratorError):
    """An unexpected failure while rendering: logged in full, answered 500 with no details."""

    status = 500


class CuratorHandler(APIHandler):
    """Shared error handling: CuratorError -> 4xx JSON with the problem and the fix, never a server path."""

    auth_resource = AUTH_RESOURCE

    def fail(self, status: int, err: CuratorError | str) -> None:
        self.set_status(getattr(err, "status", status))
        self.set_header("Cache-Control", "no-store")
        body: dict[str, Any] = {"error": self.scrub(getattr(err, "problem", str(err)))}
        if isinstance(err, CuratorError) and err.fix:
            body["fix"] = self.scrub(err.fix)
        self.finish(json.dumps(body))

    def scrub(self, text: str) -> str:
        """Last line of defence: the server's root folder never appears in a reply."""
        root = self.settings.get("curator_root_dir", "")
        return text.replace(root, "<root>") if len(root) > 1 else text

    async def run(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` in the thread pool; an unexpected error is logged and answered 500 without details."""
        try:
            return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)
        except CuratorError:
            raise
        except Exception:
            self.log.exception("curator_widgets: %s failed", self.request.path)
            raise ServerFault("the server could not render this image", "see the Jupyter server log") from None

    def send_cached(self, data: bytes, etag: str, mime: str, max_age: int, private: bool) -> None:
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", f"{'private' if private else 'public'}, max-age={max_age}")
        if etag in (self.request.headers.get("If-None-Match") or ""):
            self.set_status(304)
            self.finish()
            return
        self.finish(data, set_content_type=mime)

    def compute_etag(self) -> str | None:
        return None  # we set our own validators; tornado's body hash would cost a pass per reply


class TilesHandler(CuratorHandler):
    """`GET /curator/tiles/{source}/{layer}/{date}/{matrix}/{z}/{row}/{col}.jpg` (or `.png`; `?wrap=1` past 180 degrees)."""

    @web.authenticated
    @authorized
    async def get(self, source: str, layer: str, date: str, matrix: str, z: str, row: str, col: str,
                  ext: str | None = None) -> None:
        wrap = self.get_query_argument("wrap", "0") in ("1", "true", "yes")
        try:
            req = parse_request(source, layer, date, matrix, z, row, col, wrap=wrap,
                                fmt="png" if ext == "png" else "jpg")
        except CuratorError as e:
            return self.fail(404 if "outside" in e.problem else 400, e)
        try:
            data = await self.run(TILES.get, req)
        except CuratorError as e:
            return self.fail(404, e)
        etag = '"' + hashlib.sha1(f"{req!r}|{len(data)}".encode()).hexdigest()[:20] + '"'
        mime = "image/png" if req.fmt == "png" else "image/jpeg"
        # Blue Marble never changes; a dated GIBS tile is immutable once published
        self.send_cached(data, etag, mime, max_age=7 * 86400 if req.date != "default" else 86400, private=False)


class ThumbsHandler(CuratorHandler):
    """`GET /curator/thumbs/{workspace}/{chip_id}?size=128`, `workspace` relative to the server's root dir."""

    @web.authenticated
    @authorized
    async def get(self, workspace: str, chip: str) -> None:
        chip = chip.removesuffix(".jpg")
        root, allow_hidden = self.settings["curator_root_dir"], self.settings.get("curator_allow_hidden", False)
        try:
            ws = resolve_workspace(root, workspace, allow_hidden=allow_hidden)
        except CuratorError as e:
            return self.fail(400, e)
        if not CHIP_ID.fullmatch(chip):
            return self.fail(400, CuratorError(f"chip id {chip[:40]!r} is not a non-negative integer",
                                               "request /curator/thumbs/{workspace}/{id} with a manifest id"))
        try:
            size = snap_size(self.get_query_argument("size", "128"))
            data, etag = await self.run(thumbnail, ws, int(chip), size, Path(root), allow_hidden)
        except CuratorError as e:
            return self.fail(400, e)
        self.send_cached(data, etag, "image/jpeg", max_age=3600, private=True)


def url_patterns(base_url: str) -> list[tuple[str, type, dict]]:
    """The routes, rooted at the server's base URL."""
    from jupyter_server.utils import url_path_join

    seg = r"([^/]+)"
    tiles = url_path_join(base_url, "/curator/tiles/" + "/".join([seg] * 6) + r"/([^/.]+)(?:\.(jpg|jpeg|png))?$")
    thumbs = url_path_join(base_url, r"/curator/thumbs/(.+)/([^/]+)$")
    return [(tiles, TilesHandler, {}), (thumbs, ThumbsHandler, {})]


def setup_handlers(web_app: Any, root_dir: str | Path, allow_hidden: bool = False) -> None:
    """Register the routes on a running Jupyter server's tornado application."""
    web_app.settings["curator_root_dir"] = str(Path(root_dir).resolve())
    web_app.settings["curator_allow_hidden"] = bool(allow_hidden)
    web_app.add_handlers(".*$", url_patterns(web_app.settings.get("base_url", "/")))
