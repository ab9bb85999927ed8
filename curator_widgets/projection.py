"""2-D views of a run's embeddings: UMAP fed with the FAISS kNN graph (so neighbours are computed
once, by FAISS), fit on a sample and the rest placed into it above a size threshold, cached in
`projections/<run>.npy` with the parameters that made it; PCA when umap-learn is not importable.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .atomic import atomic_path, write_json
from .errors import CuratorError
from .placement import _knn, cache_umap_kernels, place  # noqa: F401  (re-exported: projection.place, ...)

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

METHODS = ("umap", "pca")
SAMPLE_THRESHOLD = 50_000   # above this many chips UMAP is fit on a sample and the rest is placed into it
SAMPLE_SIZE = 25_000
PCA_FIT_MAX = 200_000
FORMAT = "curator-projection"


# ============================================================================== cache
def sidecar_path(ws: "Workspace", run: str) -> Path:
    return ws.projection_path(run).with_suffix(".json")


def cached_projection(ws: "Workspace", run: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The stored projection of `run` and how it was made, or None."""
    path, side = ws.projection_path(run), sidecar_path(ws, run)
    if not path.exists() or not side.exists():
        return None
    try:
        meta = json.loads(side.read_text())
        xy = np.load(path)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != meta.get("count"):
        return None
    return xy.astype(np.float32, copy=False), meta


def _cache_key(method: str, count: int, dim: int, fp: str, metric: str, **params: Any) -> dict[str, Any]:
    return {"method": method, "count": int(count), "dim": int(dim), "fingerprint": fp, "metric": metric,
            **{k: (None if v is None else v) for k, v in sorted(params.items())}}


# ============================================================================== project
def project(ws: "Workspace", run: str, method: str = "umap", *, n_neighbors: int = 15, min_dist: float = 0.1,
            n_epochs: int | None = None, sample_threshold: int = SAMPLE_THRESHOLD, sample_size: int = SAMPLE_SIZE,
            seed: int | None = None, recompute: bool = False, progress: bool = True, client: Any = None,
            shard_rows: int | None = None) -> np.ndarray:
    """float32 [N, 2] coordinates of `run`'s chips (row i = chip id i), from the cache when the
    parameters and embeddings are unchanged. `seed=None` lets UMAP use every core (not bit-reproducible).

    Above `sample_threshold` chips, with a Dask cluster (`client=`, $CURATOR_DASK_SCHEDULER or the
    current Client), the chips outside the sample are placed on its workers (`shard_rows` per task),
    from the same neighbours and weights as in one process (see cluster_projection on rounding)."""
    from .index import fingerprint, read_embeddings

    if method not in METHODS:
        raise CuratorError(f"unknown projection method {method!r}", f"use one of {', '.join(METHODS)}")
    if not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
        raise CuratorError(f"n_neighbors={n_neighbors!r} must be an integer >= 2", "use e.g. n_neighbors=15")
    if not 0 <= float(min_dist) <= 1:
        raise CuratorError(f"min_dist={min_dist} must be in [0, 1]", "use e.g. min_dist=0.1")
    if sample_size < n_neighbors + 1 or sample_threshold < sample_size:
        raise CuratorError(f"sample_size={sample_size} / sample_threshold={sample_threshold} do not fit "
                           f"(need n_neighbors < sample_size <= sample_threshold)", "keep the defaults 25000 / 50000")
    emb, _ = read_embeddings(ws, run)
    n, d = emb.shape
    if n == 0:
        raise CuratorError(f"run {run!r} has no embedded chips", "ingest and embed chips first")
    used = method
    if method == "umap" and importlib.util.find_spec("umap") is None:
        warnings.warn("umap-learn is not importable; the projection falls back to PCA (pip install umap-learn)",
                      stacklevel=2)
        used = "pca"
    metric = _index_metric(ws, run)
    key = _cache_key(used, n, d, fingerprint(emb), metric, n_neighbors=int(n_neighbors), min_dist=float(min_dist),
                     n_epochs=n_epochs, sample_threshold=int(sample_threshold), sample_size=int(sample_size),
                     seed=seed) if used == "umap" else _cache_key(used, n, d, fingerprint(emb), metric)
    if not recompute:
        hit = cached_projection(ws, run)
        if hit is not None and hit[1].get("key") == key:
            return hit[0]
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if used == "umap" and n < max(n_neighbors + 2, 8):
        used, info["note"] = "pca", f"{n} chips are too few for UMAP with n_neighbors={n_neighbors}"
        key = _cache_key(used, n, d, fingerprint(emb), metric)
    if used == "umap":
        try:
            xy, info = _umap(ws, run, emb, metric, int(n_neighbors), float(min_dist), n_epochs, int(sample_threshold),
                             int(sample_size), seed, progress, client, shard_rows)
        except ImportError as e:  # umap-learn present but broken (e.g. numba mismatch)
            warnings.warn(f"umap-learn failed to import ({e}); the projection falls back to PCA", stacklevel=2)
            used, key = "pca", _cache_key("pca", n, d, fingerprint(emb), metric)
    if used == "pca":
        from .index import prepare

        xy = pca_2d(emb, lambda x: prepare(x, metric))
    xy = np.ascontiguousarray(xy, dtype=np.float32)
    meta = {"format": FORMAT, "run": run, "key": key, "method": used, "count": int(n),
            "seconds": round(time.perf_counter() - t0, 3), "created": _now(), **info}
    path = ws.projection_path(run)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, xy)
    write_json(sidecar_path(ws, run), meta)
    return xy


