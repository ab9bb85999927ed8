// The slice of the anywidget model/render API the widgets use, plus request-response commands.
import type { AnyModel, Experimental } from "@anywidget/types";

/** A widget's model, typed by its synced traits (the interfaces in ../models.ts). */
export type Model<T extends Record<string, any>> = AnyModel<T>;
/** What the shared helpers need of any widget's model: change events and custom messages. */
export type Comm = Pick<AnyModel, "on" | "off" | "send">;
export type Invoke = <T>(name: string, msg?: unknown, options?: { buffers?: DataView[]; timeout?: number }) => Promise<[T, DataView[]]>;

let nextId = 0;

/**
 * Request-response over the comm, speaking anywidget's command protocol (Python side:
 * @anywidget.experimental.command). Uses the front end's own `invoke` when it has one.
 */
export function makeInvoke(model: Comm, experimental?: Partial<Experimental>): Invoke {
  if (experimental && typeof experimental.invoke === "function") {
    const inv = experimental.invoke;
    return <T>(name: string, msg?: unknown, options?: { buffers?: DataView[]; timeout?: number }) =>
      withTimeout(inv<T>(name, msg, { buffers: options?.buffers }), options?.timeout, name);
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
export function onChange<T extends Record<string, any>>(model: Model<T>, names: Array<keyof T & string>, cb: () => void): () => void {
  const events = names.map((n) => `change:${n}`);
  for (const e of events) model.on(e, cb);
  return () => {
    for (const e of events) model.off(e, cb);
  };
}

/** Custom messages from Python, filtered by `type`. */
export function onMessage(model: Comm, type: string, cb: (msg: any, buffers: DataView[]) => void): () => void {
  const handler = (msg: any, buffers: DataView[]) => {
    if (msg && msg.type === type) cb(msg, buffers);
  };
  model.on("msg:custom", handler);
  return () => model.off("msg:custom", handler);
}
