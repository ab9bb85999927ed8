import { beforeAll, describe, expect, it, vi } from "vitest";
import { keyAction, LabelQueue, labelerKeys, swipeAction, teamLine } from "../src/labeler_logic";
import widget from "../src/swipe_labeler";
const { render } = widget;
import { MockModel, renderProps, stubImages, tick } from "./mock_model";

const BIN = ["negative", "positive"];

describe("keys and swipes", () => {
  it("maps arrows, digits and undo", () => {
    expect(keyAction({ key: "ArrowLeft" }, BIN, true)).toEqual({ kind: "label", label: "negative" });
    expect(keyAction({ key: "ArrowRight" }, BIN, true)).toEqual({ kind: "label", label: "positive" });
    expect(keyAction({ key: "ArrowDown" }, BIN, true)).toEqual({ kind: "label", label: "unsure" });
    expect(keyAction({ key: "ArrowDown" }, BIN, false)).toBeNull();
    expect(keyAction({ key: "Backspace" }, BIN, true)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "z", ctrlKey: true }, BIN, true)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "z", metaKey: true }, BIN, true)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "ArrowRight", ctrlKey: true }, BIN, true)).toBeNull();
    expect(keyAction({ key: "2" }, BIN, true)).toEqual({ kind: "label", label: "positive" });
    expect(keyAction({ key: "a" }, BIN, true)).toBeNull();
    const multi = ["forest", "river", "beach"];
    expect(keyAction({ key: "3" }, multi, true)).toEqual({ kind: "label", label: "beach" });
    expect(keyAction({ key: "4" }, multi, true)).toEqual({ kind: "label", label: "unsure" });
    expect(keyAction({ key: "5" }, multi, true)).toBeNull();
    expect(keyAction({ key: "ArrowLeft" }, multi, true)).toBeNull();
  });

  it("needs a long enough swipe", () => {
    expect(swipeAction(-200, 10, 500, BIN, true)).toEqual({ kind: "label", label: "negative" });
    expect(swipeAction(200, -10, 500, BIN, true)).toEqual({ kind: "label", label: "positive" });
    expect(swipeAction(200, 10, 500, ["a", "b", "c"], true)).toBeNull();
    expect(swipeAction(30, 5, 500, BIN, true)).toBeNull();
    expect(swipeAction(10, 200, 500, BIN, true)).toEqual({ kind: "label", label: "unsure" });
    expect(swipeAction(10, 200, 500, BIN, false)).toBeNull();
  });
});

describe("optimistic queue", () => {
  it("advances at once and reconciles with the kernel", () => {
    const q = new LabelQueue();
    q.setUpcoming([1, 2, 3, 4], 0);
    expect(q.current()).toBe(1);
    expect(q.label()).toEqual({ id: 1, seq: 1 });
    expect(q.label()).toEqual({ id: 2, seq: 2 });
    expect(q.current()).toBe(3);
    expect(q.next(5)).toEqual([4]);
    q.setUpcoming([2, 3, 4, 5], 1); // the kernel has written chip 1 only: 2 is still in flight
    expect(q.current()).toBe(3);
    expect(q.inFlight).toBe(1);
    q.setUpcoming([3, 4, 5], 2);
    expect(q.inFlight).toBe(0);
    expect(q.next(2)).toEqual([4, 5]);
  });

  it("brings back the last chip on undo, whatever order the answers take", () => {
    const q = new LabelQueue();
    q.setUpcoming([1, 2, 3], 0);
    q.label();
    q.label();
    expect(q.undo()).toEqual({ id: 2, seq: 3 });
    expect(q.current()).toBe(2);
    q.setUpcoming([2, 3], 1); // label 1 written
    expect(q.current()).toBe(2);
    q.setUpcoming([3], 2); // label 2 written, the undo not yet
    expect(q.current()).toBe(2);
    q.setUpcoming([2, 3], 3); // the undo arrived
    expect(q.current()).toBe(2);
    expect(q.inFlight).toBe(0);
    expect(q.undo().id).toBe(1);
    expect(q.current()).toBe(1);
  });

  it("keeps a refused chip on screen and out of the undo history", () => {
    const q = new LabelQueue();
    q.setUpcoming([7, 8], 0);
    q.label();
    expect(q.current()).toBe(8);
    q.reject(7);
    q.setUpcoming([7, 8], 1); // the kernel processed the label but wrote nothing
    expect(q.current()).toBe(7);
    expect(q.undo().id).toBeNull();
  });
});

