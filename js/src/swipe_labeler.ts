// SwipeLabeler: one big chip card; keys, buttons or swipes label it; the kernel writes every
// decision to the label store at once. The next images are decoded ahead of time so a key
// press swaps the picture without waiting for the network or the kernel.
import type { RenderProps } from "@anywidget/types";
import "./shared/base.css";
import "./swipe_labeler.css";
import { errorBar, formatCount, h } from "./shared/dom";
import { ImageSource } from "./shared/images";
import { helpKey, keyHelp } from "./shared/keyhelp";
import type { SwipeLabelerModel } from "./models";
import { makeInvoke, onChange, onMessage } from "./shared/model";
import { keyAction, LabelQueue, labelerKeys, swipeAction, teamLine, UNSURE, type Action, type TeamState } from "./labeler_logic";

const KEY_HELP_BINARY = "← negative · → positive · ↓ unsure · Backspace / Ctrl+Z undo";

function render({ model: m, el, experimental }: RenderProps<SwipeLabelerModel>): () => void {
  const invoke = makeInvoke(m, experimental);
  const images = new ImageSource(m, invoke, { keep: 64 });
  const queue = new LabelQueue();
  // one id per view: the kernel acknowledges each view's actions separately
  const viewId = Math.random().toString(36).slice(2, 10);

  const root = h("div", {
    class: "curator-widget curator-labeler",
    tabindex: 0,
    // Lumino (JupyterLab) skips its keyboard shortcuts for events from inside this element
    "data-lm-suppress-shortcuts": "true",
    role: "application",
    "aria-label": "Swipe labeler: use the arrow keys",
  });
  const title = h("div", { class: "curator-labeler-title" });
  const question = h("div", { class: "curator-labeler-question" });
  const reference = h("div", { class: "curator-labeler-reference", "aria-label": "reference chips" });
  const card = h("div", { class: "curator-labeler-card" });
  const frame = h("div", { class: "curator-labeler-frame" });
  const hint = h("div", { class: "curator-labeler-hint" });
  const caption = h("div", { class: "curator-labeler-caption" });
  card.append(frame, hint);
  const buttons = h("div", { class: "curator-toolbar curator-labeler-buttons" });
  const progress = h("progress", { class: "curator-progress", max: 1, value: 0 }) as HTMLProgressElement;
  const status = h("div", { class: "curator-status curator-labeler-status" });
  const help = h("div", { class: "curator-status curator-labeler-help" });
  const notice = h("div", { class: "curator-status curator-labeler-notice", role: "status" });
  const teamEl = h("div", { class: "curator-status curator-labeler-team", "aria-label": "team progress" });
  const focusHint = h("div", { class: "curator-labeler-focus-hint" }, "click the card (or Tab to it) to label with the keys");
  const keys = keyHelp("Keyboard (click the card first)", []);
  const err = errorBar(() => m.get("error"));
  const pair = h("div", { class: "curator-labeler-pair" }, reference, card);
  root.append(title, question, pair, caption, buttons, h("div", { class: "curator-toolbar" }, progress, status), teamEl, help, notice, focusHint, keys.el, err.el);
  el.appendChild(root);

  let shown: number | null = null;
  let pressedAt = 0;
  let showToken = 0;
  const size = () => Number(m.get("image_size")) || 512;
  const classes = (): string[] => m.get("classes") || [];
  const unsure = (): boolean => !!m.get("unsure");

  function prefetch(): void {
    const ids = queue.next(Number(m.get("prefetch") ?? 6));
    images.prefetch(ids, size());
  }

  async function show(): Promise<void> {
    const id = queue.current();
    if (id === shown && frame.firstChild) return; // already on screen (or loading)
    const token = ++showToken;
    shown = id;
    root.dataset.current = id === null ? "" : String(id);
    if (id === null) {
      frame.replaceChildren(h("div", { class: "curator-labeler-empty" }, "Queue empty: nothing left to label."));
      caption.textContent = "";
      markShown(null);
      return;
    }
    caption.textContent = `chip ${id}`;
    let img: HTMLImageElement;
    try {
      img = await images.image(id, size());
    } catch (e) {
      if (token !== showToken) return;
      frame.replaceChildren(h("div", { class: "curator-labeler-empty" }, `could not load chip ${id}: ${(e as Error).message}`));
      return;
    }
    if (token !== showToken) return; // a newer key press already moved on
    const node = img.cloneNode() as HTMLImageElement;
    node.draggable = false;
    node.className = "curator-labeler-image";
    frame.replaceChildren(node);
    markShown(id);
    prefetch();
  }

  function markShown(id: number | null): void {
    // measured by benchmarks/widgets.py and the browser tests: key press -> next image on screen
    requestAnimationFrame(() => {
      root.dataset.shown = id === null ? "" : String(id);
      if (pressedAt) {
        root.dataset.lastAdvanceMs = (performance.now() - pressedAt).toFixed(1);
        pressedAt = 0;
      }
      root.dataset.advances = String(Number(root.dataset.advances || 0) + 1);
    });
  }

  function act(action: Action): void {
    if (!action) return;
    pressedAt = performance.now();
    if (action.kind === "undo") {
      const { seq } = queue.undo();
      m.send({ type: "undo", seq, view: viewId });
      flash("undo");
    } else {
      const op = queue.label();
      if (op === null) return;
      m.send({ type: "label", chip_id: op.id, label: action.label, seq: op.seq, view: viewId });
      flash(action.label);
    }
    void show();
  }

  function flash(label: string): void {
    hint.textContent = label === "undo" ? "↶ undo" : label;
    hint.dataset.label = label;
    hint.classList.remove("curator-flash");
    void hint.offsetWidth; // restart the CSS animation
    hint.classList.add("curator-flash");
  }

  // ---------------------------------------------------------------- keys
  const onKey = (ev: KeyboardEvent) => {
    const target = ev.target as HTMLElement | null;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    if (helpKey(ev, keys)) {
      ev.preventDefault();
      ev.stopPropagation();
      return;
    }
    const action = keyAction(ev, classes(), unsure());
    if (!action) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (ev.repeat && action.kind === "label") return; // a held key must not label a run of chips
    act(action);
  };
  root.addEventListener("keydown", onKey);
  // keep focus inside so keys reach us, not the notebook
  root.addEventListener("pointerdown", () => root.focus({ preventScroll: true }));

  // ---------------------------------------------------------------- swipe (mouse and touch)
  let drag: { id: number; x: number; y: number } | null = null;
  card.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY };
    card.setPointerCapture?.(ev.pointerId);
    card.classList.add("curator-dragging");
  });
  card.addEventListener("pointermove", (ev) => {
    if (!drag || ev.pointerId !== drag.id) return;
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    frame.style.transform = `translate(${dx}px, ${Math.max(0, dy)}px) rotate(${dx / 25}deg)`;
    const a = swipeAction(dx, dy, card.clientWidth, classes(), unsure());
    card.dataset.swipe = a && a.kind === "label" ? a.label : "";
  });
  const endDrag = (ev: PointerEvent) => {
    if (!drag || ev.pointerId !== drag.id) return;
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    drag = null;
    card.classList.remove("curator-dragging");
    frame.style.transform = "";
    card.dataset.swipe = "";
    if (ev.type === "pointerup") act(swipeAction(dx, dy, card.clientWidth, classes(), unsure()));
  };
  card.addEventListener("pointerup", endDrag);
  card.addEventListener("pointercancel", endDrag);

  // ---------------------------------------------------------------- buttons, counts
  function renderButtons(): void {
    const cls = classes();
    const binary = cls.length === 2;
    const items: HTMLElement[] = [];
    cls.forEach((c, i) => {
      const key = binary ? (i === 0 ? "←" : "→") : String(i + 1);
      items.push(h("button", { class: `curator-label-button`, "data-label": c, title: `${c} (${key})`, onclick: () => act({ kind: "label", label: c }) }, `${key} ${c}`));
    });
    if (unsure()) {
      const key = binary ? "↓" : String(cls.length + 1);
      items.push(h("button", { class: "curator-label-button", "data-label": UNSURE, title: `unsure (${key})`, onclick: () => act({ kind: "label", label: UNSURE }) }, `${key} unsure`));
    }
    items.push(h("button", { class: "curator-label-button", "data-action": "undo", title: "undo (Backspace, Ctrl+Z)", onclick: () => act({ kind: "undo" }) }, "↶ undo"));
    buttons.replaceChildren(...items);
    help.textContent = (binary ? KEY_HELP_BINARY : `1-${cls.length} class · ${unsure() ? `${cls.length + 1} unsure · ` : ""}Backspace / Ctrl+Z undo`) + " · ? help";
    keys.setRows(labelerKeys(cls, unsure()));
  }

  async function renderReference(): Promise<void> {
    const ids: number[] = Array.from(m.get("reference_ids") || [], Number);
    root.dataset.references = String(ids.length);
    if (!ids.length) return void reference.replaceChildren();
    const cells = ids.map((id) => h("figure", { class: "curator-labeler-ref", "data-chip-id": id }, h("figcaption", {}, `reference · chip ${id}`)));
    reference.replaceChildren(h("div", { class: "curator-labeler-ref-title" }, "compare with"), ...cells);
    await Promise.all(
      ids.map(async (id, i) => {
        try {
          const img = (await images.image(id, 256)).cloneNode() as HTMLImageElement;
          img.className = "curator-labeler-ref-image";
          img.draggable = false;
          cells[i].prepend(img);
        } catch {
          /* the caption still names the chip */
        }
      }),
    );
  }

  function renderCounts(): void {
    const counts: Record<string, number> = m.get("counts") || {};
    const remaining = Number(m.get("remaining")) || 0;
    const done = Number(m.get("done")) || 0;
    const total = done + remaining;
    progress.max = Math.max(1, total);
    progress.value = done;
    const parts = Object.entries(counts).map(([k, v]) => `${k}: ${formatCount(v)}`);
    status.textContent = `${formatCount(done)} labelled this session · ${formatCount(remaining)} to go${parts.length ? " · " + parts.join(" · ") : ""}`;
    root.dataset.done = String(done);
  }

  function renderTeam(): void {
    const team: TeamState = m.get("team") || {};
    teamEl.textContent = teamLine(team, String(m.get("annotator") || ""));
    teamEl.hidden = !teamEl.textContent;
    root.dataset.annotator = String(m.get("annotator") || "");
  }

  function onUpcoming(): void {
    const acks: Record<string, number> = m.get("acks") || {};
    queue.setUpcoming(Array.from(m.get("upcoming") || [], Number), Number(acks[viewId] ?? 0));
    void show();
    prefetch();
  }

  const offs = [
    onChange(m, ["upcoming", "acks"], onUpcoming),
    onChange(m, ["counts", "remaining", "done"], renderCounts),
    onChange(m, ["classes", "unsure"], renderButtons),
    onChange(m, ["team", "annotator"], renderTeam),
    onChange(m, ["title"], () => (title.textContent = m.get("title") || "")),
    onChange(m, ["question"], () => (question.textContent = m.get("question") || "")),
    onChange(m, ["notice"], () => (notice.textContent = m.get("notice") || "")),
    onChange(m, ["reference_ids"], () => void renderReference()),
    onChange(m, ["error"], err.update),
    onMessage(m, "rejected", (msg) => {
      queue.reject(Number(msg.chip_id));
      void show();
    }),
  ];
  title.textContent = m.get("title") || "";
  question.textContent = m.get("question") || "";
  notice.textContent = m.get("notice") || "";
  void renderReference();
  renderButtons();
  renderCounts();
  renderTeam();
  onUpcoming();
  if (m.get("autofocus")) setTimeout(() => root.focus({ preventScroll: true }), 0);

  return () => {
    offs.forEach((off) => off());
    images.dispose();
  };
}

export default { render };
