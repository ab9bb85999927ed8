"""Chips as uint8 tensors: decoded with PIL in DataLoader workers, cached in memory when they fit.

Training and embedding both read chips through here so a chip is resized the same way for
both (and for a user's own query image in `embed_images`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .errors import CuratorError
from .images import read_image

# Fraction of available RAM the decoded-chip cache may take, and a hard cap.
CACHE_FRACTION = 0.3
CACHE_MAX_BYTES = 8 << 30
_CACHE: dict[tuple[str, int], dict] = {}


def resize_chip(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8 (PIL bilinear with antialiasing when shrinking)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise CuratorError(f"expected an RGB image shaped HxWx3, got {list(image.shape)}",
                           "convert it to 3-channel RGB uint8 first (e.g. PIL .convert('RGB'))")
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """One chip as a contiguous uint8 [3, size, size] tensor."""
    return torch.from_numpy(np.ascontiguousarray(resize_chip(image, size).transpose(2, 0, 1)))


class ChipDataset(Dataset):
    """Decodes chip files (by path) to uint8 tensors; a bad file yields a flag, not a worker crash."""

    def __init__(self, paths: Sequence[str], size: int):
        self.paths = list(paths)
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return to_tensor(read_image(self.paths[i]), self.size), i, ""
        except CuratorError as e:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), i, e.problem


def default_workers(n: int) -> int:
    """Worker processes for decoding: none for a handful of chips, else up to 8 (one per core)."""
    if n < 256:
        return 0
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def fits_in_memory(n: int, size: int) -> bool:
    """Whether n decoded chips of `size` px may be cached in RAM."""
    return n * 3 * size * size <= min(CACHE_MAX_BYTES, CACHE_FRACTION * available_memory())


def chip_paths(ws, ids: Sequence[int] | np.ndarray) -> list[str]:
    table = ws.table()
    col = table.column("path").to_pylist()
    return [str(ws.resolve(col[int(i)])) for i in ids]


def check_ids(ws, ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """Validated int64 chip ids (all chips when None), with a clear error for unknown ones."""
    n = len(ws)
    if ids is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).astype(np.int64).ravel()
    bad = arr[(arr < 0) | (arr >= n)]
    if len(bad):
        raise CuratorError(f"chip ids {bad[:5].tolist()} are not in this workspace (ids are 0..{n - 1})",
                           "pass ids taken from ws.manifest['id']")
    return arr


def _decode(paths: list[str], ids: np.ndarray, size: int, workers: int | None, progress: bool | str) -> torch.Tensor:
    from .progress import progress_bar as tqdm

    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    if not paths:
        return out
    nw = default_workers(len(paths)) if workers is None else workers
    loader = DataLoader(ChipDataset(paths, size), batch_size=64, num_workers=nw, shuffle=False)
    bad: list[tuple[int, str]] = []
    with tqdm(total=len(paths), desc=progress if isinstance(progress, str) else "decode chips", unit="chip",
              disable=not progress, leave=False) as bar:
        for imgs, idx, errs in loader:
            out[idx] = imgs
            bad += [(int(ids[int(i)]), e) for i, e in zip(idx, errs) if e]
            bar.update(len(idx))
    if bad:
        raise CuratorError(f"{len(bad)} chips cannot be decoded, e.g. chip {bad[0][0]}: {bad[0][1]}",
                           f"replace those files, or leave them out with ids=... (bad ids: {[b[0] for b in bad[:20]]})")
    return out


def load_chips(ws, ids: Sequence[int] | np.ndarray | None = None, size: int = 64, workers: int | None = None,
               progress: bool | str = True, cache: bool = True) -> torch.Tensor:
    """Chips `ids` (default all) as uint8 [n, 3, size, size]; decoded once per process and cached."""
    ids = check_ids(ws, ids)
    if not cache or not fits_in_memory(len(ws), size):
        return _decode(chip_paths(ws, ids), ids, size, workers, progress)
    keys = ws.table().column("key").to_pylist()
    key = (str(ws.root), int(size))
    entry = _CACHE.get(key)
    if entry is None or entry["keys"] != keys[:len(entry["keys"])]:
        entry = {"keys": [], "images": torch.empty(0, 3, size, size, dtype=torch.uint8),
                 "loaded": torch.zeros(0, dtype=torch.bool)}
    if len(keys) > len(entry["keys"]):  # the manifest grew (append-only): extend the cache
        grow = len(keys) - len(entry["keys"])
        entry["images"] = torch.cat([entry["images"], torch.empty(grow, 3, size, size, dtype=torch.uint8)])
        entry["loaded"] = torch.cat([entry["loaded"], torch.zeros(grow, dtype=torch.bool)])
        entry["keys"] = keys
    _CACHE.clear()  # one workspace/size at a time keeps memory bounded
    _CACHE[key] = entry
    t_ids = torch.from_numpy(ids)
    missing = np.unique(ids[~entry["loaded"][t_ids].numpy()])
    if len(missing):
        entry["images"][torch.from_numpy(missing)] = _decode(chip_paths(ws, missing), missing, size, workers, progress)
        entry["loaded"][torch.from_numpy(missing)] = True
    if len(ids) == len(keys) and bool((ids == np.arange(len(keys))).all()):
        return entry["images"]  # all chips in order: share the cache instead of copying it
    return entry["images"][t_ids]


def clear_cache() -> None:
    """Drop decoded chips held in memory (e.g. after chips were replaced on disk)."""
    _CACHE.clear()


def stream_loader(ws, ids: Sequence[int] | np.ndarray, size: int, batch_size: int, shuffle: bool = False,
                  seed: int = 0, workers: int | None = None, pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader of (uint8 [B, 3, size, size], positions, errors) for chip sets too big to cache."""
    ids = check_ids(ws, ids)
    g = torch.Generator().manual_seed(seed)
    nw = default_workers(len(ids)) if workers is None else workers
    return DataLoader(ChipDataset(chip_paths(ws, ids), size), batch_size=batch_size, shuffle=shuffle, generator=g,
                      num_workers=nw, pin_memory=pin_memory, drop_last=drop_last,
                      persistent_workers=False, prefetch_factor=4 if nw else None)
