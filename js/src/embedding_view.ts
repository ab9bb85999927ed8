// EmbeddingView: a WebGL scatter (regl-scatterplot) of the 2-D projection. Points and colors
// arrive as binary float32 / uint8 buffers; lasso and click selections go back to Python as a
// uint32 index array, in messages of at most 4 MiB (Jupyter refuses websocket messages > 10 MiB).
import type { RenderProps } from "@anywidget/types";
import createScatterplot from "regl-scatterplot";
import "./shared/base.css";
import "./embedding_view.css";
import { chunkMessages, decodeArray, sameContents, type WireArray } from "./shared/arrays";
import { errorBar, formatCount, h, notice } from "./shared/dom";
import { ImageSource } from "./shared/images";
import { makeInvoke, onChange, onMessage, type Model } from "./shared/model";
import { autoPointSize, buildPoints, selectionArray, spatialIndex } from "./scatter_logic";
import {
  IDENTITY,
  chooseGestures,
  compose,
  cssTransform,
  isIdentity,
  lassoSelect,
  modelOf,
  nearestPoint,
  pan,
  viewAfter,
  wheelFactor,
  zoomAt,
  type Affine,
  type PointIndex,
} from "./gesture_logic";

/** A wheel gesture ends when no wheel event came for this long (ms). */
const WHEEL_IDLE_MS = 150;
/** With deferred gestures, hover (which redraws) is looked up once the pointer rests this long (ms). */
const HOVER_REST_MS = 100;

export function webglAvailable(): boolean {
  try {
    const c = document.createElement("canvas");
    return !!(c.getContext("webgl") || c.getContext("experimental-webgl"));
  } catch {
    return false;
  }
}

