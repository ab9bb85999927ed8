"""Exact farthest-point sampling speed against the published reference, scikit-learn, and memory bandwidth.

CPU: N = 200k, d = 128, k = 1000 Gaussian-mixture points. Rows: the reference pure-Python double
loop of the Curator code (a faithful copy below, timed at a smaller N and extrapolated linearly
in N*k), a scikit-learn `pairwise_distances` k-center greedy (the active-learning baseline, timed
for fewer steps and extrapolated in k), `farthest_point_sample` in float32 and float16 storage with
the eager engine and the `torch.compile`d fused step, the stratified variant, and the
memory-bandwidth bound (N*d*bytes per pick / measured read bandwidth of this machine). GPU
(when CUDA is present): N = 1M, d = 512, k = 10k, reported as a fraction of measured HBM bandwidth.

    .venv/bin/python benchmarks/sampling_speed.py           # ~3-5 min on 2 CPU cores
    .venv/bin/python benchmarks/sampling_speed.py --quick   # N = 5k, d = 32, k = 50, eager only
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

from curator_widgets.sampling import (covering_radius, farthest_point_sample, nearest_pick_distances,  # noqa: E402
                                      random_sample, stratified_farthest_point_sample)


def reference_fps(features: np.ndarray, n: int, i: int) -> list[int]:
    """Faithful copy of the published reference (Curator, DaTechniques.min_max_diverse_embeddings):
    a Python loop over every point per pick, np.linalg.norm per pair, list min/max/index.
    Returns the picked row indices (the original returns the rows and their file names)."""
    set_input = features.copy()
    set_output = []
    picks = []
    idx = i
    set_output.append(set_input[idx])
    picks.append(idx)
    min_distances = [1000] * len(set_input)
    # maximizes the minimum distance
    for _ in range(n - 1):
        for i in range(len(set_input)):
            # distances[i] = minimum of the distances between set_output and one of set_input
            dist = np.linalg.norm(set_input[i] - set_output[-1])
            if min_distances[i] > dist:
                min_distances[i] = dist
        inds = min_distances.index(max(min_distances))
        set_output.append(set_input[inds])
        picks.append(inds)
    return picks


def naive_torch_fps(X: np.ndarray, k: int, start: int) -> np.ndarray:
    """The three-line row-major torch loop the issue measured against: min(m, |x|^2 - 2 X@c + |c|^2), argmax."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    x = x - x.mean(0)
    sq = x.pow(2).sum(1)
    m = torch.full((len(x),), float("inf"))
    picks = [start]
    for _ in range(k - 1):
        c = x[picks[-1]]
        m = torch.minimum(m, sq - 2 * (x @ c) + c.dot(c))
        picks.append(int(m.argmax()))
    return np.asarray(picks)


def sklearn_kcenter(X: np.ndarray, k: int, start: int) -> list[int]:
    """k-center greedy as in the common active-learning code: pairwise_distances to the newest center."""
    from sklearn.metrics import pairwise_distances

    picks = [start]
    min_d = None
    for _ in range(k - 1):
        dist = pairwise_distances(X, X[[picks[-1]]], metric="euclidean")
        min_d = dist if min_d is None else np.minimum(min_d, dist)
        picks.append(int(np.argmax(min_d)))
    return picks


def mixture(n: int, d: int, seed: int = 0, device=None, dtype=None, latent: int = 16):
    """Embedding-like data: a 64-component Gaussian mixture of varied spread in a 16-d latent space,
    mapped linearly to d dims plus a little isotropic noise (low intrinsic dimension, no exact ties)."""
    import torch

    g = torch.Generator(device=device or "cpu").manual_seed(seed)
    centers = torch.randn(64, latent, generator=g, device=device) * 4
    which = torch.randint(0, 64, (n,), generator=g, device=device)
    scale = torch.rand(n, 1, generator=g, device=device) * 1.5 + 0.25
    Z = centers[which] + torch.randn(n, latent, generator=g, device=device) * scale
    A = torch.randn(latent, d, generator=g, device=device) / latent ** 0.5
    X = Z @ A + 0.05 * torch.randn(n, d, generator=g, device=device)
    return X.to(dtype or torch.float32)


