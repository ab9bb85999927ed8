"""`curator demo`: the main job end to end on the embedded offline Blue Marble default.

Each step is one function over the workspace, so the demo is resumable: re-running it skips
what is already there. Later steps (train, embed, index, sample, label) register in STEPS.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .bbox import WORLD, BBox
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


STEPS: list[tuple[str, Callable[[Workspace, dict[str, Any]], dict[str, Any]]]] = [("tile", step_tile)]


def run_demo(workspace: str | Path, **params: Any) -> dict[str, Any]:
    """Run every demo step into `workspace`; returns a summary per step with timings."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    ws = Workspace.open_or_create(workspace, description="curator demo on Blue Marble Next Generation")
    ws.record("parameters", "demo", {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()})
    summary: dict[str, Any] = {"workspace": str(ws.root)}
    for name, fn in STEPS:
        t0 = time.perf_counter()
        out = fn(ws, p)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        summary[name] = out
    return summary
