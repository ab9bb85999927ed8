"""CuratorApp: the whole loop in one cell -- pick a region, download, train/embed, explore, label,
next active-learning round -- each step one of the widgets, each button one Python call.

Every button has a method twin (`download`, `train`, `explore`, `search_selection`,
`label_selection`, `seed_from_selection`, `next_round`), so papermill runs the same steps.
"""

from __future__ import annotations

import html
import time
from typing import Any, Callable, Sequence

import ipywidgets as W
import traitlets
import numpy as np

from ..errors import CuratorError
from ._base import with_fallback
from .embedding_view import EmbeddingView, missing_name, workspace_colors
from .gallery import SampleGallery
from .region_picker import RegionPicker
from .swipe_labeler import SwipeLabeler

STEPS = ("1 Region", "2 Train & embed", "3 Explore", "4 Label")
#: two columns side by side from ~2 x 380 px, one column in a narrow side panel (no media queries:
#: the grid wraps by the width the cell really has, in JupyterLab, Notebook 7 and VS Code alike)
def two_columns() -> W.Layout:
    return W.Layout(grid_template_columns="repeat(auto-fit, minmax(min(100%, 380px), 1fr))",
                    grid_gap="8px", width="100%", align_items="flex-start")


def wrap() -> W.Layout:
    return W.Layout(flex_flow="row wrap", align_items="center")


