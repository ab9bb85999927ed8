"""The CLI and the label store against careless or hostile input: one clear error, nothing written.

Read-only cases run as a real unprivileged user: as root (this box) the test forks and drops to
`nobody`, since root ignores file permissions; as a normal user it runs directly.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest

from curator_widgets import CuratorError, LabelStore, Workspace
from curator_widgets.cli import main
from curator_widgets.sources.base import Chip

NOBODY = 65534


def as_unprivileged(fn):
    """fn() run by a user that file permissions apply to; returns its result (or raises its error)."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = ("ok", fn())
        except BaseException as e:  # noqa: BLE001 - any error travels back to the test
            import traceback
            out = ("err", e if isinstance(e, CuratorError) else RuntimeError(traceback.format_exc()))
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(out))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        kind, value = pickle.loads(f.read())
    os.waitpid(pid, 0)
    if kind == "err":
        raise value
    return value


@pytest.fixture
def open_tmp():
    """A temp folder any user can enter (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="curator-sec-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(d)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_ws(root: Path, n: int = 8) -> Workspace:
    ws = Workspace.create(root)
    ws.add_chips((Chip(key=f"k{i}", meta={"source": "t"}, image=np.full((8, 8, 3), i, np.uint8)) for i in range(n)),
                 progress=False)
    return ws


def test_a_foreign_sqlite_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()
    before = digest(path)
    with pytest.raises(CuratorError, match="is an SQLite database but not a curator label store .tables: invoices"):
        LabelStore(path, n_items=5)
    assert digest(path) == before and not Path(f"{path}-wal").exists()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no WAL switched on


def test_label_status_never_writes(tmp_path, capsys):
    ws = small_ws(tmp_path / "ws")
    assert main(["label", "-w", str(ws.root), "--status"]) == 0  # no store yet: nothing is created
    assert not ws.labels_path.exists()
    with LabelStore(ws, task="t1") as s:
        s.add(1, "positive")
    before = digest(ws.labels_path)
    capsys.readouterr()
    assert main(["label", "-w", str(ws.root), "--status", "--task", "new-task"]) == 0
    assert '"queued": 0' in capsys.readouterr().out
    assert digest(ws.labels_path) == before  # (SQLite may add an empty -wal/-shm pair to read a WAL store)
    assert not Path(f"{ws.labels_path}-wal").stat().st_size
    con = sqlite3.connect(ws.labels_path)
    assert "new-task" not in {r[0] for r in con.execute("SELECT name FROM tasks")}


def test_a_store_in_a_read_only_folder_is_read_and_refuses_writes(open_tmp):
    ws = small_ws(open_tmp / "ws")
    s = LabelStore(ws)
    s.add_many([1, 2, 3], ["positive", "negative", "positive"])
    s.close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a writer that dies without closing: its label waits in the WAL
        writer = LabelStore(ws)  # held until _exit, so no __del__ closes it (a close would checkpoint the WAL)
        writer.add(3, "negative")
        os._exit(0)
    os.waitpid(pid, 0)
    assert Path(f"{ws.labels_path}-wal").stat().st_size > 0
    for p in ws.root.rglob("*"):  # readable by all (atomic writes make files private), writable by none
        p.chmod(0o555 if p.is_dir() else 0o444)
    ws.root.chmod(0o555)

    def read():
        store = LabelStore(Workspace.open(ws.root))
        return store.read_only, store.counts()

    assert as_unprivileged(read) == (True, {"negative": 2, "positive": 1, "unsure": 0})  # the WAL's label too

    def write():
        LabelStore(Workspace.open(ws.root)).add(4, "positive")

    with pytest.raises(CuratorError, match="is open read-only"):
        as_unprivileged(write)


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, open_tmp, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["demo", "--workspace", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    locked = open_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code = as_unprivileged(lambda: main(["demo", "--workspace", str(locked / "demo")]))
    assert code == 2
    assert main(["ingest", "-w", str(tmp_path / "w"), "--size", "0"]) == 2
    assert "--size 0 is not a chip size" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_demo_refuses_to_mix_chip_sizes(tmp_path, capsys):
    from curator_widgets import demo

    ws = Workspace.create(tmp_path / "d")
    ws.record("parameters", "demo", {**demo.DEFAULTS, "bbox": [-30, -40, 60, 40], "size": 64})
    code = main(["demo", "--workspace", str(ws.root), "--bbox", "-30", "-40", "60", "40", "--size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "earlier demo with other chips (size 64 -> 32)" in err
    assert main(["demo", "--workspace", str(tmp_path / "e"), "--size", "0"]) == 2
    assert "chip size 0 is too small" in capsys.readouterr().err


def test_reversed_dates_and_antimeridian_boxes_are_said(tmp_path, capsys):
    from curator_widgets.commands._bbox import say_antimeridian
    from curator_widgets.index import filter_mask

    ws = small_ws(tmp_path / "ws")
    with pytest.raises(CuratorError, match="date range 2021-01-01 .. 2020-01-01 is reversed"):
        filter_mask(ws, {"date": ("2021-01-01", "2020-01-01")})
    assert filter_mask(ws, {"date": ("2020-01-01", "2021-01-01")}).sum() == 0  # undated chips: fine, no error
    say_antimeridian([170, -10, -175, 10])
    assert "box crosses the antimeridian: 15° wide" in capsys.readouterr().out
    say_antimeridian([-175, -10, 170, 10])
    assert capsys.readouterr().out == ""
