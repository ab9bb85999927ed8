"""Helpers the test modules share (`from helpers import ...`; pytest puts tests/ on sys.path), one copy each."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_bench(name: str) -> ModuleType:
    """benchmarks/<name>.py as module `bench_<name>` (registered in sys.modules, so its dataclasses and
    pickled functions resolve), for running a benchmark's --quick mode in-process."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released): for servers to start on, or to be refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_workspace(tmp_path: Path, monkeypatch, n: int = 40):
    """A workspace of `n` random 16 px image files and a tiny fixed encoder that `train.load_model` returns
    for any run: (ws, model, images, paths), for searches by image through a run's model."""
    import numpy as np
    import torch

    from curator_widgets import train
    from curator_widgets.images import write_image
    from curator_widgets.models import Encoder
    from curator_widgets.sources import Chip
    from curator_widgets.workspace import Workspace

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2))
    model = Encoder(net, 32, image_size=16).eval()
    monkeypatch.setattr(train, "load_model", lambda ws, run, device="cpu": model)
    ws = Workspace.create(tmp_path / "ws")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(n)]
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        write_image(paths[-1], im)
    ws.add_chips([Chip(key=f"k{i}", meta={"label": str(i)}, path=p) for i, p in enumerate(paths)], progress=False)
    return ws, model, images, paths

