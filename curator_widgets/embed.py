"""Embeddings of every chip: a float16 memmap `embeddings/<run>.npy` whose row i is manifest id i.

Rows are computed in chunks into a hidden partial file, with progress recorded after each
chunk, so an interrupted `embed` resumes where it stopped; the finished file replaces the
old one atomically, so a failure never damages embeddings that were already complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .atomic import write_json
from .augment import dihedral_views
from .data import fits_in_memory, load_chips, stream_loader, to_tensor
from .errors import CuratorError
from .models import encode, resolve_device

FP16_MAX = 65504.0


def embed(ws, run: str, model_run: str | None = None, batch_size: int = 256, normalize: bool = True,
          device: str = "auto", resume: bool = True, amp: bool = True, chunk_size: int = 8192,
          workers: int | None = None, tta: bool = False, image_size: int | None = None,
          progress: bool = True) -> Path:
    """Embed all chips with the encoder trained as `model_run` (default: `run`); returns the .npy path.

    `tta=True` averages each chip's features over its 8 rotations and reflections (8x the compute):
    on UC Merced it raised retrieval precision (docs/active_learning.md, lever table).
    `image_size` feeds chips at another size than the model was trained at (the CNNs pool globally,
    so any size works): a second, finer scale of the same model for `concat_embeddings`.

    With `resume=True` a finished, up-to-date file is returned at once, an interrupted one is
    continued, and chips added to the manifest since the last embed are the only ones computed.
    """
    from .progress import progress_bar as tqdm

    from .train import load_model

    if int(batch_size) < 1 or int(chunk_size) < 1:
        raise CuratorError(f"batch_size={batch_size} and chunk_size={chunk_size} must be >= 1", "use e.g. batch_size=256")
    model_run = model_run or run
    dev = resolve_device(device)
    model = load_model(ws, model_run, device=dev)
    n, dim, size = len(ws), model.dim, int(image_size or model.image_size)
    if n == 0:
        raise CuratorError(f"workspace {ws.root} has no chips to embed", "ingest chips first (ws.ingest or `curator ingest`)")
    out = ws.embeddings_path(run)
    sidecar = out.with_suffix(".json")
    partial = out.parent / f".{run}.partial.npy"
    partial_meta = out.parent / f".{run}.partial.json"
    meta = {"run": run, "model_run": model_run, "dim": dim, "normalized": bool(normalize),
            "model": model.fingerprint, "image_size": size, "dtype": "float16"}
    if tta:  # recorded only when on, so sidecars written before the option still match
        meta["tta"] = "dihedral8"

    done = 0
    mm = None
    old = _read_json(sidecar) if resume and out.exists() else None
    if old is not None and _same(old, meta):
        if old.get("count") == n:
            return out
        if old.get("count", 0) < n:  # the manifest grew: keep the rows we have, embed the new chips
            prev = np.load(out, mmap_mode="r")
            mm = _new(partial, n, dim)
            mm[:len(prev)] = prev
            done = len(prev)
            del prev
    if mm is None and resume and partial.exists():
        pm = _read_json(partial_meta)
        if pm is not None and _same(pm, meta) and pm.get("count") == n:
            try:
                mm = np.load(partial, mmap_mode="r+")
                done = int(pm.get("rows_done", 0)) if mm.shape == (n, dim) else 0
            except (ValueError, OSError):
                mm = None
            if mm is not None and mm.shape != (n, dim):
                del mm
                mm = None
    if mm is None:
        mm = _new(partial, n, dim)
        done = 0
    write_json(partial_meta, {**meta, "count": n, "rows_done": done})

    cached = fits_in_memory(n, size)
    bar = tqdm(total=n, initial=done, desc=f"embed {run}", unit="chip", disable=not progress, leave=False)
    try:
        for start in range(done, n, chunk_size):
            ids = np.arange(start, min(n, start + chunk_size), dtype=np.int64)
            for b0, images in _chunk_batches(ws, ids, size, batch_size, cached, workers, dev):
                feats = encode_views(model, images, batch_size=batch_size, device=dev, amp=amp, tta=tta)
                if normalize:
                    feats = torch.nn.functional.normalize(feats, dim=1)
                mm[start + b0:start + b0 + len(feats)] = feats.clamp(-FP16_MAX, FP16_MAX).numpy().astype(np.float16)
                bar.update(len(feats))
            mm.flush()
            write_json(partial_meta, {**meta, "count": n, "rows_done": int(ids[-1]) + 1})
    finally:
        bar.close()
    mm.flush()
    del mm
    os.replace(partial, out)
    write_json(sidecar, {**meta, "count": n})
    partial_meta.unlink(missing_ok=True)
    ws.record("embeddings", run, {**meta, "count": n})
    return out


def save_embeddings(ws, run: str, X: np.ndarray, model_run: str | None = None, normalized: bool = True,
                    **meta: Any) -> Path:
    """Store your own features [N, d] (row i = chip id i) as embedding run `run` (float16 + sidecar,
    atomically), so search, sampling and active learning use them like `embed`'s output."""
    from .atomic import atomic_path

    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(ws):
        raise CuratorError(f"features of shape {X.shape} do not match the workspace's {len(ws)} chips",
                           "pass one row per chip, in manifest id order")
    if not np.isfinite(X).all() or np.abs(X).max(initial=0) > FP16_MAX:
        raise CuratorError("features hold NaN/inf or values beyond float16's range (65504)",
                           "normalize or rescale them first")
    path = ws.embeddings_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, X.astype(np.float16))
    info = {**meta, "run": run, "dim": int(X.shape[1]), "count": int(X.shape[0]), "normalized": bool(normalized),
            "model_run": model_run, "dtype": "float16"}
    write_json(path.with_suffix(".json"), info)
    ws.record("embeddings", run, info)
    return path


