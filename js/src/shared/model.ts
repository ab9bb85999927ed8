// The slice of the anywidget model/render API the widgets use, plus request-response commands.
import type { AnyModel, Experimental } from "@anywidget/types";

export type Model = AnyModel<Record<string, any>>;
export type Invoke = <T>(name: string, msg?: unknown, options?: { buffers?: DataView[]; timeout?: number }) => Promise<[T, DataView[]]>;

let nextId = 0;

/**
 * Request-response over the comm, speaking anywidget's command protocol (Python side:
 * @anywidget.experimental.command). Uses the front end's own `invoke` when it has one.
 */
export function makeInvoke(model: Model, experimental?: Partial<Experimental>): Invoke {
  if (experimental && typeof experimental.invoke === "function") {
    const inv = experimental.invoke;
    return (name, msg, options) => withTimeout(inv(name, msg, { buffers: options?.buffers }) as any, options?.timeout, name);
  }
  return <T>(name: string, msg?: unknown, options?: { buffers?: DataView[]; timeout?: number }) => {
    const id = `curator-${Date.now()}-${nextId++}`;
    const p = new Promise<[T, DataView[]]>((resolve) => {
      const handler = (m: any, buffers: DataView[]) => {
        if (m && m.kind === "anywidget-command-response" && m.id === id) {
          model.off("msg:custom", handler);
          resolve([m.response as T, buffers ?? []]);
        }
      };
      model.on("msg:custom", handler);
      model.send({ id, kind: "anywidget-command", name, msg }, undefined, options?.buffers ?? []);
    });
    return withTimeout(p, options?.timeout, name);
  };
}

function withTimeout<T>(p: Promise<T>, ms: number | undefined, name: string): Promise<T> {
  if (!ms) return p;
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`curator: the kernel did not answer '${name}' within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** Subscribe to trait changes; returns an unsubscribe function for the render cleanup. */
export function onChange(model: Model, names: string[], cb: () => void): () => void {
  const events = names.map((n) => `change:${n}`);
  for (const e of events) model.on(e, cb);
  return () => {
    for (const e of events) model.off(e, cb);
  };
}

/** Custom messages from Python, filtered by `type`. */
export function onMessage(model: Model, type: string, cb: (msg: any, buffers: DataView[]) => void): () => void {
  const handler = (msg: any, buffers: DataView[]) => {
    if (msg && msg.type === type) cb(msg, buffers);
  };
  model.on("msg:custom", handler);
  return () => model.off("msg:custom", handler);
}
