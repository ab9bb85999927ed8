// The RegionPicker's parts, each on its own: the base layer, the box overlay and view fit, box
// drawing with pointer events, and the controls synced with the model.
import L from "leaflet";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { BoxOverlay, boxBounds, corners, ViewFit } from "../src/region_box";
import { RegionControls, SEARCH_DEBOUNCE_MS, statusText } from "../src/region_controls";
import { BoxDrawing } from "../src/region_draw";
import { gibsCRS, maxViewZoom, tileLayer, tileParts } from "../src/region_tiles";
import { regionModel, stubCanvas2d, tick } from "./mock_model";

/** jsdom has no PointerEvent: a MouseEvent with a pointer id is all the handlers read. */
class FakePointer extends MouseEvent {
  pointerId: number;
  constructor(type: string, init: MouseEventInit & { pointerId?: number }) {
    super(type, { bubbles: true, cancelable: true, ...init });
    this.pointerId = init.pointerId ?? 1;
  }
}

function sizedMap(w = 400, hgt = 300): { map: L.Map; mapEl: HTMLElement } {
  const mapEl = document.createElement("div");
  document.body.appendChild(mapEl);
  Object.defineProperty(mapEl, "clientWidth", { value: w, configurable: true });
  Object.defineProperty(mapEl, "clientHeight", { value: hgt, configurable: true });
  const map = L.map(mapEl, { crs: gibsCRS(), center: [0, 0], zoom: 1, zoomSnap: 1 });
  return { map, mapEl };
}

beforeAll(stubCanvas2d);

describe("region tiles", () => {
  it("limits zoom to two levels past the source's finest tiles", () => {
    expect(maxViewZoom(8)).toBe(10);
    expect(maxViewZoom(11)).toBe(12); // never past 12
    expect(maxViewZoom(0)).toBe(10); // unknown: the Blue Marble default
  });

  it("asks the server for URLs, or the kernel for bytes, with the model's current layer", async () => {
    const m = regionModel({ date: "" });
    expect(tileParts(m as any)).toEqual({ source: "bluemarble", layer: "BlueMarble_NextGeneration", date: "default", matrix: "500m" });
    const server = tileLayer(m as any, vi.fn(), "/base/") as L.TileLayer;
    expect(server.getTileUrl({ x: 3, y: 1, z: 2 } as L.Coords)).toBe(
      "/base/curator/tiles/bluemarble/BlueMarble_NextGeneration/default/500m/2/1/3.jpg?wrap=1",
    );
    m.set("layer", "MODIS_Terra");
    expect(server.getTileUrl({ x: 0, y: 0, z: 0 } as L.Coords)).toContain("/MODIS_Terra/"); // follows the model
    const invoke = vi.fn(async () => [{ ok: false, error: "no such tile" }, []] as [unknown, DataView[]]);
    const comm = tileLayer(m as any, invoke as any, null);
    const done = vi.fn();
    (comm as unknown as { createTile(c: L.Coords, d: L.DoneCallback): HTMLElement }).createTile({ x: 4, y: 2, z: 1 } as L.Coords, done);
    await tick();
    expect(invoke).toHaveBeenCalledWith("tile", expect.objectContaining({ layer: "MODIS_Terra", z: 1, row: 2, col: 4 }), { timeout: 60000 });
    expect(done.mock.calls[0][0].message).toBe("no such tile");
  });
});