POOL_BLOCK = 1 << 18  # the scale benchmarks' synthetic pools are written in blocks of this many rows


def pool_block(n: int, lo: int, d: int, seed: int = 0) -> np.ndarray:
    """Rows lo .. lo + POOL_BLOCK (or to n) of the scale benchmarks' synthetic pool: each block is its own
    mixture (its own centres and projection, seeded by seed + lo), so the pool holds n / POOL_BLOCK mixtures."""
    return mixture(min(n, lo + POOL_BLOCK) - lo, d, seed=seed + lo).numpy()


def read_bandwidth(device: str = "cpu", gib: float = 0.5, repeats: int = 7) -> float:
    """Best read bandwidth (bytes/s) of a full-array reduction, the loop FPS's bound is made of."""
    import torch

    n = int(gib * (1 << 30) / 4)
    buf = torch.ones(n, device=device)
    best = 0.0
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        buf.sum()
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, n * 4 / (time.perf_counter() - t0))
    return best


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cpu_section(N: int, d: int, k: int, quick: bool, compiled: bool) -> dict:
    import torch

    X = mixture(N, d).numpy()
    start = 0
    bw = read_bandwidth("cpu", gib=0.0625 if quick else 0.5)
    rows = []

    def add(method, seconds, bytes_per_pick=None, radius=None, note="", agree=None, picks=None):
        row = {"method": method, "seconds": round(seconds, 3), "ms_per_pick": round(1e3 * seconds / k, 3),
               "radius": None if radius is None else round(float(radius), 4), "note": note}
        if picks is not None:
            row["mean_nn_distance"] = round(float(nearest_pick_distances(X, np.asarray(picks)).mean()), 4)
        if bytes_per_pick:
            row["effective_GBps"] = round(bytes_per_pick * k / seconds / 1e9, 2)
        if agree is not None:
            row["same_picks_as_float32_eager"] = round(float(agree), 4)
        rows.append(row)
        return row

    # reference: measure at a size where it finishes, extrapolate linearly in N * picks
    n_ref, k_ref = (300, 3) if quick else (4000, 6)
    ref_picks, t_ref = timed(lambda: reference_fps(X[:n_ref], k_ref, start))
    per = t_ref / (n_ref * (k_ref - 1))
    ours_small = farthest_point_sample(X[:n_ref], k_ref, start=start)[0]
    same = list(map(int, ours_small)) == list(map(int, ref_picks))
    add("reference pure-Python loop (extrapolated)", per * N * k,
        note=f"timed at N={n_ref}, {k_ref - 1} picks: {1e6 * per:.2f} us per point per pick")

    k_sk = min(k, 10 if quick else 100)
    sk_picks, t_sk = timed(lambda: sklearn_kcenter(X, k_sk, start))
    add("sklearn pairwise_distances k-center", t_sk * (k - 1) / (k_sk - 1), note=f"timed for {k_sk} picks")

    bound32 = N * d * 4 * k / bw
    add("memory-bandwidth bound float32", bound32, N * d * 4, note=f"read bandwidth {bw / 1e9:.1f} GB/s (torch sum, best of 7)")
    add("memory-bandwidth bound float16", bound32 / 2, N * d * 2)

    (p32, r32), t = timed(lambda: farthest_point_sample(X, k, start=start, dtype="float32", engine="eager",
                                                                 progress=False))
    base = add("exact FPS float32 (eager)", t, N * d * 4, r32[-1], agree=1.0, picks=p32)
    pn, t_naive = timed(lambda: naive_torch_fps(X, k, start))
    add("naive row-major torch loop float32", t_naive, N * d * 4, agree=np.mean(pn == p32))
    for lay in ("features", "rows"):
        (pl, rl), t = timed(lambda: farthest_point_sample(X, k, start=start, dtype="float32", engine="eager",
                                                           layout=lay, progress=False))
        add(f"exact FPS float32 (eager, layout {lay})", t, N * d * 4, rl[-1], agree=np.mean(pl == p32))
    sk_same = bool(np.array_equal(np.asarray(sk_picks), p32[:k_sk]))
    (p16, r16), t = timed(lambda: farthest_point_sample(X, k, start=start, dtype="float16", engine="eager",
                                                                 progress=False))
    add("exact FPS float16 (eager)", t, N * d * 2, r16[-1], agree=np.mean(p16 == p32))
    if compiled:
        for dt, nbytes in (("float32", 4), ("float16", 2)):
            _, t_c = timed(lambda: farthest_point_sample(X[:4096], 2, dtype=dt, engine="compiled"))  # compile + warm
            (pc, rc), t = timed(lambda: farthest_point_sample(X, k, start=start, dtype=dt, engine="compiled",
                                                                 progress=False))
            add(f"exact FPS {dt} (compiled)", t, N * d * nbytes, rc[-1], agree=np.mean(pc == p32),
                note=f"first call incl. compile {t_c:.1f} s, not counted")
    (ps, _), t = timed(lambda: stratified_farthest_point_sample(X, k, start=start, progress=False))
    m = min(N, max(10_000, 10 * k))
    add("stratified FPS (m=max(10000,10k), redraw every k/10)", t, None, covering_radius(X, ps),
        note=f"m={m}; radius is the exact covering radius of its picks", picks=ps)
    rnd = random_sample(X, k, seed=0)
    add("random sample (for scale)", 0.0, None, covering_radius(X, rnd), picks=rnd)
    for r in rows:
        if r["method"].startswith(("exact", "reference", "sklearn", "stratified", "naive")):
            r["x_bound_float32"] = round(r["seconds"] / bound32, 2)
            r["x_naive_loop"] = round(r["seconds"] / max(round(t_naive, 3), 1e-3), 2)  # the table's own seconds
    from curator_widgets.sampling import calibrate_layout

    return {"N": N, "d": d, "k": k, "threads": torch.get_num_threads(), "read_bandwidth_GBps": round(bw / 1e9, 2),
            "calibrated_layout": {"float32": calibrate_layout(d, "float32"), "float16": calibrate_layout(d, "float16")},
            "rows": rows, "reference_same_picks": same, "sklearn_same_picks": sk_same,
            "float32_eager_seconds": base["seconds"]}


