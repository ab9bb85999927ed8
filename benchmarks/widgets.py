"""Widget speed in a real JupyterLab driven by headless Chromium (one run).

    python benchmarks/widgets.py           # 100k and 1M points (about 2-3 minutes on 2 cores)
    python benchmarks/widgets.py --quick   # 5k and 20k points, a few key presses (about 1.5 minutes)

Measures: cell execution -> first paint of the EmbeddingView scatter (Python builds the points,
binary transfer, WebGL draw, next animation frame); full-redraw frame time; a real mouse drag and
wheel zoom (pointer move -> frame on screen, gesture end -> sharp redraw); lasso round trip to Python (selection event in
the browser -> chunked uint32 messages -> kernel sets the trait and runs observers -> ack back);
key press -> next image on screen in the SwipeLabeler, with and without prefetching.
Chromium renders WebGL with SwiftShader (CPU) here, so GPU machines draw faster.
Writes benchmarks/results/widgets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_results  # noqa: E402
from harness import (RECORDER, launch_browser, open_notebook, run_cell, start_lab, wait_kernel_idle,  # noqa: E402
                     write_notebook)


def notebook_cells(sizes: list[int], queue: int) -> list[str]:
    cells = [RECORDER + """
import numpy as np
from curator_widgets import Workspace
from curator_widgets.widgets import EmbeddingView, SwipeLabeler
ws = Workspace.open("projects/ws")
def cloud(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, 2)) * 6
    k = rng.integers(0, 12, n)
    return centers[k] + rng.normal(size=(n, 2)), k
""", "EmbeddingView(*cloud(1000), height='360px')  # warm-up: loads the JS bundle once"]
    for n in sizes:
        cells.append(f"xy, k = cloud({n})\nv{n} = EmbeddingView(xy, color=k, height='360px')\n"
                     f"v{n}.on_select(lambda idx: record('sel{n}', int(idx.size)))\nv{n}")
    # different chips for the two labelers, so the second never finds the first's images in the HTTP cache
    cells.append(f"SwipeLabeler(ws, ids=range({queue}), task='bench-prefetch', prefetch=6, autofocus=False)")
    cells.append(f"SwipeLabeler(ws, ids=range({queue}, {2 * queue}), task='bench-noprefetch', prefetch=0, autofocus=False)")
    # the same views with every frame redrawn live, then back to the default: deferred vs live in one run
    views = ", ".join(f"v{n}" for n in sizes)
    cells.append(f"for v in ({views},):\n    v.gestures = 'live'")
    cells.append(f"for v in ({views},):\n    v.gestures = 'auto'")
    return cells


def first_paint(page, cell: int, nth: int, n: int) -> dict:
    t0 = run_cell(page, cell)
    sel = f".curator-scatter >> nth={nth}"
    page.wait_for_function(f"""() => {{
        const el = document.querySelectorAll('.curator-scatter')[{nth}];
        return el && el.dataset.points === '{n}' && el.dataset.firstPaint;
    }}""", timeout=600_000)
    loc = page.locator(sel)
    paint = int(loc.get_attribute("data-first-paint"))
    prep, scatter_draw, frame = map(float, loc.get_attribute("data-draw-parts").split(","))
    return {"points": n, "first_paint_ms": paint - t0, "draw_ms": float(loc.get_attribute("data-draw-ms")),
            "js_prepare_ms": prep, "regl_draw_ms": scatter_draw, "first_frame_ms": frame}


def frame_time(page, nth: int, n: int, frames: int = 8) -> dict:
    """Pan/zoom responsiveness: camera change -> frame on screen, `frames` times (ms, median)."""
    times = page.evaluate("""async ([nth, frames]) => {
        const s = document.querySelectorAll('.curator-scatter')[nth].curatorScatter;
        const out = [];
        for (let i = 0; i < frames; i++) {
            const t0 = performance.now();
            await s.zoomToLocation([Math.sin(i) * 0.2, 0], 1 + (i % 3) * 0.3, { transition: false });
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            out.push(performance.now() - t0);
        }
        await s.reset();
        return out;
    }""", [nth, frames])
    return {"points": n, "frame_ms_median": statistics.median(times), "fps": round(1000 / statistics.median(times), 1)}


def record_moves(page, nth: int) -> None:
    """Time every pointer move on the scatter's canvas until the frame after it is on screen."""
    page.evaluate("""(nth) => {
        const c = document.querySelectorAll('.curator-scatter')[nth].querySelector('canvas');
        window.__moves = [];
        window.__onMove = (e) => {
            const t = performance.now();
            requestAnimationFrame(() => requestAnimationFrame(() => window.__moves.push(performance.now() - t)));
        };
        c.addEventListener('pointermove', window.__onMove, { capture: true });
    }""", nth)