def load_embeddings(ws, run: str) -> np.ndarray:
    """Memory-mapped float16 [N, d] embeddings of `run` (a lazily read zarr array when they were
    embedded on a cluster), checked against the manifest."""
    from .zarr_embeddings import open_zarr_embeddings

    path = ws.embeddings_path(run)
    arr = open_zarr_embeddings(ws, run)
    if arr is not None:
        if arr.shape[0] != len(ws):
            raise CuratorError(f"embeddings of run {run!r} have {arr.shape[0]} rows but the manifest has {len(ws)} chips",
                               f"re-run cluster_embed(ws, {run!r}) so every chip has a row")
        return arr
    if not path.exists():
        have = sorted(p.stem for p in path.parent.glob("*.npy") if not p.name.startswith("."))
        raise CuratorError(f"no embeddings for run {run!r} in {ws.root} (available: {have or 'none'})",
                           f"compute them: embed(ws, {run!r}) or `curator embed -w {ws.root} --run {run}`")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise CuratorError(f"embeddings file {path} is corrupt ({e})",
                           f"delete it and re-run embed(ws, {run!r}, resume=False)") from None
    if arr.ndim != 2 or arr.dtype != np.float16:
        raise CuratorError(f"embeddings file {path} is {arr.dtype} with shape {arr.shape}, expected float16 [N, d]",
                           f"re-run embed(ws, {run!r}, resume=False)")
    meta = _read_json(path.with_suffix(".json")) or {}
    if meta.get("dim") not in (None, arr.shape[1]):
        raise CuratorError(f"embeddings {path} have {arr.shape[1]} dims but their sidecar says {meta['dim']}",
                           f"re-run embed(ws, {run!r}, resume=False)")
    if arr.shape[0] != len(ws):
        raise CuratorError(f"embeddings {path} have {arr.shape[0]} rows but the manifest has {len(ws)} chips",
                           f"re-run embed(ws, {run!r}): resume=True computes only the chips added since")
    return arr


def concat_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Several embeddings of the same chips side by side, each row unit length and the whole scaled by
    1/sqrt(parts), so the cosine of two joined rows is the mean of the parts' cosines (float32)."""
    unit = [np.asarray(p, dtype=np.float32) for p in parts]
    unit = [p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in unit]
    return np.hstack(unit) / np.float32(np.sqrt(len(unit)))


