// JupyterLab theme colours for what CSS cannot reach (the WebGL clear colour): read the --jp-*
// variables where the widget sits, so light and dark themes both look native.

export type RGBA = [number, number, number, number];

/** "#rgb", "#rrggbb", "rgb(r, g, b)" or "rgba(r, g, b, a)" as 0..1 floats; null when unreadable. */
export function parseColor(text: string): RGBA | null {
  const s = text.trim().toLowerCase();
  let m = /^#([0-9a-f]{3})$/.exec(s);
  if (m) return [0, 1, 2].map((i) => parseInt(m![1][i] + m![1][i], 16) / 255).concat(1) as RGBA;
  m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/.exec(s);
  if (m) {
    const hex = m[1];
    const a = m[2] ? parseInt(m[2], 16) / 255 : 1;
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).concat(a) as RGBA;
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/.exec(s);
  if (m) {
    const alpha = m[4] === undefined ? 1 : m[4].endsWith("%") ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
    return [Number(m[1]) / 255, Number(m[2]) / 255, Number(m[3]) / 255, alpha];
  }
  return null;
}

/** A --jp-* colour as seen from `el` (its theme), or `fallback` outside JupyterLab. */
export function themeColor(el: Element, variable: string, fallback: RGBA): RGBA {
  const value = getComputedStyle(el).getPropertyValue(variable);
  return (value && parseColor(value)) || fallback;
}

/** Whether the page is in a dark JupyterLab theme (the body says so), for the docs and tests. */
export function isDarkTheme(doc: Document = document): boolean {
  return doc.body?.dataset?.jpThemeLight === "false";
}
