// Pan, zoom, lasso and click on the scatter, live or deferred. Live: regl-scatterplot redraws
// every frame of a gesture. Deferred (a frame costs more than slow_frame_ms): the last frame
// moves with a CSS transform, one redraw follows the gesture, and lasso / click selections are
// computed from the index (gesture_logic) instead of in WebGL. While any drag is on, the page
// selects no text (Shift+drag would otherwise select the notebook's text now and then).
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
import type { LassoOverlay } from "./scatter_lasso";

/** A wheel gesture ends when no wheel event came for this long (ms). */
const WHEEL_IDLE_MS = 150;
/** With deferred gestures, hover (which redraws) is looked up once the pointer rests this long (ms). */
const HOVER_REST_MS = 100;

/** The slice of regl-scatterplot the controller drives. */
export interface GestureScatter {
  get(key: "cameraView"): ArrayLike<number>;
  set(props: { cameraIsFixed: boolean }): unknown;
  view(view: ArrayLike<number>): unknown;
  redraw(): void;
  subscribe(event: "drawing", cb: () => void, times?: number): unknown;
  select(points: number[], options?: { merge?: boolean; remove?: boolean }): void;
  deselect(): void;
}

export interface PointColumns {
  x: Float32Array;
  y: Float32Array;
  index: PointIndex;
  size: number;
}

export interface GestureHost {
  scatter: GestureScatter;
  root: HTMLElement; // data-* attributes the tests and the benchmark read
  stage: HTMLElement;
  canvas: HTMLCanvasElement;
  lasso: LassoOverlay;
  hideHover: () => void;
  columns: () => PointColumns | null;
  lassoMode: () => boolean;
  /** the `gestures` and `slow_frame_ms` traits */
  settings: () => { gestures: string; slowFrameMs: number };
}

type Drag = { id: number; x: number; y: number; lasso: boolean; merge: boolean; remove: boolean; moved: boolean };

export class GestureController {
  deferred = false;
  frameMs = 0;
  private gesture: Affine = IDENTITY; // since the last commit
  private pending: Affine = IDENTITY; // committed, not yet redrawn
  private drag: Drag | null = null;
  private handled = false; // the current pointer gesture is ours: its click is not regl-scatterplot's
  private pressed = false; // a pointer went down on the plot and is not up yet (live or deferred)
  private modeDue = false; // a mode change arrived during that press: applied once it ends
  private wheelTimer: ReturnType<typeof setTimeout> | undefined;
  private hoverTimer: ReturnType<typeof setTimeout> | undefined;
  private offs: Array<() => void> = [];

  constructor(private host: GestureHost) {
    const c = host.canvas;
    this.listen(c, "pointerdown", (ev) => this.down(ev as PointerEvent));
    this.listen(c, "pointermove", (ev) => this.move(ev as PointerEvent));
    this.listen(c, "pointerup", (ev) => this.up(ev as PointerEvent));
    this.listen(c, "pointercancel", (ev) => this.up(ev as PointerEvent));
    this.listen(c, "click", (ev) => this.click(ev), { capture: true });
    this.listen(c, "wheel", (ev) => this.wheel(ev as WheelEvent), { capture: true, passive: false });
    this.listen(c, "mousemove", (ev) => this.hover(ev as MouseEvent), { capture: true });
    // no text selection anywhere on the page while a drag that started here is on (live mode too)
    this.listen(c, "pointerdown", () => {
      this.pressed = true;
      this.noTextSelection(true);
    });
    this.listen(window, "pointerup", () => this.released());
    this.listen(window, "pointercancel", () => this.released());
    this.listen(document, "selectstart", (ev) => {
      if (document.body.classList.contains("curator-drawing")) ev.preventDefault();
    });
  }

  private listen(t: EventTarget, type: string, fn: (ev: Event) => void, opts?: AddEventListenerOptions): void {
    t.addEventListener(type, fn, opts);
    this.offs.push(() => t.removeEventListener(type, fn, opts));
  }

  private released(): void {
    this.noTextSelection(false);
    this.pressed = false;
    if (this.modeDue) {
      this.modeDue = false;
      setTimeout(() => this.applyMode(), 0); // after regl-scatterplot's own mouseup has ended its lasso
    }
  }

  private noTextSelection(on: boolean): void {
    document.body.classList.toggle("curator-drawing", on);
    if (on) window.getSelection()?.removeAllRanges();
  }

