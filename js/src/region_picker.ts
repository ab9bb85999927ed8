// RegionPicker: a Leaflet map on GIBS's geographic grid. Draw or edit a box (it may cross the
// antimeridian: the map runs from -540 to 540 degrees), pick a layer and a date, preview the
// chip grid, and start the download. `render` only wires the parts: the base layer
// (region_tiles), the box and view fit (region_box), drawing (region_draw), and the controls
// synced with the model (region_controls).
import type { RenderProps } from "@anywidget/types";
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "./shared/base.css";
import "./region_picker.css";
import type { RegionPickerModel } from "./models";
import { errorBar, h } from "./shared/dom";
import { helpKey, keyHelp, type KeyRow } from "./shared/keyhelp";
import { jupyterBaseUrl } from "./shared/images";
import { makeInvoke, onChange } from "./shared/model";
import { BoxOverlay, boxBounds, ViewFit } from "./region_box";
import { RegionControls } from "./region_controls";
import { BoxDrawing } from "./region_draw";
import { lonSpan, validBBox, type BBox } from "./region_logic";
import { gibsCRS, maxViewZoom, tileLayer, watchTiles, WORLD_COPIES } from "./region_tiles";

export { gibsCRS } from "./region_tiles";

export const REGION_KEYS: KeyRow[] = [
  ["← → ↑ ↓", "pan the map"],
  ["+ / −", "zoom in / out"],
  ["B", "draw-box mode on / off (or Shift + drag)"],
  ["Tab", "the layer search, date, chip size, level and Download buttons"],
  ["?", "show / hide this help"],
];

function render({ model: m, el, experimental }: RenderProps<RegionPickerModel>): () => void {
  const invoke = makeInvoke(m, experimental);

  const root = h("div", { class: "curator-widget curator-region" });
  const controls = new RegionControls(m, invoke, root);
  const drawBtn = h("button", { "aria-pressed": "false", title: "drag on the map to draw a box (or hold Shift and drag)" }, "Draw box");
  const clearBtn = h("button", { title: "remove the box" }, "Clear");
  const bboxText = h("span", { class: "curator-bbox" });
  const mapEl = h("div", { class: "curator-map" });
  const err = errorBar(() => m.get("error"));
  const keys = keyHelp("Map keys (click the map first)", REGION_KEYS);
  const helpBtn = h("button", { title: "keyboard shortcuts (?)", "aria-label": "keyboard help", onclick: () => keys.toggle() }, "?");
  const c = controls;
  root.append(
    keys.el,
    h("div", { class: "curator-toolbar" }, h("div", { class: "curator-layer-box" }, c.search, c.results), c.layerName, c.date),
    h("div", { class: "curator-toolbar" }, drawBtn, clearBtn, helpBtn, h("label", {}, "chip ", c.sizeSel), h("label", {}, "level ", c.levelSel), bboxText),
    mapEl,
    h("div", { class: "curator-toolbar" }, c.downloadBtn, c.progress, c.status),
    err.el,
  );
  el.appendChild(root);
  mapEl.style.height = m.get("height") || "420px";

  const map = L.map(mapEl, {
    crs: gibsCRS(),
    center: [20, 0],
    zoom: 0,
    minZoom: 0,
    maxZoom: maxViewZoom(m.get("max_zoom")),
    maxBounds: L.latLngBounds(WORLD_COPIES),
    maxBoundsViscosity: 0.8,
    worldCopyJump: false,
    boxZoom: false,
    zoomSnap: 1,
  });
  const base = jupyterBaseUrl();
  root.dataset.tiles = base !== null ? "server" : "comm";
  let tiles = tileLayer(m, invoke, base);
  watchTiles(tiles, root);
  tiles.addTo(map);
  const gridLayer = L.layerGroup().addTo(map);
  const renderer = L.canvas({ padding: 0.2 });

  // the box: drawn, edited by its handles, or set from Python
  let lastSent: string | null = null;
  const commit = (b: BBox | null): void => {
    lastSent = JSON.stringify(b);
    m.set("bbox", b);
    m.save_changes();
    box.show(b);
  };
  const box = new BoxOverlay(map, root, bboxText, commit, renderer);
  const fit = new ViewFit(map, mapEl, root, () => Math.min(6, (Number(m.get("max_zoom")) || 8) + 1));
  const modelBox = (): BBox | null => {
    const b = m.get("bbox");
    return validBBox(b) ? b : null;
  };
  const drawing = new BoxDrawing(map, mapEl, box, drawBtn, commit, () => box.show(modelBox()));
  drawBtn.addEventListener("click", () => drawing.setDraw(!drawing.drawMode));
  clearBtn.addEventListener("click", () => commit(null));

  // keys: ? help, B draw mode (Leaflet's own: arrows pan, + / - zoom once the map has focus)
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (helpKey(ev, keys)) return void ev.preventDefault();
    if (ev.key === "b" || ev.key === "B") {
      drawing.setDraw(!drawing.drawMode);
      ev.preventDefault();
    }
  });

  // the chip grid preview
  function showGrid(): void {
    gridLayer.clearLayers();
    for (const g of m.get("grid") || []) {
      const [w, e] = lonSpan(g);
      L.rectangle(L.latLngBounds([g[1], w], [g[3], e]), { color: "#ffd54f", weight: 1, fill: false, interactive: false, renderer }).addTo(gridLayer);
    }
  }

  function refreshTiles(): void {
    tiles.remove();
    tiles = tileLayer(m, invoke, base);
    watchTiles(tiles, root);
    tiles.addTo(map);
    tiles.bringToBack();
  }

  const offs = [
    onChange(m, ["bbox"], () => {
      if (JSON.stringify(m.get("bbox")) === lastSent) return;
      const b = modelBox();
      box.show(b);
      if (b) fit.fit(boxBounds(b));
    }),
    onChange(m, ["grid"], showGrid),
    onChange(m, ["layer", "source", "date", "tile_matrix_set", "max_zoom"], refreshTiles),
    onChange(m, ["error"], err.update),
    onChange(m, ["height"], () => {
      mapEl.style.height = m.get("height") || "420px";
      map.invalidateSize();
    }),
  ];
  const b0 = modelBox();
  box.show(b0);
  fit.fit(b0 ? boxBounds(b0) : L.latLngBounds([-90, -180], [90, 180])); // no box yet: the whole world
  showGrid();
  map.on("zoomend", () => (root.dataset.zoom = String(map.getZoom())));

  // Leaflet measures its container: re-measure once the cell is attached and whenever it resizes
  const relayout = () => {
    map.invalidateSize();
    fit.apply();
  };
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(relayout) : null;
  ro?.observe(mapEl);
  requestAnimationFrame(relayout);

  return () => {
    offs.forEach((off) => off());
    ro?.disconnect();
    controls.dispose();
    drawing.dispose();
    fit.dispose();
    map.remove();
  };
}

export default { render };
