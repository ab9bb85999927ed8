"""A real PostgreSQL server in a temp dir (Debian's binaries: initdb + pg_ctl), for the label-store
tests and the load benchmark. Root cannot run initdb, so as root the server runs as `postgres`."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path



def _pg_bin() -> Path:
    """CURATOR_PG_BIN, else the newest of Debian's /usr/lib/postgresql/<major>/bin (15 here)."""
    if os.environ.get("CURATOR_PG_BIN"):
        return Path(os.environ["CURATOR_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                   if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def available() -> str | None:
    """None when a server can start here, else why not (the reason a test skips with)."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return (f"PostgreSQL binaries not found in {PG_BIN} (install Debian's postgresql package, "
                "or set CURATOR_PG_BIN); `make test` installs it")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb into a fresh temp dir, serve on a free port and a unix socket in that dir; `url(db)`."""

    def __init__(self, durable: bool = True) -> None:
        """`durable=False` turns off the server's fsync: for tests, whose checks are about what clients
        were told, never about the test machine losing power."""
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="curator-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = _free_port()
        self.user = "curator"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres (or nobody) user
            name = "postgres" if _user_exists("postgres") else "nobody"
            os.chown(self.root, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
            self._as = ["runuser", "-u", name, "--"]
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> "PostgresServer":
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (closing every client's connection) and start again on the same port."""
        self.stop()
        self.start()

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{db}?host={self.root}&port={self.port}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
