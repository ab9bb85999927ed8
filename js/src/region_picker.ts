// RegionPicker: a Leaflet map on GIBS's geographic grid. Draw or edit a box (it may cross the
// antimeridian: the map runs from -540 to 540 degrees), pick a layer and a date, preview the
// chip grid, and start the download. Tiles come from the curator server extension
// (/curator/tiles/...) or, without one, from the kernel over the comm.
import type { RenderProps } from "@anywidget/types";
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "./shared/base.css";
import "./region_picker.css";
import { errorBar, formatCount, h } from "./shared/dom";
import { bufferBlob, jupyterBaseUrl } from "./shared/images";
import { makeInvoke, onChange, type Invoke, type Model } from "./shared/model";
import { lonSpan, scaleAt, TILE_SIZE, tileUrl, toBBox, validBBox, zoomFor, type BBox } from "./region_logic";

const WORLD_COPIES: L.LatLngTuple[] = [
  [-90, -540],
  [90, 540],
];

/** GIBS EPSG:4326: origin at (-180, 90), 0.5625 deg/px at level 0, no longitude wrapping. */
export function gibsCRS(): L.CRS {
  return L.extend({}, L.CRS.EPSG4326, {
    projection: L.Projection.LonLat,
    transformation: new L.Transformation(1, 180, -1, 90),
    scale: scaleAt,
    zoom: zoomFor,
    infinite: true,
    wrapLng: undefined,
    wrapLat: undefined,
  }) as L.CRS;
}

interface LayerHit {
  id: string;
  title: string;
  time: string;
  source: string;
}

function tileLayer(m: Model, invoke: Invoke, base: string | null): L.GridLayer {
  const opts: L.GridLayerOptions = {
    tileSize: TILE_SIZE,
    bounds: L.latLngBounds(WORLD_COPIES),
    minZoom: 0,
    maxZoom: 10,
    maxNativeZoom: Number(m.get("max_zoom")) || 8,
    keepBuffer: 2,
    attribution: m.get("attribution") || "NASA GIBS / Blue Marble",
  } as any;
  const parts = () => [m.get("source"), m.get("layer"), m.get("date") || "default", m.get("tile_matrix_set")] as const;
  if (base !== null) {
    const Layer = (L.TileLayer as any).extend({
      getTileUrl(c: L.Coords) {
        const [source, layer, date, matrix] = parts();
        return tileUrl(base, source, layer, date, matrix, c.z, c.y, c.x);
      },
    });
    return new Layer("", opts);
  }
  // no Jupyter server (VS Code, Colab): the kernel renders each tile
  const Layer = (L.GridLayer as any).extend({
    createTile(c: L.Coords, done: (err: Error | null, tile: HTMLElement) => void) {
      const img = document.createElement("img");
      img.alt = "";
      const [source, layer, date, matrix] = parts();
      invoke<{ ok: boolean; error?: string; mime?: string }>("tile", { source, layer, date, matrix, z: c.z, row: c.y, col: c.x }, { timeout: 60000 })
        .then(([reply, buffers]) => {
          if (!reply.ok || !buffers.length) throw new Error(reply.error || "no tile");
          img.onload = () => {
            URL.revokeObjectURL(img.src);
            done(null, img);
          };
          img.src = URL.createObjectURL(bufferBlob(buffers[0], reply.mime || "image/jpeg"));
        })
        .catch((e: Error) => done(e, img));
      return img;
    },
  });
  return new Layer(opts);
}