def embedding_info(ws, run: str) -> dict[str, Any]:
    """The sidecar of `run`'s embeddings: dim, count, normalized, model_run."""
    meta = _read_json(ws.embeddings_path(run).with_suffix(".json"))
    if meta is None:
        raise CuratorError(f"no embeddings sidecar for run {run!r}", f"compute them: embed(ws, {run!r})")
    return meta


def embed_images(model: torch.nn.Module, images: Any, batch_size: int = 256, normalize: bool = True,
                 device: str | torch.device | None = None, tta: bool = False,
                 image_size: int | None = None) -> np.ndarray:
    """Embed a user's own image(s) exactly as `embed` embeds chips: float32 [n, d].

    `images`: one HxWx3 uint8 array, an NxHxWx3 array, a list of HxWx3 arrays (any sizes), or
    image file paths. Floats in [0, 1] are accepted and scaled to uint8. Pass the `tta` and
    `image_size` the run was embedded with (its sidecar's keys) so queries match the pool.
    """
    size = image_size or getattr(model, "image_size", None)
    if size is None or not hasattr(model, "dim"):
        raise CuratorError("embed_images needs an encoder from load_model (it carries image size and normalization)",
                           "model = curator_widgets.load_model(ws, run)")
    arrays = _as_image_list(images)
    batch = torch.stack([to_tensor(a, size) for a in arrays])
    feats = encode_views(model, batch, batch_size=batch_size, device=device, tta=tta)
    if normalize:
        feats = torch.nn.functional.normalize(feats, dim=1)
    return feats.numpy().astype(np.float32)


def encode_views(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256,
                 device: str | torch.device | None = None, amp: bool = True, tta: bool = False) -> torch.Tensor:
    """Features of a batch, averaged over its 8 dihedral views when `tta` (before any normalization)."""
    if not tta:
        return encode(model, images, batch_size=batch_size, device=device, amp=amp)
    views = dihedral_views(images)
    return torch.stack([encode(model, v, batch_size=batch_size, device=device, amp=amp) for v in views]).mean(0)


# ------------------------------------------------------------------------------------------ helpers
def _as_image_list(images: Any) -> list[np.ndarray]:
    from .images import read_image

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise CuratorError(f"images must be HxWx3 or NxHxWx3, got shape {images.shape}",
                               "pass RGB arrays (uint8, channels last)")
    if not isinstance(images, Sequence) or len(images) == 0:
        raise CuratorError("embed_images got no images", "pass an HxWx3 uint8 array, a list of them, or file paths")
    out = []
    for i, im in enumerate(images):
        a = read_image(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im)
        if a.ndim != 3 or a.shape[2] != 3:
            raise CuratorError(f"image {i} has shape {a.shape}, expected HxWx3 (RGB, channels last)",
                               "convert it to RGB (e.g. PIL .convert('RGB')); for CHW arrays use a.transpose(1, 2, 0)")
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = np.clip(a * 255.0 + 0.5, 0, 255)
            a = np.clip(a, 0, 255).astype(np.uint8)
        out.append(a)
    return out


def _chunk_batches(ws, ids: np.ndarray, size: int, batch_size: int, cached: bool, workers: int | None,
                   dev: torch.device):
    """(offset, uint8 images) pieces of one chunk: from the decode cache, or streamed from disk."""
    if cached:
        images = load_chips(ws, ids, size, workers=workers, progress=False)
        for b0 in range(0, len(images), batch_size):
            yield b0, images[b0:b0 + batch_size]
        return
    loader = stream_loader(ws, ids, size, batch_size, shuffle=False, workers=workers, pin_memory=dev.type == "cuda")
    offset = 0
    for x, pos, errs in loader:
        bad = [(int(ids[int(p)]), e) for p, e in zip(pos, errs) if e]
        if bad:
            raise CuratorError(f"chip {bad[0][0]} cannot be decoded: {bad[0][1]}",
                               "replace the file; embed resumes from the last finished chunk")
        yield offset, x
        offset += len(x)


def _new(path: Path, n: int, dim: int) -> np.memmap:
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))


def _same(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("model_run", "dim", "normalized", "model", "image_size", "tta"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