describe("box overlay and view fit", () => {
  it("draws the box with four handles; a handle drag reports the resized box", () => {
    const { map } = sizedMap();
    const root = document.createElement("div");
    const label = document.createElement("span");
    const edited = vi.fn();
    const box = new BoxOverlay(map, root, label, edited);
    box.show([170, -20, -170, 0]);
    expect(box.handleCount).toBe(4);
    expect(root.dataset.bbox).toBe("170,-20,-170,0");
    expect(label.textContent).toContain("crosses 180°");
    expect(corners([170, -20, -170, 0]).map((c) => c.lng)).toEqual([170, 190, 190, 170]); // unwrapped east
    let handle: L.Marker | null = null;
    map.eachLayer((l) => void (l instanceof L.Marker && !handle && (handle = l)));
    if (!handle) throw new Error("no handle on the map");
    (handle as L.Marker).setLatLng(L.latLng(-5, 175));
    (handle as L.Marker).fire("dragend");
    expect(edited).toHaveBeenCalledTimes(1);
    expect(edited.mock.calls[0][0][0]).toBe(175);
    box.rubberBand(L.latLng(0, 0), L.latLng(5, 5));
    expect(box.handleCount).toBe(0); // no handles while drawing
    box.show(null);
    expect(label.textContent).toBe("no box yet: draw one");
    map.remove();
  });

  it("fits only once the map has a size, and stops following the layout once the person moves", () => {
    const { map, mapEl } = sizedMap(0, 0);
    const root = document.createElement("div");
    const fit = new ViewFit(map, mapEl, root, () => 6);
    fit.fit(boxBounds([10, 0, 20, 10]));
    expect(root.dataset.fitted).toBeUndefined(); // 0 x 0: a fit now would land at max zoom
    Object.defineProperty(mapEl, "clientWidth", { value: 400 });
    Object.defineProperty(mapEl, "clientHeight", { value: 300 });
    fit.apply();
    expect(root.dataset.fitted).toBe("1");
    expect(Number(root.dataset.zoom)).toBeLessThanOrEqual(6);
    mapEl.dispatchEvent(new Event("wheel"));
    expect(fit.pending).toBe(false);
    fit.apply();
    expect(root.dataset.fitted).toBe("1");
    fit.dispose();
    map.remove();
  });
});

describe("box drawing", () => {
  function setup() {
    const { map, mapEl } = sizedMap();
    const button = document.createElement("button");
    const box = new BoxOverlay(map, document.createElement("div"), document.createElement("span"), () => undefined);
    const drawn = vi.fn();
    const cancelled = vi.fn();
    const d = new BoxDrawing(map, mapEl, box, button, drawn, cancelled);
    const at = (type: string, x: number, y: number, extra: MouseEventInit = {}) =>
      mapEl.dispatchEvent(new FakePointer(type, { clientX: x, clientY: y, button: 0, ...extra }));
    return { map, mapEl, button, d, drawn, cancelled, at };
  }

  it("draws with Shift held, without Shift only in draw mode", () => {
    const { map, d, drawn, at, button } = setup();
    at("pointerdown", 100, 100);
    expect(d.drawing).toBe(false); // a plain drag pans the map
    at("pointerdown", 100, 100, { shiftKey: true });
    expect(d.drawing).toBe(true);
    at("pointermove", 150, 140);
    at("pointerup", 200, 180);
    expect(drawn).toHaveBeenCalledTimes(1);
    const [w, s, e, n] = drawn.mock.calls[0][0];
    expect(w).toBeLessThan(e);
    expect(s).toBeLessThan(n);
    d.setDraw(true);
    expect(button.getAttribute("aria-pressed")).toBe("true");
    expect(map.dragging.enabled()).toBe(false);
    at("pointerdown", 100, 100);
    at("pointerup", 160, 160);
    expect(drawn).toHaveBeenCalledTimes(2);
    expect(d.drawMode).toBe(false); // one box per press of the button
    expect(map.dragging.enabled()).toBe(true);
    d.dispose();
    map.remove();
  });

  it("treats a tiny drag as a click and a cancelled pointer as no box", () => {
    const { map, drawn, cancelled, at } = setup();
    at("pointerdown", 100, 100, { shiftKey: true });
    at("pointerup", 102, 101);
    expect(drawn).not.toHaveBeenCalled();
    expect(cancelled).toHaveBeenCalledTimes(1);
    at("pointerdown", 100, 100, { shiftKey: true });
    at("pointercancel", 200, 200);
    expect(drawn).not.toHaveBeenCalled();
    expect(cancelled).toHaveBeenCalledTimes(2);
    map.remove();
  });
});

