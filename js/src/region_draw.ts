// Drawing a box with pointer events: in draw mode (the button or B) or with Shift held, a drag
// draws; otherwise Leaflet pans. Pointer capture keeps the drag when it leaves the map.
import L from "leaflet";
import type { BoxOverlay } from "./region_box";
import { toBBox, validBBox, type BBox } from "./region_logic";

/** Drags shorter than this (screen px) are clicks, not boxes. */
export const MIN_DRAG_PX = 4;

export class BoxDrawing {
  drawMode = false;
  private start: L.LatLng | null = null;
  private pointer: number | null = null;
  private offs: Array<() => void> = [];

  /** `drawn` gets a new box; `cancelled` runs when a drag was too short to be one. */
  constructor(
    private map: L.Map,
    private mapEl: HTMLElement,
    private box: BoxOverlay,
    private button: HTMLElement,
    private drawn: (b: BBox) => void,
    private cancelled: () => void,
  ) {
    const on = (type: string, fn: (ev: PointerEvent) => void) => {
      const h = (ev: Event) => fn(ev as PointerEvent);
      mapEl.addEventListener(type, h, true);
      this.offs.push(() => mapEl.removeEventListener(type, h, true));
    };
    on("pointerdown", (ev) => this.down(ev));
    on("pointermove", (ev) => this.move(ev));
    on("pointerup", (ev) => this.up(ev));
    on("pointercancel", (ev) => this.up(ev));
  }

  setDraw(on: boolean): void {
    this.drawMode = on;
    this.button.setAttribute("aria-pressed", String(on));
    this.mapEl.classList.toggle("curator-drawing", on);
    if (on) this.map.dragging.disable();
    else this.map.dragging.enable();
  }

  get drawing(): boolean {
    return this.start !== null;
  }

  private latLng(ev: PointerEvent): L.LatLng {
    return this.map.mouseEventToLatLng(ev);
  }

  private down(ev: PointerEvent): void {
    if (ev.button !== 0 || !(this.drawMode || ev.shiftKey)) return;
    if ((ev.target as HTMLElement).closest(".curator-handle, .leaflet-control")) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (!this.drawMode) this.map.dragging.disable();
    this.start = this.latLng(ev);
    this.pointer = ev.pointerId;
    try {
      this.mapEl.setPointerCapture?.(ev.pointerId);
    } catch {
      /* synthetic pointers cannot be captured; the drag still works inside the map */
    }
    this.box.rubberBand(this.start, this.start);
  }

  private move(ev: PointerEvent): void {
    if (!this.start || ev.pointerId !== this.pointer) return;
    ev.preventDefault();
    ev.stopPropagation();
    this.box.rubberBand(this.start, this.latLng(ev));
  }

  private up(ev: PointerEvent): void {
    if (!this.start || ev.pointerId !== this.pointer) return;
    ev.preventDefault();
    ev.stopPropagation();
    const s = this.start;
    const p = this.latLng(ev);
    this.start = null;
    this.pointer = null;
    this.setDraw(false);
    const b = toBBox(s.lng, s.lat, p.lng, p.lat);
    const far = this.map.latLngToContainerPoint(s).distanceTo(this.map.latLngToContainerPoint(p)) > MIN_DRAG_PX;
    if (ev.type !== "pointercancel" && validBBox(b) && far) this.drawn(b);
    else this.cancelled();
  }

  dispose(): void {
    this.offs.forEach((off) => off());
  }
}