def gpu_section(N: int, d: int, k: int) -> dict:
    import torch

    bw = read_bandwidth("cuda", gib=4.0, repeats=10)
    rows = []
    for dt, nbytes in ((torch.float16, 2), (torch.float32, 4)):
        X = mixture(N, d, device="cuda", dtype=dt)
        farthest_point_sample(X, 3, dtype=dt, device="cuda")  # warm up kernels and cuBLAS
        for engine in ("eager", "compiled"):
            try:
                torch.cuda.synchronize()
                (p, r), t = timed(lambda: farthest_point_sample(X, k, start=0, dtype=dt, device="cuda", engine=engine,
                                                                 progress=False))
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001 - report, do not hide, a failing engine
                rows.append({"method": f"exact FPS {str(dt)[6:]} ({engine})", "error": f"{type(e).__name__}: {e}"})
                continue
            achieved = N * d * nbytes * k / t
            rows.append({"method": f"exact FPS {str(dt)[6:]} ({engine})", "seconds": round(t, 3),
                         "ms_per_pick": round(1e3 * t / k, 4), "effective_GBps": round(achieved / 1e9, 1),
                         "fraction_of_HBM": round(achieved / bw, 3), "radius": round(float(r[-1]), 4)})
        del X
        torch.cuda.empty_cache()
    return {"N": N, "d": d, "k": k, "device": torch.cuda.get_device_name(0), "hbm_read_GBps": round(bw / 1e9, 1),
            "rows": rows}


