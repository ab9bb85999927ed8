// EmbeddingView: a WebGL scatter (regl-scatterplot) of the 2-D projection. Points and colors
// arrive as binary float32 / uint8 buffers; lasso and click selections go back to Python as a
// uint32 index array (scatter_selection). `render` only wires the parts: the gesture controller
// (scatter_gestures), the lasso overlay, the hover card, the legend, the toolbar and the keys.
import type { RenderProps } from "@anywidget/types";
import createScatterplot from "regl-scatterplot";
import "./shared/base.css";
import "./embedding_view.css";
import { decodeArray } from "./shared/arrays";
import { errorBar, formatCount, h, notice } from "./shared/dom";
import { ImageSource } from "./shared/images";
import { helpKey, keyHelp, type KeyRow } from "./shared/keyhelp";
import { makeInvoke, onChange, onMessage } from "./shared/model";
import { themeColor } from "./shared/theme";
import type { PointIndex } from "./gesture_logic";
import type { EmbeddingViewModel } from "./models";
import { GestureController, type GestureScatter, type PointColumns } from "./scatter_gestures";
import { HoverCard } from "./scatter_hover";
import { LassoOverlay } from "./scatter_lasso";
import { renderLegend } from "./scatter_legend";
import { autoPointSize, buildPoints, extent, selectionArray, spatialIndex } from "./scatter_logic";
import { SelectionSync } from "./scatter_selection";
import { SimilarButton } from "./scatter_similar";

export const SCATTER_KEYS: KeyRow[] = [
  ["Shift + drag", "lasso (any tool)"],
  ["L / P", "lasso tool / pan tool"],
  ["R", "reset the view"],
  ["S", "find chips similar to the selection"],
  ["Esc", "clear the selection (when the plot has focus)"],
  ["Alt / ⌘ + lasso", "remove from / add to the selection"],
  ["?", "show / hide this help"],
];

export function webglAvailable(): boolean {
  try {
    const c = document.createElement("canvas");
    return !!(c.getContext("webgl") || c.getContext("experimental-webgl"));
  } catch {
    return false;
  }
}