  /** Time one redraw (ms). */
  measureFrame(): Promise<number> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      this.host.scatter.subscribe("drawing", () => resolve(performance.now() - t0), 1);
      this.host.scatter.redraw();
    });
  }

  /** Live or deferred, from the `gestures` trait and the last frame time. Never in the middle of a press:
   * switching regl-scatterplot's camera under a live lasso dropped that lasso (a frame timed while the
   * person drew one switched "auto" to deferred), so a change that arrives then waits for the release. */
  applyMode(): void {
    if (this.pressed || this.drag) {
      this.modeDue = true;
      return;
    }
    const { gestures, slowFrameMs } = this.host.settings();
    this.deferred = chooseGestures(gestures || "auto", this.frameMs, slowFrameMs || 60) === "deferred";
    this.host.scatter.set({ cameraIsFixed: this.deferred }); // our handlers move the camera instead
    if (!this.deferred) this.handled = false;
    this.host.root.dataset.gestures = this.deferred ? "deferred" : "live";
    this.host.root.dataset.frameMs = this.frameMs.toFixed(1);
  }

  // canvas coordinates from the stage's box: the canvas's own box moves with the CSS transform
  private rel(ev: { clientX: number; clientY: number }): [number, number] {
    const s = this.host.stage;
    const r = s.getBoundingClientRect();
    return [ev.clientX - r.left - s.clientLeft, ev.clientY - r.top - s.clientTop];
  }

  private showTransform(): void {
    const a = compose(this.gesture, this.pending);
    const c = this.host.canvas;
    c.style.transform = cssTransform(a);
    c.style.willChange = isIdentity(a) ? "" : "transform";
    if (!isIdentity(a)) this.host.hideHover(); // hover positions are stale until the redraw
  }

  private commit(): void {
    if (isIdentity(this.gesture)) return;
    const { scatter, canvas, root } = this.host;
    const a = this.gesture;
    const view = viewAfter(scatter.get("cameraView"), a, canvas.clientWidth, canvas.clientHeight);
    this.gesture = IDENTITY;
    this.pending = compose(a, this.pending);
    const t0 = performance.now();
    scatter.subscribe(
      "drawing",
      () => {
        this.pending = IDENTITY; // the new frame shows what the transform showed
        this.showTransform();
        this.frameMs = performance.now() - t0;
        root.dataset.frameMs = this.frameMs.toFixed(1);
        root.dataset.settleMs = this.frameMs.toFixed(1); // gesture end -> sharp frame
        root.dataset.settles = String(Number(root.dataset.settles || 0) + 1);
        if (!this.drag) this.applyMode(); // "auto" follows the frame time just measured
      },
      1,
    );
    scatter.view(view);
    scatter.redraw();
  }

  private down(ev: PointerEvent): void {
    if (!this.deferred || ev.button !== 0) return;
    const lasso = this.host.lassoMode() || ev.shiftKey;
    if (!lasso && (ev.altKey || ev.ctrlKey || ev.metaKey)) return;
    ev.preventDefault(); // no compatibility mousedown/mousemove/mouseup for this pointer
    this.handled = true;
    const [px, py] = this.rel(ev);
    this.drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY, lasso, merge: ev.metaKey, remove: ev.altKey, moved: false };
    this.host.lasso.start(px, py);
    try {
      this.host.canvas.setPointerCapture(ev.pointerId); // keep the drag when the pointer leaves the canvas
    } catch {
      /* synthetic or already released pointers cannot be captured; the drag still works inside */
    }
  }

  private move(ev: PointerEvent): void {
    const d = this.drag;
    if (!d || ev.pointerId !== d.id) return;
    if (ev.clientX === d.x && ev.clientY === d.y) return;
    const [px, py] = this.rel(ev);
    const pts = this.host.lasso.points;
    if (Math.hypot(px - pts[0], py - pts[1]) >= 3) d.moved = true;
    if (d.lasso) this.host.lasso.add(px, py);
    else {
      this.gesture = pan(this.gesture, ev.clientX - d.x, ev.clientY - d.y);
      this.showTransform();
    }
    d.x = ev.clientX;
    d.y = ev.clientY;
  }

  private up(ev: PointerEvent): void {
    const d = this.drag;
    if (!d || ev.pointerId !== d.id) return;
    this.drag = null;
    const path = this.host.lasso.points;
    this.host.lasso.clear();
    if (d.moved && !d.lasso) return this.commit();
    const cols = this.host.columns();
    if (ev.type === "pointercancel" || !cols) return;
    const { scatter, canvas, root } = this.host;
    const view = scatter.get("cameraView");
    const [w, hgt] = [canvas.clientWidth, canvas.clientHeight];
    const opts = { merge: d.merge, remove: d.remove };
    if (!d.moved) {
      // a click: the nearest point within the drawn point radius (+4 px), as regl-scatterplot does
      const [px, py] = this.rel(ev);
      const [qx, qy] = modelOf(view, px, py, w, hgt);
      const r = ((Math.max(cols.size, 2) / 2 + 4) * 2) / hgt / Math.abs(view[5]);
      const i = nearestPoint(cols.index, cols.x, cols.y, qx, qy, r);
      if (i >= 0) scatter.select([i], opts);
      return;
    }
    const poly: number[] = [];
    for (let i = 0; i < path.length; i += 2) poly.push(...modelOf(view, path[i], path[i + 1], w, hgt));
    const t0 = performance.now();
    const sel = lassoSelect(cols.index, cols.x, cols.y, poly);
    root.dataset.lassoMs = (performance.now() - t0).toFixed(1);
    if (sel.length) scatter.select(Array.from(sel), opts);
    else if (!d.merge && !d.remove) scatter.deselect();
  }

  private click(ev: Event): void {
    if (!this.handled) return;
    this.handled = false;
    ev.stopImmediatePropagation(); // handled on pointerup
  }

  private wheel(ev: WheelEvent): void {
    if (!this.deferred) return;
    ev.preventDefault();
    ev.stopImmediatePropagation();
    const [px, py] = this.rel(ev);
    this.gesture = zoomAt(this.gesture, wheelFactor(ev.deltaY, ev.deltaMode), px, py);
    this.showTransform();
    clearTimeout(this.wheelTimer);
    this.wheelTimer = setTimeout(() => (this.drag ? undefined : this.commit()), WHEEL_IDLE_MS);
  }

  private hover(ev: MouseEvent): void {
    if (!this.deferred || !ev.isTrusted || ev.buttons !== 0) return; // lasso drags pass through
    ev.stopPropagation(); // regl-scatterplot listens on window
    clearTimeout(this.hoverTimer);
    const { clientX, clientY } = ev;
    this.hoverTimer = setTimeout(() => {
      if (!this.drag) this.host.canvas.dispatchEvent(new MouseEvent("mousemove", { clientX, clientY, bubbles: true }));
    }, HOVER_REST_MS);
  }

  dispose(): void {
    clearTimeout(this.wheelTimer);
    clearTimeout(this.hoverTimer);
    this.offs.forEach((off) => off());
    document.body.classList.remove("curator-drawing");
  }
}
