"""Scaffolding the benchmark scripts share, so their set-up and results files cannot drift apart.

Each script starts with

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import ROOT, ...  # puts the repository first on sys.path

and ends with `write_results(out, doc, seeds=[...], started=t_start)`, which adds what makes a
number reproducible (machine, commit, seeds, wall time, date) to every results JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path[:1]:  # this checkout's package, ahead of any installed copy
    sys.path.insert(0, str(ROOT))

# The retrieval benchmark's SSL recipe, stated once: the package's default model (small CNN + SimCLR)
# at ssl_quality.py's budget for it (15 epochs of 2,100 chips = 31k images seen, ~2 min on 2 idle cores).
DEFAULT_SSL = {"backbone": "small_cnn", "method": "simclr", "epochs": 15}


# ----------------------------------------------------------------------------- data
def ucmerced_workspace(root: Path, classes: int | None = None, per_class: int | None = None):
    """UC Merced in place (class folders -> labels) under root/ws, reused when it exists;
    `classes`/`per_class` link the first classes' first images for quick runs."""
    from curator_widgets import FolderSource, Workspace
    from curator_widgets.paths import shared_data_dir

    src = shared_data_dir() / "ucmerced"
    if classes is not None:
        sub = Path(root) / "ucm-subset"
        for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
            (sub / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:per_class]:
                if not (sub / cls.name / f.name).exists():
                    (sub / cls.name / f.name).symlink_to(f)
        src = sub
    ws = Workspace.open_or_create(Path(root) / "ws")
    if len(ws) == 0:
        ws.ingest(FolderSource(src), size=None, progress=False)
    return ws


def pixel_features(images: Any, px: int = 16) -> np.ndarray:
    """Area-downsampled RGB of uint8 [n, 3, h, w] chips, standardised per channel: the baseline
    with no learning at all that every embedding must beat."""
    import torch

    x = torch.nn.functional.interpolate(torch.as_tensor(images).float() / 255, size=(px, px), mode="area")
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    return x.flatten(1).numpy()


def raw_pixels(ws: Any, px: int = 16, size: int = 64) -> np.ndarray:
    """`pixel_features` of every chip, read at `size` px the way training reads them."""
    from curator_widgets.data import load_chips

    return pixel_features(load_chips(ws, size=size, progress=False), px)


def write_embedding_run(ws: Any, run: str, x: np.ndarray, normalized: bool = False,
                        model_run: str | None = None, chunk: int = 262_144) -> Path:
    """Store features as embedding run `run` (float16 .npy + sidecar, the format index/active read),
    atomically and in chunks so a 1M-row run never needs a second full copy in memory."""
    from curator_widgets.atomic import atomic_path, write_json

    path = ws.embeddings_path(run)
    with atomic_path(path, suffix=".npy") as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=x.shape)
        for lo in range(0, len(x), chunk):
            arr[lo:lo + chunk] = x[lo:lo + chunk]
        arr.flush()
        del arr
    write_json(path.with_suffix(".json"), {"run": run, "dim": int(x.shape[1]), "count": int(x.shape[0]),
                                           "normalized": bool(normalized), "model_run": model_run, "dtype": "float16"})
    return path


def ssl_config(quick: bool) -> dict[str, Any]:
    """The SSL recipe the retrieval benchmark trains: fixed here, never picked by a score on the images it
    is evaluated on (an earlier version took ssl_quality.json's best kNN row, which is that)."""
    if quick:
        return {**DEFAULT_SSL, "epochs": 1, "source": "quick"}
    return {**DEFAULT_SSL, "source": "fixed recipe (benchmarks/common.py DEFAULT_SSL)"}


# ----------------------------------------------------------------------------- provenance
def _version(*dists: str) -> str | None:
    from importlib import metadata

    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine() -> dict[str, Any]:
    """What the numbers depend on. Torch is only asked (cuda, threads) when the benchmark loaded it:
    importing it just to describe the machine would cost a benchmark without it ~10 s."""
    torch = sys.modules.get("torch")
    faiss = sys.modules.get("faiss")
    cuda = bool(torch.cuda.is_available()) if torch is not None else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cores": cores, "torch": _version("torch"), "faiss": _version("faiss-cpu", "faiss-gpu-cu12", "faiss"),
            "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "faiss_threads": faiss.omp_get_max_threads() if faiss is not None else None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_avg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """HEAD of this checkout, with "+dirty" when tracked files differ from it; None outside git. Results
    under benchmarks/results/ do not count: a benchmark that writes its JSON before this is asked (the
    protocol command does) would otherwise always mark its own run dirty."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root or ROOT), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def write_results(out: str | os.PathLike, doc: dict[str, Any], *, seeds: Sequence[int], started: float) -> dict[str, Any]:
    """Add machine, commit, seeds, wall time (since `started`, a time.perf_counter()) and date to `doc`
    and write it atomically to `out`; returns `doc`."""
    from curator_widgets.atomic import write_json

    doc.update(machine=machine(), commit=git_commit(), seeds=[int(s) for s in seeds],
               wall_s=round(time.perf_counter() - started, 1),
               date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    write_json(out, doc)
    return doc


# ----------------------------------------------------------------------------- tables
def markdown_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]],
                   header: Sequence[str] | None = None) -> str:
    """Rows (mappings read by `columns`, missing cells blank, or sequences of cells) as a Markdown
    table, the form the docs pages copy."""
    head = list(header or columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.get(c, "") for c in columns] if isinstance(r, Mapping) else list(r)
        lines.append("| " + " | ".join("" if v is None else str(v) for v in cells) + " |")
    return "\n".join(lines)