SHOWN = {  # the docs' names for the rows, in the docs' order
    "reference pure-Python loop (extrapolated)": "reference pure-Python loop (extrapolated)",
    "sklearn pairwise_distances k-center": "scikit-learn pairwise_distances k-center (extrapolated)",
    "memory-bandwidth bound float32": "memory-bandwidth bound, float32",
    "memory-bandwidth bound float16": "memory-bandwidth bound, float16",
    "naive row-major torch loop float32": "naive row-major torch loop, float32 (the issue's three lines)",
    "exact FPS float32 (eager)": "`farthest_point_sample`, float32, eager (default layout)",
    "exact FPS float32 (eager, layout features)": "`farthest_point_sample`, float32, eager, features-major",
    "exact FPS float32 (eager, layout rows)": "`farthest_point_sample`, float32, eager, row-major",
    "exact FPS float16 (eager)": "`farthest_point_sample`, float16 storage, eager",
    "exact FPS float32 (compiled)": "`farthest_point_sample`, float32, compiled",
    "exact FPS float16 (compiled)": "`farthest_point_sample`, float16 storage, compiled",
    "stratified FPS (m=max(10000,10k), redraw every k/10)":
        "`stratified_farthest_point_sample`, m = max(10,000, 10k), redraw every k/10 picks",
}


def _num(v, fmt: str = "{:,.2f}") -> str:
    return "" if v is None else fmt.format(v)


def doc_tables(doc: dict) -> dict[str, str]:
    """docs/sampling.md's speed table and the sentences quoting it (tools/gen_docs.py fills them)."""
    rows = {r["method"]: r for r in doc.get("cpu") or []}
    order = [m for m in SHOWN if m in rows] + [m for m in rows if m not in SHOWN]
    cells = []
    for m in order:
        r = rows[m]
        cells.append([SHOWN.get(m, m), _num(r.get("seconds")), _num(r.get("x_bound_float32")),
                      _num(r.get("x_naive_loop")), _num(r.get("same_picks_as_float32_eager"), "{:.0%}"),
                      _num(r.get("radius")), _num(r.get("mean_nn_distance"))])
    load = (doc.get("machine") or {}).get("load_avg")
    k = doc.get("k", 0)
    table = markdown_table([f"method (N = {doc.get('N', 0):,}, d = {doc.get('d')})", f"seconds ({k:,} picks)",
                            "x the float32 bound", "x the naive loop", "same picks as float32 eager",
                            "covering radius", "mean distance to nearest pick"], cells)
    when = (f"{doc.get('threads')} torch threads, measured read bandwidth {doc.get('read_bandwidth_GBps')} GB/s, "
            f"calibrated layout {doc.get('calibrated_layout')}; commit `{(doc.get('commit') or '?')[:10]}`"
            + (f", load average {load[0]:.1f}" if load else "") + f", whole run {doc.get('wall_s', 0) / 60:.1f} min.")
    out = {"fps": f"{table}\n\n{when}"}
    get = lambda m, key="seconds": (rows.get(m) or {}).get(key)  # noqa: E731
    e32, naive = get("exact FPS float32 (eager)"), get("naive row-major torch loop float32")
    c32, c16 = get("exact FPS float32 (compiled)"), get("exact FPS float16 (compiled)")
    ref, sk = get("reference pure-Python loop (extrapolated)"), get("sklearn pairwise_distances k-center")
    best_name = min((m for m in rows if m.startswith("exact FPS") and get(m)), key=get, default=None)
    if best_name and ref and sk:
        best = get(best_name)
        out["summary"] = (
            f"The fastest exact engine here is {SHOWN.get(best_name, best_name)} at "
            f"**{get(best_name, 'x_bound_float32'):.2f}x the float32 bandwidth bound** (target: within 2x), "
            f"{ref / best:,.0f}x faster than the published reference and {sk / best:,.0f}x faster than "
            f"scikit-learn. The default (auto: eager, layout chosen by calibration) takes {e32:.2f} s against "
            f"{naive:.2f} s for the naive row-major loop ("
            + (f"{naive / e32:.1f}x faster)" if e32 <= naive else f"{e32 / naive:.1f}x slower)")
            + (f"; compiled float32 {c32:.2f} s, compiled float16 {c16:.2f} s" if c32 and c16 else "") + ".")
    strat = next((m for m in rows if m.startswith("stratified")), None)
    rnd = rows.get("random sample (for scale)")
    ex = rows.get("exact FPS float32 (eager)")
    if strat and rnd and ex:
        s = rows[strat]
        out["stratified"] = (
            f"The stratified variant takes {s['seconds']:.2f} s against {e32:.2f} s for exact eager FPS; its covering radius is {s['radius']:.2f} against {ex['radius']:.2f} for exact FPS and "
            f"{rnd['radius']:.2f} for a random sample, and its mean distance from a point to its nearest pick is "
            f"{s['mean_nn_distance']:.2f} against {ex['mean_nn_distance']:.2f} (exact) and {rnd['mean_nn_distance']:.2f} "
            "(random); lower is better on both.")
    g = doc.get("gpu")
    if g:
        out["gpu"] = (f"GPU {g['device']}, N = {g['N']:,}, d = {g['d']}, k = {g['k']:,}, measured HBM read "
                      f"{g['hbm_read_GBps']} GB/s:\n\n" + markdown_table(
                          ["method", "seconds", "ms_per_pick", "effective_GBps", "fraction_of_HBM", "error"], g["rows"],
                          header=["method", "seconds", "ms per pick", "GB/s", "fraction of HBM", "error"]))
    else:
        out["gpu"] = "No GPU in the committed run: the GPU rows come from `benchmarks/gpu_checks.sh` on a lent device."
    return out


