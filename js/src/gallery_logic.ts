// Virtualized grid layout and click/shift-click selection for the sample gallery (DOM-free).

export interface GridLayout {
  columns: number;
  cellWidth: number;
  cellHeight: number;
  rows: number;
  totalHeight: number;
}

export function gridLayout(width: number, count: number, thumb: number, gap = 6, caption = 34): GridLayout {
  const cellWidth = thumb + gap;
  const columns = Math.max(1, Math.floor((Math.max(width, thumb) + gap) / cellWidth));
  const cellHeight = thumb + caption + gap;
  const rows = Math.ceil(count / columns);
  return { columns, cellWidth, cellHeight, rows, totalHeight: rows * cellHeight };
}

/** Item positions [start, end) whose rows intersect the viewport (plus `overscan` rows). */
export function visibleRange(scrollTop: number, viewport: number, layout: GridLayout, count: number, overscan = 1): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / layout.cellHeight) - overscan);
  const last = Math.min(layout.rows, Math.ceil((scrollTop + viewport) / layout.cellHeight) + overscan);
  return [Math.min(count, first * layout.columns), Math.min(count, last * layout.columns)];
}

/** Selection over item positions: click selects one, Ctrl/Cmd toggles, Shift extends from the anchor. */
export class GridSelection {
  selected = new Set<number>();
  anchor: number | null = null;

  click(pos: number, opts: { shift?: boolean; toggle?: boolean } = {}): void {
    if (opts.shift && this.anchor !== null) {
      const [a, b] = this.anchor < pos ? [this.anchor, pos] : [pos, this.anchor];
      if (!opts.toggle) this.selected.clear();
      for (let i = a; i <= b; i++) this.selected.add(i);
      return; // the anchor stays, so a second shift-click re-ranges from it
    }
    if (opts.toggle) {
      if (this.selected.has(pos)) this.selected.delete(pos);
      else this.selected.add(pos);
    } else {
      this.selected = new Set([pos]);
    }
    this.anchor = pos;
  }

  clear(): void {
    this.selected.clear();
    this.anchor = null;
  }

  /** Chip ids of the selected positions, in grid order. */
  ids(items: ArrayLike<number>): Uint32Array {
    const pos = Array.from(this.selected).filter((p) => p < items.length).sort((a, b) => a - b);
    return Uint32Array.from(pos, (p) => items[p]);
  }

  /** Select the positions holding these chip ids (from Python). */
  setIds(items: ArrayLike<number>, ids: ArrayLike<number>): void {
    const want = new Set(Array.from(ids));
    this.selected = new Set();
    for (let p = 0; p < items.length; p++) if (want.has(items[p])) this.selected.add(p);
  }
}

export function formatScore(s: number): string {
  if (!Number.isFinite(s)) return "";
  return Math.abs(s) >= 100 ? s.toFixed(0) : Math.abs(s) >= 1 ? s.toFixed(2) : s.toFixed(3);
}

/** Where an arrow key moves the keyboard cursor in a grid of `columns` (null: not a move key). */
export function moveCursor(key: string, pos: number, columns: number, count: number): number | null {
  if (count <= 0) return null;
  const step: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns, Home: -Infinity, End: Infinity };
  if (!(key in step)) return null;
  const next = pos < 0 ? 0 : pos + step[key];
  return Math.max(0, Math.min(count - 1, Number.isFinite(next) ? next : next < 0 ? 0 : count - 1));
}
