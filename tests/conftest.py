"""Shared pytest fixtures. Each section belongs to one area; add yours as a new section."""

from __future__ import annotations

from pathlib import Path

import pytest

# ----------------------------------------------------------------------------- GIBS (issue 3)
MODIS_LAYER = "MODIS_Terra_CorrectedReflectance_TrueColor"
MODIS_DATE = "2020-09-27"


@pytest.fixture(scope="session")
def gibs_data() -> Path:
    """The real GIBS files in the shared data folder (mosaic, two tiles, capabilities, tile matrix sets)."""
    from curator_widgets.paths import shared_data_dir

    return shared_data_dir() / "gibs"


@pytest.fixture(scope="session")
def wmts_server(gibs_data):
    """One loopback WMTS server for the session, GIBS URL layout: Blue Marble (levels 0-3, static)
    and the real MODIS 2020-09-27 mosaic (levels 0-3 resampled, plus the two real level-5 tiles;
    other September 2020 dates answer 404, as a date with no imagery does)."""
    from curator_widgets.sources.wmts_server import WMTSServer, bluemarble_layer, global_image_layer

    modis = global_image_layer(
        MODIS_LAYER, gibs_data / f"{MODIS_LAYER}_{MODIS_DATE}_global.jpg", MODIS_DATE,
        title="Corrected Reflectance (True Color), MODIS Terra", tile_matrix_set_name="250m", max_level=3,
        time_value="2020-09-01/2020-09-30/P1D",
        tiles={(5, 5, 10): gibs_data / f"{MODIS_LAYER}_tile0.jpg", (5, 5, 11): gibs_data / f"{MODIS_LAYER}_tile1.jpg"})
    with WMTSServer([bluemarble_layer(), modis]) as server:
        yield server


@pytest.fixture
def gibs_server(wmts_server, tmp_path, monkeypatch):
    """The session server with no faults and an empty request log; caches go to a temp dir."""
    monkeypatch.setenv("CURATOR_CACHE_DIR", str(tmp_path / "cache"))
    wmts_server.reset()
    yield wmts_server
    wmts_server.reset()


# ----------------------------------------------------------------------------- index / projection (issue 5)
def write_embeddings(ws, run: str, X, model_run=None) -> None:
    """Write `X` as `run`'s embeddings in the agreed format (float16 .npy + sidecar json)."""
    import numpy as np

    from curator_widgets.atomic import write_json

    path = ws.embeddings_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=X.shape)
    arr[:] = X
    arr.flush()
    del arr
    write_json(path.with_suffix(".json"), {"run": run, "dim": int(X.shape[1]), "count": int(X.shape[0]),
                                           "normalized": False, "model_run": model_run})


def synthetic_chips(n: int, image_path, start: int = 0, seed: int = 0, clusters: int = 8):
    """Chips with varied metadata (dates, layers, positions, flags, labels), all pointing at one image."""
    import numpy as np

    from curator_widgets.sources import Chip

    rng = np.random.default_rng(seed + start)
    chips = []
    for i in range(start, start + n):
        lon, lat = float(rng.uniform(-179, 178)), float(rng.uniform(-80, 79))
        flags = [f for f, p in (("cloudy", 0.2), ("swath_gap", 0.1)) if rng.random() < p]
        meta = {"source": "synthetic", "layer": ("A", "B")[i % 2], "date": f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "west": lon, "south": lat, "east": lon + 1.0, "north": lat + 1.0, "width": 8, "height": 8,
                "label": f"c{i % clusters}", "flags": flags, "cloud_fraction": float(rng.random()),
                "land_fraction": float(rng.random())}
        chips.append(Chip(key=f"syn-{i}", meta=meta, path=image_path))
    return chips


def clustered_vectors(n: int, d: int, clusters: int = 8, seed: int = 0, spread: float = 0.35):
    """Gaussian clusters; row i belongs to cluster i % clusters (matching synthetic_chips labels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    return (centers[np.arange(n) % clusters] + spread * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture
def embedded_ws(tmp_path):
    """Factory: a workspace of `n` synthetic chips with clustered embeddings for run `run`."""
    import numpy as np

    from curator_widgets.images import write_image
    from curator_widgets.workspace import Workspace

    def make(n: int = 600, d: int = 16, run: str = "r", clusters: int = 8, seed: int = 0, name: str = "ws"):
        ws = Workspace.create(tmp_path / name)
        img = tmp_path / f"{name}-chip.png"
        write_image(img, np.full((8, 8, 3), 90, np.uint8))
        ws.add_chips(synthetic_chips(n, img, clusters=clusters, seed=seed), progress=False)
        X = clustered_vectors(n, d, clusters=clusters, seed=seed)
        write_embeddings(ws, run, X)
        return ws, X.astype(np.float16).astype(np.float32)

    return make


# ----------------------------------------------------------------------------- label store backends (issue 19)
class LabelsDB:
    """Where one test's label store lives: a fresh SQLite file, or a fresh database on the session's
    PostgreSQL; `open()` takes LabelStore's keywords, `open(ws)` keeps a workspace's manifest."""

    def __init__(self, kind: str, path: Path, url: str | None):
        self.kind, self.path, self.url = kind, path, url

    def where(self) -> dict:
        """LabelStore's first argument and url, picklable for writer processes."""
        return {"ws_or_path": str(self.path), "url": self.url} if self.url is None else \
            {"ws_or_path": None, "url": self.url}

    def open(self, ws=None, **kw):
        from curator_widgets import LabelStore

        if ws is not None:
            return LabelStore(ws, url=self.url, **kw)
        return LabelStore(**self.where(), **kw)

    def execute(self, sql: str, args: tuple = ()) -> None:
        """Run one statement on the database directly (as another tool would), outside the store."""
        if self.url is None:
            import sqlite3

            con = sqlite3.connect(self.path)
            con.execute(sql, args)
            con.commit()
            con.close()
        else:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as con:
                con.execute(sql.replace("?", "%s"), args)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL (Debian's initdb + pg_ctl in a temp dir) for the session."""
    from pg_server import PostgresServer, available

    why = available()
    if why:
        pytest.skip(why)
    with PostgresServer(durable=False) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def labels_db(request, tmp_path) -> LabelsDB:
    """Each label-store test runs on both backends, each time on a new, empty store."""
    if request.param == "sqlite":
        return LabelsDB("sqlite", tmp_path / "l.sqlite", None)
    return LabelsDB("postgresql", tmp_path / "l.sqlite", request.getfixturevalue("postgres_server").create_database())