export async function render({ model, el, experimental }: RenderProps): Promise<() => void> {
  const m = model as Model;
  const invoke = makeInvoke(m, experimental);
  const images = new ImageSource(m, invoke, { keep: 128 });

  const root = h("div", { class: "curator-widget curator-scatter" });
  el.appendChild(root);
  const err = errorBar(() => m.get("error"));
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

  const panBtn = h("button", { "aria-pressed": "true", title: "drag to pan, wheel to zoom" }, "Pan");
  const lassoBtn = h("button", { "aria-pressed": "false", title: "drag a lasso to select (or hold Shift while dragging)" }, "Lasso");
  const resetBtn = h("button", { title: "show all points" }, "Reset view");
  const clearBtn = h("button", { title: "deselect (Esc, double click)" }, "Clear selection");
  const status = h("span", { class: "curator-status" });
  const toolbar = h("div", { class: "curator-toolbar" }, panBtn, lassoBtn, resetBtn, clearBtn, status);
  const legend = h("div", { class: "curator-scatter-legend" });
  const canvas = h("canvas", { class: "curator-scatter-canvas" }) as HTMLCanvasElement;
  const tooltip = h("div", { class: "curator-scatter-tooltip" });
  const svgNS = "http://www.w3.org/2000/svg";
  const lassoSvg = document.createElementNS(svgNS, "svg");
  lassoSvg.setAttribute("class", "curator-scatter-lasso");
  const lassoPath = document.createElementNS(svgNS, "path");
  lassoSvg.appendChild(lassoPath);
  const stage = h("div", { class: "curator-scatter-stage" }, canvas, lassoSvg, tooltip, legend);
  root.append(toolbar, stage, err.el);
  stage.style.height = m.get("height") || "480px";

  const n0 = Math.floor(((decodeArray(m.get("xy") as WireArray)?.length) ?? 0) / 2);
  const scatter = createScatterplot({
    canvas,
    width: "auto",
    height: "auto",
    pointSize: Number(m.get("point_size")) || autoPointSize(n0),
    performanceMode: n0 >= 500000, // squares, no blending: keeps a million points interactive
    backgroundColor: [1, 1, 1, 1],
    lassoColor: [0.1, 0.45, 0.85, 1],
    pointColorActive: [0.93, 0.36, 0.1, 1],
    deselectOnDblClick: true,
    deselectOnEscape: true,
    opacityInactiveMax: 0.6,
    opacityInactiveScale: 0.8,
  } as any);

  // for devtools and benchmarks/widgets.py (frame time): document.querySelector('.curator-scatter').curatorScatter
  (root as any).curatorScatter = scatter;
  let n = 0;
  let lastSent: Uint32Array | null = null;
  let seq = 0;
  const sentAt = new Map<number, number>();
  let codes: Uint8Array | null = null;
  let cols: { x: Float32Array; y: Float32Array; index: PointIndex; size: number } | null = null;

  function palette(): string[] {
    const p: string[] = m.get("palette") || [];
    return p.length ? p : ["#3a78c3"];
  }

  async function draw(): Promise<void> {
    const t0 = performance.now();
    const xy = decodeArray(m.get("xy") as WireArray) as Float32Array | null;
    codes = decodeArray(m.get("color") as WireArray) as Uint8Array | null;
    const hi = decodeArray(m.get("highlight") as WireArray);
    if (!xy) return;
    n = Math.floor(xy.length / 2);
    const pal = palette();
    const size = Number(m.get("point_size")) || autoPointSize(n);
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
    } as any);
    const sel = decodeArray(m.get("selection") as WireArray);
    await scatter.draw(points as any, {
      zDataType: "categorical",
      wDataType: "continuous",
      select: sel && sel.length ? Array.from(sel) : undefined,
      spatialIndex: index.data,
    } as any);
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
    renderLegend();
    renderStatus();
    // not awaited: a hidden page runs no animation frames, and rendering must not wait for one
    void measureFrame().then((ms) => {
      frameMs = ms;
      applyGestureMode();
    });
  }

  // ---------------------------------------------------------------- pan/zoom: live or deferred
  // Live: regl-scatterplot redraws every frame of a gesture. Deferred (a frame costs more than
  // slow_frame_ms): the last frame moves with a CSS transform and one redraw follows the gesture.
  let frameMs = 0;
  let deferred = false;
  let gesture: Affine = IDENTITY; // since the last commit
  let pending: Affine = IDENTITY; // committed, not yet redrawn
  let drag: {
    id: number;
    x: number;
    y: number;
    lasso: boolean;
    merge: boolean;
    remove: boolean;
    path: number[]; // CSS px relative to the canvas, flat
    moved: boolean;
  } | null = null;
  let wheelTimer: ReturnType<typeof setTimeout> | undefined;

  function measureFrame(): Promise<number> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      scatter.subscribe("drawing", () => resolve(performance.now() - t0), 1);
      scatter.redraw();
    });
  }

  function applyGestureMode(): void {
    deferred = chooseGestures(m.get("gestures") || "auto", frameMs, Number(m.get("slow_frame_ms")) || 60) === "deferred";
    scatter.set({ cameraIsFixed: deferred } as any); // our handlers move the camera instead
    if (!deferred) handled = false;
    root.dataset.gestures = deferred ? "deferred" : "live";
    root.dataset.frameMs = frameMs.toFixed(1);
  }

  function showTransform(): void {
    const a = compose(gesture, pending);
    canvas.style.transform = cssTransform(a);
    canvas.style.willChange = isIdentity(a) ? "" : "transform";
    if (!isIdentity(a)) tooltip.style.display = "none"; // hover positions are stale until the redraw
  }

  function commit(): void {
    if (isIdentity(gesture)) return;
    const a = gesture;
    const view = viewAfter(scatter.get("cameraView") as ArrayLike<number>, a, canvas.clientWidth, canvas.clientHeight);
    gesture = IDENTITY;
    pending = compose(a, pending);
    const t0 = performance.now();
    scatter.subscribe(
      "drawing",
      () => {
        pending = IDENTITY; // the new frame shows what the transform showed
        showTransform();
        frameMs = performance.now() - t0;
        root.dataset.frameMs = frameMs.toFixed(1);
        root.dataset.settleMs = frameMs.toFixed(1); // gesture end -> sharp frame
        root.dataset.settles = String(Number(root.dataset.settles || 0) + 1);
        if (!drag) applyGestureMode(); // "auto" follows the frame time just measured
      },
      1,
    );
    scatter.view(view);
    scatter.redraw();
  }

  // regl-scatterplot redraws on every mouse move while a button is down, on every wheel event and
  // on every hover change; with deferred gestures our listeners keep those events from it, and
  // lasso and click selection are computed from the index (gesture_logic) instead of in WebGL.
  let handled = false; // the current pointer gesture is ours: its click is not regl-scatterplot's
  let hoverTimer: ReturnType<typeof setTimeout> | undefined;
  // canvas coordinates from the stage's box: the canvas's own box moves with the CSS transform
  const rel = (ev: { clientX: number; clientY: number }): [number, number] => {
    const r = stage.getBoundingClientRect();
    return [ev.clientX - r.left - stage.clientLeft, ev.clientY - r.top - stage.clientTop];
  };
  canvas.addEventListener("pointerdown", (ev) => {
    if (!deferred || ev.button !== 0) return;
    const lasso = root.dataset.mode === "lasso" || ev.shiftKey;
    if (!lasso && (ev.altKey || ev.ctrlKey || ev.metaKey)) return;
    ev.preventDefault(); // no compatibility mousedown/mousemove/mouseup for this pointer
    handled = true;
    const [px, py] = rel(ev);
    drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY, lasso, merge: ev.metaKey, remove: ev.altKey, path: [px, py], moved: false };
    try {
      canvas.setPointerCapture(ev.pointerId); // keep the drag when the pointer leaves the canvas
    } catch {
      /* synthetic or already released pointers cannot be captured; the drag still works inside */
    }
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag || ev.pointerId !== drag.id) return;
    if (ev.clientX === drag.x && ev.clientY === drag.y) return;
    const [px, py] = rel(ev);
    const [sx, sy] = [drag.path[0], drag.path[1]];
    if (Math.hypot(px - sx, py - sy) >= 3) drag.moved = true;
    if (drag.lasso) {
      const n = drag.path.length;
      if (Math.hypot(px - drag.path[n - 2], py - drag.path[n - 1]) >= 2) {
        drag.path.push(px, py);
        let d = `M${drag.path[0]},${drag.path[1]}`;
        for (let i = 2; i < drag.path.length; i += 2) d += `L${drag.path[i]},${drag.path[i + 1]}`;
        lassoPath.setAttribute("d", d + "Z");
      }
    } else {
      gesture = pan(gesture, ev.clientX - drag.x, ev.clientY - drag.y);
      showTransform();
    }
    drag.x = ev.clientX;
    drag.y = ev.clientY;
  });
  const endDrag = (ev: PointerEvent) => {
    if (!drag || ev.pointerId !== drag.id) return;
    const d = drag;
    drag = null;
    lassoPath.setAttribute("d", "");
    if (d.moved && !d.lasso) return commit();
    if (ev.type === "pointercancel" || !cols) return;
    const view = scatter.get("cameraView") as ArrayLike<number>;
    const [w, hgt] = [canvas.clientWidth, canvas.clientHeight];
    const opts = { merge: d.merge, remove: d.remove };
    if (!d.moved) {
      // a click: the nearest point within the drawn point radius (+4 px), as regl-scatterplot does
      const [px, py] = rel(ev);
      const [qx, qy] = modelOf(view, px, py, w, hgt);
      const r = ((Math.max(cols.size, 2) / 2 + 4) * 2) / hgt / Math.abs(view[5]);
      const i = nearestPoint(cols.index, cols.x, cols.y, qx, qy, r);
      if (i >= 0) scatter.select([i], opts as any);
      return;
    }
    const poly: number[] = [];
    for (let i = 0; i < d.path.length; i += 2) poly.push(...modelOf(view, d.path[i], d.path[i + 1], w, hgt));
    const t0 = performance.now();
    const sel = lassoSelect(cols.index, cols.x, cols.y, poly);
    root.dataset.lassoMs = (performance.now() - t0).toFixed(1);
    if (sel.length) scatter.select(Array.from(sel), opts as any);
    else if (!d.merge && !d.remove) scatter.deselect();
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener(
    "click",
    (ev) => {
      if (!handled) return;
      handled = false;
      ev.stopImmediatePropagation(); // handled on pointerup
    },
    { capture: true },
  );
  canvas.addEventListener(
    "wheel",
    (ev) => {
      if (!deferred) return;
      ev.preventDefault();
      ev.stopImmediatePropagation();
      const [px, py] = rel(ev);
      gesture = zoomAt(gesture, wheelFactor(ev.deltaY, ev.deltaMode), px, py);
      showTransform();
      clearTimeout(wheelTimer);
      wheelTimer = setTimeout(() => (drag ? undefined : commit()), WHEEL_IDLE_MS);
    },
    { capture: true, passive: false },
  );
  canvas.addEventListener(
    "mousemove",
    (ev) => {
      if (!deferred || !ev.isTrusted || ev.buttons !== 0) return; // lasso drags pass through
      ev.stopPropagation(); // regl-scatterplot listens on window
      clearTimeout(hoverTimer);
      const { clientX, clientY } = ev;
      hoverTimer = setTimeout(() => {
        if (!drag) canvas.dispatchEvent(new MouseEvent("mousemove", { clientX, clientY, bubbles: true }));
      }, HOVER_REST_MS);
    },
    { capture: true },
  );

  function renderLegend(): void {
    const items: Array<[string, string]> = m.get("legend") || [];
    legend.replaceChildren(
      ...items.slice(0, 24).map(([label, color]) => h("div", { class: "curator-legend-item" }, h("span", { class: "curator-legend-swatch", style: `background:${color}` }), label)),
    );
    legend.style.display = items.length ? "" : "none";
  }

  function renderStatus(): void {
    const k = (scatter.get("selectedPoints") as number[]).length;
    status.textContent = `${formatCount(n)} points · ${formatCount(k)} selected`;
    root.dataset.selected = String(k);
  }

  function sendSelection(sel: Uint32Array): void {
    lastSent = sel;
    seq += 1;
    sentAt.set(seq, performance.now());
    const chunk = Number(m.get("chunk_bytes")) || 4 * 1024 * 1024;
    for (const [header, buffer] of chunkMessages(sel, seq, chunk)) {
      m.send({ type: "selection", ...header }, undefined, [buffer]);
    }
    renderStatus();
  }

  scatter.subscribe("select", ({ points }: { points: number[] }) => sendSelection(selectionArray(points)));
  scatter.subscribe("deselect", () => sendSelection(new Uint32Array(0)));

  // ---------------------------------------------------------------- hover: thumbnail on demand
  let mouse = { x: 0, y: 0 };
  let hoverToken = 0;
  canvas.addEventListener("pointermove", (ev) => {
    const r = stage.getBoundingClientRect();
    mouse = { x: ev.clientX - r.left, y: ev.clientY - r.top };
  });
  scatter.subscribe("pointOver", async (idx: number) => {
    const token = ++hoverToken;
    const ids = decodeArray(m.get("ids") as WireArray);
    const chip = ids && ids.length === n ? ids[idx] : idx;
    const names: string[] = (m.get("legend") || []).map((l: [string, string]) => l[0]);
    const cls = codes && names.length ? names[codes[idx]] ?? "" : "";
    tooltip.replaceChildren(h("div", { class: "curator-tooltip-text" }, `chip ${chip}${cls ? " · " + cls : ""}`));
    tooltip.style.left = `${Math.min(mouse.x + 12, stage.clientWidth - 150)}px`;
    tooltip.style.top = `${Math.max(0, mouse.y - 150)}px`;
    tooltip.style.display = "block";
    root.dataset.hovered = String(chip);
    if (!m.get("thumb_url") && !m.get("workspace_path")) return;
    try {
      const img = await images.image(chip, 128);
      if (token !== hoverToken) return;
      const node = img.cloneNode() as HTMLImageElement;
      node.className = "curator-tooltip-img";
      tooltip.prepend(node);
    } catch {
      /* the text stays; a missing thumbnail is not an error worth a red bar */
    }
  });
  scatter.subscribe("pointOut", () => {
    hoverToken++;
    tooltip.style.display = "none";
  });

  // ---------------------------------------------------------------- toolbar
  const setMode = (mode: "panZoom" | "lasso") => {
    scatter.set({ mouseMode: mode } as any);
    panBtn.setAttribute("aria-pressed", String(mode === "panZoom"));
    lassoBtn.setAttribute("aria-pressed", String(mode === "lasso"));
    root.dataset.mode = mode;
  };
  panBtn.addEventListener("click", () => setMode("panZoom"));
  lassoBtn.addEventListener("click", () => setMode("lasso"));
  resetBtn.addEventListener("click", () => scatter.reset());
  clearBtn.addEventListener("click", () => scatter.deselect());

  const offs = [
    onChange(m, ["xy", "color", "palette", "highlight", "point_size"], () => void draw()),
    onChange(m, ["legend"], renderLegend),
    onChange(m, ["selection"], () => {
      const sel = decodeArray(m.get("selection") as WireArray) ?? new Uint32Array(0);
      if (lastSent && sameContents(sel, lastSent)) return; // our own selection coming back
      lastSent = null;
      if (sel.length) scatter.select(Array.from(sel), { preventEvent: true });
      else scatter.deselect({ preventEvent: true });
      renderStatus();
    }),
    onChange(m, ["mouse_mode"], () => setMode(m.get("mouse_mode") === "lasso" ? "lasso" : "panZoom")),
    onChange(m, ["gestures", "slow_frame_ms"], applyGestureMode),
    onChange(m, ["height"], () => (stage.style.height = m.get("height") || "480px")),
    onChange(m, ["error"], err.update),
    onMessage(m, "selection-ack", (msg) => {
      const t = sentAt.get(msg.seq);
      if (t !== undefined) {
        root.dataset.selectionRtt = (performance.now() - t).toFixed(1);
        root.dataset.selectionAcked = String(msg.count);
        sentAt.delete(msg.seq);
      }
    }),
    onMessage(m, "zoom", (msg) => {
      const idx: number[] = msg.indices || [];
      if (idx.length) void scatter.zoomToPoints(idx, { padding: 0.2, transition: true });
      else void scatter.reset();
    }),
  ];
  setMode(m.get("mouse_mode") === "lasso" ? "lasso" : "panZoom");
  applyGestureMode();
  await draw();

  return () => {
    offs.forEach((off) => off());
    clearTimeout(wheelTimer);
    clearTimeout(hoverTimer);
    images.dispose();
    scatter.destroy();
  };
}

export default { render };
