"""The label store: append-only label events, so no label is ever lost, in SQLite or PostgreSQL.

store.py holds events, current labels and undo; queue.py what to show next; export.py the
curated set; team.py several annotators (claims, agreement, consensus); backend.py what a
database must offer, with sqlite_backend.py (the embedded default, one file per workspace) and
postgres_backend.py (teams); schema.py the shared tables and their migrations.
"""

from .backend import _INHERITED
from .schema import BINARY, DONE, DROPPED, LEASE, PENDING, SCHEMA_VERSION, SOURCES, TRAIN_SOURCES, UNSURE
from .store import URL_ENV, LabelStore, has_labels
from .team import fleiss_kappa

__all__ = ["BINARY", "DONE", "DROPPED", "LEASE", "PENDING", "SCHEMA_VERSION", "SOURCES", "TRAIN_SOURCES", "UNSURE",
           "URL_ENV", "LabelStore", "fleiss_kappa", "has_labels", "_INHERITED"]
