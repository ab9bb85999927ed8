"""IVF indexes whose inverted lists live in a memory-mapped file beside the index (faiss
OnDiskInvertedLists), so a run whose codes exceed RAM is still searched from one process.

Blocks of rows are added to copies of the trained empty index (one block at a time here, or one
shard per Dask worker), written, then merged list by list into one `.ivfdata` file, as FAISS's
distributed on-disk recipe does. Every block adds its rows under their global ids, so the merged
lists hold the same entries in the same order as one in-memory add. The data file's name carries a
fresh token: the index file that names it is replaced atomically, so a crash mid-build or mid-add
leaves the previous index and its data file intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import CuratorError

SUFFIX = ".ivfdata"


def is_on_disk(index: Any) -> bool:
    """True when `index` is an IVF index whose inverted lists are an OnDiskInvertedLists file."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)


def data_file(index: Any) -> Path | None:
    """The `.ivfdata` file an on-disk index reads its lists from (None for an in-memory index)."""
    import faiss

    if not is_on_disk(index):
        return None
    return Path(faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).filename)


def new_data_path(index_path: Path) -> Path:
    """A fresh `<stem>.<token>.ivfdata` beside the index file: never one a saved index already names."""
    return index_path.with_name(f"{index_path.stem}.{uuid.uuid4().hex[:12]}{SUFFIX}")


def remove_stale(index_path: Path, keep: str | None) -> list[Path]:
    """Delete this index's earlier data files (`<stem>.<token>.ivfdata` beside it) except `keep`."""
    removed = []
    for p in index_path.parent.glob(f"{index_path.stem}.*{SUFFIX}"):
        if p.name != keep and p.name.count(".") == index_path.stem.count(".") + 2:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def empty_like(index: Any) -> Any:
    """A trained, empty, in-memory copy of an IVF index (on-disk lists are not cloneable)."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    if not is_on_disk(index):
        out = faiss.clone_index(index)
        out.reset()
        return out
    own, lists = ivf.own_invlists, ivf.invlists
    ivf.own_invlists = False  # swapping the lists out must not free them
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)  # owned by Python: the copy clones it
    ivf.replace_invlists(empty, False)
    try:
        out = faiss.clone_index(index)
    finally:
        ivf.replace_invlists(lists, own)
    out.reset()
    return out


def fill_block(trained: np.ndarray, rows: np.ndarray, first_id: int, path: str, chunk: int = 65536) -> int:
    """Add prepared `rows` under ids first_id.. to a copy of the trained index (as faiss.serialize_index
    gives it); write it to `path`."""
    import faiss

    index = faiss.deserialize_index(trained)
    for lo in range(0, len(rows), chunk):
        part = np.ascontiguousarray(rows[lo:lo + chunk], dtype=np.float32)
        index.add_with_ids(part, np.arange(first_id + lo, first_id + lo + len(part), dtype=np.int64))
    faiss.write_index(index, path)
    return int(index.ntotal)


def merge(trained: Any, sources: Sequence[Any], data_path: Path) -> Any:
    """Merge the inverted lists of `sources` (index file paths or loaded IVF indexes, in row order)
    into `data_path`, installed in the empty `trained` index, which is returned.

    faiss.contrib.ondisk.merge_ondisk does this for files only, read without IO_FLAG_ONDISK_SAME_DIR;
    adding to a saved on-disk index needs that index's own (already loaded) lists as the first source."""
    import faiss

    if trained.ntotal:
        raise CuratorError("the index to merge into is not empty", "merge into empty_like(index)")
    keep, lists = [], faiss.InvertedListsPtrVector()
    for src in sources:
        index = faiss.read_index(str(src), faiss.IO_FLAG_MMAP) if isinstance(src, (str, os.PathLike)) else src
        ivf = faiss.extract_index_ivf(index)
        keep.append(index)  # the lists belong to these objects; they must outlive the merge
        lists.push_back(ivf.invlists)
    ivf = faiss.extract_index_ivf(trained)
    out = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data_path))
    with _quiet_stdout():  # OnDiskInvertedLists prints each resize to the C stdout
        total = out.merge_from_multiple(lists.data(), lists.size(), False)
    trained.ntotal = ivf.ntotal = total
    ivf.replace_invlists(out, True)
    out.this.disown()
    return trained


def build_blocks(trained: Any, blocks: Iterable[tuple[int, np.ndarray]], data_path: Path,
                 on_block: Callable[[int], None] | None = None, before: Sequence[Any] = ()) -> Any:
    """Fill the trained empty index from (first_id, prepared rows) blocks, one block in memory at a time,
    through block files in a temporary folder beside `data_path`; returns the merged on-disk index.
    `before`: loaded indexes whose lists come first (an on-disk index being extended)."""
    import faiss

    blob = faiss.serialize_index(trained)
    tmp = Path(tempfile.mkdtemp(prefix=".blocks-", dir=data_path.parent))
    try:
        files = []
        for i, (first, rows) in enumerate(blocks):
            files.append(str(tmp / f"block{i:05d}.faiss"))
            fill_block(blob, rows, first, files[-1])
            if on_block:
                on_block(len(rows))
        return merge(faiss.deserialize_index(blob), [*before, *files], data_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read(path: Path) -> Any:
    """Read an index whose `.ivfdata` lies beside it, wherever the workspace has been moved."""
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)


def check_ivf(index: Any, factory: str) -> None:
    """On-disk storage needs inverted lists: a clear error for Flat / HNSW / PQ-only indexes."""
    import faiss

    if faiss.try_extract_index_ivf(index) is None:
        raise CuratorError(f"on_disk=True needs an IVF index, but {factory!r} has no inverted lists",
                           "use kind='auto' or an IVF kind such as 'ivf' / 'IVF4096,SQ8', or on_disk=False")


class _quiet_stdout:
    """Silence C-level stdout (faiss's resize messages) for a block, leaving Python's sys.stdout alone."""

    def __enter__(self) -> None:
        import sys

        sys.stdout.flush()
        self.saved = os.dup(1)
        self.null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self.null, 1)

    def __exit__(self, *exc: Any) -> None:
        os.dup2(self.saved, 1)
        os.close(self.saved)
        os.close(self.null)
