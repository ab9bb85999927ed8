import { beforeAll, describe, expect, it, vi } from "vitest";
import { encodeArray, decodeArray } from "../src/shared/arrays";
import { GridSelection, gridLayout, visibleRange, formatScore, moveCursor } from "../src/gallery_logic";
import widget from "../src/gallery";
const { render } = widget;
import { MockModel, renderProps, stubImages } from "./mock_model";

describe("virtualized layout", () => {
  it("computes columns, rows and the visible slice", () => {
    const lay = gridLayout(700, 10_000, 128, 6, 34);
    expect(lay.columns).toBe(5);
    expect(lay.rows).toBe(2000);
    expect(lay.totalHeight).toBe(2000 * (128 + 34 + 6));
    const [a, b] = visibleRange(0, 400, lay, 10_000, 1);
    expect(a).toBe(0);
    expect(b).toBe(5 * 4); // 3 visible rows + 1 overscan
    const [c, d] = visibleRange(168 * 100, 400, lay, 10_000, 1);
    expect(c).toBe(5 * 99);
    expect(d - c).toBeLessThanOrEqual(5 * 5);
    expect(visibleRange(1e9, 400, lay, 10_000)[1]).toBe(10_000);
  });

  it("selects by click, ctrl-click and shift-click ranges", () => {
    const s = new GridSelection();
    s.click(3);
    s.click(7, { shift: true });
    expect([...s.selected].sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7]);
    s.click(1, { shift: true }); // re-range from the same anchor
    expect([...s.selected].sort((a, b) => a - b)).toEqual([1, 2, 3]);
    s.click(9, { toggle: true });
    s.click(2, { toggle: true });
    expect([...s.selected].sort((a, b) => a - b)).toEqual([1, 3, 9]);
    expect(Array.from(s.ids([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]))).toEqual([11, 13, 19]);
    s.setIds([5, 6, 7], [7, 99]);
    expect([...s.selected]).toEqual([2]);
    expect(formatScore(0.12345)).toBe("0.123");
    expect(formatScore(NaN)).toBe("");
  });
});

describe("SampleGallery view", () => {
  beforeAll(stubImages);

  it("renders only the visible cells of 10k and syncs the selection as uint32", async () => {
    const ids = Uint32Array.from({ length: 10_000 }, (_, i) => i + 100);
    const model = new MockModel({
      ids: encodeArray(ids),
      scores: encodeArray(Float32Array.from({ length: 10_000 }, (_, i) => 1 - i / 10_000)),
      captions: [],
      selection: encodeArray(new Uint32Array(0)),
      title: "sample",
      thumb_size: 128,
      height: "400px",
      thumb_url: "",
    });
    const asked: number[] = [];
    const invoke = async (_name: string, msg: any) => {
      asked.push(msg.id);
      return [{ ok: true, mime: "image/jpeg" }, [new DataView(new Uint8Array([1]).buffer)]];
    };
    const props = renderProps(model, invoke);
    render(props as any);
    const root = props.el.querySelector(".curator-gallery") as HTMLElement;
    const rendered = Number(root.dataset.rendered);
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(60); // not 10,000
    await vi.waitFor(() => expect(asked.length).toBe(rendered)); // only visible thumbnails requested
    const cells = props.el.querySelectorAll<HTMLElement>(".curator-gallery-cell");
    expect(cells[0].textContent).toContain("#100");
    expect(cells[0].textContent).toContain("1.00");
    cells[1].click();
    cells[4].dispatchEvent(new MouseEvent("click", { bubbles: true, shiftKey: true }));
    const sel = decodeArray(model.get("selection"))!;
    expect(Array.from(sel)).toEqual([101, 102, 103, 104]);
    expect(model.saves).toBe(2);
    expect(cells[2].classList.contains("curator-selected")).toBe(true);
    // Python selects: the grid follows
    model.update("selection", encodeArray(new Uint32Array([100])));
    expect(props.el.querySelector('[data-chip-id="100"]')!.classList.contains("curator-selected")).toBe(true);
    // the keyboard: arrows move a cursor, Space selects, Shift+arrow extends, Esc clears, ? shows help
    const viewport = props.el.querySelector(".curator-gallery-viewport") as HTMLElement;
    const key = (k: string, shiftKey = false) => viewport.dispatchEvent(new KeyboardEvent("keydown", { key: k, shiftKey, bubbles: true, cancelable: true }));
    key("ArrowRight");
    key("ArrowRight");
    key(" ");
    expect(Array.from(decodeArray(model.get("selection"))!)).toEqual([101]);
    key("ArrowRight", true);
    expect(Array.from(decodeArray(model.get("selection"))!)).toEqual([101, 102]);
    key("Escape");
    expect(decodeArray(model.get("selection"))!.length).toBe(0);
    key("?");
    expect((props.el.querySelector(".curator-keyhelp") as HTMLElement).hidden).toBe(false);
    // new ids replace the cells
    model.update("ids", encodeArray(new Uint32Array([5, 6])));
    expect(props.el.querySelectorAll(".curator-gallery-cell").length).toBe(2);
  });
});

describe("gallery keyboard", () => {
  it("moves a cursor with the arrows, clamped to the grid", () => {
    expect(moveCursor("ArrowRight", -1, 4, 10)).toBe(0); // the first key lands on the first chip
    expect(moveCursor("ArrowRight", 0, 4, 10)).toBe(1);
    expect(moveCursor("ArrowDown", 1, 4, 10)).toBe(5);
    expect(moveCursor("ArrowDown", 8, 4, 10)).toBe(9);
    expect(moveCursor("ArrowUp", 1, 4, 10)).toBe(0);
    expect(moveCursor("End", 3, 4, 10)).toBe(9);
    expect(moveCursor("Home", 7, 4, 10)).toBe(0);
    expect(moveCursor("a", 3, 4, 10)).toBeNull();
    expect(moveCursor("ArrowRight", 0, 4, 0)).toBeNull();
  });
});
