// The RegionPicker's controls and their sync with the model: layer search, date, chip size and
// level, the download button and its progress. The map itself is in region_picker.ts.
import type { RegionPickerModel } from "./models";
import { formatCount, h } from "./shared/dom";
import { onChange, type Invoke, type Model } from "./shared/model";
import { validBBox } from "./region_logic";

export interface LayerHit {
  id: string;
  title: string;
  time: string;
  source: string;
}

/** Milliseconds of typing pause before the layer search asks the kernel. */
export const SEARCH_DEBOUNCE_MS = 250;
export const CHIP_SIZES = [32, 64, 128, 256, 512];

/** The status line under the map: download progress, or what a download would cut. */
export function statusText(m: Model<RegionPickerModel>): string {
  const p = m.get("progress") || { state: "idle" };
  if (p.state === "running" || p.state === "done" || p.state === "error") return p.message || "";
  const count = Number(m.get("grid_count")) || 0;
  const shown = (m.get("grid") || []).length;
  if (!count) return "";
  return `${formatCount(count)} chips of ${m.get("chip_size")} px${shown < count ? ` (grid preview shows ${formatCount(shown)})` : ""}`;
}

export class RegionControls {
  readonly search = h("input", { type: "search", placeholder: "search GIBS layers…", class: "curator-layer-search", "aria-label": "search layers" }) as HTMLInputElement;
  readonly results = h("ul", { class: "curator-layer-results" });
  readonly layerName = h("span", { class: "curator-layer-name" });
  readonly date = h("input", { type: "date", class: "curator-date", "aria-label": "date" }) as HTMLInputElement;
  readonly sizeSel = h("select", { "aria-label": "chip size", title: "chip size in pixels" }) as HTMLSelectElement;
  readonly levelSel = h("select", { "aria-label": "level", title: "tile-matrix level of the chips (higher = finer)" }) as HTMLSelectElement;
  readonly downloadBtn = h("button", { class: "curator-download" }, "Download chips") as HTMLButtonElement;
  readonly progress = h("progress", { class: "curator-progress", max: 1, value: 0 }) as HTMLProgressElement;
  readonly status = h("span", { class: "curator-status" });
  private searchTimer: ReturnType<typeof setTimeout> | undefined;
  private searchSeq = 0;
  private offs: Array<() => void>;

  constructor(
    private m: Model<RegionPickerModel>,
    private invoke: Invoke,
    private root: HTMLElement,
  ) {
    for (const s of CHIP_SIZES) this.sizeSel.appendChild(h("option", { value: s }, `${s} px`));
    this.search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => void this.runSearch(this.search.value.trim()), SEARCH_DEBOUNCE_MS);
    });
    this.date.addEventListener("change", () => this.save("date", this.date.value));
    this.sizeSel.addEventListener("change", () => this.save("chip_size", Number(this.sizeSel.value)));
    this.levelSel.addEventListener("change", () => this.save("level", Number(this.levelSel.value)));
    this.downloadBtn.addEventListener("click", () => m.send({ type: "download" }));
    this.offs = [
      onChange(m, ["progress", "can_download", "grid", "grid_count", "bbox"], () => this.renderStatus()),
      onChange(m, ["layer", "source", "time_range", "date"], () => this.renderLayer()),
      onChange(m, ["chip_size", "level", "max_level"], () => this.renderChipControls()),
    ];
    this.renderLayer();
    this.renderChipControls();
    this.renderStatus();
  }

  private save<K extends keyof RegionPickerModel & string>(key: K, value: RegionPickerModel[K]): void {
    this.m.set(key, value);
    this.m.save_changes();
  }

  /** Ask the kernel for layers matching `q`; a reply to an older query is dropped. */
  async runSearch(q: string): Promise<void> {
    const mySeq = ++this.searchSeq;
    if (!q) return void this.results.replaceChildren();
    try {
      const [reply] = await this.invoke<{ layers: LayerHit[]; error?: string }>("search_layers", { query: q, limit: 30 }, { timeout: 30000 });
      if (mySeq !== this.searchSeq) return;
      this.results.replaceChildren(
        ...(reply.layers.length
          ? reply.layers.map((l) =>
              h("li", { "data-layer": l.id, title: `${l.title}\n${l.time}`, onclick: () => this.pick(l) }, h("b", {}, l.id), h("span", {}, ` ${l.title} · ${l.time}`)),
            )
          : [h("li", { class: "curator-empty" }, reply.error || "no layer matches")]),
      );
    } catch (e) {
      if (mySeq === this.searchSeq) this.results.replaceChildren(h("li", { class: "curator-empty" }, String((e as Error).message)));
    }
  }

  pick(l: LayerHit): void {
    this.results.replaceChildren();
    this.search.value = "";
    this.save("layer", l.id);
  }

  renderLayer(): void {
    const m = this.m;
    this.layerName.textContent = `${m.get("layer")} (${m.get("source")})`;
    const range = m.get("time_range");
    const d = this.date;
    d.disabled = !range;
    d.style.display = range ? "" : "none";
    d.min = range ? range[0] : "";
    d.max = range ? range[1] : "";
    d.value = range ? m.get("date") || "" : "";
    d.title = range ? `valid dates ${range[0]} to ${range[1]}` : "static layer: no dates";
  }

  renderChipControls(): void {
    const m = this.m;
    this.sizeSel.value = String(m.get("chip_size"));
    const maxLevel = Number(m.get("max_level")) || 0;
    this.levelSel.replaceChildren(...Array.from({ length: maxLevel + 1 }, (_, i) => h("option", { value: i }, String(i))));
    this.levelSel.value = String(m.get("level"));
  }

  renderStatus(): void {
    const m = this.m;
    const p = m.get("progress") || { state: "idle" };
    const active = p.state === "running" || p.state === "done" || p.state === "error";
    this.progress.max = active ? Math.max(1, p.total || 1) : 1;
    this.progress.value = active ? p.done || 0 : 0;
    this.status.textContent = statusText(m);
    this.root.dataset.gridCount = String(Number(m.get("grid_count")) || 0);
    this.root.dataset.progress = p.state || "idle";
    this.downloadBtn.disabled = p.state === "running" || !validBBox(m.get("bbox")) || !m.get("can_download");
  }

  dispose(): void {
    clearTimeout(this.searchTimer);
    this.offs.forEach((off) => off());
  }
}
