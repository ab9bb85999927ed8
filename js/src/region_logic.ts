// Geometry of the region picker (Leaflet-free, unit-tested): GIBS's geographic grid and boxes
// that may cross the antimeridian.

/** Degrees per pixel at level 0 of GIBS's EPSG:4326 sets: 512 px tiles spanning 288 degrees. */
export const LEVEL0_DEG_PER_PX = 288 / 512;
export const TILE_SIZE = 512;

export type BBox = [number, number, number, number]; // west, south, east, north

const round = (v: number) => Math.round(v * 1e6) / 1e6;

/** A coordinate as people read it: 2 decimals (about 1 km), trailing zeros kept for alignment. */
export function formatDeg(v: number): string {
  return `${v.toFixed(2)}°`;
}

/** The box in one line: W S E N with 2 decimals, and a note when it crosses the antimeridian. */
export function formatBBox(b: BBox): string {
  return `W ${formatDeg(b[0])} · S ${formatDeg(b[1])} · E ${formatDeg(b[2])} · N ${formatDeg(b[3])}${b[0] > b[2] ? " (crosses 180°)" : ""}`;
}

/** Longitude folded into [-180, 180). */
export function wrapLon(lon: number): number {
  return ((((lon + 180) % 360) + 360) % 360) - 180;
}

/**
 * The box spanned by two corners on an unwrapped map (longitudes may run past +-180).
 * West > east in the result means the box crosses the antimeridian, as BBox in Python.
 */
export function toBBox(lngA: number, latA: number, lngB: number, latB: number): BBox {
  const lo = Math.min(lngA, lngB);
  const hi = Math.max(lngA, lngB);
  const south = Math.max(-90, Math.min(latA, latB));
  const north = Math.min(90, Math.max(latA, latB));
  if (hi - lo >= 360) return [-180, round(south), 180, round(north)];
  let west = wrapLon(lo);
  let east = wrapLon(hi);
  if (east === -180 && hi > lo) east = 180; // a box ending exactly on the antimeridian
  if (west === 180) west = -180;
  return [round(west), round(south), round(east), round(north)];
}

/** Unwrapped longitude span [west, east'] to draw a box; east' > 180 when it crosses. */
export function lonSpan(b: BBox): [number, number] {
  const [w, , e] = b;
  return [w, e <= w ? e + 360 : e];
}

export function crossesAntimeridian(b: BBox): boolean {
  return b[0] > b[2];
}

export function validBBox(b: unknown): b is BBox {
  return Array.isArray(b) && b.length === 4 && b.every((v) => typeof v === "number" && Number.isFinite(v)) && b[1] < b[3] && b[0] !== b[2];
}

/** Tile URL in GIBS's REST layout on the curator server extension; `wrap` renders past +-180. */
export function tileUrl(base: string, source: string, layer: string, date: string, matrix: string, z: number, row: number, col: number, ext = "jpg"): string {
  const enc = encodeURIComponent;
  return `${base}curator/tiles/${enc(source)}/${enc(layer)}/${enc(date || "default")}/${enc(matrix)}/${z}/${row}/${col}.${ext}?wrap=1`;
}

/** Pixels per degree at map zoom `z` (Leaflet CRS scale). */
export function scaleAt(z: number): number {
  return Math.pow(2, z) / LEVEL0_DEG_PER_PX;
}

export function zoomFor(scale: number): number {
  return Math.log2(scale * LEVEL0_DEG_PER_PX);
}
