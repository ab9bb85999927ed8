// A stand-in for the anywidget model: traits, change events, custom messages both ways.
type Handler = (...args: any[]) => void;

export class MockModel {
  attrs: Record<string, any>;
  sent: Array<{ content: any; buffers: any[] }> = [];
  saves = 0;
  private handlers = new Map<string, Set<Handler>>();
  widget_manager = { get_model: async () => this as any };

  constructor(attrs: Record<string, any> = {}) {
    this.attrs = { error: "", ...attrs };
  }
  get(key: string): any {
    return this.attrs[key];
  }
  set(key: string, value: any): void {
    this.attrs[key] = value;
    this.emit(`change:${key}`);
  }
  /** a change coming from Python */
  update(key: string, value: any): void {
    this.set(key, value);
  }
  on(event: string, cb: Handler): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(cb);
  }
  off(event?: string | null, cb?: Handler | null): void {
    if (event && cb) this.handlers.get(event)?.delete(cb);
  }
  emit(event: string, ...args: any[]): void {
    for (const cb of Array.from(this.handlers.get(event) ?? [])) cb(...args);
  }
  save_changes(): void {
    this.saves++;
  }
  send(content: any, _callbacks?: any, buffers: any[] = []): void {
    this.sent.push({ content, buffers });
  }
  /** a custom message from Python */
  receive(content: any, buffers: DataView[] = []): void {
    this.emit("msg:custom", content, buffers);
  }
  listeners(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }
}

export function renderProps(model: MockModel, invoke?: any) {
  const el = document.createElement("div");
  document.body.appendChild(el);
  return {
    model: model as any,
    el,
    signal: new AbortController().signal,
    host: {} as any,
    experimental: invoke ? { invoke } : ({} as any),
  };
}

export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** jsdom neither loads nor decodes images: make decode() resolve at once. */
export function stubImages(): void {
  (HTMLImageElement.prototype as any).decode = function () {
    return Promise.resolve();
  };
  if (!(globalThis as any).requestAnimationFrame) (globalThis as any).requestAnimationFrame = (cb: any) => setTimeout(() => cb(performance.now()), 0);
  if (!URL.createObjectURL) (URL as any).createObjectURL = () => `blob:mock/${Math.random()}`;
  if (!URL.revokeObjectURL) (URL as any).revokeObjectURL = () => undefined;
}

/** jsdom has no canvas: a 2-D context whose every method is a no-op (Leaflet's canvas renderer). */
export function stubCanvas2d(): void {
  const noop = () => undefined;
  const ctx: any = new Proxy(
    { measureText: () => ({ width: 0 }), getImageData: () => ({ data: new Uint8ClampedArray(4) }) },
    { get: (t: any, k) => (k in t ? t[k] : noop), set: () => true },
  );
  (HTMLCanvasElement.prototype as any).getContext = function (kind: string) {
    return kind === "2d" ? ctx : null;
  };
}

/** A RegionPicker model as Python sends it: a box across the antimeridian, one grid chip. */
export function regionModel(extra: Record<string, unknown> = {}): MockModel {
  return new MockModel({
    bbox: [170, -20, -170, 0],
    layer: "BlueMarble_NextGeneration",
    date: "",
    source: "bluemarble",
    tile_matrix_set: "500m",
    time_range: null,
    max_zoom: 8,
    attribution: "Blue Marble",
    chip_size: 64,
    level: 3,
    max_level: 3,
    grid: [[170, -20, 175, -15]],
    grid_count: 1,
    progress: { state: "idle" },
    can_download: true,
    height: "300px",
    ...extra,
  });
}
