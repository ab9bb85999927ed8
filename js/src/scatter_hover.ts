// The EmbeddingView hover card: thumbnail, chip id, label, score and source of the point under
// the pointer. The text comes from Python on demand (`invoke("info")`), the picture over HTTP.
import { h } from "./shared/dom";
import type { Invoke } from "./shared/model";

export interface PointInfo {
  ok: boolean;
  chip?: number;
  label?: string | null;
  score?: string;
  value?: string;
  source?: string;
}

/** The card's text lines, most important first. */
export function cardLines(info: PointInfo, fallback: { chip: number; cls: string }): string[] {
  const lines = [`chip ${info.chip ?? fallback.chip}`];
  const label = info.label ?? (fallback.cls || null);
  if (label) lines.push(`label: ${label}`);
  if (info.score) lines.push(info.score);
  else if (info.value && info.value !== label) lines.push(info.value);
  if (info.source) lines.push(info.source);
  return lines;
}

/** Where the card goes: right of and above the pointer, kept inside the stage. */
export function cardPosition(x: number, y: number, stageW: number, cardW = 170, cardH = 190): [number, number] {
  const left = x + 12 + cardW > stageW ? Math.max(0, x - 12 - cardW) : x + 12;
  return [left, Math.max(0, y - cardH)];
}

export class HoverCard {
  readonly el: HTMLElement;
  private token = 0;

  constructor(
    private invoke: Invoke,
    private thumb: ((chip: number) => Promise<HTMLImageElement>) | null,
    private onShow: (chip: number) => void = () => undefined,
  ) {
    this.el = h("div", { class: "curator-scatter-tooltip", role: "tooltip" });
  }

  /** Show point `index` (chip `chip`, colour class `cls`) at (x, y) px in a stage `stageW` wide. */
  async show(index: number, chip: number, cls: string, x: number, y: number, stageW: number): Promise<void> {
    const token = ++this.token;
    const text = h("div", { class: "curator-tooltip-text" });
    const setLines = (lines: string[]) => text.replaceChildren(...lines.map((l, i) => h("div", { class: i ? "" : "curator-tooltip-id" }, l)));
    setLines(cardLines({ ok: false }, { chip, cls }));
    this.el.replaceChildren(text);
    const [left, top] = cardPosition(x, y, stageW);
    this.el.style.left = `${left}px`;
    this.el.style.top = `${top}px`;
    this.el.style.display = "block";
    this.el.dataset.chip = String(chip);
    this.onShow(chip);
    const info = this.invoke<PointInfo>("info", { index }, { timeout: 10000 }).then(
      ([reply]) => reply,
      () => ({ ok: false }) as PointInfo,
    );
    const img = this.thumb ? this.thumb(chip).catch(() => null) : Promise.resolve(null);
    const [reply, picture] = await Promise.all([info, img]);
    if (token !== this.token) return; // the pointer moved on
    if (reply.ok) setLines(cardLines(reply, { chip, cls }));
    if (picture) {
      const node = picture.cloneNode() as HTMLImageElement;
      node.className = "curator-tooltip-img";
      this.el.prepend(node);
    }
    this.el.dataset.ready = String(token);
  }

  hide(): void {
    this.token++;
    this.el.style.display = "none";
  }
}
