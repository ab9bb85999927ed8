"""Label Studio: tasks to label (images + a choices config) out, their annotations back in as
label events that keep who made each one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from xml.sax.saxutils import quoteattr

from ..errors import CuratorError
from .common import add_imported, curated, file_name, read_json, split_name
from .dest import Payload, write_files

if TYPE_CHECKING:
    from ..labels import LabelStore

LOCAL_FILES = "/data/local-files/?d="  # Label Studio's local storage: LOCAL_FILES_DOCUMENT_ROOT=<dest>


def label_config(choices: Sequence[str]) -> str:
    """The labelling interface: the chip image and one choice per label."""
    opts = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in choices)
    return (f'<View>\n  <Image name="image" value="$image"/>\n  <Choices name="label" toName="image" '
            f'choice="single" showInline="true">\n{opts}\n  </Choices>\n</View>\n')


def export_labelstudio(store: "LabelStore", dest: str | os.PathLike, sources: Sequence[str] | None = None,
                       include_unsure: bool = False, ids: Sequence[int] | None = None,
                       url_prefix: str = LOCAL_FILES) -> Path:
    """Write dest/tasks.json, dest/label_config.xml and dest/images/: the labelled set (its labels as
    annotations) plus `ids` still to label (e.g. the queue); images are served from `url_prefix`."""
    df = curated(store, sources, include_unsure)
    rows = list(zip(df["id"].tolist(), df["label"].tolist(), df["annotator"].tolist(), df["path"].tolist()))
    have = set(df["id"].tolist())
    for cid in (ids or []):
        if int(cid) not in have:
            rows.append((int(store._check_ids([cid])[0]), None, None, str(store.workspace.chip_path(int(cid)))))
            have.add(int(cid))
    man = store.workspace.manifest
    tasks, files = [], []
    for cid, lab, who, path in rows:
        name = file_name(cid, path)
        task: dict[str, Any] = {"data": {"image": f"{url_prefix}images/{name}", "chip_id": cid,
                                         "key": man.iloc[cid]["key"]}}
        if lab is not None:
            task["annotations"] = [{"created_username": who, "result": [
                {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [lab]}}]}]
        tasks.append(task)
        files.append((f"images/{name}", Path(path)))
    out: list[tuple[str, Payload]] = [*files, ("tasks.json", (json.dumps(tasks, indent=2) + "\n").encode()),
                                      ("label_config.xml", label_config(store.choices).encode())]
    return write_files(dest, "labelstudio", out)


def import_labelstudio(store: "LabelStore", path: str | os.PathLike) -> int:
    """Annotations of a Label Studio JSON export: every non-cancelled one, oldest first, with its annotator."""
    path = Path(path).expanduser()
    file = path / "tasks.json" if path.is_dir() else path
    tasks = read_json(file)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise CuratorError(f"{file} is not a Label Studio JSON export (a list of tasks)",
                           "export the project as JSON from Label Studio; nothing was written")
    events: list[tuple[str, int, str, str | None, str | None]] = []
    for t in tasks:
        data = t.get("data") or {}
        cid = data.get("chip_id")
        if cid is None:  # a task made elsewhere: the chip id leads its image's file name
            cid = split_name(str(data.get("image", "")).rsplit("/", 1)[-1].rsplit("=", 1)[-1])[0]
        for ann in t.get("annotations") or []:
            if ann.get("was_cancelled"):
                continue
            for res in ann.get("result") or []:
                if res.get("type") == "choices" and (res.get("value") or {}).get("choices"):
                    events.append((str(ann.get("created_at") or ""), cid, res["value"]["choices"][0],
                                   _annotator(ann), data.get("key")))
    events.sort(key=lambda e: e[0])  # stable: equal times keep the file's order
    return add_imported(store, [e[1] for e in events], [e[2] for e in events], [e[3] for e in events],
                        keys=[e[4] for e in events], origin=str(file))


def _annotator(ann: dict[str, Any]) -> str | None:
    """Who made an annotation: Label Studio exports 'email, id' as created_username, or a user object/id."""
    name = ann.get("created_username")
    if isinstance(name, str) and name:
        return name.split(",")[0].strip()
    who = ann.get("completed_by")
    if isinstance(who, dict):
        return who.get("email") or who.get("username") or (f"labelstudio:{who['id']}" if "id" in who else None)
    return f"labelstudio:{who}" if who is not None else None
