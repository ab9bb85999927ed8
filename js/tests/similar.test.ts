// The EmbeddingView's "Similar" button: shown only with a search run, asks the kernel once per
// click (not while a search runs, not with nothing selected), and reports the kernel's answer.
import { describe, expect, it } from "vitest";
import { SimilarButton, similarText } from "../src/scatter_similar";
import { MockModel } from "./mock_model";

function setup(run: string, selected: number, reply: any = { ok: true, count: 20, shown: 18 }) {
  const model = new MockModel({ search_run: run });
  const calls: string[] = [];
  let release: () => void = () => undefined;
  const invoke = (name: string) => {
    calls.push(name);
    return new Promise((resolve) => (release = () => resolve([reply, []])));
  };
  const root = document.createElement("div");
  const button = new SimilarButton(model as any, invoke as any, root, () => selected);
  return { model, calls, root, button, release: () => release() };
}

describe("similar to selection", () => {
  it("shows the button only when Python set a search run", () => {
    const { model, button } = setup("", 3);
    expect(button.el.style.display).toBe("none");
    model.update("search_run", "simclr");
    expect(button.el.style.display).toBe("");
    button.dispose();
    model.update("search_run", "");
    expect(button.el.style.display).toBe(""); // disposed: no longer listening
  });

  it("invokes the kernel once, reports the count, and ignores clicks while it runs", async () => {
    const { calls, root, button, release } = setup("simclr", 3);
    const first = button.run();
    expect(await button.run()).toBeNull(); // a second press while the first runs asks nothing
    expect(button.el.disabled).toBe(true);
    expect(root.dataset.similar).toBe("running");
    release();
    expect(await first).toEqual({ ok: true, count: 20, shown: 18 });
    expect(calls).toEqual(["similar"]);
    expect(root.dataset.similar).toBe("20");
    expect(button.el.disabled).toBe(false);
    expect(button.el.title).toBe("20 similar · 18 shown");
  });

  it("asks nothing with an empty selection or no run, and marks a refused search", async () => {
    expect(await setup("simclr", 0).button.run()).toBeNull();
    expect(await setup("", 4).button.run()).toBeNull();
    const { root, button, release } = setup("simclr", 2, { ok: false, error: "nothing is selected" });
    const p = button.run();
    release();
    expect((await p)!.ok).toBe(false);
    expect(root.dataset.similar).toBe("error");
    expect(similarText({ ok: false })).toBe("no search");
  });
});
