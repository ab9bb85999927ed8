// The `?` panel every widget shows over itself: the keys it answers to, one row each.
import { h } from "./dom";

export type KeyRow = [keys: string, what: string];

export interface KeyHelp {
  el: HTMLElement;
  /** Show or hide (toggle without `show`); returns whether it is visible now. */
  toggle(show?: boolean): boolean;
  setRows(rows: KeyRow[]): void;
}

export function keyHelp(title: string, rows: KeyRow[]): KeyHelp {
  const el = h("div", { class: "curator-keyhelp", role: "dialog", "aria-label": "keyboard shortcuts", hidden: true });
  const setRows = (r: KeyRow[]) =>
    el.replaceChildren(
      h("div", { class: "curator-keyhelp-title" }, title),
      ...r.map(([k, what]) => h("div", { class: "curator-keyhelp-row" }, h("kbd", {}, k), what)),
    );
  setRows(rows);
  return {
    el,
    setRows,
    toggle(show?: boolean) {
      el.hidden = show === undefined ? !el.hidden : !show;
      return !el.hidden;
    },
  };
}

/** `?` toggles the help, Esc closes it; true when the key was the help's (the caller stops it). */
export function helpKey(ev: { key: string }, help: KeyHelp): boolean {
  if (ev.key === "?") {
    help.toggle();
    return true;
  }
  if (ev.key === "Escape" && !help.el.hidden) {
    help.toggle(false);
    return true;
  }
  return false;
}
