// The box on the map: an orange rectangle with four corner handles that resize it, and the view
// fit that waits until Leaflet knows its size.
import L from "leaflet";
import { formatBBox, lonSpan, toBBox, type BBox } from "./region_logic";

const BOX_STYLE: L.PathOptions = { color: "#ff6d00", weight: 2, fillOpacity: 0.08, interactive: false };

/** Corners NW, NE, SE, SW on the unwrapped map (east past 180 when the box crosses it). */
export function corners(b: BBox): L.LatLng[] {
  const [w, e] = lonSpan(b);
  return [L.latLng(b[3], w), L.latLng(b[3], e), L.latLng(b[1], e), L.latLng(b[1], w)];
}

export function boxBounds(b: BBox): L.LatLngBounds {
  const cs = corners(b);
  return L.latLngBounds(cs[3], cs[1]);
}

export class BoxOverlay {
  private rect: L.Rectangle | null = null;
  private handles: L.Marker[] = [];

  /** `edited` gets the box a handle drag left; `label` shows the box in words. */
  constructor(
    private map: L.Map,
    private root: HTMLElement,
    private label: HTMLElement,
    private edited: (b: BBox) => void,
    private renderer?: L.Renderer,
  ) {}

  /** Show `b` (or nothing) with its handles. */
  show(b: BBox | null): void {
    this.remove();
    this.label.textContent = b ? formatBBox(b) : "no box yet: draw one";
    this.label.title = b ? b.join(", ") : "";
    this.root.dataset.bbox = b ? b.join(",") : "";
    if (!b) return;
    const cs = corners(b);
    this.rect = L.rectangle(L.latLngBounds(cs[3], cs[1]), { ...BOX_STYLE, className: "curator-box" }).addTo(this.map);
    cs.forEach((c, i) => {
      const hd = L.marker(c, {
        draggable: true,
        icon: L.divIcon({ className: "curator-handle", iconSize: [12, 12] }),
        keyboard: false,
        title: "drag to resize",
      }).addTo(this.map);
      const opposite = () => this.handles[(i + 2) % 4].getLatLng();
      hd.on("drag", () => this.rect?.setBounds(L.latLngBounds(opposite(), hd.getLatLng())));
      hd.on("dragend", () => {
        const o = opposite();
        const p = hd.getLatLng();
        this.edited(toBBox(o.lng, o.lat, p.lng, p.lat));
      });
      this.handles.push(hd);
    });
  }

  /** A rubber band from `a` to `b` while a box is being drawn (no handles). */
  rubberBand(a: L.LatLng, b: L.LatLng): void {
    if (this.handles.length) this.remove();
    if (this.rect) this.rect.setBounds(L.latLngBounds(a, b));
    else this.rect = L.rectangle(L.latLngBounds(a, b), { ...BOX_STYLE, renderer: this.renderer }).addTo(this.map);
  }

  remove(): void {
    this.rect?.remove();
    this.rect = null;
    this.handles.forEach((hd) => hd.remove());
    this.handles.length = 0;
  }

  get handleCount(): number {
    return this.handles.length;
  }
}

/**
 * Leaflet's fitBounds needs the map's size: before the cell is laid out it is 0 x 0 and the fit
 * lands at the maximum zoom on one blurry patch. Fit once the container has a size, and again
 * whenever the layout still changes it, until the person moves the map.
 */
export class ViewFit {
  private target: L.LatLngBounds | null = null;
  private offs: Array<() => void> = [];

  constructor(
    private map: L.Map,
    private mapEl: HTMLElement,
    private root: HTMLElement,
    private maxZoom: () => number,
  ) {
    const moved = () => (this.target = null);
    for (const ev of ["pointerdown", "wheel", "keydown"]) {
      mapEl.addEventListener(ev, moved, { passive: true });
      this.offs.push(() => mapEl.removeEventListener(ev, moved));
    }
  }

  fit(bounds: L.LatLngBounds): void {
    this.target = bounds;
    this.apply();
  }

  /** Fit again (the container may have its size now); nothing once the person has moved the map. */
  apply(): void {
    if (!this.target || this.mapEl.clientWidth < 8 || this.mapEl.clientHeight < 8) return;
    this.map.invalidateSize();
    this.map.fitBounds(this.target, { padding: [20, 20], maxZoom: this.maxZoom(), animate: false });
    this.root.dataset.zoom = String(this.map.getZoom());
    this.root.dataset.fitted = String(Number(this.root.dataset.fitted || 0) + 1);
  }

  get pending(): boolean {
    return this.target !== null;
  }

  dispose(): void {
    this.offs.forEach((off) => off());
  }
}
