import KDBush from "kdbush";
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/shared/arrays";
import {
  autoPointSize,
  buildPoints,
  colorCodes,
  deinterleave,
  extent,
  highlightFlags,
  selectionArray,
  spatialIndex,
} from "../src/scatter_logic";
import widget, { webglAvailable } from "../src/embedding_view";
const { render } = widget;
import { MockModel, renderProps } from "./mock_model";

describe("scatter data", () => {
  it("deinterleaves [N, 2] float32 coordinates", () => {
    const { x, y } = deinterleave(new Float32Array([1, 2, 3, 4, 5, 6]));
    expect(Array.from(x)).toEqual([1, 3, 5]);
    expect(Array.from(y)).toEqual([2, 4, 6]);
  });

  it("builds color codes and highlight flags", () => {
    expect(Array.from(colorCodes(3, new Uint8Array([0, 5, 1]), 3))).toEqual([0, 2, 1]);
    expect(Array.from(colorCodes(3, new Uint8Array([1]), 3))).toEqual([0, 0, 0]);
    expect(Array.from(highlightFlags(4, [1, 3, 9]))).toEqual([0, 1, 0, 1]);
    const p = buildPoints(new Float32Array([0, 0, 1, 1]), new Uint8Array([1, 0]), 2, [0]);
    expect(Array.from(p.valueA)).toEqual([1, 0]);
    expect(Array.from(p.valueB)).toEqual([1, 0]);
  });

  it("turns the lasso's index list into a sorted unique uint32 array", () => {
    const s = selectionArray([5, 1, 5, 3]);
    expect(s).toBeInstanceOf(Uint32Array);
    expect(Array.from(s)).toEqual([1, 3, 5]);
    expect(selectionArray([]).length).toBe(0);
  });

  it("builds the hover/lasso index regl-scatterplot would build, from the columns", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const n = 5000;
    const x = Float32Array.from({ length: n }, rand);
    const y = Float32Array.from({ length: n }, rand);
    const index = KDBush.from(spatialIndex(x, y).data); // the serialized form regl-scatterplot reads
    expect(index.numItems).toBe(n);
    const got = index.range(-0.2, -0.1, 0.3, 0.25).sort((a: number, b: number) => a - b);
    const want: number[] = [];
    for (let i = 0; i < n; i++) if (x[i] >= -0.2 && x[i] <= 0.3 && y[i] >= -0.1 && y[i] <= 0.25) want.push(i);
    expect(got).toEqual(want);
    expect(want.length).toBeGreaterThan(50);
    const near = index.within(x[42], y[42], 1e-6);
    expect(near).toContain(42);
  });

  it("measures the cloud the first view fits", () => {
    expect(extent(new Float32Array([0.5, -0.2, 0.1]), new Float32Array([0.3, 0.9, -0.7]))).toEqual([
      Math.fround(-0.2),
      Math.fround(0.5),
      Math.fround(-0.7),
      Math.fround(0.9),
    ]);
  });

  it("shrinks points as the cloud grows", () => {
    expect(autoPointSize(100)).toBeGreaterThan(autoPointSize(1_000_000));
  });
});

describe("EmbeddingView without WebGL", () => {
  it("says what is missing instead of failing silently", async () => {
    (HTMLCanvasElement.prototype as any).getContext = () => null; // as a browser with WebGL disabled
    expect(webglAvailable()).toBe(false); // jsdom has no WebGL
    const m = new MockModel({ xy: encodeArray(new Float32Array([0, 0, 1, 1]), [2, 2]), height: "300px" });
    const props = renderProps(m);
    await render(props as any);
    expect(props.el.textContent).toContain("needs WebGL");
    expect(props.el.textContent).toContain("plot_projection");
  });
});
