"""The GIBS layer catalog: a WMTS GetCapabilities document parsed into searchable layers.

Parsing ~1000 live layers takes seconds, so the parsed catalog is cached on disk (JSON under
the cache dir) with the time it was fetched; a stale cache still serves when offline.
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import hashlib
import json
import os
import re
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..atomic import write_json
from ..errors import CuratorError
from .tilematrix import OWS, TileMatrix, TileMatrixSet, parse_tile_matrix_sets, tile_matrix_set

GIBS_BASE_URLS = {
    "EPSG:4326": "https://gibs.earthdata.nasa.gov/wmts/epsg4326/best",
    "EPSG:3857": "https://gibs.earthdata.nasa.gov/wmts/epsg3857/best",
}
GIBS_BASE_URL = GIBS_BASE_URLS["EPSG:4326"]
CAPABILITIES_PATH = "/1.0.0/WMTSCapabilities.xml"
CACHE_FORMAT = "curator-gibs-catalog"
CACHE_VERSION = 1
DEFAULT_MAX_AGE_S = 24 * 3600.0
EXTENSIONS = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/tiff": "tif",
              "image/webp": "webp", "image/lerc": "lerc", "application/vnd.mapbox-vector-tile": "mvt"}
OFFLINE_FIX = ("work offline on the embedded NASA Blue Marble default instead: BlueMarbleSource() in Python, "
               "or `curator demo` on the command line; or pass a saved capabilities file (--capabilities FILE)")


def cache_dir() -> Path:
    """Where catalogs and tiles are cached: $CURATOR_CACHE_DIR or ~/.cache/curator_widgets."""
    env = os.environ.get("CURATOR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "curator_widgets"


# ------------------------------------------------------------------ time dimension


@dataclass(frozen=True)
class Period:
    """An ISO 8601 duration as calendar months plus exact seconds (P1M and P1D differ in kind)."""

    months: int = 0
    seconds: int = 0
    text: str = "P1D"

    @classmethod
    def parse(cls, text: str) -> "Period":
        from isoduration import parse_duration
        from isoduration.parser.exceptions import DurationParsingException

        bad = CuratorError(f"time period {text!r} is not an ISO 8601 duration of whole units",
                           "the capabilities document is malformed; periods look like P1D, P1M or PT10M")
        try:  # the maintained parser (jsonschema's): designator order, week rules, signs
            dur = parse_duration(text.strip())
        except (DurationParsingException, ValueError, TypeError):
            raise bad from None
        d, t = dur.date, dur.time
        parts = (d.years, d.months, d.weeks, d.days, t.hours, t.minutes, t.seconds)
        if any(p < 0 or p != int(p) for p in parts) or not any(parts):
            raise bad  # a WMTS period steps forward by whole units; zero or negative would never advance
        y, mo, w, dd, h, mi, s = (int(p) for p in parts)
        return cls(months=12 * y + mo, seconds=(((w * 7 + dd) * 24 + h) * 60 + mi) * 60 + s, text=text.strip())

    @property
    def subdaily(self) -> bool:
        return self.months == 0 and self.seconds % 86400 != 0

    def describe(self) -> str:
        """'every 1 day', 'every 1 month', 'every 10 minutes'."""
        if self.months and not self.seconds:
            return "every year" if self.months == 12 else f"every {self.months} month{'s' * (self.months > 1)}"
        if self.seconds % 86400 == 0:
            n = self.seconds // 86400
            return f"every {n} day{'s' * (n > 1)}"
        if self.seconds % 60 == 0:
            return f"every {self.seconds // 60} minutes"
        return f"every {self.seconds} seconds"


def parse_time(text: str) -> dt.datetime:
    """'2020-09-27' or '2020-09-27T10:30:00Z' -> naive UTC datetime, with an error naming the format."""
    t = str(text).strip()
    try:
        if len(t) == 10:
            return dt.datetime.strptime(t, "%Y-%m-%d")
        value = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    except ValueError:
        raise CuratorError(f"date {text!r} is not a date", "write dates as YYYY-MM-DD, e.g. 2020-09-27") from None


def format_time(value: dt.datetime, subdaily: bool = False) -> str:
    """The form GIBS URLs use: YYYY-MM-DD for daily layers, YYYY-MM-DDTHH:MM:SSZ for sub-daily."""
    if subdaily or (value.hour, value.minute, value.second) != (0, 0, 0):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.strftime("%Y-%m-%d")


def _add_months(d: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return d.replace(year=year, month=month, day=min(d.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class TimeRange:
    """One `start/end/period` entry of a layer's time dimension (a single date has start == end)."""

    start: dt.datetime
    end: dt.datetime
    period: Period

    @classmethod
    def parse(cls, text: str) -> "TimeRange":
        parts = text.strip().split("/")
        if len(parts) == 1:
            t = parse_time(parts[0])
            return cls(t, t, Period.parse("P1D"))
        if len(parts) != 3:
            raise CuratorError(f"time value {text!r} is not start/end/period",
                               "the capabilities document is malformed; values look like 2012-05-08/2015-05-15/P1D")
        return cls(parse_time(parts[0]), parse_time(parts[1]), Period.parse(parts[2]))

    def __str__(self) -> str:
        sub = self.period.subdaily
        return f"{format_time(self.start, sub)}/{format_time(self.end, sub)}/{self.period.text}"

    def describe(self) -> str:
        sub = self.period.subdaily
        if self.start == self.end:
            return format_time(self.start, sub)
        return f"{format_time(self.start, sub)} to {format_time(self.end, sub)} ({self.period.describe()})"

    def contains(self, t: dt.datetime) -> bool:
        """True when `t` is inside the range and on its period grid."""
        if not (self.start <= t <= self.end):
            return False
        p = self.period
        if p.months:
            months = (t.year - self.start.year) * 12 + t.month - self.start.month
            return months % p.months == 0 and _add_months(self.start, months) == t
        return int((t - self.start).total_seconds()) % p.seconds == 0

    def steps(self, lo: dt.datetime, hi: dt.datetime) -> Iterator[dt.datetime]:
        """Grid times of this range inside [lo, hi]."""
        p = self.period
        if p.months:
            k, t = 0, self.start
            while t <= min(hi, self.end):
                if t >= lo:
                    yield t
                k += 1
                t = _add_months(self.start, k * p.months)
            return
        first = max(0, -(-int((lo - self.start).total_seconds()) // p.seconds))
        t = self.start + dt.timedelta(seconds=first * p.seconds)
        while t <= min(hi, self.end):
            yield t
            t += dt.timedelta(seconds=p.seconds)


# ------------------------------------------------------------------ layers
@dataclass
class Layer:
    """One GIBS layer as the capabilities document describes it."""

    identifier: str
    title: str = ""
    formats: list[str] = field(default_factory=list)
    tile_matrix_sets: list[str] = field(default_factory=list)
    max_levels: dict[str, int] = field(default_factory=dict)  # from TileMatrixSetLimits
    time_default: str | None = None
    time_values: list[str] = field(default_factory=list)
    bbox: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    templates: dict[str, str] = field(default_factory=dict)  # format -> ResourceURL template

    @property
    def has_time(self) -> bool:
        return bool(self.time_values)

    @property
    def time_ranges(self) -> list[TimeRange]:
        return [TimeRange.parse(v) for v in self.time_values]

    @property
    def format(self) -> str:
        """The preferred tile format (JPEG when offered, as it suits photos)."""
        for f in ("image/jpeg", "image/png"):
            if f in self.formats:
                return f
        return self.formats[0] if self.formats else "image/png"

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.format, self.format.rsplit("/", 1)[-1])

    @property
    def swath_gaps(self) -> bool | None:
        """True for daily MODIS reflectance (black wedges between orbits near the equator), False for
        VIIRS reflectance (its wider swath leaves no gaps), None when unknown."""
        ident = self.identifier.lower()
        if "correctedreflectance" not in ident and "surfacereflectance" not in ident:
            return None
        if ident.startswith(("modis_terra", "modis_aqua")):
            return True
        return False if ident.startswith("viirs_") else None

    def describe_time(self, limit: int = 3) -> str:
        """The valid dates in words, e.g. '2012-05-08 to 2015-05-15 (every 1 day)'."""
        if not self.has_time:
            return "static (no time dimension)"
        ranges = self.time_ranges
        parts = [r.describe() for r in ranges[:limit]]
        if len(ranges) > limit:
            parts.append(f"... ({len(ranges) - limit} more ranges, last {ranges[-1].describe()})")
        return "; ".join(parts)

    def resolve_dates(self, dates: str | Sequence[str] | None) -> list[str]:
        """Validate `dates` against the time dimension before any request; returns URL date strings.

        A string is one date (or 'START/END'); a tuple (START, END) is every valid date in between;
        a list is those dates. None is the layer's default date. Static layers give ['default'].
        """
        if not self.has_time:
            if dates:
                warnings.warn(f"{self.identifier} has no time dimension; dates {dates!r} are ignored", stacklevel=3)
            return ["default"]
        ranges = self.time_ranges
        sub = any(r.period.subdaily for r in ranges)
        if dates is None or dates == [] or dates == "":
            if not self.time_default:
                raise CuratorError(f"{self.identifier} needs a date and has no default date",
                                   f"pass dates inside {self.describe_time()}")
            return [format_time(parse_time(self.time_default), sub)]
        if isinstance(dates, (dt.date, dt.datetime)):
            dates = dates.isoformat()
        if isinstance(dates, str) and "/" in dates:
            dates = tuple(dates.split("/", 1))
        if isinstance(dates, str):
            dates = [dates]
        if isinstance(dates, tuple):
            if len(dates) != 2:
                raise CuratorError(f"a date range needs (start, end), got {dates!r}",
                                   "pass dates=('2020-09-01', '2020-09-30'), or a list for separate dates")
            dates = tuple(d.isoformat() if isinstance(d, (dt.date, dt.datetime)) else str(d) for d in dates)
            lo, hi = parse_time(dates[0]), parse_time(dates[1])
            if hi < lo:
                raise CuratorError(f"date range ends ({dates[1]}) before it starts ({dates[0]})", "swap start and end")
            first, last = min(r.start for r in ranges), max(r.end for r in ranges)
            for value, t in ((dates[0], lo), (dates[1], hi)):
                if not (first <= t <= last):
                    raise self._date_error(value)
            found = sorted({t for r in ranges for t in r.steps(lo, hi)})
            if not found:
                raise CuratorError(f"no date of {self.identifier} falls in {dates[0]}..{dates[1]}",
                                   f"valid dates: {self.describe_time()}")
            return [format_time(t, sub) for t in found]
        out = []
        for value in dates:
            value = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)
            t = parse_time(value)
            if not any(r.contains(t) for r in ranges):
                raise self._date_error(value)
            out.append(format_time(t, sub))
        return list(dict.fromkeys(out))

    def _date_error(self, value: str) -> CuratorError:
        return CuratorError(f"date {value} is outside the time range of {self.identifier}: {self.describe_time()}",
                            "pick a date inside that range (`curator gibs layers --show "
                            f"{self.identifier}` lists it)")

    def max_level(self, tms: TileMatrixSet) -> int:
        """The finest level this layer serves in `tms` (TileMatrixSetLimits, else the set's)."""
        return min(self.max_levels.get(tms.identifier, tms.max_level), tms.max_level)

    def summary(self) -> str:
        """One line: identifier first, then title, resolution and dates."""
        title = f"  {self.title}" if self.title and self.title != self.identifier else ""
        gaps = {True: "  (swath gaps near the equator: a VIIRS layer has none)", False: "  (no swath gaps)",
                None: ""}[self.swath_gaps]
        return f"{self.identifier}{title}  [{', '.join(self.tile_matrix_sets)}; {self.describe_time(1)}]{gaps}"


