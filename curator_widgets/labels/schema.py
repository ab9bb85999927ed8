"""The label store's tables, written once for both backends; each dialect fills a few blanks.

Migrations are numbered: a store records the version it holds in `meta`, and opening it
applies the missing steps in one write transaction (the same steps on SQLite and PostgreSQL).
"""

from __future__ import annotations

SCHEMA_VERSION = 2
UNSURE = "unsure"
BINARY = ("negative", "positive")
SOURCES = ("human", "model", "seed", "oracle", "import", "review")
TRAIN_SOURCES = ("human", "seed", "oracle", "import", "review")  # labels a classifier may learn from
LEASE = 600.0  # seconds a claimed chip stays reserved for its annotator without a label
PENDING, DONE, DROPPED = 0, 1, 2  # queue states

# {serial}: the event sequence column; {float}: a double; {norowid}: SQLite's WITHOUT ROWID clause
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY, label_set TEXT NOT NULL, unsure INTEGER NOT NULL, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq {serial},
    task TEXT NOT NULL,
    chip_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'undo')),
    label TEXT,
    undoes BIGINT REFERENCES events(seq),
    annotator TEXT,
    session TEXT,
    source TEXT NOT NULL,
    time {float} NOT NULL);
CREATE INDEX IF NOT EXISTS events_task_seq ON events(task, kind, seq);
CREATE INDEX IF NOT EXISTS events_chip ON events(task, chip_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS events_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TABLE IF NOT EXISTS current (
    task TEXT NOT NULL, chip_id INTEGER NOT NULL, label TEXT NOT NULL, seq BIGINT NOT NULL,
    source TEXT NOT NULL, PRIMARY KEY (task, chip_id)) {norowid};
CREATE TABLE IF NOT EXISTS queue (
    task TEXT NOT NULL, chip_id INTEGER NOT NULL, position {float} NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 labelled, 2 dropped
    source TEXT, added {float} NOT NULL, shown {float}, PRIMARY KEY (task, chip_id)) {norowid};
CREATE INDEX IF NOT EXISTS queue_order ON queue(task, state, position);
""",
    # teams: each chip to `per_chip` annotators; a claim reserves one of its slots for one person
    2: """
ALTER TABLE tasks ADD COLUMN per_chip INTEGER NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS claims (
    task TEXT NOT NULL, chip_id INTEGER NOT NULL, slot INTEGER NOT NULL, annotator TEXT NOT NULL,
    claimed {float} NOT NULL, expires {float} NOT NULL, done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task, chip_id, slot)) {norowid};
CREATE UNIQUE INDEX IF NOT EXISTS claims_annotator ON claims(task, chip_id, annotator);
CREATE INDEX IF NOT EXISTS claims_open ON claims(task, annotator, done);
""",
}


def migration_statements(version: int, blanks: dict[str, str]) -> list[str]:
    """The statements of one migration step with the dialect's blanks filled."""
    text = MIGRATIONS[version].format(**blanks)
    return [s.strip() for s in text.split(";") if s.strip() and not s.strip().startswith("--")]


def live(alias: str) -> str:
    """SQL that is true when event `alias` has not been undone."""
    return f"NOT EXISTS (SELECT 1 FROM events u_{alias} WHERE u_{alias}.undoes={alias}.seq)"


def latest_labels(columns: str, cond: str = "") -> str:
    """A query for each chip's latest live label event of one task (`cond` filters with alias `e`
    and is repeated for the inner `f`); both dialects run it, so it avoids SQLite's bare columns."""
    inner = cond.replace("e.", "f.")
    return (f"SELECT {columns} FROM events e WHERE e.task=? AND e.kind='label'{cond} AND {live('e')} AND e.seq = "
            f"(SELECT MAX(f.seq) FROM events f WHERE f.task=e.task AND f.chip_id=e.chip_id AND f.kind='label'"
            f"{inner} AND {live('f')})")
