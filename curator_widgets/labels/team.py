"""Several people on one task: a shared queue where a chip goes to `per_chip` annotators and
never to two people at once beyond that, who labelled what and how fast, agreement (kappa),
a consensus label, and the disagreements as a review queue; a mixin of LabelStore.

A claim reserves one of a chip's `per_chip` slots (a row in `claims`, unique per slot and per
person), so no database can over-assign a chip; on PostgreSQL the candidate rows are also
locked with `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass each other instead of
colliding, and on SQLite the claim runs inside the store's write lock.
"""

from __future__ import annotations

import time as _time
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import CuratorError
from .backend import Tx
from .schema import LEASE, TRAIN_SOURCES, UNSURE, live


class TeamMixin:
    """Team methods of LabelStore (they use its task, annotator and backend)."""

    # ------------------------------------------------------------------ bookkeeping inside writes
    def _human_votes(self, con: Tx, cid: int) -> int:
        row = con.execute(f"SELECT COUNT(DISTINCT annotator) FROM events e WHERE e.task=? AND e.chip_id=? AND "
                          f"e.kind='label' AND e.source='human' AND {live('e')}", (self.task, cid)).fetchone()
        return int(row[0])

    def _complete(self, con: Tx, cid: int) -> bool:
        """Whether a chip needs no more labels: a training label (one annotator per chip), or
        `per_chip` people's labels, or a reviewer's / seed / import label (several per chip)."""
        if not self._train_labelled(con, [cid]):
            return False
        if self.per_chip <= 1:
            return True
        other = con.execute(f"SELECT 1 FROM events e WHERE e.task=? AND e.chip_id=? AND e.kind='label' AND "
                            f"e.source IN ('seed', 'oracle', 'import', 'review') AND {live('e')} LIMIT 1",
                            (self.task, cid)).fetchall()
        return bool(other) or self._human_votes(con, cid) >= self.per_chip

    def _claim_answered(self, con: Tx, cid: int, who: str, now: float) -> None:
        cur = con.execute("UPDATE claims SET done=1 WHERE task=? AND chip_id=? AND annotator=?", (self.task, cid, who))
        if cur.rowcount == 0:  # labelled without a claim: take a slot, so the chip goes to per_chip people in all
            con.execute("INSERT INTO claims (task, chip_id, slot, annotator, claimed, expires, done) SELECT ?, ?, x.s, "
                        "?, ?, ?, 1 FROM (SELECT COALESCE(MAX(slot) + 1, 0) AS s FROM claims WHERE task=? AND "
                        "chip_id=?) AS x WHERE x.s >= 0 ON CONFLICT DO NOTHING",
                        (self.task, cid, who, now, now, self.task, cid))

    def _claim_reopened(self, con: Tx, cid: int, who: str, now: float) -> None:
        """An undone label gives the chip back to the person who labelled it (for `LEASE` seconds)."""
        con.execute("UPDATE claims SET done=0, expires=? WHERE task=? AND chip_id=? AND annotator=?",
                    (now + LEASE, self.task, cid, who))

    # ------------------------------------------------------------------ the shared queue
    def claim(self, n: int = 1, annotator: str | None = None, lease: float = LEASE) -> list[int]:
        """The next `n` queued chips for one annotator, reserved for them for `lease` seconds.

        Chips they hold already come first (a reloaded page shows the same chip); a chip is never
        handed to more people than the task's `per_chip`, nor twice to one person. A label
        answers the claim; `release` gives chips back; an expired claim is handed on.
        """
        who = annotator or self.annotator
        if int(n) < 1:
            raise CuratorError(f"claim needs n >= 1, got {n}", "pass how many chips to reserve")
        now = _time.time()
        lock = " FOR UPDATE OF q SKIP LOCKED" if self.backend == "PostgreSQL" else ""
        with self._write(serialise=self.backend != "PostgreSQL") as con:
            con.execute("DELETE FROM claims WHERE task=? AND done=0 AND expires<?", (self.task, now))
            mine = [int(r[0]) for r in con.execute(
                "SELECT c.chip_id FROM claims c JOIN queue q ON q.task=c.task AND q.chip_id=c.chip_id WHERE c.task=? "
                "AND c.annotator=? AND c.done=0 AND q.state=0 ORDER BY q.position LIMIT ?",
                (self.task, who, int(n))).fetchall()]
            want = int(n) - len(mine)
            if want > 0:
                rows = con.execute(
                    "SELECT q.chip_id FROM queue q WHERE q.task=? AND q.state=0 AND NOT EXISTS (SELECT 1 FROM claims c "
                    "WHERE c.task=q.task AND c.chip_id=q.chip_id AND c.annotator=?) AND (SELECT COUNT(*) FROM claims c "
                    "WHERE c.task=q.task AND c.chip_id=q.chip_id) < ? ORDER BY q.position LIMIT ?" + lock,
                    (self.task, who, self.per_chip, want + self.per_chip)).fetchall()
                for (cid,) in rows:
                    # a fresh count in the insert itself: on PostgreSQL this statement's snapshot is newer
                    # than the row lock taken above, so it sees every claim committed before it
                    got = con.execute(
                        "INSERT INTO claims (task, chip_id, slot, annotator, claimed, expires, done) SELECT ?, ?, x.s, "
                        "?, ?, ?, 0 FROM (SELECT COUNT(*) AS n, COALESCE(MAX(slot) + 1, 0) AS s FROM claims WHERE "
                        "task=? AND chip_id=?) AS x WHERE x.n < ? ON CONFLICT DO NOTHING RETURNING chip_id",
                        (self.task, cid, who, now, now + float(lease), self.task, cid, self.per_chip)).fetchall()
                    if got:
                        mine.append(int(cid))
                        if len(mine) == int(n):
                            break
        return mine

    def release(self, chip_ids: Iterable[int] | None = None, annotator: str | None = None) -> int:
        """Give back an annotator's unanswered claims (all when None), e.g. when they close the page."""
        who = annotator or self.annotator
        with self._write() as con:
            if chip_ids is None:
                return int(con.execute("DELETE FROM claims WHERE task=? AND annotator=? AND done=0",
                                       (self.task, who)).rowcount)
            return con.executemany("DELETE FROM claims WHERE task=? AND annotator=? AND done=0 AND chip_id=?",
                                   [(self.task, who, int(c)) for c in self._check_ids(list(chip_ids))])

    # ------------------------------------------------------------------ who, how fast, how much they agree
    def votes(self) -> pd.DataFrame:
        """Each annotator's current (latest live) human label per chip: columns chip_id, annotator, label."""
        df = self._frame(f"SELECT e.chip_id, e.annotator, e.label, e.seq FROM events e WHERE e.task=? AND "
                         f"e.kind='label' AND e.source='human' AND {live('e')} ORDER BY e.seq", (self.task,))
        df = df.drop_duplicates(["chip_id", "annotator"], keep="last")
        return df[["chip_id", "annotator", "label"]].reset_index(drop=True)

    def annotators(self, gap: float = 300.0) -> pd.DataFrame:
        """Per annotator: labels (live), chips, undos, claims held, median seconds per label and
        labels per hour (pauses longer than `gap` seconds are not labelling time)."""
        ev = self._frame("SELECT annotator, kind, time FROM events WHERE task=? AND source='human' ORDER BY seq",
                         (self.task,))
        votes = self.votes()
        held = dict(self._read("SELECT annotator, COUNT(*) FROM claims WHERE task=? AND done=0 GROUP BY annotator",
                               (self.task,)))
        rows = []
        for who in sorted(set(ev["annotator"].dropna()) | set(held)):
            mine = ev[(ev["annotator"] == who) & (ev["kind"] == "label")]["time"].to_numpy(dtype=float)
            steps = np.diff(np.sort(mine))
            steps = steps[steps <= gap]
            mine_votes = votes[votes["annotator"] == who]
            rows.append({"annotator": who, "labels": len(mine_votes), "chips": int(mine_votes["chip_id"].nunique()),
                         "undos": int(((ev["annotator"] == who) & (ev["kind"] == "undo")).sum()),
                         "claimed": int(held.get(who, 0)),
                         "seconds_per_label": float(np.median(steps)) if steps.size else float("nan"),
                         "labels_per_hour": float(3600.0 / steps.mean()) if steps.size and steps.mean() > 0
                         else float("nan")})
        return pd.DataFrame(rows, columns=["annotator", "labels", "chips", "undos", "claimed", "seconds_per_label",
                                           "labels_per_hour"])

    def agreement(self, include_unsure: bool = False) -> dict[str, Any]:
        """Cohen's kappa per pair of annotators (on the chips both labelled) and Fleiss' kappa over
        chips with `per_chip` (at least two) votes; scikit-learn computes Cohen's, Fleiss' is its formula."""
        from sklearn.metrics import cohen_kappa_score

        votes = self.votes()
        if not include_unsure:
            votes = votes[votes["label"] != UNSURE]
        wide = votes.pivot(index="chip_id", columns="annotator", values="label")
        pairs: dict[str, float] = {}
        people = list(wide.columns)
        for i, a in enumerate(people):
            for b in people[i + 1:]:
                both = wide[[a, b]].dropna()
                if len(both) >= 2:
                    k = cohen_kappa_score(both[a].tolist(), both[b].tolist())
                    pairs[f"{a}|{b}"] = float(k) if np.isfinite(k) else float("nan")
        m = max(2, self.per_chip)
        rated = [row.dropna().tolist() for _, row in wide.iterrows()]
        rated = [r[:m] for r in rated if len(r) >= m]
        return {"cohen": pairs, "fleiss": fleiss_kappa(rated, self.choices if include_unsure else self.classes),
                "chips": len(rated), "raters_per_chip": m}

    def consensus(self, min_votes: int | None = None) -> dict[int, str]:
        """chip id -> the team's label: a reviewer's (source "review") when there is one, else the
        strict majority of the people's votes once `min_votes` (per_chip) have voted; ties are left out."""
        need = self.per_chip if min_votes is None else int(min_votes)
        out: dict[int, str] = {}
        for cid, group in self.votes().groupby("chip_id"):
            if len(group) < need:
                continue
            (top, n), *rest = Counter(group["label"]).most_common(2) + [(None, 0)]
            if n > rest[0][1]:
                out[int(cid)] = str(top)
        reviewed = self._read(f"SELECT e.chip_id, e.label FROM events e WHERE e.task=? AND e.kind='label' AND "
                              f"e.source='review' AND {live('e')} ORDER BY e.seq", (self.task,))
        out.update({int(c): lab for c, lab in reviewed})
        return dict(sorted(out.items()))

    def disagreements(self) -> pd.DataFrame:
        """The review queue: chips whose votes differ and that no reviewer has settled yet."""
        votes = self.votes()
        reviewed = {int(r[0]) for r in self._read(
            f"SELECT DISTINCT e.chip_id FROM events e WHERE e.task=? AND e.kind='label' AND e.source='review' AND "
            f"{live('e')}", (self.task,))}
        rows = []
        for cid, group in votes.groupby("chip_id"):
            if group["label"].nunique() > 1 and int(cid) not in reviewed:
                rows.append({"chip_id": int(cid), "votes": dict(zip(group["annotator"], group["label"])),
                             "labels": sorted(set(group["label"]))})
        return pd.DataFrame(rows, columns=["chip_id", "votes", "labels"])

    def team_progress(self) -> dict[str, Any]:
        """What a labeler shows about the team, in two small queries: each person's labels and held
        chips, how many chips are labelled and how many still wait."""
        people: dict[str, dict[str, int]] = {}
        for who, n in self._read(f"SELECT e.annotator, COUNT(*) FROM events e WHERE e.task=? AND e.kind='label' AND "
                                 f"e.source='human' AND {live('e')} GROUP BY e.annotator", (self.task,)):
            people.setdefault(str(who), {"labels": 0, "holding": 0})["labels"] = int(n)
        for who, n in self._read("SELECT annotator, COUNT(*) FROM claims WHERE task=? AND done=0 AND expires>=? "
                                 "GROUP BY annotator", (self.task, _time.time())):
            people.setdefault(str(who), {"labels": 0, "holding": 0})["holding"] = int(n)
        return {"annotators": dict(sorted(people.items())), "labelled": len(self),
                "pending": self.queue_pending(), "per_chip": self.per_chip}

    def change_token(self) -> tuple:
        """Changes whenever anyone labels, undoes, queues or claims: a watcher polls it (PostgreSQL)."""
        return tuple(self._read("SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), (SELECT COUNT(*) FROM queue "
                                "WHERE state=0), (SELECT COUNT(*) FROM claims WHERE done=0)")[0])

    def review(self, chip_id: int, label: str, annotator: str | None = None) -> int:
        """Settle a chip for the team (a label with source "review", which the consensus follows)."""
        return self.add(chip_id, label, annotator=annotator, source="review")

    def _team_training_labels(self, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """With several people per chip, training reads the consensus (plus other training sources)."""
        if self.per_chip <= 1 or "human" not in sources:
            return None
        latest = dict(zip(*self._latest_arrays([s for s in sources if s not in ("human", "review")])))
        latest.update(self.consensus())
        ids = np.array(sorted(latest), dtype=np.int64)
        return ids, np.array([latest[i] for i in ids.tolist()], dtype=object)


def fleiss_kappa(rated: Sequence[Sequence[str]], categories: Sequence[str]) -> float:
    """Fleiss' kappa for items each rated by the same number of raters (NaN when undefined)."""
    if not rated:
        return float("nan")
    cats = {c: j for j, c in enumerate(categories)}
    counts = np.zeros((len(rated), len(cats)))
    for i, r in enumerate(rated):
        for lab in r:
            counts[i, cats[lab]] += 1
    m = counts.sum(1)[0]
    p_item = ((counts * (counts - 1)).sum(1) / (m * (m - 1))).mean()
    p_cat = counts.sum(0) / counts.sum()
    p_e = float((p_cat ** 2).sum())
    return float("nan") if p_e >= 1.0 else float((p_item - p_e) / (1.0 - p_e))