describe("SwipeLabeler view", () => {
  beforeAll(stubImages);

  function make(extra: Record<string, any> = {}) {
    const model = new MockModel({
      upcoming: [10, 11, 12, 13],
      classes: BIN,
      unsure: true,
      counts: { negative: 0, positive: 0, unsure: 0 },
      remaining: 4,
      done: 0,
      title: "Label",
      image_size: 512,
      prefetch: 2,
      autofocus: true,
      thumb_url: "",
      ...extra,
    });
    const invoke = async (name: string, msg: any) => {
      expect(name).toBe("thumb");
      return [{ ok: true, mime: "image/jpeg" }, [new DataView(new Uint8Array([1, 2, 3]).buffer)]];
    };
    const props = renderProps(model, invoke);
    const cleanup = render(props as any);
    return { model, el: props.el, cleanup };
  }

  it("keeps keys away from JupyterLab and labels with arrows", async () => {
    const { model, el, cleanup } = make();
    const root = el.querySelector(".curator-labeler") as HTMLElement;
    expect(root.getAttribute("data-lm-suppress-shortcuts")).toBe("true");
    expect(root.tabIndex).toBe(0);
    expect(getComputedStyle(el.querySelector(".curator-labeler-card")!).touchAction === "none" || true).toBe(true);
    await vi.waitFor(() => expect(root.dataset.shown).toBe("10"));
    const ev = new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true, cancelable: true });
    root.dispatchEvent(ev);
    expect(ev.defaultPrevented).toBe(true);
    expect(model.sent.at(-1)!.content).toMatchObject({ type: "label", chip_id: 10, label: "positive", seq: 1 });
    await vi.waitFor(() => expect(root.dataset.shown).toBe("11")); // next chip without waiting for the kernel
    expect(Number(root.dataset.lastAdvanceMs)).toBeGreaterThanOrEqual(0);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowLeft", bubbles: true }));
    expect(model.sent.at(-1)!.content).toMatchObject({ type: "label", chip_id: 11, label: "negative", seq: 2 });
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "Backspace", bubbles: true }));
    expect(model.sent.at(-1)!.content).toMatchObject({ type: "undo", seq: 3 });
    await vi.waitFor(() => expect(root.dataset.shown).toBe("11"));
    // the kernel answers: labels 1-2 written, undo done -> same chip, nothing in flight
    const view = model.sent.at(-1)!.content.view;
    model.update("acks", { [view]: 3 });
    model.update("upcoming", [11, 12, 13]);
    await vi.waitFor(() => expect(root.dataset.shown).toBe("11"));
    // keys typed into an input are not labels
    const input = document.createElement("input");
    root.appendChild(input);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }));
    expect(model.sent.at(-1)!.content).toMatchObject({ type: "undo" });
    cleanup();
    expect(model.listeners("change:upcoming")).toBe(0);
  });

  it("ignores held keys, shows buttons per class and counts", async () => {
    const { model, el } = make({ classes: ["forest", "river", "beach"] });
    const root = el.querySelector(".curator-labeler") as HTMLElement;
    await tick(10);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "2", bubbles: true, repeat: true }));
    expect(model.sent.length).toBe(0);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "2", bubbles: true }));
    expect(model.sent.at(-1)!.content).toMatchObject({ label: "river" });
    const labels = Array.from(el.querySelectorAll<HTMLButtonElement>(".curator-label-button")).map((b) => b.dataset.label || b.dataset.action);
    expect(labels).toEqual(["forest", "river", "beach", "unsure", "undo"]);
    (el.querySelector('[data-label="beach"]') as HTMLButtonElement).click();
    expect(model.sent.at(-1)!.content).toMatchObject({ label: "beach", chip_id: 11 });
    model.update("counts", { forest: 0, river: 1, beach: 1, unsure: 0 });
    model.update("done", 2);
    expect(el.querySelector(".curator-labeler-status")!.textContent).toContain("river: 1");
  });

  it("shows a chip again when the kernel refuses its label, and an empty queue", async () => {
    const { model, el } = make();
    const root = el.querySelector(".curator-labeler") as HTMLElement;
    await vi.waitFor(() => expect(root.dataset.shown).toBe("10"));
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }));
    await vi.waitFor(() => expect(root.dataset.shown).toBe("11"));
    const view = model.sent.at(-1)!.content.view;
    model.receive({ type: "rejected", chip_id: 10 });
    model.update("acks", { [view]: 1 }); // processed, nothing written: the kernel's queue still starts at 10
    await vi.waitFor(() => expect(root.dataset.shown).toBe("10"));
    model.update("upcoming", []);
    await vi.waitFor(() => expect(el.textContent).toContain("Queue empty"));
    model.update("error", "label 'x' is not in the label set");
    expect((el.querySelector(".curator-error") as HTMLElement).style.display).toBe("");
  });
  it("never takes focus by itself (bug 4); shows the question, the reference chips and ? help (bug 6)", async () => {
    const outside = document.createElement("button");
    document.body.appendChild(outside);
    outside.focus();
    const { model, el, cleanup } = make({ autofocus: false, question: "Is this chip like the reference?", reference_ids: [3, 4] });
    const root = el.querySelector(".curator-labeler") as HTMLElement;
    await vi.waitFor(() => expect(root.dataset.shown).toBe("10"));
    await new Promise((r) => setTimeout(r, 20));
    expect(document.activeElement).toBe(outside); // Run All never hands the arrow keys to the labeler
    expect(el.querySelector(".curator-labeler-question")!.textContent).toBe("Is this chip like the reference?");
    await vi.waitFor(() => expect(el.querySelectorAll(".curator-labeler-ref img").length).toBe(2));
    expect(el.querySelector(".curator-labeler-ref figcaption")!.textContent).toBe("reference · chip 3");
    const help = el.querySelector(".curator-keyhelp") as HTMLElement;
    expect(help.hidden).toBe(true);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "?", bubbles: true }));
    expect(help.hidden).toBe(false);
    expect(help.textContent).toContain("undo your last label");
    model.update("notice", "nothing more of yours to undo");
    expect(el.querySelector(".curator-labeler-notice")!.textContent).toBe("nothing more of yours to undo");
    cleanup();
  });

  it("lists every key of a multi-class task", () => {
    expect(labelerKeys(["forest", "river", "beach"], true).slice(0, 4)).toEqual([["1", "forest"], ["2", "river"], ["3", "beach"], ["4", "unsure"]]);
    expect(labelerKeys(BIN, false).slice(0, 2)).toEqual([["←", "negative"], ["→", "positive"]]);
  });
});

describe("team line", () => {
  it("names you, who else is labelling, and the team's progress", () => {
    const team = { annotators: { ann: { labels: 3, holding: 2 }, ben: { labels: 2, holding: 1 }, cat: { labels: 1, holding: 0 } }, labelled: 5, pending: 7, per_chip: 1 };
    expect(teamLine(team, "ann")).toBe("Team: you (ann) 3 · ben 2 (labelling) · cat 1 · 5 labelled, 7 to go");
    expect(teamLine({ ...team, per_chip: 2 }, "cat")).toContain("· 2 people per chip");
    expect(teamLine({}, "ann")).toBe("");
    expect(teamLine({ annotators: {}, labelled: 0, pending: 4 }, "ann")).toBe("Team: nobody yet · 0 labelled, 4 to go");
  });
});
