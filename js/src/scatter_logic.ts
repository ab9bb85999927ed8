// Data preparation for the WebGL scatter (DOM- and GL-free, unit-tested).
import KDBush from "kdbush";

export interface ScatterPoints {
  x: Float32Array;
  y: Float32Array;
  valueA: Float32Array; // color code (categorical)
  valueB: Float32Array; // 1 = highlighted (drawn larger), 0 = not
}

/** Split interleaved [x0, y0, x1, y1, ...] (an [N, 2] float32 array) into x and y columns. */
export function deinterleave(xy: Float32Array): { x: Float32Array; y: Float32Array } {
  const n = Math.floor(xy.length / 2);
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 2) {
    x[i] = xy[j];
    y[i] = xy[j + 1];
  }
  return { x, y };
}

/** 0/1 flags for highlighted point indices (out-of-range indices are ignored). */
export function highlightFlags(n: number, idx: ArrayLike<number> | null): Float32Array {
  const out = new Float32Array(n);
  if (!idx) return out;
  for (let i = 0; i < idx.length; i++) {
    const k = idx[i];
    if (k >= 0 && k < n) out[k] = 1;
  }
  return out;
}

/** Codes as floats for the GL attribute; missing or short color arrays give code 0. */
export function colorCodes(n: number, codes: ArrayLike<number> | null, paletteSize: number): Float32Array {
  const out = new Float32Array(n);
  if (!codes || codes.length !== n) return out;
  const max = Math.max(0, paletteSize - 1);
  for (let i = 0; i < n; i++) out[i] = Math.min(codes[i], max);
  return out;
}

export function buildPoints(
  xy: Float32Array,
  codes: ArrayLike<number> | null,
  paletteSize: number,
  highlight: ArrayLike<number> | null,
): ScatterPoints {
  const { x, y } = deinterleave(xy);
  return { x, y, valueA: colorCodes(x.length, codes, paletteSize), valueB: highlightFlags(x.length, highlight) };
}

/** The selection event's index list as the uint32 array Python expects (sorted, unique). */
export function selectionArray(points: ArrayLike<number>): Uint32Array {
  const out = Uint32Array.from(points as ArrayLike<number>);
  out.sort();
  let w = 0;
  for (let r = 0; r < out.length; r++) if (r === 0 || out[r] !== out[r - 1]) out[w++] = out[r];
  return out.slice(0, w);
}

/** Default point size in px: smaller as the cloud grows, so a million points stay readable. */
export function autoPointSize(n: number): number {
  if (n <= 1000) return 6;
  if (n <= 10000) return 4;
  if (n <= 100000) return 2.5;
  return 1.5;
}

/**
 * regl-scatterplot's hover/click index (KDBush v4, the library it bundles) built straight from the
 * x/y columns. Its `.data` given as draw()'s `spatialIndex` spares regl-scatterplot from copying a
 * million [x, y, z, w] arrays into a worker and back to build the same index.
 */
export function spatialIndex(x: Float32Array, y: Float32Array, nodeSize = 16): KDBush {
  const index = new KDBush(x.length, nodeSize, Float32Array);
  for (let i = 0; i < x.length; i++) index.add(x[i], y[i]);
  index.finish();
  return index;
}

/** [xmin, xmax, ymin, ymax] of the points (what the first view fits). */
export function extent(x: Float32Array, y: Float32Array): [number, number, number, number] {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < x.length; i++) {
    const a = x[i];
    const b = y[i];
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  return [x0, x1, y0, y1];
}