def recorded_moves(page, nth: int) -> list[float]:
    page.wait_for_timeout(200)  # the last moves' frames
    return page.evaluate("""(nth) => {
        const c = document.querySelectorAll('.curator-scatter')[nth].querySelector('canvas');
        c.removeEventListener('pointermove', window.__onMove, { capture: true });
        return window.__moves;
    }""", nth)


def gesture_time(page, nth: int, n: int, steps: int = 12) -> dict:
    """A real mouse drag and wheel zoom in Pan mode: pointer move -> frame on screen (each step),
    and gesture end -> sharp redraw ("settle"; deferred mode redraws once, live mode every step)."""
    loc = page.locator(f".curator-scatter >> nth={nth}")
    loc.scroll_into_view_if_needed()
    loc.get_by_role("button", name="Pan").click()
    record_moves(page, nth)
    mode = loc.get_attribute("data-gestures")
    box = loc.locator("canvas").bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    settles = int(loc.get_attribute("data-settles") or 0)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(x0 + 6 * k, y0 + 3 * k)
        page.wait_for_timeout(16)  # about one move per display frame, as a hand drags
    page.mouse.up()
    settle = {}

    def settled(name: str) -> None:  # the deferred redraw after a gesture: data-settles counts them
        page.wait_for_function(f"() => Number(document.querySelectorAll('.curator-scatter')[{nth}].dataset.settles) > "
                               f"{settles + len(settle)}", timeout=120_000)
        settle[name] = float(loc.get_attribute("data-settle-ms"))

    if mode == "deferred":
        settled("drag")
        page.mouse.wheel(0, -240)
        settled("wheel")
    moves = recorded_moves(page, nth)
    page.evaluate(f"() => document.querySelectorAll('.curator-scatter')[{nth}].curatorScatter.reset()")
    return {"points": n, "mode": mode, "frame_ms_measured": float(loc.get_attribute("data-frame-ms") or "nan"),
            "move_to_frame_ms_median": statistics.median(moves) if moves else None, "moves": len(moves),
            "settle_ms": settle}


def lasso_all(page, nth: int, n: int, repeats: int) -> dict:
    loc = page.locator(f".curator-scatter >> nth={nth}")
    loc.scroll_into_view_if_needed()
    loc.get_by_role("button", name="Lasso").click()
    rtts, moves, compute = [], [], []
    for _ in range(repeats):
        record_moves(page, nth)
        box = loc.locator(".curator-scatter-stage").bounding_box()
        x0, y0, x1, y1 = box["x"] + 3, box["y"] + 3, box["x"] + box["width"] - 3, box["y"] + box["height"] - 3
        path = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 4)]
        page.mouse.move(*path[0])
        page.mouse.down()
        for (ax, ay), (bx, by) in zip(path, path[1:]):
            for k in range(1, 9):
                page.mouse.move(ax + (bx - ax) * k / 8, ay + (by - ay) * k / 8)
                page.wait_for_timeout(12)
        page.mouse.up()
        page.wait_for_function(f"() => document.querySelectorAll('.curator-scatter')[{nth}].dataset.selectionAcked === '{n}'",
                               timeout=120_000)
        rtts.append(float(loc.get_attribute("data-selection-rtt")))
        moves += recorded_moves(page, nth)
        if loc.get_attribute("data-lasso-ms") is not None:
            compute.append(float(loc.get_attribute("data-lasso-ms")))
        loc.get_by_role("button", name="Clear selection").click()
        page.wait_for_function(f"() => document.querySelectorAll('.curator-scatter')[{nth}].dataset.selectionAcked === '0'",
                               timeout=60_000)
    return {"points": n, "selected": n, "selection_mb": round(n * 4 / 2**20, 2),
            "round_trip_ms_median": statistics.median(rtts), "round_trip_ms_min": min(rtts), "repeats": repeats,
            "mode": loc.get_attribute("data-gestures"),
            "move_to_frame_ms_median": statistics.median(moves) if moves else None,
            "move_to_frame_ms_p95": sorted(moves)[min(len(moves) - 1, int(0.95 * len(moves)))] if moves else None,
            "moves": len(moves),
            "select_compute_ms_median": statistics.median(compute) if compute else None}