def _index_metric(ws: "Workspace", run: str) -> str:
    from .index import params_path

    p = params_path(ws, run)
    if p.exists():
        try:
            return str(json.loads(p.read_text()).get("metric", "cosine"))
        except json.JSONDecodeError:
            return "cosine"
    return "cosine"


def _ensure_index(ws: "Workspace", run: str, progress: bool):
    """The run's index, built (auto) if missing and extended if chips were embedded since."""
    from .index import add_to_index, build_index, load_index, params_path

    if not ws.index_path(run).exists() or not params_path(ws, run).exists():
        return build_index(ws, run, progress=progress)
    try:
        count = json.loads(params_path(ws, run).read_text()).get("count")
    except json.JSONDecodeError:
        count = None
    from .index import read_embeddings

    if count is not None and read_embeddings(ws, run)[0].shape[0] > count:
        add_to_index(ws, run, progress=progress)
    return load_index(ws, run)


def _umap(ws: "Workspace", run: str, emb: np.ndarray, metric: str, k: int, min_dist: float, n_epochs: int | None,
          threshold: int, sample_size: int, seed: int | None, progress: bool, client: Any = None,
          shard_rows: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    import umap  # noqa: F401  (ImportError -> PCA fallback in project)

    cache_umap_kernels()

    from .cluster import get_client
    from .index import _chunks, _rows, make_index

    n = emb.shape[0]
    if n <= threshold:
        x = np.concatenate([c for _, c in _chunks(emb, metric)])
        sim = _ensure_index(ws, run, progress)
        from .index import knn_graph

        ids, dists = knn_graph(ws, run, k - 1, include_self=True, progress=progress)
        model, y = _fit(x, ids, dists, metric, k, min_dist, n_epochs, seed)
        return y, {"fit": int(n), "placed": 0, "knn": f"workspace index ({sim.params['factory']})"}
    rng = np.random.default_rng(0 if seed is None else seed)
    fit_ids = np.sort(rng.choice(n, sample_size, replace=False))
    cluster = get_client(client)
    x = None if cluster is not None else np.concatenate([c for _, c in _chunks(emb, metric)])
    xs = _rows(emb, fit_ids, metric) if x is None else x[fit_ids]  # the same rows: prepare() is row-wise
    # the sample's own index: the neighbours of every chip among the sample, one FAISS pass
    sim = make_index(xs, metric, "ivf" if len(xs) >= 10_000 else "flat", target_recall=0.9,
                     seed=0 if seed is None else seed)
    ids_s, d_s = _knn(sim, xs, k, metric, exclude_self=True)
    model, ys = _fit(xs, ids_s, d_s, metric, k, min_dist, n_epochs, seed)
    y = np.empty((n, 2), np.float32)
    y[fit_ids] = ys
    info = {"fit": int(len(fit_ids)), "placed": int(n - len(fit_ids)), "knn": f"sample index ({sim.params['factory']})"}
    if cluster is not None:
        from .cluster_projection import cluster_place

        rest, placed = cluster_place(cluster, emb, fit_ids, sim, model, ys, metric, k, n_epochs, seed,
                                     shard_rows=shard_rows, progress=progress)
        y[rest] = placed
        return y, {**info, "cluster": True}
    rest = np.setdiff1d(np.arange(n), fit_ids, assume_unique=True)
    ids_r, d_r = _knn(sim, x[rest], k, metric, exclude_self=False)
    y[rest] = place(model, ys, ids_r, d_r, n_epochs, seed)
    return y, info


def _fit(x: np.ndarray, ids: np.ndarray, dists: np.ndarray, metric: str, k: int, min_dist: float,
         n_epochs: int | None, seed: int | None):
    import umap

    k = min(k, ids.shape[1])
    init = _pca_init(x, seed)
    with warnings.catch_warnings():
        # precomputed_knn without an NNDescent index only disables umap's own transform (we place the rest
        # ourselves); n_jobs is overridden to 1 when a seed is set, which is what a seed asks for.
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        model = umap.UMAP(n_neighbors=k, min_dist=min_dist, n_epochs=n_epochs, init=init, random_state=seed,
                          metric="cosine" if metric == "cosine" else "euclidean",
                          precomputed_knn=(ids[:, :k].astype(np.int32), dists[:, :k].astype(np.float32), None),
                          tqdm_kwds={"disable": True})
        y = model.fit_transform(x)
    return model, np.asarray(y, dtype=np.float32)


def _pca_init(x: np.ndarray, seed: int | None) -> np.ndarray:
    """UMAP's 'pca' init (scaled to +-10, tiny jitter) computed from the covariance: no SVD of N x d."""
    y = pca_2d(x)
    y = y * (10.0 / max(float(np.abs(y).max()), 1e-12))
    rng = np.random.default_rng(0 if seed is None else seed)
    return (y + rng.normal(scale=1e-4, size=y.shape)).astype(np.float32)


def pca_2d(x: np.ndarray, transform=None) -> np.ndarray:
    """First two principal components of the rows of `x` (streamed; covariance fit on <= 200k rows)."""
    n = x.shape[0]
    tf = transform or (lambda a: np.asarray(a, dtype=np.float32))
    step = max(1, n // PCA_FIT_MAX)
    fit = tf(x[::step]).astype(np.float64)
    mean = fit.mean(0)
    cov = np.cov(fit - mean, rowvar=False) if len(fit) > 1 else np.zeros((x.shape[1], x.shape[1]))
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    comp = vecs[:, ::-1][:, :2]
    if comp.shape[1] < 2:
        comp = np.hstack([comp, np.zeros((comp.shape[0], 2 - comp.shape[1]))])
    comp *= np.where(comp[np.abs(comp).argmax(0), range(2)] < 0, -1, 1)  # deterministic sign
    out = np.empty((n, 2), np.float32)
    for lo in range(0, n, 65_536):
        out[lo: lo + 65_536] = (tf(x[lo: lo + 65_536]) - mean) @ comp
    return out


# ============================================================================== plots
def plot_projection(xy: np.ndarray, color: Sequence[Any] | np.ndarray | None = None, *, ax: Any = None,
                    title: str | None = None, s: float | None = None, alpha: float = 0.8, cmap: str | None = None,
                    legend: bool = True, max_categories: int = 20, colorbar_label: str | None = None) -> Any:
    """Static scatter of a projection for papermill outputs and docs, returning the matplotlib Axes.

    `color`: per-chip labels/cluster ids (categorical, legend; None/NaN shown grey as 'unlabelled')
    or float scores (continuous, colorbar)."""
    xy = np.asarray(xy, dtype=np.float32)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise CuratorError(f"projection has shape {xy.shape}, not [N, 2]", "pass the output of project(ws, run)")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 6))
    n = len(xy)
    size = s if s is not None else float(np.clip(3000.0 / max(n, 1) ** 0.75, 0.3, 30))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if color is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=alpha, c="#1f77b4", linewidths=0, rasterized=True)
        return ax
    values = np.asarray(color, dtype=object) if not isinstance(color, np.ndarray) else color
    if len(values) != n:
        raise CuratorError(f"{len(values)} colors for {n} points", "pass one value per chip (or None)")
    if _is_continuous(values):
        v = np.asarray(values, dtype=np.float64)
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=alpha, c=v, cmap=cmap or "viridis", linewidths=0,
                        rasterized=True, plotnonfinite=True)
        cb = ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.04)
        if colorbar_label:
            cb.set_label(colorbar_label)
        return ax
    import matplotlib

    labels = np.array(["" if _missing(v) else str(v) for v in values], dtype=object)
    cats, counts = np.unique(labels[labels != ""], return_counts=True)
    order = cats[np.argsort(-counts, kind="stable")]
    shown = list(order[:max_categories])
    palette = matplotlib.colormaps[cmap or ("tab10" if len(shown) <= 10 else "tab20")]
    missing = labels == ""
    if missing.any():
        ax.scatter(xy[missing, 0], xy[missing, 1], s=size, alpha=alpha * 0.6, c="#c8c8c8", linewidths=0,
                   rasterized=True, label="unlabelled")
    other = ~missing & ~np.isin(labels, shown)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=size, alpha=alpha, c="#7f7f7f", linewidths=0, rasterized=True,
                   label=f"{len(order) - len(shown)} more")
    for i, cat in enumerate(shown):
        sel = labels == cat
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=alpha, color=palette(i % palette.N), linewidths=0,
                   rasterized=True, label=cat)
    if legend and (shown or missing.any()):
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", markerscale=max(1.0, 20 / size) ** 0.5,
                  frameon=False)
    return ax


def save_projection_plot(xy: np.ndarray, path: str | Path, color: Sequence[Any] | np.ndarray | None = None,
                         title: str | None = None, dpi: int = 110, **kwargs: Any) -> Path:
    """Write a PNG of the projection atomically, without pyplot (safe in headless runs and threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    plot_projection(xy, color=color, ax=ax, title=title, **kwargs)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _is_continuous(values: np.ndarray) -> bool:
    if values.dtype.kind == "f":
        return True
    if values.dtype.kind in "iub":
        return False
    present = [v for v in values.tolist() if not _missing(v)]
    return bool(present) and all(isinstance(v, (float, np.floating)) for v in present)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
