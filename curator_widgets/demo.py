"""`curator demo`: the main job end to end on the embedded offline Blue Marble default.

Each step is one function over the workspace, so the demo is resumable: re-running it skips
what is already there. Later steps (train, embed, index, sample, label) register in STEPS.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bbox import WORLD, BBox
from .errors import CuratorError
from .sources import BlueMarbleSource
from .workspace import Workspace

DEFAULTS: dict[str, Any] = {"bbox": WORLD.as_tuple(), "size": 64, "level": 3, "seed": 0}


def step_tile(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Cut the Blue Marble globe (or `bbox`) into chips with land fractions."""
    res = ws.ingest(BlueMarbleSource(level=params["level"]), region=BBox.coerce(params["bbox"]),
                    size=params["size"])
    desc = ws.describe()
    return {"chips_added": res.added, "chips_existing": res.existing, "chips": desc["chips"],
            "ocean_share": desc.get("ocean_share"), "land_chips": desc.get("land_chips"),
            "ocean_chips": desc.get("ocean_chips")}


DEMO_RUN = "demo-simclr"


def step_train(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """SimCLR on the small CNN for a few epochs at 64 px (about a minute on 2 CPU cores); resumes."""
    from .train import train_ssl

    info = train_ssl(ws, run=params.get("run") or DEMO_RUN, method="simclr", backbone="small_cnn", image_size=64,
                     epochs=int(params.get("train_epochs", 4)), batch_size=256, seed=params.get("seed", 0))
    return {k: info[k] for k in ("run", "epoch", "n_train", "loss", "images_per_s", "device", "skipped")}


def step_embed(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Embed every chip with the demo model (float16, L2-normalized); skips rows already embedded."""
    from .embed import embed, embedding_info

    run = params.get("run") or DEMO_RUN
    path = embed(ws, run)
    info = embedding_info(ws, run)
    return {"run": run, "rows": info["count"], "dim": info["dim"], "path": str(path)}


def step_active(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Active learning from one land chip: seed set (64 NN + 32 random), two rounds labelled by an
    oracle reading land_fraction (a stand-in for a person), then the curated set exported."""
    from .active import ActiveLoop, Oracle

    run = params.get("run") or _latest_embedding_run(ws)
    if run is None:
        return {"skipped": "no embeddings in the workspace yet (the embed step makes them)"}
    land = ws.manifest["land_fraction"].fillna(0).to_numpy()
    if (land >= 0.5).sum() == 0 or (land < 0.5).sum() == 0:
        return {"skipped": "the region has no land/ocean contrast to learn"}
    reference = int(land.argmax())  # the first all-land chip
    n = len(ws)  # the published 64 + 32 and batches of 32, scaled down for small demo regions
    k, r, batch = min(64, max(8, n // 10)), min(32, max(4, n // 20)), min(32, max(8, n // 20))
    loop = ActiveLoop(ws, run, name="demo-land", strategy="entropy+kmeans", batch_size=batch, max_rounds=2,
                      budget=0.5, seed=params.get("seed", 0))
    oracle = Oracle(ws, column="land_fraction", positive=lambda v: v >= 0.5)
    loop.seed(reference, k=k, r=r)
    loop.run(oracle)  # resumable: a finished loop returns at once
    exports = ws.root / "exports"
    labels_csv = loop.store.export(exports / "demo-land-labels.csv")
    ranked = loop.predicted_positives()
    ranked.to_csv(exports / "demo-land-predicted.csv", index=False)
    loop.plot(loop.dir / "learning_curve.png")
    last = loop.state["history"][-1]
    return {"run": run, "reference": reference, "rounds": loop.round, "labelled_pct": round(last["labelled_pct"], 2),
            "positives_found": last.get("positives_found"), "true_recall": round(last.get("true_recall", 0), 3),
            "true_f1": round(last.get("true_f1", 0), 3), "predicted_positives": len(ranked),
            "labels_csv": str(labels_csv)}


def _latest_embedding_run(ws: Workspace) -> str | None:
    files = sorted((p for p in (ws.root / "embeddings").glob("*.npy") if not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime)
    return files[-1].stem if files else None


def step_index(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """FAISS similarity index of the demo embeddings (reused when up to date) and one query: the
    10 chips most similar to the first all-land chip, with the land share among them."""
    from .index import build_index, search

    run = params.get("run") or _latest_embedding_run(ws)
    if run is None:
        return {"skipped": "no embeddings in the workspace yet (the embed step makes them)"}
    sim = build_index(ws, run, progress=False)
    land = ws.manifest["land_fraction"].fillna(0).to_numpy()[: sim.ntotal]
    query = int(land.argmax())
    res = search(ws, run, ids=query, k=10)
    return {"run": run, "index": sim.params["factory"], "chips": sim.ntotal, "recall_at_10": sim.params.get("recall_at_10"),
            "query_chip": query, "neighbours_land_share": round(float((land[res.ids] >= 0.5).mean()), 2),
            "neighbour_similarity": round(float(res.scores.mean()), 3)}


def step_project(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """2-D UMAP of the embeddings on the FAISS kNN graph (cached) and a scatter PNG colored by land
    fraction in projections/<run>.png. The first UMAP call in a process compiles numba kernels."""
    from .projection import cached_projection, project, save_projection_plot

    run = params.get("run") or _latest_embedding_run(ws)
    if run is None:
        return {"skipped": "no embeddings in the workspace yet (the embed step makes them)"}
    xy = project(ws, run, n_epochs=200, seed=params.get("seed", 0), progress=False)
    meta = cached_projection(ws, run)[1]
    png = ws.projection_path(run).with_suffix(".png")
    if not png.exists() or png.stat().st_mtime < ws.projection_path(run).stat().st_mtime:
        land = ws.manifest["land_fraction"].to_numpy(dtype=float, na_value=np.nan)[: len(xy)]
        save_projection_plot(xy, png, color=land, title=f"{run}: {len(xy)} Blue Marble chips ({meta['method']})",
                             colorbar_label="land fraction")
    return {"run": run, "method": meta["method"], "points": len(xy), "computed_in_s": meta["seconds"], "png": str(png)}


def step_sample(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """The headline: a diverse (farthest-point) sample of the embedded chips vs a random one of the
    same size; diversity pulls the ~70% ocean share of the globe down. Both saved under samples/."""
    from .sampling import diverse_vs_random

    return diverse_vs_random(ws, n=int(params.get("sample_n", 500)), run=params.get("run"), seed=params.get("seed", 0))


STEPS: list[tuple[str, Callable[[Workspace, dict[str, Any]], dict[str, Any]]]] = [("tile", step_tile),
                                                                                  ("train", step_train),
                                                                                  ("embed", step_embed),
                                                                                  ("index", step_index),
                                                                                  ("project", step_project),
                                                                                  ("sample", step_sample),
                                                                                  ("active", step_active)]


def _check_same_chips(ws: Workspace, p: dict[str, Any]) -> None:
    """A re-run must cut the same chips: mixing sizes or regions would also reuse a model trained on others."""
    before = ws.meta.get("parameters", {}).get("demo")
    if not before:
        return
    changed = [f"{k} {_show(before.get(k))} -> {_show(p[k])}" for k in ("bbox", "size", "level")
               if _show(before.get(k)) != _show(p[k])]
    if changed:
        raise CuratorError(f"{ws.root} was made by an earlier demo with other chips ({'; '.join(changed)})",
                           "use a new --workspace for other parameters, or re-run with the earlier ones to resume")


def _show(v: Any) -> Any:
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else v


def run_demo(workspace: str | Path, **params: Any) -> dict[str, Any]:
    """Run every demo step into `workspace`; returns a summary per step with timings."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    if not isinstance(p["size"], int) or p["size"] < 8:
        raise CuratorError(f"chip size {p['size']!r} is too small", "use --size 64 (or 32, 128...)")
    BBox.coerce(p["bbox"])  # every input error before anything is written
    ws = Workspace.open_or_create(workspace, description="curator demo on Blue Marble Next Generation")
    _check_same_chips(ws, p)
    ws.record("parameters", "demo", {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()})
    summary: dict[str, Any] = {"workspace": str(ws.root)}
    for name, fn in STEPS:
        t0 = time.perf_counter()
        out = fn(ws, p)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        summary[name] = out
    return summary
