"""GIBS download and chip-cutting speed against the loopback WMTS server.

    python benchmarks/gibs_download.py           # full run (a few minutes on 2 cores)
    python benchmarks/gibs_download.py --quick   # smoke run (seconds)

Measures tiles/s at concurrency 1 vs 16 (with no added latency, and with a simulated network
round trip, which is what concurrency hides), and the chip-cutting rate over the real 3996x1998
MODIS mosaic (cut only; cut + quality flags; GIBSSource end to end from cached tiles). Each
number is the best of 3 runs (1 with --quick), as the machine is shared.
Writes benchmarks/results/gibs_download.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

from curator_widgets.paths import shared_data_dir  # noqa: E402
from curator_widgets.sources.download import TileDownloader, TileRequest  # noqa: E402
from curator_widgets.sources.gibs import GIBSSource  # noqa: E402
from curator_widgets.sources.quality import assess  # noqa: E402
from curator_widgets.sources.tiling import cut, grid_windows  # noqa: E402
from curator_widgets.sources.wmts_server import WMTSServer, bluemarble_layer, global_image_layer  # noqa: E402

MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"
DATE = "2020-09-27"


def modis_server_layers(gibs: Path):
    return [bluemarble_layer(), global_image_layer(MODIS, gibs / f"{MODIS}_{DATE}_global.jpg", DATE,
                                                   max_level=3, time_value="2020-09-01/2020-09-30/P1D")]


def _serve(gibs: str, latency, ready, stop) -> None:
    """The server in its own process, as a real one is: client and server do not share a GIL."""
    with WMTSServer(modis_server_layers(Path(gibs))) as server:
        ready.put(server.port)
        while not stop.wait(0.05):
            server.latency = latency.value


class RemoteServer:
    """A WMTSServer in a child process; `latency` (seconds per tile) can be changed live."""

    def __init__(self, gibs: Path):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._latency = ctx.Value("d", 0.0)
        self._ready, self._stop = ctx.Queue(), ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(str(gibs), self._latency, self._ready, self._stop), daemon=True)

    def __enter__(self) -> "RemoteServer":
        self._proc.start()
        self.port = self._ready.get(timeout=120)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wmts/epsg4326/best"

    @property
    def latency(self) -> float:
        return self._latency.value

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency.value = value
        time.sleep(0.2)  # the child picks it up within 50 ms


def tile_set(level: int) -> list[TileRequest]:
    """Every tile of the MODIS and Blue Marble layers at `level` (the world)."""
    from curator_widgets.sources.tilematrix import tile_matrix_set

    out = []
    for layer, t, tms in ((MODIS, DATE, "250m"), ("BlueMarble_NextGeneration", "default", "500m")):
        m = tile_matrix_set(tms).level(level)
        out += [TileRequest(layer, t, tms, level, r, c) for r in range(m.matrix_height) for c in range(m.matrix_width)]
    return out


def bench_download(server: "RemoteServer", tiles: list[TileRequest], concurrency: int, latency: float,
                   repeats: int) -> dict:
    template = server.base_url + "/{Layer}/default/{Time}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.jpg"
    server.latency = latency
    rates = []
    try:
        for _ in range(repeats):
            tmp = Path(tempfile.mkdtemp(prefix="curator-bench-"))
            try:
                rep = TileDownloader(template, tmp, concurrency=concurrency, progress=False).download(tiles)
                assert rep.ok and rep.fetched == len(tiles), rep.summary()
                rates.append(rep.fetched / rep.seconds)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        server.latency = 0.0
    return {"concurrency": concurrency, "latency_ms": latency * 1000, "tiles": len(tiles),
            "tiles_per_s": float(max(rates)), "runs": len(rates)}  # best of n: the box is shared


def bench_cutting(mosaic: np.ndarray, size: int, repeats: int) -> dict:
    h, w = mosaic.shape[:2]
    wins = grid_windows(h, w, size, 0.0, "shift")
    t_cut, t_q = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        chips = [cut(mosaic, win, size) for win in wins]
        t1 = time.perf_counter()
        for c in chips:
            assess(c)
        t2 = time.perf_counter()
        t_cut.append(t1 - t0)
        t_q.append(t2 - t0)
    return {"size": size, "chips": len(wins), "cut_chips_per_s": len(wins) / min(t_cut),
            "cut_quality_chips_per_s": len(wins) / min(t_q)}


def bench_source(server: "RemoteServer", level: int, size: int, repeats: int) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="curator-bench-src-"))
    try:
        kw = dict(base_url=server.base_url, level=level, cache=cache, progress=False)
        warm = GIBSSource(MODIS, **kw)
        list(warm.chips(None, DATE, size=size))  # fill the tile cache
        times = []
        for _ in range(repeats):
            src = GIBSSource(MODIS, **kw)
            t0 = time.perf_counter()
            n = sum(1 for _ in src.chips(None, DATE, size=size))
            times.append(time.perf_counter() - t0)
        dt = min(times)
        return {"level": level, "size": size, "chips": n, "blank_dropped": src.stats["blank_dropped"],
                "chips_per_s": n / dt, "seconds": dt}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _ratio_rows(results: dict) -> list[dict]:
    """Per latency: tiles/s at concurrency 1 and 16, and their ratio."""
    rows = results["download"]
    out = []
    for latency in sorted({r["latency_ms"] for r in rows}):
        one = next(r for r in rows if r["latency_ms"] == latency and r["concurrency"] == 1)
        many = next(r for r in rows if r["latency_ms"] == latency and r["concurrency"] == 16)
        out.append({"latency_ms": latency, "one": one["tiles_per_s"], "many": many["tiles_per_s"],
                    "ratio": many["tiles_per_s"] / one["tiles_per_s"]})
    return out


def doc_tables(results: dict) -> dict[str, str]:
    """docs/gibs.md's tables (tools/gen_docs.py fills them from the committed JSON)."""
    load = (results.get("machine") or {}).get("load_avg")
    when = f"commit `{(results.get('commit') or '?')[:10]}`" + (f", load average {load[0]:.1f}" if load else "")
    download = markdown_table(["latency per tile", "concurrency 1", "concurrency 16", "ratio"],
                              ([f"{r['latency_ms']:.0f} ms", f"{r['one']:.1f} tiles/s", f"{r['many']:.1f} tiles/s",
                                f"{r['ratio']:.1f}x"] for r in _ratio_rows(results)))
    cutting = markdown_table(["chip size", "chips", "cut only", "cut + quality flags"],
                             ([f"{c['size']} px", c["chips"], f"{c['cut_chips_per_s']:.0f} chips/s",
                               f"{c['cut_quality_chips_per_s']:.0f} chips/s"] for c in results["cutting"]))
    s = results["source"]
    source = markdown_table(["GIBSSource from cached tiles", "chips", "seconds", "rate"],
                            [[f"level {s['level']}, {s['size']} px chips", s["chips"], f"{s['seconds']:.1f}",
                              f"{s['chips_per_s']:.0f} chips/s"]])
    return {"download": f"{download}\n\n({when})", "cutting": cutting, "source": source}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--out", default=str(RESULTS / "gibs_download.json"))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    gibs = shared_data_dir() / "gibs"
    level = 1 if args.quick else 3
    tiles = tile_set(level)
    repeats = 1 if args.quick else 3
    latencies = [0.0, 0.05] if args.quick else [0.0, 0.05, 0.2]
    results: dict = {"quick": args.quick}
    with RemoteServer(gibs) as server:
        # render and encode every tile once, so the runs time the transfer, not the test server
        warm = Path(tempfile.mkdtemp(prefix="curator-bench-warm-"))
        try:
            TileDownloader(server.base_url + "/{Layer}/default/{Time}/{TileMatrixSet}/{TileMatrix}/{TileRow}/"
                           "{TileCol}.jpg", warm, progress=False).download(tiles)
        finally:
            shutil.rmtree(warm, ignore_errors=True)
        rows = []
        for latency in latencies:
            for conc in (1, 16):
                rows.append(bench_download(server, tiles, conc, latency, repeats))
        results["download"] = rows
        results["source"] = bench_source(server, level=1 if args.quick else 3, size=128 if args.quick else 256,
                                         repeats=repeats)
    from PIL import Image

    with Image.open(gibs / f"{MODIS}_{DATE}_global.jpg") as im:
        mosaic = np.asarray(im.convert("RGB"))
    results["cutting"] = [bench_cutting(mosaic, s, repeats) for s in ((256,) if args.quick else (64, 256))]

    results["ratios"] = [{"latency_ms": r["latency_ms"], "ratio": r["ratio"]} for r in _ratio_rows(results)]
    tables = doc_tables(results)
    print(f"\nTile downloads from the loopback server ({len(tiles)} tiles of 512 px, level {level})")
    print(tables["download"])
    print(f"\nChip cutting on the real {mosaic.shape[1]}x{mosaic.shape[0]} MODIS mosaic")
    print(tables["cutting"])
    print()
    print(tables["source"])
    out = Path(args.out)
    write_results(out, results, seeds=[], started=started)  # nothing random: fixed tiles, fixed windows
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
