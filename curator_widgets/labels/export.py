"""The curated set out of the label store: a table, CSV / Parquet, or a folder tree of links.
(Other formats, STAC, Hugging Face, FiftyOne, Label Studio, live in curator_widgets.exports.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..atomic import atomic_path
from ..errors import CuratorError
from .schema import UNSURE, latest_labels


class ExportMixin:
    """Export methods of LabelStore (they read through its backend)."""

    def table(self, sources: Sequence[str] | None = None, include_unsure: bool = False) -> pd.DataFrame:
        """The curated set: one row per labelled chip with its label, who/when/how, and manifest paths."""
        cond = "" if sources is None else f" AND e.source IN ({','.join('?' * len(sources))})"
        df = self._frame(latest_labels("e.chip_id AS id, e.label, e.source, e.annotator, e.session, e.time", cond) +
                         " ORDER BY e.chip_id", (self.task, *(sources or ()), *(sources or ())))
        if not include_unsure:
            df = df[df["label"] != UNSURE].reset_index(drop=True)
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        df.insert(2, "task", self.task)
        if self.workspace is not None and len(df):
            man = self.workspace.manifest
            rows = man.iloc[df["id"].to_numpy()]
            df["key"] = rows["key"].to_numpy()
            df["path"] = [str(self.workspace.resolve(p)) for p in rows["path"]]
            df["origin"] = rows["origin"].to_numpy()
            df["ground_truth"] = rows["label"].to_numpy()
        return df

    def export(self, path: str | os.PathLike, format: str | None = None, sources: Sequence[str] | None = None,
               include_unsure: bool = False) -> Path:
        """Write the curated set to CSV or Parquet (by suffix or `format`), atomically."""
        path = Path(path).expanduser()
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            raise CuratorError(f"cannot tell the export format of {path.name!r}",
                               "use a .csv or .parquet file name, or pass format='csv' / 'parquet'")
        df = self.table(sources=sources, include_unsure=include_unsure)
        with atomic_path(path, suffix="." + fmt) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        return path

    def export_tree(self, dest: str | os.PathLike, mode: str = "symlink", labels: Sequence[str] | None = None,
                    sources: Sequence[str] | None = None, include_unsure: bool = False) -> dict[str, int]:
        """Lay the curated set out as dest/<label>/<id>_<name> links or copies; sources are never touched.

        `dest` must be new, empty, or an earlier export (it holds `.curator-export.json`);
        re-exporting updates it in place, removing only entries the earlier export made
        (see `curator_widgets.export_tree`). A killed export resumes when run again.
        """
        from ..export_tree import MODES, write_tree

        if self.workspace is None:
            raise CuratorError("export_tree needs the workspace to find each chip's image",
                               "open the store with LabelStore(ws) or LabelStore('path/to/workspace')")
        if mode not in MODES:
            raise CuratorError(f"export mode {mode!r} is not symlink, copy or hardlink",
                               "use mode='symlink' (no extra space) or 'copy' (portable)")
        df = self.table(sources=sources, include_unsure=include_unsure)
        if labels is not None:
            for lab in labels:
                self._check_label(lab)
            df = df[df["label"].isin(list(labels))]
        items = zip(df["id"].tolist(), df["label"].tolist(), df["path"].tolist()) if len(df) else iter(())
        return write_tree(items, dest, mode, self.task, str(self.workspace.root))
