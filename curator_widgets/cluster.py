"""Which Dask cluster a step runs on: an explicit `client=`, $CURATOR_DASK_SCHEDULER, or the current Client.

Without any of them every step keeps its single-process path, and dask is never imported, so a
plain install pays nothing for the cluster engine.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import CuratorError, require

SCHEDULER_ENV = "CURATOR_DASK_SCHEDULER"
CONNECT_TIMEOUT = 30.0  # seconds to wait for a scheduler (distributed retries a refused connection until then)
_CONNECTED: dict[str, Any] = {}


def _distributed() -> Any:
    return require("distributed", "a Dask cluster was asked for but the 'distributed' package is not installed",
                   "pip install 'curator-widgets[dask]' (dask[distributed] and zarr)")


def connect(address: str, timeout: float | None = None) -> Any:
    """A Client for a scheduler address (tcp://host:8786), reused while it stays connected."""
    distributed = _distributed()
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    client = _CONNECTED.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise CuratorError(f"cannot reach the Dask scheduler at {address!r} ({type(e).__name__}: {e})",
                           f"start one (`dask scheduler`), fix the address, or unset {SCHEDULER_ENV} "
                           "to run in this process") from None
    _CONNECTED[address] = client
    return client


def local_cluster(n_workers: int | None = None) -> Any:
    """A Client on a LocalCluster of worker processes on this machine (one per core), made once."""
    if "local" not in _CONNECTED or _CONNECTED["local"].status != "running":
        distributed = _distributed()
        cluster = distributed.LocalCluster(processes=True, n_workers=n_workers, threads_per_worker=1)
        _CONNECTED["local"] = distributed.Client(cluster, set_as_default=False)
    return _CONNECTED["local"]


def get_client(client: Any = None) -> Any | None:
    """The cluster to run on, or None for the single-process path.

    `client` may be a distributed.Client, a scheduler address, "local" (a LocalCluster here), or
    False (never a cluster); None
    falls back to $CURATOR_DASK_SCHEDULER, then to the Client current in this process, if any.
    """
    if client is False:
        return None
    if isinstance(client, str):
        return local_cluster() if client == "local" else connect(client)
    if client is not None:
        if not hasattr(client, "submit") or not hasattr(client, "gather"):
            raise CuratorError(f"client={client!r} is not a Dask client",
                               "pass a distributed.Client, a scheduler address such as 'tcp://host:8786', or None")
        return client
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    if address:
        return connect(address)
    if "distributed" not in sys.modules:  # nobody made a Client in this process: stay single-process
        return None
    try:
        return sys.modules["distributed"].get_client()
    except ValueError:  # no current client
        return None


def worker_count(client: Any) -> int:
    """Workers connected now (at least 1, so shard counts stay positive while workers restart)."""
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


class LoopbackCluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, started from the CLI as on a real
    cluster (used by the tests and benchmarks/scale.py); `with LoopbackCluster(2) as c: c.address`."""

    def __init__(self, n_workers: int = 2, threads: int = 1, memory_limit: str = "0", timeout: float = 60.0):
        self.n_workers, self.threads, self.memory_limit, self.timeout = int(n_workers), int(threads), memory_limit, timeout
        self.scheduler: Any = None
        self.workers: list[Any] = []
        self.address = ""

    def _spawn(self, *args: str) -> Any:
        import subprocess

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH"))
                                                             if p)}
        return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def start_worker(self) -> Any:
        """One more `dask worker` process (no nanny: killing it kills the worker)."""
        proc = self._spawn("worker", self.address, "--nthreads", str(self.threads), "--no-nanny", "--no-dashboard",
                           "--memory-limit", self.memory_limit, "--host", "127.0.0.1")
        self.workers.append(proc)
        return proc

    def __enter__(self) -> "LoopbackCluster":
        import socket
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler = self._spawn("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        for _ in range(self.n_workers):
            self.start_worker()
        client = None
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                if self.scheduler.poll() is not None:
                    raise CuratorError(f"`dask scheduler` exited with code {self.scheduler.returncode}",
                                       "run `python -m dask scheduler` by hand to see why")
                try:
                    client = client or connect(self.address, timeout=5)
                    client.wait_for_workers(self.n_workers, timeout=max(1.0, deadline - time.monotonic()))
                    return self
                except (CuratorError, TimeoutError, OSError):
                    time.sleep(0.3)
            raise CuratorError(f"the loopback cluster did not start within {self.timeout:.0f} s",
                               "check that `python -m dask scheduler` runs here")
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: Any) -> None:
        client = _CONNECTED.pop(self.address, None)
        if client is not None:
            client.close()
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            if proc is not None:
                try:
                    proc.wait(10)
                except Exception:  # noqa: BLE001 - a process that ignores SIGTERM
                    proc.kill()
                    proc.wait(5)


def _package_root() -> str:
    """The folder that holds this curator_widgets, so CLI workers import the same copy."""
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])


def gather_with_bar(client: Any, futures: list[Any], desc: str, progress: bool = True,
                    unit: str = "shard") -> list[Any]:
    """The results of `futures` in their order, a progress bar advanced as each task finishes (in any order)."""
    from distributed import as_completed

    from .progress import progress_bar

    with progress_bar(total=len(futures), desc=desc, unit=unit, disable=not progress, leave=False) as bar:
        for _ in as_completed(futures, loop=client.loop):  # this client's loop: it need not be the default one
            bar.update(1)
    return client.gather(futures)