export function render({ model, el, experimental }: RenderProps): () => void {
  const m = model as Model;
  const invoke = makeInvoke(m, experimental);

  const root = h("div", { class: "curator-widget curator-region" });
  const search = h("input", { type: "search", placeholder: "search GIBS layers…", class: "curator-layer-search", "aria-label": "search layers" }) as HTMLInputElement;
  const results = h("ul", { class: "curator-layer-results" });
  const layerName = h("span", { class: "curator-layer-name" });
  const date = h("input", { type: "date", class: "curator-date", "aria-label": "date" }) as HTMLInputElement;
  const drawBtn = h("button", { "aria-pressed": "false", title: "drag on the map to draw a box (or hold Shift and drag)" }, "Draw box");
  const clearBtn = h("button", { title: "remove the box" }, "Clear");
  const sizeSel = h("select", { "aria-label": "chip size", title: "chip size in pixels" }) as HTMLSelectElement;
  for (const s of [32, 64, 128, 256, 512]) sizeSel.appendChild(h("option", { value: s }, `${s} px`));
  const levelSel = h("select", { "aria-label": "level", title: "tile-matrix level of the chips (higher = finer)" }) as HTMLSelectElement;
  const downloadBtn = h("button", { class: "curator-download" }, "Download chips");
  const progress = h("progress", { class: "curator-progress", max: 1, value: 0 }) as HTMLProgressElement;
  const status = h("span", { class: "curator-status" });
  const bboxText = h("span", { class: "curator-bbox" });
  const mapEl = h("div", { class: "curator-map" });
  const err = errorBar(() => m.get("error"));
  root.append(
    h("div", { class: "curator-toolbar" }, h("div", { class: "curator-layer-box" }, search, results), layerName, date),
    h("div", { class: "curator-toolbar" }, drawBtn, clearBtn, h("label", {}, "chip ", sizeSel), h("label", {}, "level ", levelSel), bboxText),
    mapEl,
    h("div", { class: "curator-toolbar" }, downloadBtn, progress, status),
    err.el,
  );
  el.appendChild(root);
  mapEl.style.height = m.get("height") || "420px";

  const map = L.map(mapEl, {
    crs: gibsCRS(),
    center: [20, 0],
    zoom: 1,
    minZoom: 0,
    maxZoom: 10,
    maxBounds: L.latLngBounds(WORLD_COPIES),
    maxBoundsViscosity: 0.8,
    worldCopyJump: false,
    boxZoom: false,
    zoomSnap: 1,
  });
  const base = jupyterBaseUrl();
  root.dataset.tiles = base !== null ? "server" : "comm";
  let tiles = tileLayer(m, invoke, base);
  let tilesLoaded = 0;
  const watchTiles = (layer: L.GridLayer) => {
    layer.on("tileload", () => {
      tilesLoaded++;
      root.dataset.tilesLoaded = String(tilesLoaded);
    });
    layer.on("tileerror", () => (root.dataset.tileErrors = String(Number(root.dataset.tileErrors || 0) + 1)));
  };
  watchTiles(tiles);
  tiles.addTo(map);
  const gridLayer = L.layerGroup().addTo(map);
  const renderer = L.canvas({ padding: 0.2 });

  // ---------------------------------------------------------------- the box
  let rect: L.Rectangle | null = null;
  const handles: L.Marker[] = [];
  let lastSent: string | null = null;

  function corners(b: BBox): L.LatLng[] {
    const [w, e] = lonSpan(b);
    return [L.latLng(b[3], w), L.latLng(b[3], e), L.latLng(b[1], e), L.latLng(b[1], w)]; // NW NE SE SW
  }

  function showBox(b: BBox | null, fit = false): void {
    if (rect) rect.remove();
    handles.forEach((hd) => hd.remove());
    handles.length = 0;
    rect = null;
    bboxText.textContent = b ? `W ${b[0]} · S ${b[1]} · E ${b[2]} · N ${b[3]}${b[0] > b[2] ? " (crosses 180°)" : ""}` : "no box yet: draw one";
    root.dataset.bbox = b ? b.join(",") : "";
    if (!b) return;
    const cs = corners(b);
    rect = L.rectangle(L.latLngBounds(cs[3], cs[1]), { color: "#ff6d00", weight: 2, fillOpacity: 0.08, interactive: false }).addTo(map);
    cs.forEach((c, i) => {
      const hd = L.marker(c, {
        draggable: true,
        icon: L.divIcon({ className: "curator-handle", iconSize: [12, 12] }),
        keyboard: false,
        title: "drag to resize",
      }).addTo(map);
      const opposite = () => handles[(i + 2) % 4].getLatLng();
      hd.on("drag", () => {
        const o = opposite();
        const p = hd.getLatLng();
        rect?.setBounds(L.latLngBounds(o, p));
      });
      hd.on("dragend", () => {
        const o = opposite();
        const p = hd.getLatLng();
        commit(toBBox(o.lng, o.lat, p.lng, p.lat));
      });
      handles.push(hd);
    });
    if (fit) map.fitBounds(L.latLngBounds(cs[3], cs[1]), { padding: [20, 20], maxZoom: 6 });
  }

  function commit(b: BBox | null): void {
    lastSent = JSON.stringify(b);
    m.set("bbox", b);
    m.save_changes();
    showBox(b);
  }

  // ---------------------------------------------------------------- drawing with pointer events
  let drawMode = false;
  let start: L.LatLng | null = null;
  let pointer: number | null = null;
  const setDraw = (on: boolean) => {
    drawMode = on;
    drawBtn.setAttribute("aria-pressed", String(on));
    mapEl.classList.toggle("curator-drawing", on);
    if (on) map.dragging.disable();
    else map.dragging.enable();
  };
  drawBtn.addEventListener("click", () => setDraw(!drawMode));
  clearBtn.addEventListener("click", () => commit(null));

  const down = (ev: PointerEvent) => {
    if (ev.button !== 0 || !(drawMode || ev.shiftKey)) return;
    if ((ev.target as HTMLElement).closest(".curator-handle, .leaflet-control")) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (!drawMode) map.dragging.disable();
    start = map.mouseEventToLatLng(ev as unknown as MouseEvent);
    pointer = ev.pointerId;
    mapEl.setPointerCapture?.(ev.pointerId);
    if (rect) rect.remove();
    rect = L.rectangle(L.latLngBounds(start, start), { color: "#ff6d00", weight: 2, fillOpacity: 0.08, interactive: false, renderer }).addTo(map);
  };
  const move = (ev: PointerEvent) => {
    if (!start || ev.pointerId !== pointer) return;
    ev.preventDefault();
    ev.stopPropagation();
    rect?.setBounds(L.latLngBounds(start, map.mouseEventToLatLng(ev as unknown as MouseEvent)));
  };
  const up = (ev: PointerEvent) => {
    if (!start || ev.pointerId !== pointer) return;
    ev.preventDefault();
    ev.stopPropagation();
    const p = map.mouseEventToLatLng(ev as unknown as MouseEvent);
    const s = start;
    start = null;
    pointer = null;
    setDraw(false);
    const b = toBBox(s.lng, s.lat, p.lng, p.lat);
    if (validBBox(b) && map.latLngToContainerPoint(s).distanceTo(map.latLngToContainerPoint(p)) > 4) commit(b);
    else showBox(validBBox(m.get("bbox")) ? m.get("bbox") : null);
  };
  mapEl.addEventListener("pointerdown", down, true);
  mapEl.addEventListener("pointermove", move, true);
  mapEl.addEventListener("pointerup", up, true);
  mapEl.addEventListener("pointercancel", up, true);

  // ---------------------------------------------------------------- chip grid preview
  function showGrid(): void {
    gridLayer.clearLayers();
    const grid: BBox[] = m.get("grid") || [];
    for (const g of grid) {
      const [w, e] = lonSpan(g);
      L.rectangle(L.latLngBounds([g[1], w], [g[3], e]), { color: "#ffd54f", weight: 1, fill: false, interactive: false, renderer }).addTo(gridLayer);
    }
    const count = Number(m.get("grid_count")) || 0;
    root.dataset.gridCount = String(count);
    renderStatus();
  }

  function renderStatus(): void {
    const p = m.get("progress") || {};
    const count = Number(m.get("grid_count")) || 0;
    const shown = (m.get("grid") || []).length;
    if (p.state === "running" || p.state === "done" || p.state === "error") {
      progress.max = Math.max(1, p.total || 1);
      progress.value = p.done || 0;
      status.textContent = p.message || "";
    } else {
      progress.value = 0;
      status.textContent = count ? `${formatCount(count)} chips of ${m.get("chip_size")} px${shown < count ? ` (grid preview shows ${formatCount(shown)})` : ""}` : "";
    }
    root.dataset.progress = p.state || "idle";
    downloadBtn.disabled = p.state === "running" || !validBBox(m.get("bbox")) || !m.get("can_download");
  }
  downloadBtn.addEventListener("click", () => m.send({ type: "download" }));

  // ---------------------------------------------------------------- layer, date, chip size
  let searchTimer = 0;
  let searchSeq = 0;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(async () => {
      const q = search.value.trim();
      const mySeq = ++searchSeq;
      if (!q) return results.replaceChildren();
      try {
        const [reply] = await invoke<{ layers: LayerHit[]; error?: string }>("search_layers", { query: q, limit: 30 }, { timeout: 30000 });
        if (mySeq !== searchSeq) return;
        results.replaceChildren(
          ...(reply.layers.length
            ? reply.layers.map((l) =>
                h("li", { "data-layer": l.id, title: `${l.title}\n${l.time}`, onclick: () => pick(l) }, h("b", {}, l.id), h("span", {}, ` ${l.title} · ${l.time}`)),
              )
            : [h("li", { class: "curator-empty" }, reply.error || "no layer matches")]),
        );
      } catch (e) {
        results.replaceChildren(h("li", { class: "curator-empty" }, String((e as Error).message)));
      }
    }, 250);
  });
  function pick(l: LayerHit): void {
    results.replaceChildren();
    search.value = "";
    m.set("layer", l.id);
    m.save_changes();
  }

  function renderLayer(): void {
    layerName.textContent = `${m.get("layer")} (${m.get("source")})`;
    const range: [string, string] | null = m.get("time_range");
    date.disabled = !range;
    date.style.display = range ? "" : "none";
    date.min = range ? range[0] : "";
    date.max = range ? range[1] : "";
    date.value = range ? m.get("date") || "" : "";
    date.title = range ? `valid dates ${range[0]} to ${range[1]}` : "static layer: no dates";
  }
  date.addEventListener("change", () => {
    m.set("date", date.value);
    m.save_changes();
  });

  function renderChipControls(): void {
    sizeSel.value = String(m.get("chip_size"));
    const maxLevel = Number(m.get("max_level")) || 0;
    levelSel.replaceChildren(...Array.from({ length: maxLevel + 1 }, (_, i) => h("option", { value: i }, String(i))));
    levelSel.value = String(m.get("level"));
  }
  sizeSel.addEventListener("change", () => {
    m.set("chip_size", Number(sizeSel.value));
    m.save_changes();
  });
  levelSel.addEventListener("change", () => {
    m.set("level", Number(levelSel.value));
    m.save_changes();
  });

  function refreshTiles(): void {
    tiles.remove();
    tiles = tileLayer(m, invoke, base);
    watchTiles(tiles);
    tiles.addTo(map);
    tiles.bringToBack();
  }

  const offs = [
    onChange(m, ["bbox"], () => {
      const b = m.get("bbox");
      if (JSON.stringify(b) === lastSent) return;
      showBox(validBBox(b) ? b : null, true);
    }),
    onChange(m, ["grid", "grid_count"], showGrid),
    onChange(m, ["progress", "can_download"], renderStatus),
    onChange(m, ["layer", "source", "time_range", "date"], renderLayer),
    onChange(m, ["layer", "source", "date", "tile_matrix_set", "max_zoom"], refreshTiles),
    onChange(m, ["chip_size", "level", "max_level"], renderChipControls),
    onChange(m, ["error"], err.update),
    onChange(m, ["height"], () => {
      mapEl.style.height = m.get("height") || "420px";
      map.invalidateSize();
    }),
  ];
  renderLayer();
  renderChipControls();
  const b0 = m.get("bbox");
  showBox(validBBox(b0) ? b0 : null, validBBox(b0));
  showGrid();

  // Leaflet measures its container: re-measure once the cell is attached and whenever it resizes
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => map.invalidateSize()) : null;
  ro?.observe(mapEl);
  requestAnimationFrame(() => map.invalidateSize());

  return () => {
    offs.forEach((off) => off());
    ro?.disconnect();
    map.remove();
  };
}

export default { render };