def key_latency(page, nth: int, presses: int) -> dict:
    lab = page.locator(f".curator-labeler >> nth={nth}")
    lab.scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelectorAll('.curator-labeler')[{nth}].dataset.shown")
    lab.locator(".curator-labeler-card").click()
    out = []
    for i in range(presses):
        before = int(lab.get_attribute("data-advances") or 0)
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => Number(document.querySelectorAll('.curator-labeler')[{nth}].dataset.advances) > {before}",
                               timeout=60_000)
        out.append(float(lab.get_attribute("data-last-advance-ms")))
        page.wait_for_timeout(250)  # a person's pace: prefetching has time to run ahead
    out.sort()
    return {"presses": presses, "median_ms": statistics.median(out), "p95_ms": out[min(len(out) - 1, int(0.95 * len(out)))],
            "max_ms": out[-1]}


def measure(page, sizes: list[int], presses: int, quick: bool) -> dict:
    """Every measurement, on an opened bench notebook (see notebook_cells)."""
    results: dict = {}
    run_cell(page, 0)
    wait_kernel_idle(page)
    results["bundle_load_first_paint_ms_1k"] = first_paint(page, 1, 0, 1000)["first_paint_ms"]
    results["first_paint"] = [first_paint(page, 2 + i, 1 + i, n) for i, n in enumerate(sizes)]
    results["frame"] = [frame_time(page, 1 + i, n, 3 if quick else 8) for i, n in enumerate(sizes)]
    results["gesture"] = [gesture_time(page, 1 + i, n) for i, n in enumerate(sizes)]
    live_cell = 4 + len(sizes)
    run_cell(page, live_cell)
    page.wait_for_function(f"() => [...document.querySelectorAll('.curator-scatter')].slice(1, {1 + len(sizes)})"
                           ".every((el) => el.dataset.gestures === 'live')", timeout=60_000)
    results["gesture_live"] = [gesture_time(page, 1 + i, n) for i, n in enumerate(sizes)]
    run_cell(page, live_cell + 1)
    page.wait_for_function(f"() => [...document.querySelectorAll('.curator-scatter')].slice(1, {1 + len(sizes)})"
                           ".every((el) => el.dataset.gestures !== 'live' || Number(el.dataset.frameMs) <= 60)",
                           timeout=60_000)
    results["lasso"] = [lasso_all(page, 1 + i, n, 1 if quick else 2) for i, n in enumerate(sizes)]
    cell = 2 + len(sizes)
    run_cell(page, cell)
    run_cell(page, cell + 1)
    wait_kernel_idle(page)
    results["keypress"] = {"prefetch": key_latency(page, 0, presses), "no_prefetch": key_latency(page, 1, presses)}
    return results


