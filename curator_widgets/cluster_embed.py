"""Embedding on a Dask cluster: one task per shard of chips, the encoder loaded once per worker,
features written straight into a chunked zarr float16 array (chunk = shard) that
`load_embeddings` opens lazily.

Each task writes only its own chunk, so tasks never contend and a retried task rewrites the same
bytes; finished shards are recorded after each one, so an interrupted run resumes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CuratorError
from .zarr_embeddings import zarr_path

_MODELS: dict[tuple, Any] = {}  # per worker process: (workspace, model run, checkpoint mtime) -> encoder


def _worker_model(root: str, model_run: str) -> Any:
    """The encoder of `model_run`, loaded on this worker's first task and kept for the next ones."""
    from .models import resolve_device
    from .train import load_model
    from .workspace import Workspace

    ws = Workspace.open(root)
    stamp = max((p.stat().st_mtime_ns for p in ws.model_dir(model_run).glob("*")), default=0)
    key = (root, model_run, stamp)
    if key not in _MODELS:
        _MODELS.clear()  # one encoder per worker at a time
        _MODELS[key] = load_model(ws, model_run, device=resolve_device("auto"))
    return _MODELS[key]


def _embed_shard(root: str, model_run: str, out: str, lo: int, hi: int, batch_size: int, normalize: bool,
                 tta: bool, size: int, amp: bool) -> tuple[int, int]:
    """Embed chips [lo, hi) in batches aligned as the single-process `embed` aligns them, write the chunk."""
    import torch
    import zarr

    from .data import load_chips
    from .embed import FP16_MAX, encode_views
    from .models import resolve_device
    from .workspace import Workspace

    ws = Workspace.open(root)
    model = _worker_model(root, model_run)
    dev = resolve_device("auto")
    images = load_chips(ws, np.arange(lo, hi, dtype=np.int64), size, workers=0, progress=False, cache=False)
    parts = []
    with torch.no_grad():
        for b0 in range(0, len(images), batch_size):
            feats = encode_views(model, images[b0:b0 + batch_size], batch_size=batch_size, device=dev, amp=amp,
                                 tta=tta)
            if normalize:
                feats = torch.nn.functional.normalize(feats, dim=1)
            parts.append(feats.clamp(-FP16_MAX, FP16_MAX).numpy().astype(np.float16))
    zarr.open_array(out, mode="r+")[lo:hi] = np.concatenate(parts)
    return lo, hi


def cluster_embed(ws: Any, run: str, model_run: str | None = None, *, client: Any = None, shard_rows: int = 8192,
                  batch_size: int = 256, normalize: bool = True, tta: bool = False, image_size: int | None = None,
                  amp: bool = True, resume: bool = True, progress: bool = True) -> Path:
    """`embed` on a Dask cluster into embeddings/<run>.zarr (float16, chunks of `shard_rows` chips)."""
    import zarr

    from .atomic import write_json
    from .cluster import get_client
    from .embed import _read_json, _same
    from .progress import progress_bar as tqdm
    from .train import load_model

    cl = get_client(client)
    if cl is None:
        raise CuratorError("cluster_embed needs a Dask cluster",
                           "pass client= or set CURATOR_DASK_SCHEDULER, or call embed(ws, run) for one process")
    if int(batch_size) < 1 or int(shard_rows) < 1:
        raise CuratorError(f"batch_size={batch_size} and shard_rows={shard_rows} must be >= 1", "use e.g. 256 and 8192")
    model_run = model_run or run
    model = load_model(ws, model_run)  # here too: fails early and clearly when the run has no model
    n, dim, size = len(ws), model.dim, int(image_size or model.image_size)
    if n == 0:
        raise CuratorError(f"workspace {ws.root} has no chips to embed", "ingest chips first (ws.ingest or `curator ingest`)")
    out = zarr_path(ws, run)
    sidecar = ws.embeddings_path(run).with_suffix(".json")
    progress_file = out.parent / f".{run}.zarr-progress.json"
    meta = {"run": run, "model_run": model_run, "dim": dim, "normalized": bool(normalize), "model": model.fingerprint,
            "image_size": size, "dtype": "float16", "format": "zarr", "shard_rows": int(shard_rows)}
    if tta:
        meta["tta"] = "dihedral8"
    old = _read_json(sidecar) if resume else None
    if old is not None and old.get("format") == "zarr" and _same(old, meta) and old.get("count") == n and out.exists():
        return out
    state = _read_json(progress_file) if resume else None
    done: set[int] = set()
    if (state is not None and _same(state, meta) and state.get("count") == n and state.get("shard_rows") == shard_rows
            and out.exists()):
        done = {int(lo) for lo in state.get("done", [])}
    else:
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        zarr.create_array(str(out), shape=(n, dim), chunks=(int(shard_rows), dim), dtype="float16", fill_value=0)
    todo = [lo for lo in range(0, n, int(shard_rows)) if lo not in done]
    futures = [cl.submit(_embed_shard, str(ws.root), model_run, str(out), lo, min(n, lo + int(shard_rows)),
                         int(batch_size), bool(normalize), bool(tta), size, bool(amp), pure=False) for lo in todo]
    with tqdm(total=n, initial=n - sum(min(n, lo + shard_rows) - lo for lo in todo), desc=f"embed {run} (cluster)",
              unit="chip", disable=not progress, leave=False) as bar:
        for fut in futures:  # recorded in shard order: a resume never skips an unfinished shard
            lo, hi = fut.result()
            done.add(lo)
            write_json(progress_file, {**meta, "count": n, "done": sorted(done)})
            bar.update(hi - lo)
    write_json(sidecar, {**meta, "count": n})
    progress_file.unlink(missing_ok=True)
    ws.record("embeddings", run, {**meta, "count": n})
    return out

