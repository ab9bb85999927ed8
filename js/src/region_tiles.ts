// The map's base layer: GIBS's geographic grid (EPSG:4326, 512 px tiles), from the curator server
// extension over HTTP or, without one (VS Code, Colab), rendered by the kernel over the comm.
import L from "leaflet";
import type { RegionPickerModel } from "./models";
import { bufferBlob } from "./shared/images";
import type { Invoke, Model } from "./shared/model";
import { scaleAt, TILE_SIZE, tileUrl, zoomFor } from "./region_logic";

/** The unwrapped map: three copies of the world, so boxes can cross the antimeridian. */
export const WORLD_COPIES: L.LatLngTuple[] = [
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

/** The deepest zoom worth showing: two levels past the source's finest tiles (beyond is blur). */
export function maxViewZoom(maxZoom: number): number {
  return Math.min(12, (Number(maxZoom) || 8) + 2);
}

/** What one tile request names, from the model's current layer. */
export interface TileParts {
  source: string;
  layer: string;
  date: string;
  matrix: string;
}

export function tileParts(m: Model<RegionPickerModel>): TileParts {
  return { source: m.get("source"), layer: m.get("layer"), date: m.get("date") || "default", matrix: m.get("tile_matrix_set") };
}

type TileReply = { ok: boolean; error?: string; mime?: string };

/** Tiles as <img> URLs on the Jupyter server's curator extension (HTTP-cached). */
class ServerTiles extends L.TileLayer {
  constructor(
    private base: string,
    private parts: () => TileParts,
    opts: L.TileLayerOptions,
  ) {
    super("", opts);
  }
  getTileUrl(c: L.Coords): string {
    const p = this.parts();
    return tileUrl(this.base, p.source, p.layer, p.date, p.matrix, c.z, c.y, c.x);
  }
}

/** Tiles as JPEG bytes asked of the kernel (`invoke("tile")`), shown through blob URLs. */
class CommTiles extends L.GridLayer {
  constructor(
    private invoke: Invoke,
    private parts: () => TileParts,
    opts: L.GridLayerOptions,
  ) {
    super(opts);
  }
  protected createTile(c: L.Coords, done: L.DoneCallback): HTMLElement {
    const img = document.createElement("img");
    img.alt = "";
    this.invoke<TileReply>("tile", { ...this.parts(), z: c.z, row: c.y, col: c.x }, { timeout: 60000 })
      .then(([reply, buffers]) => {
        if (!reply.ok || !buffers.length) throw new Error(reply.error || "no tile");
        img.onload = () => {
          URL.revokeObjectURL(img.src);
          done(undefined, img);
        };
        img.src = URL.createObjectURL(bufferBlob(buffers[0], reply.mime || "image/jpeg"));
      })
      .catch((e: Error) => done(e, img));
    return img;
  }
}

/** The base layer for the model's layer: HTTP tiles when `base` (the server URL) is known, else the comm. */
export function tileLayer(m: Model<RegionPickerModel>, invoke: Invoke, base: string | null): L.GridLayer {
  const opts: L.TileLayerOptions = {
    tileSize: TILE_SIZE,
    bounds: L.latLngBounds(WORLD_COPIES),
    minZoom: 0,
    maxZoom: maxViewZoom(m.get("max_zoom")),
    maxNativeZoom: Number(m.get("max_zoom")) || 8,
    keepBuffer: 2,
    attribution: m.get("attribution") || "NASA GIBS / Blue Marble",
  };
  const parts = () => tileParts(m);
  return base !== null ? new ServerTiles(base, parts, opts) : new CommTiles(invoke, parts, opts);
}

/** Counts loaded and failed tiles on the root's data attributes (tests and benchmarks wait on them). */
export function watchTiles(layer: L.GridLayer, root: HTMLElement): void {
  layer.on("tileload", () => (root.dataset.tilesLoaded = String(Number(root.dataset.tilesLoaded || 0) + 1)));
  layer.on("tileerror", () => (root.dataset.tileErrors = String(Number(root.dataset.tileErrors || 0) + 1)));
}
