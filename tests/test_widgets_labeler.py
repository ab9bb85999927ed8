"""Issue 16's labeler and trait fixes, without a browser: the labeler follows the store (bug 3),
never grabs focus (4), undo spares seed labels (5), says what "positive" means (6); one error
type for bad trait values and Enum traits (issue 20); the hover card's text."""

from __future__ import annotations

import time

import numpy as np
import pytest
import traitlets

from curator_widgets import BlueMarbleSource, CuratorError, Workspace
from curator_widgets.labels import LabelStore
from curator_widgets.widgets import EmbeddingView, RegionPicker, SwipeLabeler
from curator_widgets.widgets._base import TraitValueError


@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeler") / "ws"
    Workspace.create(root).ingest(BlueMarbleSource(level=1), region=(-30, 0, 30, 40), size=64, progress=False)
    return root


@pytest.fixture
def ws(ws_dir, tmp_path):
    import shutil

    shutil.copytree(ws_dir, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_labeler_follows_work_queued_elsewhere_without_refresh(ws):
    lab = SwipeLabeler(ws)  # an empty queue: "Queue empty"
    try:
        assert lab.current is None and lab.remaining == 0
        other = LabelStore(ws)  # the active loop / CLI: another connection to the same SQLite file
        other.queue_add([4, 5, 6], source="loop:round1")
        assert wait_for(lambda: lab.upcoming[:3] == [4, 5, 6] and lab.remaining == 3)
        other.add(4, "positive", source="human")
        assert wait_for(lambda: lab.remaining == 2 and lab.counts.get("positive") == 1)  # counts never go stale
    finally:
        lab.close()
    assert wait_for(lambda: not lab._watcher.alive)


def test_labeler_does_not_take_focus_unless_asked(ws):
    assert SwipeLabeler(ws, follow=False).autofocus is False
    assert SwipeLabeler(ws, follow=False, autofocus=True).autofocus is True


def test_undo_stops_at_the_labelers_own_labels_and_says_so(ws):
    store = LabelStore(ws)
    store.add_many([0], "positive", source="seed")  # the reference chip, labelled by the seed set
    lab = SwipeLabeler(ws, ids=[1, 2], follow=False)
    lab.label("negative")
    assert lab.undo() == [1] and lab.notice == ""
    assert lab.undo() == []  # one Ctrl+Z too many: the seed label stays
    assert LabelStore(ws).current() == {0: "positive"}
    assert "nothing more of yours to undo" in lab.notice and "all_sources=True" in lab.notice
    assert lab.undo(all_sources=True) == [0] and LabelStore(ws).current() == {}


def test_card_says_what_positive_means_and_shows_the_reference(ws):
    LabelStore(ws).add_many([7], "positive", source="seed")
    lab = SwipeLabeler(ws, ids=[1], follow=False)
    assert lab.reference_ids == [7]
    assert lab.question == "Is this chip like the reference chip? → positive · ← negative"
    multi = SwipeLabeler(ws, label_set=("forest", "river", "beach"), task="landcover", follow=False)
    assert multi.reference_ids == [] and multi.question == "Which class is this chip? 1 forest · 2 river · 3 beach"
    mine = SwipeLabeler(ws, question="Any clouds?", reference=[2, 3], follow=False)
    assert (mine.question, mine.reference_ids) == ("Any clouds?", [2, 3])


def test_bad_trait_values_raise_one_error_type_across_widgets(ws):
    view = EmbeddingView(np.random.rand(10, 2))
    picker = RegionPicker(ws, chip_size=64, level=1)
    cases = [(view, "gestures", "fast", "gestures must be one of auto, live, deferred"),
             (view, "mouse_mode", "zoom", "mouse_mode must be one of panZoom, lasso"),
             (view, "slow_frame_ms", -1, "slow_frame_ms must be >= 0"),
             (view, "selection", [-1], "non-negative"),
             (picker, "chip_size", 2, "chip_size 2 is out of range"),
             (picker, "level", 9, "level 9 is not served"),
             (picker, "bbox", [0, 10, 5, 5], "south=10.0 is not below north=5.0")]
    for widget, name, value, message in cases:
        before = getattr(widget, name)
        with pytest.raises(TraitValueError, match=message) as e:
            setattr(widget, name, value)
        assert isinstance(e.value, CuratorError) and isinstance(e.value, traitlets.TraitError), name
        assert e.value.fix, f"{name}: the error must say how to fix it"
        assert np.array_equal(getattr(widget, name), before) if isinstance(before, np.ndarray) else getattr(widget, name) == before


def test_hover_card_text_comes_from_python(ws):
    LabelStore(ws).add(3, "positive", source="human")
    scores = np.linspace(0, 1, len(ws))
    view = EmbeddingView(np.random.rand(len(ws), 2), workspace=ws)
    view.color_by(scores, kind="value", title="active score")
    reply, _ = view.info({"index": 3}, [])
    assert reply["ok"] and reply["chip"] == 3 and reply["label"] == "positive"
    assert reply["score"] == f"active score {scores[3]:.3f}"  # 3 decimals, not 6
    assert reply["source"].startswith("bluemarble · BlueMarble_NextGeneration")
    assert view.info({"index": 4}, [])[0]["label"] == "unlabelled"
    assert view.info({"index": 999}, [])[0]["ok"] is False
    from curator_widgets.widgets.embedding_view import missing_name

    assert missing_name("labels") == "unlabelled (no label yet)"  # the legend names the grey points


def test_two_team_labelers_never_show_the_same_chip_and_follow_each_other(ws, labels_db):
    """Two people (their own kernels in real life) on one store: each card holds only its own claimed
    chips, a label from one shows up in the other's team line, closing hands the held chips back."""
    ann = SwipeLabeler(ws, store=labels_db.open(ws, annotator="ann"), ids=range(12), team=True, prefetch=2)
    ben = SwipeLabeler(ws, store=labels_db.open(ws, annotator="ben"), team=True, prefetch=2)
    try:
        assert ann.upcoming == [0, 1, 2, 3] and ben.upcoming == [4, 5, 6, 7]
        assert ann.annotator == "ann" and ann.team["pending"] == 12
        labelled = [ann.label("positive"), ben.label("negative"), ann.label("negative"), ben.label("positive")]
        assert labelled == [0, 4, 1, 5] and not set(ann.upcoming) & set(ben.upcoming)
        assert wait_for(lambda: ben.team["annotators"].get("ann", {}).get("labels") == 2)  # the watcher follows
        assert ben.team["labelled"] == 4 and ben.team["annotators"]["ben"]["holding"] == 4
        ann.close()
        ben.refresh()
        assert ben.team["annotators"]["ann"]["holding"] == 0
        assert sorted(ben.store.claim(20)) == [2, 3, 6, 7, 8, 9, 10, 11]  # ann's held chips came back
    finally:
        ann.close()
        ben.close()
    assert SwipeLabeler(ws, store=labels_db.open(ws), follow=False)._team is (labels_db.kind == "postgresql")
