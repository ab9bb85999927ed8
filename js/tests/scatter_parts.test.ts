// The EmbeddingView's parts, each on its own: legend, lasso overlay, selection sync, hover card,
// gesture controller; plus the shared theme and keyboard-help helpers.
import { beforeAll, describe, expect, it, vi } from "vitest";
import { encodeArray } from "../src/shared/arrays";
import { helpKey, keyHelp } from "../src/shared/keyhelp";
import { parseColor, themeColor } from "../src/shared/theme";
import { GestureController, type GestureScatter } from "../src/scatter_gestures";
import { HoverCard, cardLines, cardPosition } from "../src/scatter_hover";
import { LassoOverlay } from "../src/scatter_lasso";
import { renderLegend } from "../src/scatter_legend";
import { SelectionSync } from "../src/scatter_selection";
import { SCATTER_KEYS } from "../src/embedding_view";
import { MockModel, stubImages } from "./mock_model";

beforeAll(stubImages);

describe("legend", () => {
  it("titles categories and names the grey points", () => {
    const el = document.createElement("div");
    renderLegend(el, "labels", "category", [["negative", "#1f77b4"], ["positive", "#ff7f0e"], ["unlabelled (no label yet)", "#bdbdbd"]]);
    expect(el.querySelector(".curator-legend-title")!.textContent).toBe("labels");
    expect(Array.from(el.querySelectorAll(".curator-legend-item")).map((e) => e.textContent)).toEqual([
      "negative",
      "positive",
      "unlabelled (no label yet)",
    ]);
    expect(el.dataset.kind).toBe("category");
  });

  it("draws scores as a colour bar from the first to the last stop, missing values apart", () => {
    const el = document.createElement("div");
    renderLegend(el, "active score", "value", [["0.01", "#000004"], ["0.5", "#b73779"], ["0.99", "#fcfdbf"], ["(none)", "#bdbdbd"]]);
    const ramp = el.querySelector(".curator-legend-ramp") as HTMLElement;
    expect(ramp.style.background).toContain("linear-gradient");
    expect(el.querySelector(".curator-legend-ends")!.textContent).toBe("0.010.99");
    expect(el.querySelectorAll(".curator-legend-item").length).toBe(1); // only the grey swatch
    expect(renderLegend(el, "", "category", [])).toBe(false);
    expect(el.style.display).toBe("none");
  });

  it("counts what does not fit", () => {
    const el = document.createElement("div");
    const items = Array.from({ length: 30 }, (_, i) => [String(i), "#123456"] as [string, string]);
    renderLegend(el, "cluster", "category", items);
    expect(el.querySelector(".curator-legend-more")!.textContent).toBe("+ 6 more");
  });
});

describe("lasso overlay", () => {
  it("keeps vertices at least 2 px apart and closes the path", () => {
    const frames: Array<() => void> = [];
    const lasso = new LassoOverlay((cb) => frames.push(cb));
    lasso.start(0, 0);
    expect(lasso.add(1, 1)).toBe(false);
    expect(lasso.add(10, 0)).toBe(true);
    lasso.add(10, 10);
    expect(lasso.d()).toBe("M0,0L10,0L10,10Z");
    const path = lasso.el.querySelector("path")!;
    expect(frames.length).toBe(1); // two moves, one DOM write, in the next frame
    expect(path.getAttribute("d")).toBe("");
    frames.shift()!();
    expect(path.getAttribute("d")).toBe("M0,0L10,0L10,10Z");
    lasso.add(20, 10);
    frames.shift()!();
    expect(path.getAttribute("d")).toBe("M0,0L10,0L10,10L20,10Z");
    lasso.clear();
    expect(lasso.points).toEqual([]);
    expect(lasso.d()).toBe("");
  });
});

