// Selection sync between the scatter and Python: the browser's selections go out as chunked
// uint32 messages with a sequence number; Python's `selection` trait comes back in, and our own
// selection echoed back is recognised and ignored.
import { chunkMessages, decodeArray, sameContents } from "./shared/arrays";
import type { EmbeddingViewModel } from "./models";
import { onChange, onMessage, type Model } from "./shared/model";

/** What the sync needs from regl-scatterplot. */
export interface Selectable {
  select(points: number[], options?: { preventEvent?: boolean }): void;
  deselect(options?: { preventEvent?: boolean }): void;
}

export class SelectionSync {
  private lastSent: Uint32Array | null = null;
  private seq = 0;
  private sentAt = new Map<number, number>();
  private offs: Array<() => void>;

  /** `stats` gets the round trip (ms) and the count Python acknowledged; `changed` runs after every change. */
  constructor(
    private m: Model<EmbeddingViewModel>,
    private scatter: Selectable,
    private changed: () => void,
    private stats: (rttMs: number, count: number) => void = () => undefined,
  ) {
    this.offs = [
      onChange(m, ["selection"], () => this.fromPython()),
      onMessage(m, "selection-ack", (msg) => {
        const t = this.sentAt.get(msg.seq);
        if (t === undefined) return;
        this.sentAt.delete(msg.seq);
        this.stats(performance.now() - t, Number(msg.count));
      }),
    ];
  }

  /** The browser selected `sel` (sorted point indices): tell Python. */
  send(sel: Uint32Array): void {
    this.lastSent = sel;
    this.seq += 1;
    this.sentAt.set(this.seq, performance.now());
    const chunk = Number(this.m.get("chunk_bytes")) || 4 * 1024 * 1024;
    for (const [header, buffer] of chunkMessages(sel, this.seq, chunk)) {
      this.m.send({ type: "selection", ...header }, undefined, [buffer]);
    }
    this.changed();
  }

  /** The points Python selected now (applied to the scatter without an event back). */
  initial(): number[] | undefined {
    const sel = decodeArray(this.m.get("selection"));
    return sel && sel.length ? Array.from(sel) : undefined;
  }

  private fromPython(): void {
    const sel = decodeArray(this.m.get("selection")) ?? new Uint32Array(0);
    if (this.lastSent && sameContents(sel, this.lastSent)) return; // our own selection coming back
    this.lastSent = null;
    if (sel.length) this.scatter.select(Array.from(sel), { preventEvent: true });
    else this.scatter.deselect({ preventEvent: true });
    this.changed();
  }

  dispose(): void {
    this.offs.forEach((off) => off());
  }
}
