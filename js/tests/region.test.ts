import { beforeAll, describe, expect, it } from "vitest";
import { crossesAntimeridian, lonSpan, scaleAt, tileUrl, toBBox, validBBox, wrapLon, zoomFor } from "../src/region_logic";
import widget from "../src/region_picker";
const { render } = widget;
import { regionModel, renderProps, stubCanvas2d } from "./mock_model";

describe("boxes on an unwrapped map", () => {
  it("wraps longitudes and normalizes corner order", () => {
    expect(wrapLon(190)).toBe(-170);
    expect(wrapLon(-190)).toBe(170);
    expect(wrapLon(540)).toBe(-180);
    expect(toBBox(30, 40, -20, 10)).toEqual([-20, 10, 30, 40]);
  });

  it("represents boxes across the antimeridian with west > east, as Python's BBox", () => {
    const b = toBBox(170, -20, 190, 0);
    expect(b).toEqual([170, -20, -170, 0]);
    expect(crossesAntimeridian(b)).toBe(true);
    expect(lonSpan(b)).toEqual([170, 190]);
    expect(toBBox(-190, 0, -170, 10)).toEqual([170, 0, -170, 10]); // drawn on the western copy
    expect(toBBox(100, 0, 180, 10)).toEqual([100, 0, 180, 10]); // ends exactly on 180
    expect(toBBox(-200, -95, 200, 95)).toEqual([-180, -90, 180, 90]); // wider than the world
    expect(validBBox([1, 2, 3, 4])).toBe(true);
    expect(validBBox([1, 5, 3, 4])).toBe(false);
    expect(validBBox(null)).toBe(false);
  });

  it("builds GIBS-layout tile URLs on the server extension", () => {
    expect(tileUrl("/user/x/", "bluemarble", "BlueMarble_NextGeneration", "", "500m", 2, 1, -3)).toBe(
      "/user/x/curator/tiles/bluemarble/BlueMarble_NextGeneration/default/500m/2/1/-3.jpg?wrap=1",
    );
    expect(tileUrl("/", "gibs", "A B", "2020-01-01", "250m", 0, 0, 0)).toContain("/gibs/A%20B/2020-01-01/250m/0/0/0.jpg");
  });

  it("uses GIBS's 288-degree level-0 tiles", () => {
    expect(scaleAt(0) * 288).toBeCloseTo(512);
    expect(zoomFor(scaleAt(3))).toBeCloseTo(3);
  });
});

describe("RegionPicker view", () => {
  beforeAll(stubCanvas2d);
  const model = regionModel;

  it("builds a Leaflet map, shows the box, and sends downloads and edits", () => {
    const cfg = document.createElement("script");
    cfg.id = "jupyter-config-data";
    cfg.type = "application/json";
    cfg.textContent = JSON.stringify({ baseUrl: "/base/" });
    document.body.appendChild(cfg);
    const m = model();
    const props = renderProps(m);
    const cleanup = render(props as any);
    const root = props.el.querySelector(".curator-region") as HTMLElement;
    expect(root.dataset.tiles).toBe("server");
    expect(props.el.querySelector(".leaflet-container")).not.toBeNull();
    expect(root.dataset.bbox).toBe("170,-20,-170,0");
    expect(root.textContent).toContain("crosses 180°");
    expect(root.dataset.gridCount).toBe("1");
    expect(root.textContent).toContain("W 170.00° · S -20.00°"); // 2 decimals, not 6
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "?", bubbles: true }));
    expect((root.querySelector(".curator-keyhelp") as HTMLElement).hidden).toBe(false);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    expect(root.querySelector('button[aria-pressed="true"]')!.textContent).toBe("Draw box");
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    const download = props.el.querySelector(".curator-download") as HTMLButtonElement;
    expect(download.disabled).toBe(false);
    download.click();
    expect(m.sent.at(-1)!.content).toEqual({ type: "download" });
    m.update("progress", { state: "running", done: 3, total: 10, message: "3 / 10 chips" });
    expect(download.disabled).toBe(true);
    expect(root.textContent).toContain("3 / 10 chips");
    (props.el.querySelectorAll(".curator-toolbar button")[1] as HTMLButtonElement).click(); // Clear
    expect(m.get("bbox")).toBeNull();
    const size = props.el.querySelector('select[aria-label="chip size"]') as HTMLSelectElement;
    size.value = "256";
    size.dispatchEvent(new Event("change"));
    expect(m.get("chip_size")).toBe(256);
    m.update("time_range", ["2012-05-08", "2020-12-31"]);
    m.update("date", "2020-09-27");
    const date = props.el.querySelector(".curator-date") as HTMLInputElement;
    expect(date.disabled).toBe(false);
    expect(date.min).toBe("2012-05-08");
    cleanup();
    cfg.remove();
  });

  it("falls back to tiles over the comm outside a Jupyter server page", () => {
    const props = renderProps(model({ bbox: null }));
    render(props as any);
    const root = props.el.querySelector(".curator-region") as HTMLElement;
    expect(root.dataset.tiles).toBe("comm");
    expect(root.textContent).toContain("no box yet");
    expect((props.el.querySelector(".curator-download") as HTMLButtonElement).disabled).toBe(true);
  });
});
