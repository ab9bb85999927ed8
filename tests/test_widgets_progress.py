"""Issue 16 bug 8 (progress output survives a page reload: an HTML line, not a widget) and bug 10
(notebook 05 run by a person stops with one line until the seed set is labelled)."""

from __future__ import annotations

from curator_widgets import progress


def test_notebook_progress_is_html_updated_in_place():
    lines: list[str] = []
    with progress.HTMLProgress(total=40, desc="decode chips", unit="chip", sink=lines.append, mininterval=0) as bar:
        for _ in range(4):
            bar.update(10)
    assert lines, "nothing was displayed"
    last = lines[-1]
    assert "<progress value='40' max='40'" in last and "decode chips" in last and "40/40" in last
    # plain HTML all the way: nothing that needs a widget model (application/vnd.jupyter.widget-view+json)
    assert all("widget" not in line for line in lines)


def test_closed_transient_bar_leaves_an_empty_line_not_a_dead_widget():
    lines: list[str] = []
    bar = progress.HTMLProgress(total=3, desc="embed", sink=lines.append, leave=False, mininterval=0)
    bar.update(3)
    bar.close()
    assert lines[-1] == ""


def test_outside_a_kernel_the_text_bar_is_used():
    assert not progress.in_notebook()
    bar = progress.progress_bar(total=2, disable=True)
    assert type(bar) is progress.text_tqdm
    bar.close()


def test_a_person_run_stops_with_one_line_until_the_seed_set_is_labelled(tmp_path):
    """Issue 16 bug 10: notebook 05 run by a person stops cleanly, not with a traceback."""
    import pytest

    from curator_widgets.labels import LabelStore
    from curator_widgets.widgets import LabelsPending, stop_until_labelled

    store = LabelStore(tmp_path / "labels.sqlite")
    stop_until_labelled(store)  # nothing queued: the notebook goes on
    store.queue_add([1, 2, 3], source="seed")
    with pytest.raises(LabelsPending) as e:
        stop_until_labelled(store)
    assert e.value._render_traceback_() == [
        "label these 3 chips in the labeler above, then run the next cell (Run All stops here until they are labelled)"]
    for cid in (1, 2, 3):
        store.add(cid, "positive")
    stop_until_labelled(store)
