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
