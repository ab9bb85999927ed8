// The EmbeddingView legend: a title, then swatches (categories) or a colour bar (scores), and the
// grey points named ("unlabelled (no label yet)"), so a person can read the map without the code.
import { h } from "./shared/dom";

export type LegendItem = [label: string, color: string];
export type ColorKind = "category" | "value";

/** Category swatches, at most `max` of them (the rest are counted). */
function swatches(items: LegendItem[], max: number): HTMLElement[] {
  const rows = items.slice(0, max).map(([label, color]) =>
    h("div", { class: "curator-legend-item" }, h("span", { class: "curator-legend-swatch", style: `background:${color}` }), label),
  );
  if (items.length > max) rows.push(h("div", { class: "curator-legend-more" }, `+ ${items.length - max} more`));
  return rows;
}

/** A continuous colour bar from the stops (low to high), labelled with the first and last value. */
function colorBar(stops: LegendItem[]): HTMLElement {
  const gradient = stops.map(([, c], i) => `${c} ${((100 * i) / Math.max(1, stops.length - 1)).toFixed(0)}%`).join(", ");
  return h(
    "div",
    { class: "curator-legend-bar" },
    h("div", { class: "curator-legend-ramp", style: `background:linear-gradient(to right, ${gradient})` }),
    h("div", { class: "curator-legend-ends" }, h("span", {}, stops[0]?.[0] ?? ""), h("span", {}, stops[stops.length - 1]?.[0] ?? "")),
  );
}

/** Fill `el` with the legend; returns whether there is anything to show. */
export function renderLegend(el: HTMLElement, title: string, kind: ColorKind, items: LegendItem[], missingColor = "#bdbdbd"): boolean {
  const children: HTMLElement[] = [];
  if (title) children.push(h("div", { class: "curator-legend-title" }, title));
  if (kind === "value") {
    const stops = items.filter(([, c]) => c.toLowerCase() !== missingColor);
    const grey = items.filter(([, c]) => c.toLowerCase() === missingColor);
    if (stops.length) children.push(colorBar(stops));
    children.push(...swatches(grey, 1));
  } else {
    children.push(...swatches(items, 24));
  }
  el.replaceChildren(...children);
  el.dataset.kind = kind;
  const any = items.length > 0;
  el.style.display = any ? "" : "none";
  return any;
}
