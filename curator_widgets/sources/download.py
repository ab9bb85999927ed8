"""Concurrent WMTS tile downloads: bounded asyncio + httpx, retries with backoff, a disk cache.

The cache is keyed by server/layer/date/matrix set/level/row/col and written atomically, so a
re-run fetches only what is missing and an interrupted run never leaves a half-written tile.
Failures are collected into a summary instead of vanishing (GIBS-Downloader's silent failures).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable, TypeVar

from ..atomic import write_bytes
from ..errors import CuratorError
from .catalog import OFFLINE_FIX, cache_dir, is_loopback, user_agent

T = TypeVar("T")
RETRY_STATUS = {429}  # too-many-requests is the one 4xx worth retrying (after Retry-After)


@dataclass(frozen=True)
class TileRequest:
    """One WMTS tile: layer, time ('default' for static layers), matrix set, level, row, col."""

    layer: str
    time: str
    tile_matrix_set: str
    level: int
    row: int
    col: int
    ext: str = "jpg"

    @property
    def key(self) -> str:
        """Relative cache path; also the identity of the tile in reports."""
        return f"{self.layer}/{self.time}/{self.tile_matrix_set}/{self.level}/{self.row}/{self.col}.{self.ext}"

    def url(self, template: str) -> str:
        """Fill a WMTS RESTful template ({Layer} {Time} {TileMatrixSet} {TileMatrix} {TileRow} {TileCol})."""
        return (template.replace("{Layer}", self.layer).replace("{Time}", self.time)
                .replace("{TileMatrixSet}", self.tile_matrix_set).replace("{TileMatrix}", str(self.level))
                .replace("{TileRow}", str(self.row)).replace("{TileCol}", str(self.col))
                .replace("{Style}", "default"))


@dataclass
class TileFailure:
    """A tile that could not be fetched, with why and after how many attempts."""

    request: TileRequest
    url: str
    kind: str          # http4xx | http5xx | timeout | network | corrupt | unreachable
    reason: str
    status: int | None = None
    attempts: int = 1


@dataclass
class DownloadReport:
    """What a download did; `summary()` is the line a person reads."""

    requested: int = 0
    cached: int = 0
    fetched: int = 0
    retries: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failed: list[TileFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def offline(self) -> bool:
        """True when nothing came back and every failure was a connection problem."""
        return (self.requested > 0 and self.fetched == 0 and self.cached == 0 and bool(self.failed)
                and all(f.kind in ("network", "unreachable") for f in self.failed))

    @property
    def tiles_per_second(self) -> float:
        return self.fetched / self.seconds if self.seconds > 0 else 0.0

    def failure_counts(self) -> Counter:
        return Counter(f.reason for f in self.failed)

    def summary(self) -> str:
        """'40 tiles: 30 downloaded, 8 from cache, 2 failed (HTTP 404 Not Found x2)'."""
        s = (f"{self.requested} tile{'s' * (self.requested != 1)}: {self.fetched} downloaded, "
             f"{self.cached} from cache, {len(self.failed)} failed")
        if self.failed:
            s += " (" + "; ".join(f"{why} x{n}" for why, n in self.failure_counts().most_common()) + ")"
        if self.retries:
            s += f", {self.retries} retries"
        return s + f", {self.seconds:.1f} s"


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, also inside Jupyter (whose event loop is already running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="curator-download")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def looks_like_image(data: bytes, ext: str) -> str | None:
    """None when `data` is a complete JPEG/PNG, else why not (truncated, HTML error page...).

    A signature + end-marker check catches truncation and error pages without decoding.
    """
    if data[:3] == b"\xff\xd8\xff":
        tail = data.rstrip(b"\x00")[-2:]
        return None if tail == b"\xff\xd9" else f"truncated JPEG ({len(data)} bytes, no end marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in data[-16:] else f"truncated PNG ({len(data)} bytes, no IEND chunk)"
    if ext not in ("jpg", "jpeg", "png"):
        return None  # other formats (tif, lerc, mvt) are not checked
    preview = re.sub(r"\s+", " ", data[:60].decode("utf-8", "replace"))
    return f"not an image (got {len(data)} bytes starting {preview!r})"


class TileDownloader:
    """Fetch tiles into a disk cache with `concurrency` requests in flight."""

    def __init__(self, template: str, cache: str | Path | None = None, *, concurrency: int = 16,
                 retries: int = 3, backoff: float = 0.25, max_backoff: float = 8.0, timeout: float = 30.0,
                 progress: bool = True, abort_after: int = 8):
        if int(concurrency) < 1:
            raise CuratorError(f"concurrency {concurrency} must be at least 1", "use e.g. concurrency=16")
        if int(retries) < 0:
            raise CuratorError(f"retries {retries} must be >= 0", "use e.g. retries=3")
        self.template = template
        host = template.split("://", 1)[-1].split("/", 1)[0]
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", host)
        digest = hashlib.sha1(template.split("{", 1)[0].encode()).hexdigest()[:8]
        self.root = Path(cache).expanduser() if cache is not None else cache_dir() / "tiles"
        self.server_dir = self.root / f"{slug}-{digest}"
        self.concurrency = int(concurrency)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self.progress = progress
        self.abort_after = int(abort_after)

    def path(self, req: TileRequest) -> Path:
        """Where tile `req` lives in the cache (whether or not it is there yet)."""
        return self.server_dir / req.key

    def download(self, requests: Iterable[TileRequest], desc: str = "tiles") -> DownloadReport:
        """Fetch every tile not already cached; returns the report (never raises for tile failures)."""
        reqs = list(dict.fromkeys(requests))
        return run_sync(lambda: self.adownload(reqs, desc))

    async def adownload(self, requests: list[TileRequest], desc: str = "tiles") -> DownloadReport:
        import httpx
        from ..progress import progress_bar as tqdm

        t0 = time.perf_counter()
        report = DownloadReport(requested=len(requests))
        todo = []
        for r in requests:
            if self.path(r).is_file():
                report.cached += 1
            else:
                todo.append(r)
        state = {"connect_fail": 0, "success": 0, "abort": False}
        bar = tqdm(total=len(requests), initial=report.cached, desc=desc, unit="tile", leave=False,
                   disable=not self.progress or not todo)
        queue: asyncio.Queue[TileRequest] = asyncio.Queue()
        for r in todo:
            queue.put_nowait(r)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), limits=limits, follow_redirects=True,
                                     trust_env=not is_loopback(self.template),
                                     headers={"User-Agent": user_agent()}) as client:
            async def worker() -> None:
                while True:
                    try:
                        req = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await self._one(client, req, report, state)
                    bar.update(1)
                    if report.failed:
                        bar.set_postfix(failed=len(report.failed), refresh=False)

            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, max(1, len(todo))))))
        bar.close()
        report.seconds = time.perf_counter() - t0
        return report

    async def _one(self, client, req: TileRequest, report: DownloadReport, state: dict) -> None:
        import httpx

        url = req.url(self.template)
        if state["abort"]:
            report.failed.append(TileFailure(req, url, "unreachable", "server unreachable (not tried)", attempts=0))
            return
        attempt = 0
        while True:
            attempt += 1
            kind, reason, status, wait = "", "", None, None
            try:
                r = await client.get(url)
                status = r.status_code
                if status == 200:
                    problem = looks_like_image(r.content, req.ext)
                    if problem is None:
                        write_bytes(self.path(req), r.content, fsync=False)
                        report.fetched += 1
                        report.bytes += len(r.content)
                        state["success"] += 1
                        state["connect_fail"] = 0
                        return
                    kind, reason = "corrupt", problem
                elif status in RETRY_STATUS or status >= 500:
                    kind = "http5xx" if status >= 500 else "http4xx"
                    reason = f"HTTP {status} {r.reason_phrase}".strip()
                    wait = _retry_after(r.headers.get("retry-after"))
                elif status < 400:  # 204 and friends: no tile in the body
                    kind, reason = "corrupt", f"HTTP {status} {r.reason_phrase} without a tile".strip()
                else:
                    kind = "http4xx"
                    reason = f"HTTP {status} {r.reason_phrase}".strip()
                    if status == 404:
                        reason += " (no imagery for this date/tile)"
                    report.failed.append(TileFailure(req, url, kind, reason, status, attempt))
                    return  # 4xx: asking again gives the same answer
            except httpx.TimeoutException as e:
                kind, reason = "timeout", f"timeout ({type(e).__name__}) after {self.timeout:g} s"
            except (httpx.ConnectError, httpx.UnsupportedProtocol) as e:
                kind, reason = "network", f"connection failed ({type(e).__name__}: {str(e)[:80]})"
                state["connect_fail"] += 1
                if state["success"] == 0 and state["connect_fail"] >= self.abort_after:
                    state["abort"] = True  # clearly offline: do not retry thousands of tiles
            except httpx.TransportError as e:
                kind, reason = "network", f"transfer broke ({type(e).__name__})"
            if attempt > self.retries or state["abort"]:
                report.failed.append(TileFailure(req, url, kind, reason, status, attempt))
                return
            report.retries += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(min(self.max_backoff, wait) if wait is not None else delay)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def offline_error(base_url: str, report: DownloadReport) -> CuratorError:
    """The error for a download where the server never answered."""
    why = report.failed[0].reason if report.failed else "no answer"
    return CuratorError(f"the tile server {base_url} is unreachable ({why}); you appear to be offline",
                        OFFLINE_FIX)
