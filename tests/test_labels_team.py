"""Several annotators on one task, on both backends: claims, per-chip quotas, agreement, consensus."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from curator_widgets import CuratorError, LabelStore
from curator_widgets.labels import SCHEMA_VERSION, TRAIN_SOURCES, fleiss_kappa
from curator_widgets.labels.schema import migration_statements
from curator_widgets.labels.sqlite_backend import SQLiteBackend

CTX = mp.get_context("fork")


def test_claims_hand_each_chip_to_one_person_and_survive_a_reload(labels_db):
    alice = labels_db.open(n_items=100, annotator="alice")
    bob = labels_db.open(n_items=100, annotator="bob")
    alice.queue_add(range(10))
    a, b = alice.claim(3), bob.claim(3)
    assert a == [0, 1, 2] and b == [3, 4, 5]
    assert alice.claim(3) == a  # a reloaded page gets the same chips back
    alice.add(0, "positive")
    assert alice.claim(3) == [1, 2, 6] and bob.claim(1) == [3]
    assert alice.release([6]) == 1 and bob.claim(4) == [3, 4, 5, 6]
    alice.undo()  # an undone label goes back to its labeller, not to the next person
    assert bob.claim(5) == [3, 4, 5, 6, 7] and alice.claim(1) == [0]
    short = labels_db.open(n_items=100, annotator="carol")
    assert short.claim(2, lease=0.0) == [8, 9]
    time.sleep(0.05)
    assert labels_db.open(n_items=100, annotator="dan").claim(2) == [8, 9]  # an expired claim is handed on
    with pytest.raises(CuratorError, match="claim needs n >= 1"):
        alice.claim(0)


def _claimer(where: dict, name: str, out) -> None:
    s = LabelStore(**where, n_items=1000, annotator=name, timeout=120)
    got = []
    while ids := s.claim(2):
        for cid in ids:
            s.add(cid, "positive" if cid % 2 else "negative")
            got.append(cid)
    out.put((name, got))


def test_concurrent_claimers_never_share_a_chip_and_lose_no_label(labels_db):
    """Four processes drain one queue at once (SKIP LOCKED on PostgreSQL, the write lock on SQLite)."""
    s = labels_db.open(n_items=1000)
    s.queue_add(range(120))
    out = CTX.Queue()
    procs = [CTX.Process(target=_claimer, args=(labels_db.where(), f"p{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    done = dict(out.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    every = [c for got in done.values() for c in got]
    assert sorted(every) == list(range(120))  # each chip labelled exactly once: never double-assigned
    ev = s.events()
    assert len(ev) == 120 and ev.groupby("annotator").size().to_dict() == {k: len(v) for k, v in done.items() if v}
    assert s.queue_pending() == 0 and len(s.current()) == 120


def test_each_chip_goes_to_k_people_then_consensus_and_review(labels_db):
    people = {n: labels_db.open(n_items=50, annotator=n, per_chip=2) for n in ("ann", "ben", "cat")}
    ann, ben, cat = people.values()
    assert labels_db.open(n_items=50).per_chip == 2  # stored with the task
    ann.queue_add([1, 2, 3])
    assert ann.claim(3) == [1, 2, 3] and ben.claim(3) == [1, 2, 3] and cat.claim(3) == []  # two per chip
    ann.add_many([1, 2, 3], ["positive", "positive", "negative"])
    assert ann.queue_pending() == 3  # one vote each: still waiting for the second person
    ben.add_many([1, 2, 3], ["positive", "negative", "negative"])
    assert ann.queue_pending() == 0 and cat.claim(3) == []
    assert ann.consensus() == {1: "positive", 3: "negative"}  # chip 2 is a tie: no consensus
    dis = ann.disagreements()
    assert dis["chip_id"].tolist() == [2] and dis["votes"][0] == {"ann": "positive", "ben": "negative"}
    ids, labels = ann.current_arrays(sources=TRAIN_SOURCES)  # what the active loop trains on
    assert dict(zip(ids.tolist(), labels.tolist())) == {1: "positive", 3: "negative"}
    cat.review(2, "negative")
    assert ann.consensus() == {1: "positive", 2: "negative", 3: "negative"} and ann.disagreements().empty
    table = ann.annotators().set_index("annotator")
    assert table.loc["ann", "labels"] == 3 and table.loc["ben", "chips"] == 3 and table.loc["ann", "claimed"] == 0
    with pytest.raises(CuratorError, match="per_chip must be a whole number"):
        labels_db.open(n_items=50, per_chip=0)


def test_agreement_matches_scikit_learn_and_a_published_fleiss_example(labels_db):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 40)
    noisy = {n: np.where(rng.random(40) < p, 1 - truth, truth) for n, p in (("a", 0.1), ("b", 0.3))}
    for name, labs in noisy.items():
        s = labels_db.open(n_items=100, annotator=name, per_chip=2)
        s.add_many(range(40), [("negative", "positive")[v] for v in labs])
    agree = s.agreement()
    assert agree["cohen"]["a|b"] == pytest.approx(cohen_kappa_score(noisy["a"], noisy["b"]))
    assert agree["chips"] == 40 and agree["raters_per_chip"] == 2
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    rated = [[str(j) for j, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(rated, [str(j) for j in range(5)]) == pytest.approx(0.210, abs=5e-4)


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_labels(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for stmt in migration_statements(1, SQLiteBackend.blanks):
        con.execute(stmt)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO tasks VALUES ('default', '[\"negative\", \"positive\"]', 1, 0)")
    con.execute("INSERT INTO events (task, chip_id, kind, label, annotator, session, source, time) "
                "VALUES ('default', 4, 'label', 'positive', 'old', 's', 'human', 0)")
    con.execute("INSERT INTO current VALUES ('default', 4, 'positive', 1, 'human')")
    con.commit()
    con.close()
    s = LabelStore(path, n_items=10, annotator="new")
    assert s.current() == {4: "positive"} and s.per_chip == 1
    assert s._read("SELECT value FROM meta WHERE key='schema_version'")[0][0] == str(SCHEMA_VERSION)
    s.queue_add([5, 6])
    assert s.claim(1) == [5]
