// SampleGallery: a virtualized thumbnail grid. Only cells in (or next to) the viewport exist in
// the DOM and only their thumbnails are requested, so 100k ids cost no more than 100.
import type { RenderProps } from "@anywidget/types";
import "./shared/base.css";
import "./gallery.css";
import { decodeArray, encodeArray, sameContents } from "./shared/arrays";
import { errorBar, formatCount, h } from "./shared/dom";
import { ImageSource } from "./shared/images";
import type { GalleryModel } from "./models";
import { makeInvoke, onChange } from "./shared/model";
import { formatScore, GridSelection, gridLayout, moveCursor, visibleRange } from "./gallery_logic";
import { helpKey, keyHelp, type KeyRow } from "./shared/keyhelp";

function render({ model: m, el, experimental }: RenderProps<GalleryModel>): () => void {
  const invoke = makeInvoke(m, experimental);
  const images = new ImageSource(m, invoke, { keep: 512 });
  const sel = new GridSelection();

  const root = h("div", { class: "curator-widget curator-gallery" });
  const header = h("div", { class: "curator-toolbar" });
  const titleEl = h("span", { class: "curator-gallery-title" });
  const countEl = h("span", { class: "curator-status" });
  const clearBtn = h("button", { onclick: () => { sel.clear(); sync(); paint(); } }, "Clear selection");
  const keys = keyHelp("Gallery keys (click a chip first)", GALLERY_KEYS);
  const helpBtn = h("button", { title: "keyboard shortcuts (?)", "aria-label": "keyboard help", onclick: () => keys.toggle() }, "?");
  header.append(titleEl, countEl, clearBtn, helpBtn);
  const viewport = h("div", { class: "curator-gallery-viewport", tabindex: 0 });
  const spacer = h("div", { class: "curator-gallery-spacer" });
  viewport.appendChild(spacer);
  const err = errorBar(() => m.get("error"));
  root.append(header, viewport, keys.el, err.el);
  el.appendChild(root);

  let items: Uint32Array = new Uint32Array(0);
  let scores: Float32Array | null = null;
  let captions: string[] = [];
  const cells = new Map<number, HTMLElement>();
  let lastSent: Uint32Array | null = null;

  const thumb = () => Number(m.get("thumb_size")) || 128;

  function readItems(): void {
    items = (decodeArray(m.get("ids")) as Uint32Array | null) ?? new Uint32Array(0);
    scores = decodeArray(m.get("scores")) as Float32Array | null;
    if (scores && scores.length !== items.length) scores = null;
    captions = m.get("captions") || [];
    for (const c of cells.values()) c.remove();
    cells.clear();
    readSelection();
  }

  function readSelection(): void {
    const ids = decodeArray(m.get("selection")) ?? new Uint32Array(0);
    sel.setIds(items, ids);
  }

  function sync(): void {
    const ids = sel.ids(items);
    lastSent = ids;
    m.set("selection", encodeArray(ids));
    m.save_changes();
  }

  function cell(pos: number): HTMLElement {
    const id = items[pos];
    const img = h("img", { class: "curator-gallery-img", alt: `chip ${id}`, draggable: "false" }) as HTMLImageElement;
    const cap = captions[pos] ?? "";
    const score = scores ? formatScore(scores[pos]) : "";
    const meta = h("div", { class: "curator-gallery-meta" },
      h("span", { class: "curator-gallery-id" }, `#${id}`),
      cap ? h("span", { class: "curator-gallery-label", title: cap }, cap) : null,
      score ? h("span", { class: "curator-gallery-score" }, score) : null);
    const c = h("div", { class: "curator-gallery-cell", "data-pos": pos, "data-chip-id": id, title: `chip ${id}` }, img, meta);
    images.image(id, thumb()).then(
      (loaded) => {
        img.src = loaded.src;
        c.dataset.loaded = "1";
        root.dataset.loaded = String(images.loaded);
      },
      () => c.classList.add("curator-gallery-broken"),
    );
    return c;
  }

  function paint(): void {
    const width = viewport.clientWidth || el.clientWidth || 800;
    const lay = gridLayout(width, items.length, thumb());
    spacer.style.height = `${lay.totalHeight}px`;
    const [start, end] = visibleRange(viewport.scrollTop, viewport.clientHeight || 400, lay, items.length);
    for (const [pos, c] of cells) {
      if (pos < start || pos >= end) {
        c.remove();
        cells.delete(pos);
      }
    }
    for (let pos = start; pos < end; pos++) {
      let c = cells.get(pos);
      if (!c) {
        c = cell(pos);
        cells.set(pos, c);
        spacer.appendChild(c);
      }
      c.style.transform = `translate(${(pos % lay.columns) * lay.cellWidth}px, ${Math.floor(pos / lay.columns) * lay.cellHeight}px)`;
      c.style.width = `${thumb()}px`;
      c.classList.toggle("curator-selected", sel.selected.has(pos));
      c.classList.toggle("curator-cursor", pos === cursor);
      c.setAttribute("aria-selected", sel.selected.has(pos) ? "true" : "false");
    }
    root.dataset.rendered = String(cells.size);
    countEl.textContent = `${formatCount(items.length)} chips · ${formatCount(sel.selected.size)} selected`;
  }

  // keyboard: arrows move a cursor, Space selects (Ctrl/Cmd+Space toggles), Shift+arrows extend
  let cursor = -1;
  viewport.setAttribute("data-lm-suppress-shortcuts", "true");
  viewport.addEventListener("keydown", (ev) => {
    if (helpKey(ev, keys)) return void ev.preventDefault();
    const width = viewport.clientWidth || el.clientWidth || 800;
    const next = moveCursor(ev.key, cursor, gridLayout(width, items.length, thumb()).columns, items.length);
    if (next !== null) {
      cursor = next;
      if (ev.shiftKey) sel.click(cursor, { shift: true });
    } else if (ev.key === " " && cursor >= 0) sel.click(cursor, { toggle: ev.ctrlKey || ev.metaKey });
    else if (ev.key === "Escape") sel.clear();
    else return;
    ev.preventDefault();
    ev.stopPropagation();
    root.dataset.cursor = String(cursor);
    if (next === null || ev.shiftKey) sync();
    paint();
  });

  spacer.addEventListener("click", (ev) => {
    const c = (ev.target as HTMLElement).closest(".curator-gallery-cell") as HTMLElement | null;
    if (!c) return;
    sel.click(Number(c.dataset.pos), { shift: ev.shiftKey, toggle: ev.ctrlKey || ev.metaKey });
    sync();
    paint();
  });
  // shift-click must not select text
  spacer.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) ev.preventDefault();
  });

  let frame = 0;
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => ((frame = 0), paint()));
  };
  viewport.addEventListener("scroll", schedule, { passive: true });
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(schedule) : null;
  ro?.observe(viewport);

  function applyHeight(): void {
    viewport.style.height = m.get("height") || "420px";
  }

  const offs = [
    onChange(m, ["ids", "scores", "captions"], () => { readItems(); paint(); }),
    onChange(m, ["selection"], () => {
      const ids = decodeArray(m.get("selection"));
      if (lastSent && sameContents(ids, lastSent)) return;
      readSelection();
      paint();
    }),
    onChange(m, ["thumb_size"], () => { for (const c of cells.values()) c.remove(); cells.clear(); paint(); }),
    onChange(m, ["title"], () => (titleEl.textContent = m.get("title") || "")),
    onChange(m, ["height"], () => { applyHeight(); schedule(); }),
    onChange(m, ["error"], err.update),
  ];
  titleEl.textContent = m.get("title") || "";
  applyHeight();
  readItems();
  paint();
  requestAnimationFrame(paint); // again once attached and sized

  return () => {
    offs.forEach((off) => off());
    ro?.disconnect();
    images.dispose();
  };
}

export const GALLERY_KEYS: KeyRow[] = [
  ["← → ↑ ↓", "move between chips (Home / End: first / last)"],
  ["Space", "select the chip (Ctrl / ⌘ + Space adds or removes it)"],
  ["Shift + arrows", "extend the selection"],
  ["Esc", "clear the selection"],
  ["?", "show / hide this help"],
];

export default { render };