# ------------------------------------------------------------------ the catalog
@dataclass
class Catalog:
    """Layers and tile matrix sets from one capabilities document, with where and when it came from."""

    layers: dict[str, Layer]
    tile_matrix_sets: dict[str, TileMatrixSet] = field(default_factory=dict)
    source: str = ""
    fetched_at: float = field(default_factory=time.time)
    title: str = ""
    tile_url: str | None = None  # the RESTful GetTile address the document advertises

    @property
    def age(self) -> float:
        """Seconds since the document was fetched (or the file last changed)."""
        return max(0.0, time.time() - self.fetched_at)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, identifier: str) -> bool:
        return identifier in self.layers

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers.values())

    def get(self, identifier: str) -> Layer:
        """The layer with this identifier; an unknown name suggests close matches."""
        if identifier in self.layers:
            return self.layers[identifier]
        raise CuratorError(f"unknown GIBS layer {identifier!r}{self._where()}", self.suggest_fix(identifier))

    def suggestions(self, identifier: str, n: int = 5) -> list[str]:
        """Close matches by spelling (difflib), case-insensitively, then by shared words."""
        lower = {k.lower(): k for k in self.layers}
        found = [lower[m] for m in difflib.get_close_matches(identifier.lower(), list(lower), n=n, cutoff=0.6)]
        if len(found) < n:
            words = [w for w in re.split(r"[^a-z0-9]+", identifier.lower()) if len(w) > 2]
            for layer in self.search(" ".join(words[:3])) if words else []:
                if layer.identifier not in found:
                    found.append(layer.identifier)
                if len(found) >= n:
                    break
        return found[:n]

    def suggest_fix(self, identifier: str) -> str:
        close = self.suggestions(identifier)
        if close:
            return f"did you mean {', '.join(close)}? (`curator gibs search WORDS` finds layers)"
        return "list layers with `curator gibs search WORDS` or `curator gibs layers`"

    def _where(self) -> str:
        return f" in {self.source}" if self.source else ""

    def search(self, query: str | Sequence[str], limit: int | None = None) -> list[Layer]:
        """Layers whose identifier or title contain every word (case-insensitive), best first."""
        words = [w.lower() for w in (query.split() if isinstance(query, str) else query) if w.strip()]
        scored = []
        for layer in self.layers.values():
            s = _score(layer, words)
            if s is not None:
                scored.append((-s, len(layer.identifier), layer.identifier, layer))
        scored.sort(key=lambda t: t[:3])
        out = [t[3] for t in scored]
        return out[:limit] if limit else out

    def tile_matrix_set_for(self, layer: Layer, name: str | None = None) -> TileMatrixSet:
        """The layer's tile matrix set: defined in this document, else GIBS's packaged definition."""
        name = name or (layer.tile_matrix_sets[0] if layer.tile_matrix_sets else None)
        if name is None:
            raise CuratorError(f"layer {layer.identifier} names no tile matrix set", "use another layer or document")
        if layer.tile_matrix_sets and name not in layer.tile_matrix_sets:
            raise CuratorError(f"layer {layer.identifier} is not served in tile matrix set {name!r}",
                               f"use one of {', '.join(layer.tile_matrix_sets)}")
        if name in self.tile_matrix_sets:
            return self.tile_matrix_sets[name]
        return tile_matrix_set(name)

    # -------------------------------------------------------------- (de)serialisation for the cache
    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fetched_at": self.fetched_at, "title": self.title, "tile_url": self.tile_url,
                "layers": [asdict(layer) for layer in self.layers.values()],
                "tile_matrix_sets": [{"identifier": t.identifier, "crs": t.crs,
                                      "matrices": [asdict(m) for m in t.matrices]}
                                     for t in self.tile_matrix_sets.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Catalog":
        layers = {}
        for ld in d["layers"]:
            ld = dict(ld)
            ld["bbox"] = tuple(ld["bbox"])
            layers[ld["identifier"]] = Layer(**ld)
        sets = {t["identifier"]: TileMatrixSet(t["identifier"], t["crs"], tuple(
            TileMatrix(**{**m, "top_left": tuple(m["top_left"])}) for m in t["matrices"]))
            for t in d.get("tile_matrix_sets", [])}
        return cls(layers, sets, d.get("source", ""), float(d.get("fetched_at", time.time())), d.get("title", ""),
                   d.get("tile_url"))


GAP_FREE_BONUS = 0.25  # below any word-level difference (0.5), so it only breaks near-ties


def _tokens(text: str) -> set[str]:
    """Words of an identifier or title: split on punctuation and CamelCase boundaries."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return {t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t} | \
        {t for t in re.split(r"[^A-Za-z0-9]+", text.lower()) if t}


def _score(layer: Layer, words: list[str]) -> float | None:
    """Rank: whole word > word prefix > substring; identifier hits above title-only hits."""
    ident, title = layer.identifier.lower(), layer.title.lower()
    toks = _tokens(layer.identifier) | _tokens(layer.title)
    total = 0.0
    for w in words:
        if w in toks:
            s = 3.0
        elif any(t.startswith(w) for t in toks):
            s = 2.0
        elif w in ident or w in title:
            s = 1.0
        else:
            return None
        if w in ident:
            s += 0.5
        total += s
    if words and " ".join(words) in (ident, title):
        total += 10.0
    if layer.swath_gaps is False and not {"modis", "terra", "aqua"} & set(words):
        total += GAP_FREE_BONUS  # between equal matches, the product without swath gaps first
    return total


# ------------------------------------------------------------------ parsing
def parse_capabilities(data: bytes | str, source: str = "") -> Catalog:
    """Parse a WMTS GetCapabilities document; anything else gives an error that quotes it."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise CuratorError(f"{source or 'the server'} did not return a WMTS capabilities document "
                           f"(not XML: {e}; starts with {_preview(raw)})",
                           "check the URL or file; GIBS documents end in /1.0.0/WMTSCapabilities.xml") from None
    if not root.tag.endswith("Capabilities"):
        raise CuratorError(f"{source or 'the document'} is not a WMTS capabilities document (XML with root "
                           f"<{_local(root.tag)}>, starts with {_preview(raw)})",
                           "pass a WMTS GetCapabilities document, e.g. "
                           ".../wmts/epsg4326/best/1.0.0/WMTSCapabilities.xml")
    contents = next((el for el in root if _local(el.tag) == "Contents"), None)
    layers: dict[str, Layer] = {}
    sets: dict[str, TileMatrixSet] = {}
    if contents is not None:
        for el in contents:
            if _local(el.tag) == "Layer":
                layer = _parse_layer(el)
                layers[layer.identifier] = layer
        sets = parse_tile_matrix_sets(contents)
    title = ""
    ident = next((el for el in root if _local(el.tag) == "ServiceIdentification"), None)
    if ident is not None:
        title = (ident.findtext(f"{OWS}Title") or "").strip()
    return Catalog(layers, sets, source=source, title=title, tile_url=_rest_tile_url(root))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _preview(raw: bytes) -> str:
    return repr(raw[:60].decode("utf-8", "replace"))


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _parse_layer(el: ET.Element) -> Layer:
    ident = (_child(el, "Identifier").text or "").strip() if _child(el, "Identifier") is not None else ""
    if not ident:
        raise CuratorError("a <Layer> in the capabilities document has no identifier",
                           "use another copy of the document")
    title_el = _child(el, "Title")
    layer = Layer(identifier=ident, title=(title_el.text or "").strip() if title_el is not None else "")
    layer.formats = [(f.text or "").strip() for f in _children(el, "Format")]
    for link in _children(el, "TileMatrixSetLink"):
        name = (_child(link, "TileMatrixSet").text or "").strip()
        layer.tile_matrix_sets.append(name)
        limits = _child(link, "TileMatrixSetLimits")
        if limits is not None:
            levels = [int(t) for t in ((getattr(_child(lim, "TileMatrix"), "text", "") or "").strip()
                                       for lim in _children(limits, "TileMatrixLimits")) if t.isdigit()]
            if levels:
                layer.max_levels[name] = max(levels)
    for dim in _children(el, "Dimension"):
        if (_child(dim, "Identifier").text or "").strip().lower() != "time":
            continue
        default = _child(dim, "Default")
        layer.time_default = (default.text or "").strip() if default is not None else None
        for v in _children(dim, "Value"):
            for item in (v.text or "").split(","):
                if item.strip():
                    layer.time_values.append(item.strip())
    bb = _child(el, "WGS84BoundingBox")
    if bb is not None:
        lo = (_child(bb, "LowerCorner").text or "").split()
        hi = (_child(bb, "UpperCorner").text or "").split()
        if len(lo) == 2 and len(hi) == 2:
            layer.bbox = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    for res in _children(el, "ResourceURL"):
        if res.get("resourceType", "tile") == "tile" and res.get("template"):
            layer.templates[res.get("format", layer.format)] = res.get("template")
    return layer


