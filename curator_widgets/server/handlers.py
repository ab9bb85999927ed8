"""Tornado handlers for `/curator/tiles/...` and `/curator/thumbs/...`, behind Jupyter's auth.

Both subclass jupyter_server's APIHandler, so a request without a valid token or login cookie
gets 403 (not a login-page redirect, which an <img> could not use) and errors are JSON.
Work that touches disk or decodes images runs in a thread pool, off the server's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import CuratorError
from .safepath import Refused, resolve_workspace
from .thumbs import snap_size, thumbnail
from .tiles import TILES, parse_request

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="curator-http")
AUTH_RESOURCE = "contents"  # tiles and thumbnails read files: same permission as /files/


class CuratorHandler(APIHandler):
    """Shared error handling: CuratorError -> 400/404 JSON with the problem and the fix."""

    auth_resource = AUTH_RESOURCE

    def fail(self, status: int, err: CuratorError | str) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        body: dict[str, Any] = {"error": getattr(err, "problem", str(err))}
        if isinstance(err, CuratorError) and err.fix:
            body["fix"] = err.fix
        self.finish(json.dumps(body))

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
            data = await asyncio.get_running_loop().run_in_executor(_POOL, TILES.get, req)
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
        try:
            ws = resolve_workspace(self.settings["curator_root_dir"], workspace)
        except Refused as e:
            return self.fail(400, e)
        except FileNotFoundError:
            return self.fail(404, CuratorError(f"no workspace at {workspace!r} under the Jupyter root",
                                               "check the path; it is relative to the folder Jupyter serves"))
        if not chip.isdigit():
            return self.fail(400, CuratorError(f"chip id {chip!r} is not a non-negative integer",
                                               "request /curator/thumbs/{workspace}/{id} with a manifest id"))
        try:
            size = snap_size(self.get_query_argument("size", "128"))
            data, etag = await asyncio.get_running_loop().run_in_executor(_POOL, thumbnail, ws, int(chip), size)
        except CuratorError as e:
            return self.fail(404 if "not in this workspace" in e.problem or "missing" in e.problem else 400, e)
        self.send_cached(data, etag, "image/jpeg", max_age=3600, private=True)


def url_patterns(base_url: str) -> list[tuple[str, type, dict]]:
    """The routes, rooted at the server's base URL."""
    from jupyter_server.utils import url_path_join

    seg = r"([^/]+)"
    tiles = url_path_join(base_url, "/curator/tiles/" + "/".join([seg] * 6) + r"/([^/.]+)(?:\.(jpg|jpeg|png))?$")
    thumbs = url_path_join(base_url, r"/curator/thumbs/(.+)/([^/]+)$")
    return [(tiles, TilesHandler, {}), (thumbs, ThumbsHandler, {})]


def setup_handlers(web_app: Any, root_dir: str | Path) -> None:
    """Register the routes on a running Jupyter server's tornado application."""
    web_app.settings["curator_root_dir"] = str(Path(root_dir).resolve())
    web_app.add_handlers(".*$", url_patterns(web_app.settings.get("base_url", "/")))