describe("selection sync", () => {
  it("sends chunked selections, ignores its own echo, applies Python's, reports the round trip", () => {
    const m = new MockModel({ chunk_bytes: 8, selection: encodeArray(new Uint32Array(0), [0]) });
    const scatter = { select: vi.fn(), deselect: vi.fn() };
    const changed = vi.fn();
    const stats = vi.fn();
    const sync = new SelectionSync(m as any, scatter, changed, stats);
    sync.send(new Uint32Array([1, 2, 3]));
    expect(m.sent.map((s) => s.content.type)).toEqual(["selection", "selection"]); // 12 bytes in 8-byte chunks
    expect(changed).toHaveBeenCalledTimes(1);
    m.update("selection", encodeArray(new Uint32Array([1, 2, 3]), [3])); // our own, echoed
    expect(scatter.select).not.toHaveBeenCalled();
    m.update("selection", encodeArray(new Uint32Array([7]), [1])); // set from Python
    expect(scatter.select).toHaveBeenCalledWith([7], { preventEvent: true });
    m.update("selection", encodeArray(new Uint32Array(0), [0]));
    expect(scatter.deselect).toHaveBeenCalledWith({ preventEvent: true });
    m.receive({ type: "selection-ack", seq: 1, count: 3 });
    expect(stats).toHaveBeenCalledWith(expect.any(Number), 3);
    expect(sync.initial()).toBeUndefined();
    sync.dispose();
    expect(m.listeners("change:selection")).toBe(0);
  });
});

describe("hover card", () => {
  it("says chip, label, score and source, most important first", () => {
    expect(cardLines({ ok: true, chip: 12, label: "positive", score: "active score 0.874", source: "bluemarble · BlueMarble_NextGeneration" }, { chip: 3, cls: "" })).toEqual([
      "chip 12",
      "label: positive",
      "active score 0.874",
      "bluemarble · BlueMarble_NextGeneration",
    ]);
    expect(cardLines({ ok: false }, { chip: 3, cls: "cluster 2" })).toEqual(["chip 3", "label: cluster 2"]);
  });

  it("stays inside the stage", () => {
    expect(cardPosition(10, 300, 600)).toEqual([22, 110]);
    expect(cardPosition(550, 50, 600)).toEqual([368, 0]);
  });

  it("asks Python for the text and shows the thumbnail; a newer hover wins", async () => {
    const invoke = vi.fn(async (_name: string, msg: any) => [{ ok: true, chip: msg.index + 100, label: "negative", score: "p 0.120" }, []]);
    const img = document.createElement("img");
    const onShow = vi.fn();
    const card = new HoverCard(invoke as any, async () => img, onShow);
    const first = card.show(1, 101, "", 10, 10, 400);
    const second = card.show(2, 102, "", 10, 10, 400);
    await Promise.all([first, second]);
    expect(invoke).toHaveBeenCalledWith("info", { index: 2 }, { timeout: 10000 });
    expect(card.el.textContent).toContain("chip 102");
    expect(card.el.textContent).toContain("label: negative");
    expect(card.el.querySelectorAll("img").length).toBe(1);
    expect(onShow).toHaveBeenLastCalledWith(102);
    card.hide();
    expect(card.el.style.display).toBe("none");
  });
});

