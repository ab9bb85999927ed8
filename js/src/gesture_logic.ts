// Deferred pan/zoom for slow renderers (DOM- and GL-free, unit-tested).
//
// When one full WebGL frame takes longer than a gesture can wait (a million points on a software
// renderer or a weak GPU), the EmbeddingView moves the last rendered frame with a CSS transform
// while the pointer or wheel moves, and redraws once when the gesture ends, as web maps do. The
// transform is a screen-space affine p -> s * p + t in CSS pixels; `viewAfter` turns it into the
// camera view matrix that draws the same picture, so the sharp redraw lands exactly where the
// moved frame was.

export interface Affine {
  s: number;
  tx: number;
  ty: number;
}

export const IDENTITY: Affine = Object.freeze({ s: 1, tx: 0, ty: 0 });

export function isIdentity(a: Affine): boolean {
  return a.s === 1 && a.tx === 0 && a.ty === 0;
}

/** Move by (dx, dy) CSS pixels after `a`. */
export function pan(a: Affine, dx: number, dy: number): Affine {
  return { s: a.s, tx: a.tx + dx, ty: a.ty + dy };
}

/** Scale by `f` about the screen point (cx, cy), after `a`. */
export function zoomAt(a: Affine, f: number, cx: number, cy: number): Affine {
  return { s: a.s * f, tx: f * (a.tx - cx) + cx, ty: f * (a.ty - cy) + cy };
}

/** `outer` applied after `inner`. */
export function compose(outer: Affine, inner: Affine): Affine {
  return { s: outer.s * inner.s, tx: outer.s * inner.tx + outer.tx, ty: outer.s * inner.ty + outer.ty };
}

/** The CSS transform (with transform-origin 0 0) that shows the frame moved by `a`. */
export function cssTransform(a: Affine): string {
  return isIdentity(a) ? "" : `matrix(${a.s}, 0, 0, ${a.s}, ${a.tx}, ${a.ty})`;
}

/** Wheel zoom factor per event: the same feel for pixel, line and page deltas, bounded per event. */
export function wheelFactor(deltaY: number, deltaMode = 0): number {
  const px = deltaMode === 1 ? deltaY * 16 : deltaMode === 2 ? deltaY * 400 : deltaY;
  return Math.exp(-Math.max(-300, Math.min(300, px)) * 0.002);
}

/**
 * The camera view matrix (column-major 4x4, as regl-scatterplot / gl-matrix keep it) that draws
 * the picture `a` made of the frame drawn with `view`, on a `width` x `height` CSS-pixel canvas.
 *
 * regl-scatterplot maps a point to clip space by P * view * model with P = diag(height / width,
 * 1, 1, 1), and clip to CSS pixels by x = (1 + ndcX) * width / 2, y = (1 - ndcY) * height / 2.
 * The screen affine is then an NDC affine ndc -> s * ndc + b, and view' = P^-1 A P view.
 */
export function viewAfter(view: ArrayLike<number>, a: Affine, width: number, height: number): number[] {
  const bx = a.s - 1 + (2 * a.tx) / width;
  const by = 1 - a.s - (2 * a.ty) / height;
  const ax = (width / height) * bx;
  const out = Array.from(view);
  for (let col = 0; col < 4; col++) {
    const w = view[col * 4 + 3];
    out[col * 4] = a.s * view[col * 4] + ax * w;
    out[col * 4 + 1] = a.s * view[col * 4 + 1] + by * w;
  }
  return out;
}

/** Where regl-scatterplot draws a (model-space) point on screen, for tests: CSS pixels. */
export function screenOf(view: ArrayLike<number>, x: number, y: number, width: number, height: number): [number, number] {
  const vx = view[0] * x + view[4] * y + view[12];
  const vy = view[1] * x + view[5] * y + view[13];
  const vw = view[3] * x + view[7] * y + view[15];
  const ndcX = ((height / width) * vx) / vw;
  const ndcY = vy / vw;
  return [((1 + ndcX) * width) / 2, ((1 - ndcY) * height) / 2];
}

/** Live redraws unless asked for deferred, or "auto" and one frame costs more than `slowMs`. */
export function chooseGestures(mode: string, frameMs: number, slowMs: number): "live" | "deferred" {
  if (mode === "live" || mode === "deferred") return mode;
  return frameMs > slowMs ? "deferred" : "live";
}

// ---------------------------------------------------------------- lasso and click, without redraws
// With deferred gestures the lasso is an SVG path over the canvas and the selection is computed
// here from the hover/lasso index (one range query, then an exact point-in-polygon test), so a
// lasso over a million points costs no WebGL frame until the selection is shown.

export interface PointIndex {
  range(minX: number, minY: number, maxX: number, maxY: number): number[];
  within(x: number, y: number, r: number): number[];
}

/** The model-space point drawn at CSS pixel (px, py) by a 2-D `view` (inverse of `screenOf`). */
export function modelOf(view: ArrayLike<number>, px: number, py: number, width: number, height: number): [number, number] {
  const vx = ((2 * px) / width - 1) * (width / height);
  const vy = 1 - (2 * py) / height;
  const [a, b, c, d] = [view[0], view[4], view[1], view[5]];
  const det = a * d - b * c;
  const rx = vx - view[12];
  const ry = vy - view[13];
  return [(d * rx - b * ry) / det, (a * ry - c * rx) / det];
}

/** Even-odd rule; `poly` is flat [x0, y0, x1, y1, ...], implicitly closed. */
export function pointInPolygon(x: number, y: number, poly: ArrayLike<number>): boolean {
  let inside = false;
  const n = poly.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const xi = poly[2 * i];
    const yi = poly[2 * i + 1];
    const xj = poly[2 * j];
    const yj = poly[2 * j + 1];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Indices (sorted) of the points inside the model-space polygon. */
export function lassoSelect(index: PointIndex, x: ArrayLike<number>, y: ArrayLike<number>, poly: ArrayLike<number>): Uint32Array {
  if (poly.length < 6) return new Uint32Array(0);
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
  for (let i = 0; i < poly.length; i += 2) {
    minX = Math.min(minX, poly[i]);
    maxX = Math.max(maxX, poly[i]);
    minY = Math.min(minY, poly[i + 1]);
    maxY = Math.max(maxY, poly[i + 1]);
  }
  const inside = index.range(minX, minY, maxX, maxY).filter((i) => pointInPolygon(x[i], y[i], poly));
  return Uint32Array.from(inside).sort();
}

/** The point nearest (qx, qy) within radius r (model units), or -1. */
export function nearestPoint(index: PointIndex, x: ArrayLike<number>, y: ArrayLike<number>, qx: number, qy: number, r: number): number {
  let best = -1;
  let bestD = r * r;
  for (const i of index.within(qx, qy, r)) {
    const d = (x[i] - qx) ** 2 + (y[i] - qy) ** 2;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}