describe("region controls", () => {
  it("says what a download would cut, then its progress", () => {
    const m = regionModel({ grid_count: 3000, grid: [[0, 0, 1, 1]] });
    expect(statusText(m as any)).toBe("3,000 chips of 64 px (grid preview shows 1)");
    m.set("progress", { state: "running", done: 3, total: 10, message: "3 / 10 chips" });
    expect(statusText(m as any)).toBe("3 / 10 chips");
  });

  it("enables Download only with a box, a workspace and no download running", () => {
    const root = document.createElement("div");
    const m = regionModel();
    const c = new RegionControls(m as any, vi.fn() as any, root);
    expect(c.downloadBtn.disabled).toBe(false);
    m.update("bbox", null);
    expect(c.downloadBtn.disabled).toBe(true);
    m.update("bbox", [10, 0, 20, 10]);
    m.update("can_download", false);
    expect(c.downloadBtn.disabled).toBe(true);
    m.update("can_download", true);
    m.update("progress", { state: "running", done: 1, total: 4, message: "" });
    expect(c.downloadBtn.disabled).toBe(true);
    expect(root.dataset.progress).toBe("running");
    expect(c.progress.max).toBe(4);
    c.dispose();
    m.update("progress", { state: "done", done: 4, total: 4, message: "" });
    expect(root.dataset.progress).toBe("running"); // disposed: no longer listening
  });

  it("searches layers after a pause, drops stale replies, and picks a layer into the model", async () => {
    vi.useFakeTimers();
    try {
      const m = regionModel();
      const replies: Record<string, unknown> = {
        modis: { layers: [{ id: "MODIS_Terra", title: "Terra", time: "2000-", source: "gibs" }] },
        mo: { layers: [], error: "" },
      };
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      const invoke = vi.fn(async (_n: string, msg: { query: string }) => {
        if (msg.query === "mo" && invoke.mock.calls.length > 1) await gate; // the stale request answers last
        return [replies[msg.query], []];
      });
      const c = new RegionControls(m as any, invoke as any, document.createElement("div"));
      c.search.value = "mo";
      c.search.dispatchEvent(new Event("input"));
      c.search.value = "modis";
      c.search.dispatchEvent(new Event("input"));
      await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS + 1);
      expect(invoke).toHaveBeenCalledTimes(1); // typing pauses, one request
      const li = c.results.querySelector("li[data-layer]") as HTMLElement;
      expect(li.dataset.layer).toBe("MODIS_Terra");
      li.click();
      expect(m.get("layer")).toBe("MODIS_Terra");
      expect(c.results.children.length).toBe(0);
      // an older query answered after a newer one does not overwrite it
      const slow = c.runSearch("mo");
      await c.runSearch("modis");
      release();
      await slow;
      expect(c.results.querySelector("li[data-layer]")).not.toBeNull();
      c.dispose();
    } finally {
      vi.useRealTimers();
    }
  });

  it("hides the date for static layers and bounds it by the layer's range", () => {
    const m = regionModel();
    const c = new RegionControls(m as any, vi.fn() as any, document.createElement("div"));
    expect(c.date.style.display).toBe("none");
    m.update("time_range", ["2012-05-08", "2020-12-31"]);
    m.update("date", "2020-09-27");
    expect(c.date.disabled).toBe(false);
    expect([c.date.min, c.date.max, c.date.value]).toEqual(["2012-05-08", "2020-12-31", "2020-09-27"]);
    c.date.value = "2019-01-01";
    c.date.dispatchEvent(new Event("change"));
    expect(m.get("date")).toBe("2019-01-01");
    m.update("max_level", 5);
    expect(c.levelSel.options.length).toBe(6);
    c.dispose();
  });
});