describe("gesture controller", () => {
  function fakeScatter(): GestureScatter & { calls: string[] } {
    const calls: string[] = [];
    let drawing: (() => void) | null = null;
    return {
      calls,
      get: () => [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
      set: (p) => calls.push(`set:${p.cameraIsFixed}`),
      view: () => calls.push("view"),
      redraw: () => {
        calls.push("redraw");
        drawing?.();
      },
      subscribe: (_e, cb) => {
        drawing = () => {
          drawing = null;
          cb();
        };
      },
      select: (pts) => calls.push(`select:${pts.length}`),
      deselect: () => calls.push("deselect"),
    };
  }

  function host(scatter: GestureScatter, gestures = "deferred") {
    const root = document.createElement("div");
    const stage = document.createElement("div");
    const canvas = document.createElement("canvas");
    stage.append(canvas);
    root.append(stage);
    document.body.append(root);
    return { scatter, root, stage, canvas, lasso: new LassoOverlay(), hideHover: vi.fn(), columns: () => null, lassoMode: () => false, settings: () => ({ gestures, slowFrameMs: 60 }) };
  }

  it("follows the gestures setting and fixes regl-scatterplot's camera when deferred", () => {
    const s = fakeScatter();
    const h = host(s, "deferred");
    const g = new GestureController(h);
    g.applyMode();
    expect(g.deferred).toBe(true);
    expect(h.root.dataset.gestures).toBe("deferred");
    expect(s.calls).toContain("set:true");
    g.dispose();
  });

  it("keeps the mode while a pointer is down on the plot and applies a change after the release", async () => {
    const s = fakeScatter();
    const h = host(s, "live");
    const g = new GestureController(h);
    g.applyMode();
    expect(h.root.dataset.gestures).toBe("live");
    h.canvas.dispatchEvent(new MouseEvent("pointerdown", { bubbles: true })); // a live lasso starts
    g.frameMs = 500; // a slow frame timed meanwhile: "auto" would now choose deferred
    h.settings = () => ({ gestures: "auto", slowFrameMs: 60 });
    g.applyMode();
    expect(g.deferred).toBe(false);
    expect(h.root.dataset.gestures).toBe("live"); // the lasso keeps its mode
    window.dispatchEvent(new MouseEvent("pointerup"));
    await new Promise((r) => setTimeout(r, 5));
    expect(g.deferred).toBe(true);
    expect(h.root.dataset.gestures).toBe("deferred");
    g.dispose();
  });

  it("measures one frame", async () => {
    const g = new GestureController(host(fakeScatter(), "auto"));
    expect(await g.measureFrame()).toBeGreaterThanOrEqual(0);
    g.dispose();
  });

  it("blocks page text selection while a drag that began on the plot is on (bug 9)", () => {
    const h = host(fakeScatter(), "live");
    const g = new GestureController(h);
    h.canvas.dispatchEvent(new MouseEvent("pointerdown", { bubbles: true }));
    expect(document.body.classList.contains("curator-drawing")).toBe(true);
    const sel = new Event("selectstart", { bubbles: true, cancelable: true });
    document.dispatchEvent(sel);
    expect(sel.defaultPrevented).toBe(true);
    window.dispatchEvent(new MouseEvent("pointerup"));
    expect(document.body.classList.contains("curator-drawing")).toBe(false);
    const later = new Event("selectstart", { bubbles: true, cancelable: true });
    document.dispatchEvent(later);
    expect(later.defaultPrevented).toBe(false);
    g.dispose();
  });
});

describe("theme and keyboard help", () => {
  it("reads JupyterLab colours for the WebGL background", () => {
    expect(parseColor("#fff")).toEqual([1, 1, 1, 1]);
    expect(parseColor("#111111")).toEqual([17 / 255, 17 / 255, 17 / 255, 1]);
    expect(parseColor("rgb(33, 33, 33)")).toEqual([33 / 255, 33 / 255, 33 / 255, 1]);
    expect(parseColor("rgba(0, 0, 0, 0.5)")).toEqual([0, 0, 0, 0.5]);
    expect(parseColor("var(--x)")).toBeNull();
    const el = document.createElement("div");
    el.style.setProperty("--jp-layout-color0", "#111111");
    document.body.append(el);
    expect(themeColor(el, "--jp-layout-color0", [1, 1, 1, 1])[0]).toBeCloseTo(17 / 255);
    expect(themeColor(el, "--jp-missing", [1, 1, 1, 1])).toEqual([1, 1, 1, 1]);
  });

  it("toggles on ?, closes on Esc, and lists every scatter key", () => {
    const help = keyHelp("keys", SCATTER_KEYS);
    expect(help.el.hidden).toBe(true);
    expect(helpKey({ key: "?" }, help)).toBe(true);
    expect(help.el.hidden).toBe(false);
    expect(help.el.textContent).toContain("clear the selection");
    expect(helpKey({ key: "Escape" }, help)).toBe(true);
    expect(help.el.hidden).toBe(true);
    expect(helpKey({ key: "Escape" }, help)).toBe(false); // Esc is the widget's again once help is closed
  });
});