class CuratorApp(W.VBox):
    """Region -> download -> train/embed/project -> view -> select -> label -> next AL round.

    >>> app = CuratorApp("my-ws", run="simclr-small", bbox=(-20, 10, 40, 35))
    >>> app        # in JupyterLab; or call app.train(), app.explore(), ... from code
    """

    def __init__(self, workspace: Any, run: str = "simclr-small", *, bbox: Sequence[float] | None = None,
                 chip_size: int = 64, level: int | None = None, catalog: Any = None, epochs: int = 10,
                 backbone: str = "small_cnn", method: str = "simclr", projection: str = "umap",
                 task: str = "default", loop: str = "default", label_set: Sequence[str] | None = None,
                 loop_options: dict[str, Any] | None = None, **kwargs: Any):
        from ..workspace import Workspace

        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.open_or_create(workspace)
        self.run_name, self.backbone, self.method, self.projection = run, backbone, method, projection
        self.task, self.loop_name, self.label_set = task, loop, label_set
        self.loop_options = dict(loop_options or {})  # ActiveLoop settings: budget, batch_size, strategy...
        self._loop: Any = None

        self.status = W.HTML(layout=W.Layout(min_height="1.6em"))
        self.bar = W.IntProgress(min=0, max=1, value=0, layout=W.Layout(width="100%", visibility="hidden"))

        # 1 region
        self.picker = RegionPicker(self.ws, bbox=bbox, chip_size=chip_size, level=level, catalog=catalog)
        self.picker.on_download(lambda p: self._say(p.get("message", ""), "ok"))

        # 2 train & embed
        self.epochs = W.BoundedIntText(value=epochs, min=1, max=1000, description="epochs", layout=W.Layout(width="160px"))
        self.run_box = W.Text(value=run, description="run", layout=W.Layout(width="260px"))
        self.train_button = W.Button(description="Train, embed, project", button_style="primary", icon="cogs",
                                     layout=W.Layout(width="220px"))
        self.train_button.on_click(lambda _: self._action(self.train))
        train_box = W.VBox([W.HBox([self.run_box, self.epochs, self.train_button], layout=wrap()),
                            W.HTML("<small>Self-supervised training on this workspace's chips "
                                   "(GPU when present), then embeddings, similarity index and 2-D projection."
                                   "</small>")])

        # 3 explore
        self.view_box = W.VBox([W.HTML("<i>No projection yet: run step 2 (or app.explore() when one exists).</i>")])
        self.view: EmbeddingView | None = None
        self.color_by = W.Dropdown(options=self._color_options(), value="labels", description="color",
                                   layout=W.Layout(width="240px"))
        self.color_by.observe(lambda ch: self._action(self._recolor), names="value")
        self.k = W.BoundedIntText(value=64, min=1, max=10000, description="k", layout=W.Layout(width="140px"))
        buttons = []
        for text, fn, icon in (("Similar to selection", self.search_selection, "search"),
                               ("Label selection", self.label_selection, "tags"),
                               ("Seed set from selection", self.seed_from_selection, "crosshairs")):
            b = W.Button(description=text, icon=icon, layout=W.Layout(width="200px"))
            b.on_click(lambda _, f=fn: self._action(f))
            buttons.append(b)
        self.gallery = SampleGallery(self.ws, [], title="selection", height="300px")
        explore_box = W.VBox([W.HBox([self.color_by, self.k, *buttons], layout=wrap()),
                              W.GridBox([self.view_box, self.gallery], layout=two_columns())])

        # 4 label
        self.labeler = SwipeLabeler(self.ws, label_set=label_set, task=task, autofocus=False)
        self.round_button = W.Button(description="Next active-learning round", button_style="success",
                                     icon="refresh", layout=W.Layout(width="260px"))
        self.round_button.on_click(lambda _: self._action(self.next_round))
        self.metrics = W.HTML()
        label_box = W.GridBox([self.labeler, W.VBox([self.round_button, self.metrics, W.HTML(
            "<small>Label the queue with the keys (click the card first, <kbd>?</kbd> lists them); "
            "each round fits on every label, scores all chips and queues the next batch here.</small>")])],
            layout=two_columns())

        self.tabs = W.Tab(children=[self.picker, train_box, explore_box, label_box])
        for i, title in enumerate(STEPS):
            self.tabs.set_title(i, title)
        super().__init__([W.HTML(f"<b>Curator</b> &middot; workspace <code>{html.escape(str(self.ws.root))}</code>"),
                          self.tabs, self.bar, self.status], **kwargs)
        if self.ws.projection_path(run).exists():
            self._action(self.explore)

    # ------------------------------------------------------------------ display fallback
    def _summary(self) -> str:
        view = f"{self.view.n} points in the view" if self.view is not None else "no projection yet"
        return (f"CuratorApp(workspace {str(self.ws.root)!r}, {len(self.ws)} chips, run {self.run_name!r}, "
                f"{view}, task {self.task!r})")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_fallback(super()._repr_mimebundle_(**kwargs), self._summary())

    # ------------------------------------------------------------------ progress and errors
    def _say(self, text: str, kind: str = "info") -> None:
        color = {"info": "#555", "ok": "#2e7d32", "error": "#b71c1c"}[kind]
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _progress(self, done: int, total: int) -> None:
        self.bar.layout.visibility = "visible" if total else "hidden"
        self.bar.max = max(1, total)
        self.bar.value = min(done, self.bar.max)

    def _action(self, fn: Callable[[], Any]) -> Any:
        """Run a step from a button: its CuratorError shows in the cell, not in a hidden log."""
        try:
            return fn()
        except CuratorError as e:
            self._say(e.problem + (f" -- fix: {e.fix}" if e.fix else ""), "error")
            return None
        finally:
            self._progress(0, 0)

    # ------------------------------------------------------------------ the steps
    def download(self) -> Any:
        """Step 1: cut the picked region into chips (what the map's button does)."""
        self.tabs.selected_index = 0
        return self.picker.download()

    def train(self, epochs: int | None = None) -> None:
        """Step 2: train the SSL model, embed every chip, build the index, compute the projection."""
        from ..embed import embed
        from ..index import build_index
        from ..projection import project
        from ..train import train_ssl

        if len(self.ws) == 0:
            raise CuratorError("the workspace has no chips yet", "download a region first (step 1)")
        self.run_name = self.run_box.value.strip() or self.run_name
        n_epochs = int(epochs or self.epochs.value)
        self.tabs.selected_index = 1
        t0 = time.perf_counter()

        def on_epoch(rec: dict) -> None:
            self._progress(int(rec.get("epoch", 0)), n_epochs)
            loss = rec.get("loss")
            self._say(f"training {self.run_name}: epoch {rec.get('epoch')}/{n_epochs}"
                      + (f", loss {loss:.3f}" if isinstance(loss, (int, float)) else ""))

        self._say(f"training {self.run_name} on {len(self.ws)} chips...")
        train_ssl(self.ws, run=self.run_name, method=self.method, backbone=self.backbone, epochs=n_epochs,
                  progress=False, on_epoch=on_epoch)
        self._say("embedding every chip...")
        embed(self.ws, self.run_name, progress=False)
        self._say("building the similarity index...")
        build_index(self.ws, self.run_name, progress=False)
        self._say(f"projecting to 2-D ({self.projection})...")
        project(self.ws, self.run_name, method=self.projection, progress=False)
        self.explore()
        self._progress(0, 0)
        self._say(f"trained, embedded and projected {len(self.ws)} chips in {time.perf_counter() - t0:.0f} s", "ok")

    def explore(self) -> EmbeddingView:
        """Step 3: show the projection; a lasso fills the gallery."""
        from ..projection import project

        xy = project(self.ws, self.run_name, method=self.projection, progress=False)
        if self.view is None:
            self.view = EmbeddingView(xy, workspace=self.ws, height="440px")
            self.view.label_store = self.labeler.store  # the hover card shows this task's labels
            self.view.on_select(self._show_selection)
            self.view.on_similar(self._show_similar)  # the view's Similar button and S key
            traitlets.link((self.k, "value"), (self.view, "similar_k"))
            self.view_box.children = [self.view]
        else:
            self.view.set_points(xy)
        self.view.search_run = self.run_name
        self._recolor()
        self.color_by.options = self._color_options()
        self.tabs.selected_index = 2
        return self.view

    def selected(self) -> np.ndarray:
        """Chip ids selected in the scatter (or, failing that, in the gallery)."""
        if self.view is not None and self.view.selection.size:
            return self.view.selected_ids
        return self.gallery.selected

    def search_selection(self, k: int | None = None) -> Any:
        """Chips most similar to the selection (mean query), shown in the gallery and highlighted."""
        from ..index import build_index, search

        ids = self.selected()
        if not ids.size:
            raise CuratorError("nothing is selected", "lasso some points in the scatter (Shift+drag) or click chips")
        if not self.ws.index_path(self.run_name).exists():
            self._say("building the similarity index...")
            build_index(self.ws, self.run_name, progress=False)
        if self.view is not None and self.view.selection.size:
            return self.view.similar_to_selection(k=int(k or self.k.value))  # highlights; _show_similar fills the gallery
        res = search(self.ws, self.run_name, ids=ids.tolist(), k=int(k or self.k.value))
        self._show_similar(res, ids.size)
        return res

    def _show_similar(self, res: Any, selected: int | None = None) -> None:
        n = selected if selected is not None else self.selected().size
        self.gallery.show_search(res, title=f"{len(res)} chips similar to {n} selected")
        if self.view is not None:
            self.view.highlight_points(self.view.points_of(res.ids))
        self._say(f"{len(res)} similar chips; best score {float(res.scores[0]):.3f}" if len(res) else "no results", "ok")

    def label_selection(self) -> int:
        """Queue the selection at the front of the labeler and switch to it."""
        ids = self.selected()
        if not ids.size:
            raise CuratorError("nothing is selected", "lasso some points or click chips in the gallery first")
        added = self.labeler.enqueue(ids, front=True, source="selection")
        self.tabs.selected_index = 3
        self._say(f"{added} chips queued for labelling ({ids.size - added} were labelled or queued already)", "ok")
        return added

    def loop(self) -> Any:
        from ..active import ActiveLoop

        if self._loop is None:
            self._loop = ActiveLoop(self.ws, self.run_name, name=self.loop_name, task=self.task,
                                    store=self.labeler.store, **self.loop_options)
        return self._loop

    def seed_from_selection(self) -> Any:
        """The seed set (k nearest neighbours + k/2 random chips; published: 64 + 32) from the selection."""
        ids = self.selected()
        if not ids.size:
            raise CuratorError("nothing is selected", "select reference chips of the phenomenon first")
        k = int(self.k.value)
        seed = self.loop().seed(reference=ids.tolist(), k=k, r=max(1, k // 2), force=True)
        self.labeler.refresh()
        self.tabs.selected_index = 3
        self._say(f"seed set: {len(seed.ids)} chips ({len(seed.neighbours)} neighbours, {len(seed.random)} random) queued", "ok")
        return seed

    def next_round(self) -> Any:
        """Fit on every label, score all chips, queue the next batch; scores color the scatter."""
        rnd = self.loop().step()
        self.labeler.refresh()
        m = rnd.metrics or {}
        shown = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.metrics.value = "<small>" + " &middot; ".join(f"{html.escape(k)}: {v:.3g}" for k, v in list(shown.items())[:8]) + "</small>"
        if self.view is not None:
            self.color_by.options = self._color_options()
            self.color_by.value = "active score"
        msg = f"round {rnd.round}: {len(rnd.batch)} chips queued" + (f" -- stopped: {rnd.stopped}" if rnd.stopped else "")
        self._say(msg, "ok")
        return rnd

    # ------------------------------------------------------------------ colors and the gallery
    def _color_options(self) -> list[str]:
        opts = ["labels"]
        df = self.ws.manifest
        for col in ("label", "land_fraction", "cloud_fraction"):
            if col in df.columns and len(df) and df[col].notna().any():
                opts.append(col)
        if self._loop is not None and self._loop.round > 0:
            opts.append("active score")
        return opts

    def _color_values(self, name: str) -> Any:
        if name == "active score":
            P = np.asarray(self.loop().scores(), dtype=np.float32)
            return P[:, self.loop().positive] if P.shape[1] == 2 else P.max(axis=1)  # p(positive) / top class
        return workspace_colors(self.ws, name)

    def _recolor(self) -> None:
        if self.view is not None:
            name = self.color_by.value
            kind = "value" if name in ("land_fraction", "cloud_fraction", "active score") else "category"
            self.view.color_by(self._color_values(name), kind=kind, title=name.replace("_", " "),
                               missing=missing_name(name))

    def _show_selection(self, idx: np.ndarray) -> None:
        ids = self.view.selected_ids if self.view is not None else idx
        self.gallery.show(ids[:2000], title=f"{ids.size} selected" + (" (first 2000 shown)" if ids.size > 2000 else ""))
