import { describe, expect, it } from "vitest";
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
  pointInPolygon,
  screenOf,
  viewAfter,
  wheelFactor,
  zoomAt,
  type PointIndex,
} from "../src/gesture_logic";
import { spatialIndex } from "../src/scatter_logic";

// a 2-D camera view as dom-2d-camera keeps it: column-major scale + translation
const camera = (scale: number, x: number, y: number) => [scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, 1, 0, x, y, 0, 1];
const apply = (a: { s: number; tx: number; ty: number }, p: [number, number]) => [a.s * p[0] + a.tx, a.s * p[1] + a.ty];

describe("deferred pan/zoom", () => {
  it("composes pans and zooms as screen affines", () => {
    let a = pan(IDENTITY, 10, -5);
    a = zoomAt(a, 2, 100, 50);
    // the zoom centre stays put, other points move away from it
    expect(apply(zoomAt(IDENTITY, 2, 100, 50), [100, 50])).toEqual([100, 50]);
    expect(apply(a, [0, 0])).toEqual([2 * (10 - 100) + 100, 2 * (-5 - 50) + 50]);
    const c = compose(pan(IDENTITY, 3, 4), zoomAt(IDENTITY, 0.5, 10, 10));
    expect(apply(c, [10, 10])).toEqual([13, 14]);
    expect(isIdentity(IDENTITY)).toBe(true);
    expect(cssTransform(IDENTITY)).toBe("");
    expect(cssTransform(a)).toBe(`matrix(2, 0, 0, 2, ${a.tx}, ${a.ty})`);
  });

  it("turns the moved frame into the camera view that draws the same picture", () => {
    const [w, h] = [800, 360];
    const view = camera(1.7, 0.2, -0.3);
    const a = compose(zoomAt(IDENTITY, 1.35, 500, 120), pan(IDENTITY, -42, 17));
    const next = viewAfter(view, a, w, h);
    for (const p of [[0, 0], [0.5, -0.25], [-0.9, 0.8], [0.1, 0.95]] as Array<[number, number]>) {
      const before = screenOf(view, p[0], p[1], w, h);
      const after = screenOf(next, p[0], p[1], w, h);
      const expected = apply(a, before);
      expect(after[0]).toBeCloseTo(expected[0], 6);
      expect(after[1]).toBeCloseTo(expected[1], 6);
    }
    expect(viewAfter(view, IDENTITY, w, h)).toEqual(view);
  });

  it("zooms in on wheel-up and out on wheel-down, bounded per event", () => {
    expect(wheelFactor(-100)).toBeGreaterThan(1);
    expect(wheelFactor(100)).toBeLessThan(1);
    expect(wheelFactor(-3, 1)).toBeCloseTo(wheelFactor(-48), 10);
    expect(wheelFactor(-1e6)).toBeCloseTo(wheelFactor(-300), 10);
  });

  it("defers only when asked, or when a frame is slower than the threshold", () => {
    expect(chooseGestures("auto", 20, 60)).toBe("live");
    expect(chooseGestures("auto", 200, 60)).toBe("deferred");
    expect(chooseGestures("live", 2000, 60)).toBe("live");
    expect(chooseGestures("deferred", 1, 60)).toBe("deferred");
  });
});

describe("lasso and click without redraws", () => {
  let seed = 3;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const n = 4000;
  const x = Float32Array.from({ length: n }, rand);
  const y = Float32Array.from({ length: n }, rand);
  const index = spatialIndex(x, y) as unknown as PointIndex;

  it("maps screen pixels back to model space", () => {
    const view = camera(2.3, -0.4, 0.15);
    for (const p of [[0.1, 0.2], [-0.7, 0.33]] as Array<[number, number]>) {
      const [sx, sy] = screenOf(view, p[0], p[1], 640, 400);
      const [mx, my] = modelOf(view, sx, sy, 640, 400);
      expect(mx).toBeCloseTo(p[0], 6);
      expect(my).toBeCloseTo(p[1], 6);
    }
  });

  it("selects exactly the points inside a concave lasso", () => {
    // a "C" shape: the notch must stay unselected
    const poly = [-0.6, -0.6, 0.6, -0.6, 0.6, -0.3, -0.2, -0.3, -0.2, 0.3, 0.6, 0.3, 0.6, 0.6, -0.6, 0.6];
    const got = Array.from(lassoSelect(index, x, y, poly));
    const want: number[] = [];
    for (let i = 0; i < n; i++) if (pointInPolygon(x[i], y[i], poly)) want.push(i);
    expect(got).toEqual(want);
    expect(got.length).toBeGreaterThan(300);
    expect(pointInPolygon(0.3, 0, poly)).toBe(false); // the notch
    expect(pointInPolygon(-0.4, 0, poly)).toBe(true);
    expect(lassoSelect(index, x, y, [0, 0, 1, 1]).length).toBe(0); // not a polygon
  });

  it("clicks pick the nearest point within the radius, or none", () => {
    const i = nearestPoint(index, x, y, x[11] + 1e-4, y[11], 0.01);
    let best = -1;
    let bestD = Infinity;
    for (let k = 0; k < n; k++) {
      const d = (x[k] - x[11] - 1e-4) ** 2 + (y[k] - y[11]) ** 2;
      if (d < bestD) [best, bestD] = [k, d];
    }
    expect(i).toBe(best);
    expect(nearestPoint(index, x, y, 5, 5, 0.01)).toBe(-1);
  });
});