def main(argv=None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=5k, d=32, k=50, eager engine only")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--no-compiled", action="store_true", help="skip the torch.compile engine")
    ap.add_argument("--threads", type=int, help="torch CPU threads for every row, bandwidth included (default: torch's)")
    ap.add_argument("--gpu-n", type=int, default=1_000_000)
    ap.add_argument("--gpu-d", type=int, default=512)
    ap.add_argument("--gpu-k", type=int, default=10_000)
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU section (a lent GPU machine's time is short)")
    ap.add_argument("--out", type=Path, default=RESULTS / "sampling_speed.json")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.gpu_only and not torch.cuda.is_available():
        ap.error("--gpu-only needs a CUDA device; run without it on the CPU")
    warnings.filterwarnings("ignore", message=".*non-writable.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    N, d, k = (5_000, 32, 50) if args.quick else (args.n, args.d, args.k)
    res = {"benchmark": "sampling_speed", "quick": args.quick, "cpu": []}
    if not args.gpu_only:
        cpu = cpu_section(N, d, k, args.quick, compiled=not (args.quick or args.no_compiled))
        res.update({"cpu": cpu["rows"], **{k_: v for k_, v in cpu.items() if k_ != "rows"}})
        print(f"Exact FPS, N={N} d={d} k={k}, CPU with {cpu['threads']} torch threads, "
              f"measured read bandwidth {cpu['read_bandwidth_GBps']} GB/s")
        print(markdown_table(["method", "seconds", "ms_per_pick", "effective_GBps", "x_bound_float32", "x_naive_loop",
                              "same_picks_as_float32_eager", "radius", "mean_nn_distance", "note"], cpu["rows"],
                             header=["method", "seconds", "ms/pick", "GB/s", "x bound32", "x naive loop", "same picks",
                                     "radius", "mean NN", "note"]))
        print(f"reference loop picks == ours on its subset: {cpu['reference_same_picks']}; "
              f"sklearn k-center picks == ours: {cpu['sklearn_same_picks']}")
    if torch.cuda.is_available():
        gN, gd, gk = (100_000, 128, 500) if args.quick else (args.gpu_n, args.gpu_d, args.gpu_k)
        res["gpu"] = gpu_section(gN, gd, gk)
        g = res["gpu"]
        print(f"\nGPU {g['device']}: N={gN} d={gd} k={gk}, measured HBM read {g['hbm_read_GBps']} GB/s")
        for r in g["rows"]:
            print("  ", r)
    else:
        res["gpu"] = None
        print("\nGPU section: no CUDA device on this machine")
    # seed 0: the mixture data, the start pick and the random sample
    return write_results(args.out, res, seeds=[0], started=started)


if __name__ == "__main__":
    main()
