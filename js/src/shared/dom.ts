// Tiny DOM helpers (no framework: each widget is a few elements and event listeners).

type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Array<Node | string | null | undefined>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, "").toLowerCase(), v as EventListener);
    else if (k === "class") el.className = String(v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** Shows an error from Python (`error` trait) in a red bar; hidden when empty. */
export function errorBar(getText: () => string): { el: HTMLElement; update: () => void } {
  const el = h("div", { class: "curator-error", role: "alert" });
  const update = () => {
    const t = getText();
    el.textContent = t;
    el.style.display = t ? "" : "none";
  };
  update();
  return { el, update };
}

/** Message shown when a front end lacks what a widget needs (WebGL, a server). */
export function notice(text: string): HTMLElement {
  return h("div", { class: "curator-notice", role: "status" }, text);
}

export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}
