"""A curated set as FiftyOne's image-classification dataset (data/ + labels.json), which
`fo.Dataset.from_dir(dest, fo.types.FiftyOneImageClassificationDataset)` loads without curator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import CuratorError
from .common import add_imported, curated, file_name, read_json, split_name
from .dest import Payload, write_files

if TYPE_CHECKING:
    from ..labels import LabelStore


def export_fiftyone(store: "LabelStore", dest: str | os.PathLike, sources: Sequence[str] | None = None,
                    include_unsure: bool = False) -> Path:
    """Write dest/data/<id>_<name> copies and dest/labels.json {"classes": [...], "labels": {stem: index}}."""
    df = curated(store, sources, include_unsure)
    classes = list(store.choices)
    names = [file_name(cid, p) for cid, p in zip(df["id"], df["path"])]
    labels = {Path(n).stem: classes.index(lab) for n, lab in zip(names, df["label"])}
    files: list[tuple[str, Payload]] = [(f"data/{n}", Path(p)) for n, p in zip(names, df["path"])]
    files.append(("labels.json", (json.dumps({"classes": classes, "labels": labels}, indent=2) + "\n").encode()))
    return write_files(dest, "fiftyone", files)


def import_fiftyone(store: "LabelStore", path: str | os.PathLike) -> int:
    """Labels from labels.json: targets are class indices (with "classes"), names, or {"label": ...}."""
    path = Path(path).expanduser()
    file = path / "labels.json" if path.is_dir() else path
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        raise CuratorError(f"{file} has no \"labels\" object", "import FiftyOne's labels.json; nothing was written")
    classes = data.get("classes")
    ids, labels, names = [], [], []
    for stem, target in data["labels"].items():
        if target is None:  # FiftyOne writes unlabelled samples as null
            continue
        cid, name = split_name(stem)
        ids.append(cid)
        labels.append(_target_label(target, classes, file))
        names.append(name)
    found = {Path(p).stem: Path(p).name for p in (file.parent / "data").glob("*")}
    originals = [_original(found.get(f"{c:08d}_{n}")) for c, n in zip(ids, names)]
    return add_imported(store, ids, labels, names=originals, origin=str(file))


def _target_label(target: Any, classes: Any, file: Path) -> Any:
    if isinstance(target, dict):
        target = target.get("label")
    if isinstance(target, int) and not isinstance(target, bool):
        if not isinstance(classes, list) or not 0 <= target < len(classes):
            raise CuratorError(f"{file}: class index {target} but classes are {classes}",
                               "the labels.json is damaged; nothing was written")
        return classes[target]
    return target


def _original(data_name: str | None) -> str | None:
    """The chip's original file name, when its image is in data/ (the id prefix removed)."""
    return split_name(data_name)[1] if data_name else None