def _rest_tile_url(root: ET.Element) -> str | None:
    """The RESTful GetTile href from OperationsMetadata (the service's tile base address)."""
    for op in root.iter(f"{OWS}Operation"):
        if op.get("name") != "GetTile":
            continue
        for get in op.iter(f"{OWS}Get"):
            values = [(v.text or "").strip() for v in get.iter(f"{OWS}Value")]
            if "RESTful" in values:
                return get.get("{http://www.w3.org/1999/xlink}href")
    return None


# ------------------------------------------------------------------ loading with a disk cache
def capabilities_url(base_url: str) -> str:
    return base_url.rstrip("/") + CAPABILITIES_PATH


def base_url_of(capabilities: str) -> str | None:
    """The tile base address implied by a capabilities URL (None for a local file)."""
    if capabilities.startswith(("http://", "https://")) and capabilities.endswith(CAPABILITIES_PATH):
        return capabilities[: -len(CAPABILITIES_PATH)]
    return None


def _cache_file(source: str, root: Path | None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source.split("://", 1)[-1])[-60:].strip("_")
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    return (root or cache_dir()) / "catalogs" / f"{slug}-{digest}.json"


def _read_cache(path: Path) -> Catalog | None:
    try:
        d = json.loads(path.read_text())
        if d.get("format") != CACHE_FORMAT or d.get("version") != CACHE_VERSION:
            return None
        return Catalog.from_dict(d["catalog"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a missing or damaged cache is rebuilt, never trusted


def load_catalog(source: str | os.PathLike | None = None, *, base_url: str | None = None,
                 cache: Path | str | None = None, max_age: float = DEFAULT_MAX_AGE_S, refresh: bool = False,
                 timeout: float = 30.0) -> Catalog:
    """Load a catalog from a capabilities file or URL (default: live GIBS EPSG:4326 'best').

    URL results are cached on disk for `max_age` seconds; offline, a stale cache is used with a
    warning, and without one the error says so and points to the Blue Marble default.
    """
    cache_root = Path(cache).expanduser() if cache is not None else None
    if source is None:
        source = capabilities_url(base_url or GIBS_BASE_URL)
    source = str(source)
    if not source.startswith(("http://", "https://")):
        return _load_file(Path(source).expanduser(), cache_root)
    path = _cache_file(source, cache_root)
    cached = None if refresh else _read_cache(path)
    if cached is not None and cached.age <= max_age:
        return cached
    try:
        data = fetch_bytes(source, timeout=timeout)
    except CuratorError:
        stale = _read_cache(path)
        if stale is not None:
            warnings.warn(f"using the cached catalog of {source} from {stale.age / 3600:.1f} h ago: the server is "
                          "unreachable now", stacklevel=2)
            return stale
        raise
    catalog = parse_capabilities(data, source=source)
    _write_cache(path, catalog)
    return catalog


def _load_file(path: Path, cache_root: Path | None) -> Catalog:
    if not path.is_file():
        raise CuratorError(f"capabilities file not found: {path}",
                           "pass a saved WMTSCapabilities.xml, or a URL (http...) to fetch one")
    st = path.stat()
    key = f"file://{path.resolve()}?{st.st_mtime_ns}:{st.st_size}"
    cpath = _cache_file(key, cache_root)
    cached = _read_cache(cpath)
    if cached is not None:
        return cached
    catalog = parse_capabilities(path.read_bytes(), source=str(path))
    catalog.fetched_at = st.st_mtime
    _write_cache(cpath, catalog)
    return catalog


def _write_cache(path: Path, catalog: Catalog) -> None:
    try:
        write_json(path, {"format": CACHE_FORMAT, "version": CACHE_VERSION, "catalog": catalog.to_dict()})
    except OSError as e:  # a read-only home must not stop the user; the catalog is still returned
        warnings.warn(f"could not cache the catalog at {path}: {e}", stacklevel=3)


def fetch_bytes(url: str, timeout: float = 30.0) -> bytes:
    """GET a small document; network failures become one CuratorError that says 'offline'."""
    import httpx

    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=not is_loopback(url),
                          headers={"User-Agent": user_agent()}) as client:
            r = client.get(url)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.NetworkError) as e:
        raise CuratorError(f"cannot reach {url} ({type(e).__name__}: {e}); the GIBS server is unreachable "
                           "(offline?)", OFFLINE_FIX) from None
    except httpx.TimeoutException:
        raise CuratorError(f"{url} did not answer within {timeout:.0f} s (offline or overloaded)",
                           OFFLINE_FIX) from None
    except httpx.HTTPError as e:
        raise CuratorError(f"request to {url} failed: {e}", OFFLINE_FIX) from None
    if r.status_code >= 400:
        raise CuratorError(f"{url} answered HTTP {r.status_code}",
                           "check the base URL (GIBS: https://gibs.earthdata.nasa.gov/wmts/epsg4326/best)"
                           if r.status_code < 500 else "the server has a problem; retry later or " + OFFLINE_FIX)
    return r.content


def is_loopback(url: str) -> bool:
    """True for 127.x/localhost URLs, which must bypass any HTTP proxy from the environment."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def user_agent() -> str:
    from ..workspace import _package_version

    return f"curator-widgets/{_package_version()} (+https://github.com/spaceml-org)"
