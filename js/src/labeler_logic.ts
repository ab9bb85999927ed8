// Keys, swipes and the optimistic queue of the swipe labeler (DOM-free, unit-tested).

export const UNSURE = "unsure";

export type Action = { kind: "label"; label: string } | { kind: "undo" } | null;

export interface KeyLike {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  shiftKey?: boolean;
}

/**
 * ← / → : first / second class of a binary task; ↓ : unsure; digits 1-9 : class by position;
 * Backspace or Ctrl/Cmd+Z : undo. Anything else is not ours (returns null).
 */
export function keyAction(ev: KeyLike, classes: string[], unsure: boolean): Action {
  const mod = !!(ev.ctrlKey || ev.metaKey);
  if (ev.key === "Backspace" || (mod && (ev.key === "z" || ev.key === "Z"))) return { kind: "undo" };
  if (mod || ev.altKey) return null;
  const binary = classes.length === 2;
  switch (ev.key) {
    case "ArrowLeft":
      return binary ? { kind: "label", label: classes[0] } : null;
    case "ArrowRight":
      return binary ? { kind: "label", label: classes[1] } : null;
    case "ArrowDown":
      return unsure ? { kind: "label", label: UNSURE } : null;
  }
  if (/^[1-9]$/.test(ev.key)) {
    const i = Number(ev.key) - 1;
    if (i < classes.length) return { kind: "label", label: classes[i] };
    if (unsure && i === classes.length) return { kind: "label", label: UNSURE };
  }
  return null;
}

/** The rows of the `?` help: every key the labeler answers to, for this task's classes. */
export function labelerKeys(classes: string[], unsure: boolean): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (classes.length === 2) rows.push(["←", classes[0]], ["→", classes[1]]);
  classes.forEach((c, i) => i < 9 && rows.push([String(i + 1), c]));
  if (unsure) rows.push([classes.length === 2 ? "↓" : String(classes.length + 1), UNSURE]);
  rows.push(["Backspace / Ctrl+Z", "undo your last label"], ["?", "show / hide this help"], ["Tab", "move focus out of the labeler"]);
  return rows;
}

/** A finished drag of the card: far enough left/right/down gives a label. */
export function swipeAction(dx: number, dy: number, width: number, classes: string[], unsure: boolean): Action {
  const threshold = Math.max(60, Math.min(160, width * 0.25));
  const binary = classes.length === 2;
  if (Math.abs(dx) >= threshold && Math.abs(dx) > Math.abs(dy)) {
    if (!binary) return null;
    return { kind: "label", label: dx < 0 ? classes[0] : classes[1] };
  }
  if (dy >= threshold && dy > Math.abs(dx) && unsure) return { kind: "label", label: UNSURE };
  return null;
}

/**
 * What the card shows, before the kernel confirms. Every action carries a sequence number;
 * the kernel answers with its queue (`upcoming`) and the last number it processed (`ack`).
 * The view is the kernel's queue with the not-yet-acknowledged local actions replayed on top,
 * so a key press advances at once and late or stale answers never show the wrong chip.
 */
export class LabelQueue {
  private upcoming: number[] = [];
  private ops: Array<{ seq: number; kind: "label" | "undo"; id: number | null }> = [];
  private history: number[] = [];
  private seq = 0;

  /** The kernel's state: its queue and the last action it processed. */
  setUpcoming(ids: number[], acked = Number.POSITIVE_INFINITY): void {
    this.upcoming = ids.slice();
    this.ops = this.ops.filter((o) => o.seq > acked);
  }

  private view(): number[] {
    let list = this.upcoming.slice();
    for (const op of this.ops) {
      if (op.id === null) continue;
      list = list.filter((id) => id !== op.id);
      if (op.kind === "undo") list.unshift(op.id);
    }
    return list;
  }

  current(): number | null {
    const v = this.view();
    return v.length ? v[0] : null;
  }

  /** The chips after the current one (for prefetching). */
  next(k: number): number[] {
    return this.view().slice(1, 1 + k);
  }

  /** Label the current chip locally; returns its id and the action's number (null: empty queue). */
  label(): { id: number; seq: number } | null {
    const id = this.current();
    if (id === null) return null;
    const seq = ++this.seq;
    this.ops.push({ seq, kind: "label", id });
    this.history.push(id);
    return { id, seq };
  }

  /** Undo locally (the last chip this view labelled comes back); returns the action's number. */
  undo(): { id: number | null; seq: number } {
    const id = this.history.pop() ?? null;
    const seq = ++this.seq;
    this.ops.push({ seq, kind: "undo", id });
    return { id, seq };
  }

  /** The kernel refused a label (nothing was written): it is not in this view's undo history. */
  reject(id: number): void {
    const i = this.history.lastIndexOf(id);
    if (i >= 0) this.history.splice(i, 1);
  }

  get inFlight(): number {
    return this.ops.length;
  }
}

/** The team's state as the kernel sends it (SwipeLabeler.team); empty when one person labels. */
export interface TeamState {
  annotators?: Record<string, { labels: number; holding: number }>;
  labelled?: number;
  pending?: number;
  per_chip?: number;
}

/** One line on who labels and how far the team is: "you (ann) 3 · ben 2 (labelling) · 5 labelled, 7 to go". */
export function teamLine(team: TeamState, me: string): string {
  const people = Object.entries(team.annotators || {});
  if (!people.length && team.labelled === undefined) return "";
  const names = people.map(([name, s]) => `${name === me ? `you (${name})` : name} ${s.labels}${s.holding > 0 && name !== me ? " (labelling)" : ""}`);
  const k = (team.per_chip ?? 1) > 1 ? ` · ${team.per_chip} people per chip` : "";
  return `Team: ${names.join(" · ") || "nobody yet"} · ${team.labelled ?? 0} labelled, ${team.pending ?? 0} to go${k}`;
}