async function render({ model, el, experimental }: RenderProps<EmbeddingViewModel>): Promise<() => void> {
  const m = model;
  const invoke = makeInvoke(m, experimental);
  const images = new ImageSource(m, invoke, { keep: 128 });

  // focusable, so its keys act only when a person is on it (never Esc from another cell)
  const root = h("div", { class: "curator-widget curator-scatter", tabindex: 0, "data-lm-suppress-shortcuts": "true", "aria-label": "embedding scatter plot; ? for keys" });
  el.appendChild(root);
  const err = errorBar(() => model.get("error"));
  if (!webglAvailable()) {
    root.append(
      notice(
        "EmbeddingView needs WebGL, which this browser does not provide (check chrome://gpu, or enable " +
          "hardware acceleration). A static picture: curator_widgets.projection.plot_projection(xy, color=...).",
      ),
      err.el,
    );
    root.dataset.webgl = "0";
    return () => undefined;
  }

  const panBtn = h("button", { "aria-pressed": "true", title: "drag to pan, wheel to zoom (P)" }, "✥ Pan");
  const lassoBtn = h("button", { "aria-pressed": "false", title: "drag a lasso to select, or hold Shift while dragging (L)" }, "◌ Lasso");
  const resetBtn = h("button", { title: "show all points (R)" }, "⟲ Reset view");
  const clearBtn = h("button", { title: "deselect (Esc when the plot has focus, double click)" }, "✕ Clear selection");
  const helpBtn = h("button", { title: "keyboard shortcuts (?)", "aria-label": "keyboard help" }, "?");
  const status = h("span", { class: "curator-status" });
  const similar = new SimilarButton(m, invoke, root, () => (scatter.get("selectedPoints") as number[]).length);
  const toolbar = h("div", { class: "curator-toolbar" }, panBtn, lassoBtn, resetBtn, clearBtn, similar.el, helpBtn, status);
  const legend = h("div", { class: "curator-scatter-legend" });
  const canvas = h("canvas", { class: "curator-scatter-canvas" }) as HTMLCanvasElement;
  const lasso = new LassoOverlay();
  const hover = new HoverCard(
    invoke,
    model.get("thumb_url") || model.get("workspace_path") ? (chip) => images.image(chip, 128) : null,
    (chip) => (root.dataset.hovered = String(chip)),
  );
  const keys = keyHelp("Embedding view keys (click the plot first)", SCATTER_KEYS);
  const stage = h("div", { class: "curator-scatter-stage" }, canvas, lasso.el, hover.el, legend, keys.el);
  root.append(toolbar, stage, err.el);
  stage.style.height = model.get("height") || "480px";

  const n0 = Math.floor((decodeArray(model.get("xy"))?.length ?? 0) / 2);
  const scatter = createScatterplot({
    canvas,
    width: "auto",
    height: "auto",
    pointSize: Number(model.get("point_size")) || autoPointSize(n0),
    performanceMode: n0 >= 500000, // squares, no blending: keeps a million points interactive
    backgroundColor: themeColor(stage, "--jp-layout-color0", [1, 1, 1, 1]),
    lassoColor: themeColor(stage, "--jp-brand-color1", [0.1, 0.45, 0.85, 1]),
    pointColorActive: [0.93, 0.36, 0.1, 1],
    deselectOnDblClick: true,
    deselectOnEscape: false, // regl-scatterplot listens on window: Esc in any cell would clear it
    opacityInactiveMax: 0.6,
    opacityInactiveScale: 0.8,
  } as Parameters<typeof createScatterplot>[0]);

  // for devtools and benchmarks/widgets.py (frame time): document.querySelector('.curator-scatter').curatorScatter
  (root as HTMLElement & { curatorScatter?: unknown }).curatorScatter = scatter;
  let n = 0;
  let codes: Uint8Array | null = null;
  let cols: PointColumns | null = null;

  const gestures = new GestureController({
    scatter: scatter as unknown as GestureScatter,
    root,
    stage,
    canvas,
    lasso,
    hideHover: () => hover.hide(),
    columns: () => cols,
    lassoMode: () => root.dataset.mode === "lasso",
    settings: () => ({ gestures: model.get("gestures") || "auto", slowFrameMs: Number(model.get("slow_frame_ms")) || 60 }),
  });
  const selection = new SelectionSync(m, scatter, renderStatus, (rtt, count) => {
    root.dataset.selectionRtt = rtt.toFixed(1);
    root.dataset.selectionAcked = String(count);
  });

  function palette(): string[] {
    const p = model.get("palette") || [];
    return p.length ? p : ["#3a78c3"];
  }

  async function draw(): Promise<void> {
    const t0 = performance.now();
    const xy = decodeArray(model.get("xy")) as Float32Array | null;
    codes = decodeArray(model.get("color")) as Uint8Array | null;
    const hi = decodeArray(model.get("highlight"));
    if (!xy) return;
    n = Math.floor(xy.length / 2);
    const pal = palette();
    const size = Number(model.get("point_size")) || autoPointSize(n);
    const points = buildPoints(xy, codes, pal.length, hi);
    const index = spatialIndex(points.x, points.y);
    cols = { x: points.x, y: points.y, index: index as unknown as PointIndex, size };
    const t1 = performance.now();
    await scatter.set({
      pointColor: pal,
      colorBy: pal.length > 1 ? "valueA" : null,
      sizeBy: hi && hi.length ? "valueB" : null,
      pointSize: hi && hi.length ? [size, size * 3] : size,
      pointSizeSelected: Math.max(2, size * 0.5),
    } as Parameters<typeof scatter.set>[0]);
    await scatter.draw(points as unknown as Parameters<typeof scatter.draw>[0], {
      zDataType: "categorical",
      wDataType: "continuous",
      select: selection.initial(),
      spatialIndex: index.data,
    } as Parameters<typeof scatter.draw>[1]);
    if (fitNeeded) {
      fitNeeded = false;
      await fitView();
    }
    const t2 = performance.now();
    requestAnimationFrame(() => {
      // read by the browser tests and benchmarks/widgets.py
      root.dataset.points = String(n);
      root.dataset.drawMs = (performance.now() - t0).toFixed(1);
      // where the time went: decode + column building, regl-scatterplot's draw (upload, index), the frame
      root.dataset.drawParts = [t1 - t0, t2 - t1, performance.now() - t2].map((v) => v.toFixed(1)).join(",");
      root.dataset.firstPaint = String(Date.now());
      root.dataset.draws = String(Number(root.dataset.draws || 0) + 1);
    });
    showLegend();
    renderStatus();
    // not awaited: a hidden page runs no animation frames, and rendering must not wait for one
    void gestures.measureFrame().then((ms) => {
      gestures.frameMs = ms;
      gestures.applyMode();
    });
  }

  // the data fills the canvas whatever its aspect (regl-scatterplot's reset shows [-1, 1] vertically
  // and cuts the sides of a tall canvas), with a little padding
  let fitNeeded = true;
  let chosen = false; // the person (or Python's zoom) moved the view since the last fit
  async function fitView(): Promise<void> {
    if (!cols || !cols.x.length) return void scatter.reset();
    const [x0, x1, y0, y1] = extent(cols.x, cols.y);
    const pad = 0.04 * Math.max(x1 - x0, y1 - y0, 1e-6);
    await scatter.zoomToArea({ x: x0 - pad, y: y0 - pad, width: x1 - x0 + 2 * pad, height: y1 - y0 + 2 * pad }, { transition: false });
    chosen = false;
  }

  // a narrower or wider output (a side panel docked beside the notebook, a resized window) refits the
  // data when the person has not panned or zoomed since the last fit; a view they chose is kept
  let box = [stage.clientWidth, stage.clientHeight];
  const resized = new (globalThis.ResizeObserver ?? class { observe(): void {} disconnect(): void {} })(() => {
    const now = [stage.clientWidth, stage.clientHeight];
    if (now[0] === box[0] && now[1] === box[1]) return;
    box = now;
    if (!chosen) requestAnimationFrame(() => void fitView()); // after regl-scatterplot's own resize of the canvas
  });
  resized.observe(stage);
  // a wheel zoom, or a drag that moved the camera, is a view the person chose (a click or a lasso is not)
  let before: number[] = [];
  const viewNow = () => Array.from(scatter.get("cameraView") as ArrayLike<number>);
  const onDown = () => (before = viewNow());
  const onUp = () => {
    if (before.length && viewNow().some((v, i) => Math.abs(v - before[i]) > 1e-9)) chosen = true;
  };
  const onWheel = () => (chosen = true);
  stage.addEventListener("pointerdown", onDown, { capture: true });
  window.addEventListener("pointerup", onUp, { capture: true });
  stage.addEventListener("wheel", onWheel, { capture: true, passive: true });

  function showLegend(): void {
    renderLegend(legend, model.get("legend_title") || "", model.get("color_kind") === "value" ? "value" : "category", model.get("legend") || []);
  }

  function renderStatus(): void {
    const k = (scatter.get("selectedPoints") as number[]).length;
    status.textContent = `${formatCount(n)} points · ${formatCount(k)} selected`;
    root.dataset.selected = String(k);
  }

  scatter.subscribe("select", ({ points }: { points: number[] }) => selection.send(selectionArray(points)));
  scatter.subscribe("deselect", () => selection.send(new Uint32Array(0)));

  // ---------------------------------------------------------------- hover card
  let mouse = { x: 0, y: 0 };
  canvas.addEventListener("pointermove", (ev) => {
    const r = stage.getBoundingClientRect();
    mouse = { x: ev.clientX - r.left, y: ev.clientY - r.top };
  });
  scatter.subscribe("pointOver", (idx: number) => {
    const ids = decodeArray(model.get("ids"));
    const chip = ids && ids.length === n ? ids[idx] : idx;
    const names = (model.get("legend") || []).map((l) => l[0]);
    const cls = codes && names.length && model.get("color_kind") !== "value" ? names[codes[idx]] ?? "" : "";
    void hover.show(idx, chip, cls, mouse.x, mouse.y, stage.clientWidth);
  });
  scatter.subscribe("pointOut", () => hover.hide());

  // ---------------------------------------------------------------- toolbar and keys
  const setMode = (mode: "panZoom" | "lasso") => {
    scatter.set({ mouseMode: mode });
    panBtn.setAttribute("aria-pressed", String(mode === "panZoom"));
    lassoBtn.setAttribute("aria-pressed", String(mode === "lasso"));
    root.dataset.mode = mode;
  };
  panBtn.addEventListener("click", () => setMode("panZoom"));
  lassoBtn.addEventListener("click", () => setMode("lasso"));
  resetBtn.addEventListener("click", () => void fitView());
  clearBtn.addEventListener("click", () => scatter.deselect());
  helpBtn.addEventListener("click", () => keys.toggle());
  root.addEventListener("pointerdown", () => root.focus({ preventScroll: true }));
  root.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    let used = helpKey(ev, keys);
    if (!used) {
      used = true;
      const k = ev.key.toLowerCase();
      if (ev.key === "Escape") scatter.deselect();
      else if (k === "l") setMode("lasso");
      else if (k === "p") setMode("panZoom");
      else if (k === "r") void fitView();
      else if (k === "s") void similar.run();
      else used = false;
    }
    if (used) {
      ev.preventDefault();
      ev.stopPropagation();
    }
  });

  const offs = [
    onChange(m, ["xy"], () => (fitNeeded = true)),
    onChange(m, ["xy", "color", "palette", "highlight", "point_size"], () => void draw()),
    onChange(m, ["legend", "legend_title", "color_kind"], showLegend),
    onChange(m, ["mouse_mode"], () => setMode(model.get("mouse_mode") === "lasso" ? "lasso" : "panZoom")),
    onChange(m, ["gestures", "slow_frame_ms"], () => gestures.applyMode()),
    onChange(m, ["height"], () => (stage.style.height = model.get("height") || "480px")),
    onChange(m, ["error"], err.update),
    onMessage(m, "zoom", (msg) => {
      const idx: number[] = msg.indices || [];
      if (idx.length) {
        chosen = true;
        void scatter.zoomToPoints(idx, { padding: 0.2, transition: true });
      } else void fitView();
    }),
  ];
  // JupyterLab's theme switch changes the --jp-* variables: the WebGL clear colour follows
  const applyTheme = () => {
    scatter.set({ backgroundColor: themeColor(stage, "--jp-layout-color0", [1, 1, 1, 1]) });
    scatter.redraw();
  };
  const theme = new MutationObserver(() => {
    applyTheme();
    setTimeout(applyTheme, 500); // the theme's stylesheet may land after the attribute
  });
  theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  setMode(model.get("mouse_mode") === "lasso" ? "lasso" : "panZoom");
  gestures.applyMode();
  await draw();

  return () => {
    offs.forEach((off) => off());
    theme.disconnect();
    resized.disconnect();
    stage.removeEventListener("pointerdown", onDown, { capture: true });
    window.removeEventListener("pointerup", onUp, { capture: true });
    stage.removeEventListener("wheel", onWheel, { capture: true });
    selection.dispose();
    similar.dispose();
    gestures.dispose();
    images.dispose();
    scatter.destroy();
  };
}

export default { render };
