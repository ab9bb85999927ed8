"""Start a real Jupyter server / JupyterLab on a free loopback port for the server and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from helpers import free_port

REPO = Path(__file__).resolve().parents[1]
# other server extensions installed in the environment, switched off to start faster
OTHER_EXTENSIONS = ("jupyter_lsp", "jupyter_server_terminals", "jupytext", "notebook_shim", "jupyterlab_jupytext",
                    "nbclassic", "voila", "jupyter_server_ydoc", "jupyter_collaboration")


class JupyterProcess:
    """`jupyter server` or `jupyter lab` in its own process group, stopped with the fixture."""

    def __init__(self, root: Path, app: str = "server", token: str = "curator-test-token",
                 enable_via_config: bool = False, env: dict[str, str] | None = None, extra: list[str] | None = None,
                 log: Path | None = None):
        self.root, self.app, self.token = Path(root), app, token
        self.port = free_port()
        exts = {name: False for name in OTHER_EXTENSIONS}
        exts["jupyterlab"] = app == "lab"
        if not enable_via_config:
            exts["curator_widgets.server"] = True
        args = [sys.executable, "-m", "jupyter", app, "--no-browser", "--allow-root", f"--port={self.port}",
                "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={self.root}", f"--ServerApp.jpserver_extensions={exts!r}",
                "--ServerApp.open_browser=False", *(extra or [])]
        full_env = {**os.environ, **(env or {})}
        full_env.pop("CURATOR_SERVER_ROOT", None)
        full_env.pop("JPY_SESSION_NAME", None)
        if enable_via_config:
            # exactly what `pip install` puts in etc/jupyter/jupyter_server_config.d/
            full_env["JUPYTER_CONFIG_PATH"] = str(REPO / "jupyter-config")
        self.log_path = log or (self.root.parent / f"jupyter-{app}-{self.port}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=self.root, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 120.0) -> "JupyterProcess":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"}, timeout=2)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"jupyter {self.app} did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group: the server and its kernels
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
