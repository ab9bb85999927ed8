// "Similar to selection" in the EmbeddingView: a toolbar button (and the S key) asks the kernel
// to search the run's index with the selected chips; Python draws the results as the highlight
// (EmbeddingView.similar_to_selection). The button shows only when the view has a search run.
import { h } from "./shared/dom";
import type { EmbeddingViewModel } from "./models";
import { onChange, type Invoke, type Model } from "./shared/model";

export interface SimilarReply {
  ok: boolean;
  count?: number;
  shown?: number;
  error?: string;
}

/** What the button says after a search (the error itself is shown by the widget's error bar). */
export function similarText(reply: SimilarReply): string {
  if (!reply.ok) return "no search";
  return `${reply.count ?? 0} similar · ${reply.shown ?? 0} shown`;
}

export class SimilarButton {
  readonly el: HTMLButtonElement;
  private busy = false;
  private readonly off: () => void;

  constructor(
    private readonly model: Model<EmbeddingViewModel>,
    private readonly invoke: Invoke,
    private readonly root: HTMLElement,
    private readonly selected: () => number,
  ) {
    this.el = h("button", { title: "find chips similar to the selection (S)" }, "≈ Similar") as HTMLButtonElement;
    this.el.addEventListener("click", () => void this.run());
    this.off = onChange(model, ["search_run"], () => this.refresh());
    this.refresh();
  }

  /** Shown only when Python set a search run. */
  refresh(): void {
    this.el.style.display = this.model.get("search_run") ? "" : "none";
  }

  /** Search with the selection; returns the kernel's reply (null when nothing was asked). */
  async run(): Promise<SimilarReply | null> {
    if (this.busy || !this.model.get("search_run") || this.selected() === 0) return null;
    this.busy = true;
    this.el.disabled = true;
    this.root.dataset.similar = "running";
    try {
      const [reply] = await this.invoke<SimilarReply>("similar", {}, { timeout: 120_000 });
      this.el.title = similarText(reply);
      this.root.dataset.similar = reply.ok ? String(reply.count ?? 0) : "error";
      return reply;
    } catch (e) {
      this.root.dataset.similar = "error";
      this.el.title = String(e);
      return { ok: false, error: String(e) };
    } finally {
      this.busy = false;
      this.el.disabled = false;
    }
  }

  dispose(): void {
    this.off();
  }
}