def main(argv: list[str] | None = None, lab=None, browser=None) -> dict:
    """Run the benchmark; `lab` (a running harness lab whose root holds projects/ws) and `browser`
    may be given to reuse them (the browser tests do), else both are started and stopped here."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--sizes", type=int, nargs="+", help="point counts (default 100000 1000000; --quick 5000 20000)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "widgets.json"))
    args = ap.parse_args(argv)
    sizes = args.sizes or ([5_000, 20_000] if args.quick else [100_000, 1_000_000])
    presses = 4 if args.quick else 20
    cells = notebook_cells(sizes, presses + 8)

    started = time.perf_counter()
    results: dict = {"webgl": "SwiftShader (CPU) in headless Chromium", "quick": args.quick, "sizes": sizes}
    if lab is not None and browser is not None:
        write_notebook(lab.root / "bench.ipynb", cells)
        page = open_notebook(browser, lab, "bench.ipynb", height=1400)
        try:
            results.update(measure(page, sizes, presses, args.quick))
        finally:
            page.close()
    else:
        from playwright.sync_api import sync_playwright

        from curator_widgets import BlueMarbleSource, Workspace

        with tempfile.TemporaryDirectory(prefix="curator-bench-widgets-") as tmp:
            root = Path(tmp) / "root"
            ws = Workspace.create(root / "projects" / "ws")
            ws.ingest(BlueMarbleSource(level=2), region=(-60, -30, 60, 50), size=64, progress=False)  # 117 chips
            write_notebook(root / "bench.ipynb", cells)
            os.environ["CURATOR_EVENTS"] = str(root / "events")
            lab = start_lab(root)
            try:
                with sync_playwright() as pw:
                    browser = launch_browser(pw)
                    page = open_notebook(browser, lab, "bench.ipynb", height=1400)
                    results.update(measure(page, sizes, presses, args.quick))
                    browser.close()
            finally:
                lab.stop()
                os.environ.pop("CURATOR_EVENTS", None)

    print(f"\nWidget speed ({'quick' if args.quick else 'full'} run; WebGL via SwiftShader on {os.cpu_count()} CPUs)\n")
    print(f"{'measure':<46}{'value':>14}")
    print("-" * 60)
    print(f"{'JS bundle load + first paint, 1k points':<46}{results['bundle_load_first_paint_ms_1k']:>11.0f} ms")
    for p in results["first_paint"]:
        print(f"{'cell run -> first paint, ' + format(p['points'], ',') + ' points':<46}{p['first_paint_ms']:>11.0f} ms")
        print(f"{'  of which JS: decode+columns / regl draw / frame':<46}{p['js_prepare_ms']:>5.0f} /{p['regl_draw_ms']:>5.0f} /"
              f"{p['first_frame_ms']:>5.0f} ms")
    for f in results["frame"]:
        print(f"{'full redraw frame, ' + format(f['points'], ',') + ' points':<46}{f['frame_ms_median']:>11.0f} ms")
    for g in results["gesture"] + results["gesture_live"]:
        label = f"drag: pointer move -> frame ({g['mode']}), {g['points']:,}"
        print(f"{label:<46}{g['move_to_frame_ms_median']:>11.0f} ms")
        for k, v in g["settle_ms"].items():
            print(f"{'  ' + k + ' end -> sharp redraw, ' + format(g['points'], ','):<46}{v:>11.0f} ms")
    for l in results["lasso"]:
        label = f"lasso: pointer move -> frame ({l['mode']}), {l['points']:,}"
        print(f"{label:<46}{l['move_to_frame_ms_median']:>11.0f} ms")
        if l.get("move_to_frame_ms_p95") is not None:
            print(f"{'  p95 of ' + str(l['moves']) + ' moves':<46}{l['move_to_frame_ms_p95']:>11.0f} ms")
        if l["select_compute_ms_median"] is not None:
            print(f"{'  lasso end -> indices (kd-tree + polygon), ' + format(l['points'], ','):<46}"
                  f"{l['select_compute_ms_median']:>11.0f} ms")
        print(f"{'lasso -> Python -> ack, ' + format(l['selected'], ',') + ' selected':<46}{l['round_trip_ms_median']:>11.0f} ms")
    for k, v in results["keypress"].items():
        label = f"key -> next image ({k.replace('_', ' ')}), median / p95"
        print(f"{label:<46}{v['median_ms']:>6.0f} /{v['p95_ms']:>4.0f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, results, seeds=[0], started=started)  # + machine, commit, seeds, wall time
    print(f"\nwrote {out}\n\nfor docs/widgets.md (Speed):\n\n{docs_tables(results)}")
    return results




def docs_tables(r: dict) -> str:
    """The two Markdown tables of docs/widgets.md's Speed section, from a results dict (widgets.json)."""
    by = {p["points"]: p for p in r["first_paint"]}
    fr = {f["points"]: f for f in r["frame"]}
    gd = {g["points"]: g for g in r["gesture"]}
    gl = {g["points"]: g for g in r["gesture_live"]}
    la = {x["points"]: x for x in r["lasso"]}
    sizes = sorted(by)
    ms = lambda v: f"{v:.0f} ms"  # noqa: E731 - a table formatter
    rows = [
        ("cell run -> first paint of the scatter (Python builds the view, binary transfer, WebGL draw)",
         [f"{by[n]['first_paint_ms'] / 1000:.1f} s" for n in sizes]),
        ("of which in the browser: decode + columns + kd-tree / regl-scatterplot draw / first frame",
         [f"{by[n]['js_prepare_ms']:.0f} / {by[n]['regl_draw_ms']:.0f} / {by[n]['first_frame_ms']:.0f} ms" for n in sizes]),
        ("one full redraw (what every frame of a live gesture costs)", [ms(fr[n]["frame_ms_median"]) for n in sizes]),
        ("drag, **deferred** (default here): pointer move -> frame on screen",
         [f"**{gd[n]['move_to_frame_ms_median']:.0f} ms**" if gd[n]["mode"] == "deferred" else
          f"{gd[n]['move_to_frame_ms_median']:.0f} ms ({gd[n]['mode']}: auto chose it)" for n in sizes]),
        ('drag, live (`gestures="live"`): pointer move -> frame on screen', [ms(gl[n]["move_to_frame_ms_median"]) for n in sizes]),
        ("deferred: drag end -> sharp redraw / wheel end -> sharp redraw",
         [f"{gd[n]['settle_ms']['drag']:.0f} / {gd[n]['settle_ms']['wheel']:.0f} ms" if gd[n]["settle_ms"] else
          f"- ({gd[n]['mode']}: every frame is sharp)" for n in sizes]),
        ("lasso, deferred: pointer move -> frame on screen", [ms(la[n]["move_to_frame_ms_median"]) for n in sizes]),
        ("lasso end -> selected indices (kd-tree range + exact polygon test), everything selected",
         [ms(la[n]["select_compute_ms_median"]) if la[n]["select_compute_ms_median"] is not None else "-" for n in sizes]),
        ("lasso -> uint32 selection to Python (observers run) -> ack back, everything selected",
         [ms(la[n]["round_trip_ms_median"]) for n in sizes]),
    ]
    head = "| measure | " + " | ".join(f"{n // 1000}k points" if n < 1_000_000 else f"{n // 1_000_000}M points" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)] + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    kp = r["keypress"]
    presses = kp["prefetch"]["presses"]
    lines += ["", f"| SwipeLabeler, key press -> next image on screen ({presses} presses) | median | p95 |", "|---|---:|---:|",
              f"| with prefetch (default, 6 ahead) | {kp['prefetch']['median_ms']:.0f} ms | {kp['prefetch']['p95_ms']:.0f} ms |",
              f"| without prefetch (`prefetch=0`) | {kp['no_prefetch']['median_ms']:.0f} ms | {kp['no_prefetch']['p95_ms']:.0f} ms |"]
    return "\n".join(lines)


def doc_tables(r: dict) -> dict[str, str]:
    """docs/widgets.md's Speed tables by name (tools/gen_docs.py fills them from the committed JSON)."""
    scatter, labeler = docs_tables(r).split("\n\n", 1)
    load = (r.get("machine") or {}).get("load_avg")
    when = f"(commit `{(r.get('commit') or '?')[:10]}`" + (f", load average {load[0]:.1f}" if load else "") + ")"
    return {"scatter": f"{scatter}\n\n{when}", "labeler": labeler}


if __name__ == "__main__":
    main()
