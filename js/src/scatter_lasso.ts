// The lasso drawn over the scatter while a deferred gesture selects: an SVG path in canvas px.
// Pointer moves only append to the path string (no rebuild of the whole path per move); the DOM is
// written once per animation frame, which shows every vertex so far, and the overlay is CSS-contained.

const SVG = "http://www.w3.org/2000/svg";
/** Points closer than this (CSS px) to the last one are not added: a smooth path, few vertices. */
const MIN_STEP_PX = 2;

export class LassoOverlay {
  readonly el: SVGSVGElement;
  private path: SVGPathElement;
  private open = ""; // the path so far, without the closing "Z"
  private frame: number | null = null;
  /** Vertices in CSS px relative to the canvas, flat [x0, y0, x1, y1, ...]. */
  points: number[] = [];

  constructor(private schedule: (cb: () => void) => number = (cb) => requestAnimationFrame(cb)) {
    this.el = document.createElementNS(SVG, "svg");
    this.el.setAttribute("class", "curator-scatter-lasso");
    this.path = document.createElementNS(SVG, "path");
    this.el.appendChild(this.path);
  }

  start(x: number, y: number): void {
    this.points = [x, y];
    this.open = `M${x},${y}`;
    this.path.setAttribute("d", "");
  }

  /** Extend the lasso; returns whether the vertex was kept. */
  add(x: number, y: number): boolean {
    const n = this.points.length;
    if (n && Math.hypot(x - this.points[n - 2], y - this.points[n - 1]) < MIN_STEP_PX) return false;
    this.points.push(x, y);
    this.open += n ? `L${x},${y}` : `M${x},${y}`;
    if (this.frame === null) this.frame = this.schedule(() => this.flush());
    return true;
  }

  /** Write the path to the DOM now (the next frame does it anyway). */
  flush(): void {
    this.frame = null;
    this.path.setAttribute("d", this.d());
  }

  /** The closed SVG path of the vertices so far. */
  d(): string {
    return this.points.length ? this.open + "Z" : "";
  }

  clear(): void {
    this.points = [];
    this.open = "";
    this.path.setAttribute("d", "");
  }
}
