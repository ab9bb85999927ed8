import { beforeAll, describe, expect, it } from "vitest";
import { ImageSource, jupyterBaseUrl } from "../src/shared/images";
import { makeInvoke, onMessage } from "../src/shared/model";
import { MockModel, stubImages } from "./mock_model";

describe("commands over the comm", () => {
  it("speaks anywidget's command protocol when the front end has no invoke", async () => {
    const m = new MockModel();
    const invoke = makeInvoke(m as any, {});
    const p = invoke<{ ok: boolean }>("thumb", { id: 3 });
    const req = m.sent[0].content;
    expect(req).toMatchObject({ kind: "anywidget-command", name: "thumb", msg: { id: 3 } });
    m.receive({ kind: "anywidget-command-response", id: "other", response: { ok: false } });
    m.receive({ kind: "anywidget-command-response", id: req.id, response: { ok: true } }, [new DataView(new ArrayBuffer(2))]);
    const [reply, buffers] = await p;
    expect(reply.ok).toBe(true);
    expect(buffers.length).toBe(1);
    expect(m.listeners("msg:custom")).toBe(0);
  });

  it("times out with a message naming the command", async () => {
    const m = new MockModel();
    await expect(makeInvoke(m as any)("slow", {}, { timeout: 20 })).rejects.toThrow(/did not answer 'slow' within 20 ms/);
  });

  it("filters custom messages by type", () => {
    const m = new MockModel();
    const got: any[] = [];
    const off = onMessage(m as any, "zoom", (msg) => got.push(msg));
    m.receive({ type: "other" });
    m.receive({ type: "zoom", indices: [1] });
    off();
    m.receive({ type: "zoom" });
    expect(got).toEqual([{ type: "zoom", indices: [1] }]);
  });
});

describe("images", () => {
  beforeAll(stubImages);

  it("reads the base URL JupyterLab puts in the page", () => {
    expect(jupyterBaseUrl()).toBeNull();
    const cfg = document.createElement("script");
    cfg.id = "jupyter-config-data";
    cfg.type = "application/json";
    cfg.textContent = JSON.stringify({ baseUrl: "/user/me" });
    document.body.appendChild(cfg);
    expect(jupyterBaseUrl()).toBe("/user/me/");
    cfg.remove();
  });

  it("uses plain HTTP URLs with a server and blob URLs over the comm without one", async () => {
    const m = new MockModel({ thumb_url: "curator/thumbs/projects/ws1" });
    const calls: any[] = [];
    const invoke: any = async (name: string, msg: any) => {
      calls.push([name, msg]);
      return [{ ok: true, mime: "image/jpeg" }, [new DataView(new Uint8Array([255, 216]).buffer)]];
    };
    const http = new ImageSource(m as any, invoke, { baseUrl: "/" });
    expect(await http.url(7, 128)).toBe("/curator/thumbs/projects/ws1/7?size=128");
    expect(calls.length).toBe(0);
    const comm = new ImageSource(m as any, invoke, { baseUrl: null });
    const u = await comm.url(7, 128);
    expect(u.startsWith("blob:")).toBe(true);
    expect(await comm.url(7, 128)).toBe(u); // cached
    expect(calls).toEqual([["thumb", { id: 7, size: 128 }]]);
    const img = await comm.image(8, 64);
    expect(img.dataset.chipId).toBe("8");
    expect(comm.loaded).toBe(1);
  });

  it("reports a chip the kernel cannot serve", async () => {
    const m = new MockModel({ thumb_url: "" });
    const invoke: any = async () => [{ ok: false, error: "chip id 99 is not in this workspace" }, []];
    const src = new ImageSource(m as any, invoke, { baseUrl: "/" });
    await expect(src.image(99, 64)).rejects.toThrow(/chip id 99/);
    expect(src.failed).toBe(1);
  });
});

describe("bundles (issue 16 bug 11)", () => {
  it("export only a default { render }: a named render export makes anywidget warn on every load", async () => {
    for (const name of ["embedding_view", "gallery", "region_picker", "swipe_labeler"]) {
      const mod: Record<string, unknown> = await import(`../src/${name}.ts`);
      expect(typeof (mod.default as { render?: unknown }).render, name).toBe("function");
      expect(mod.render, name).toBeUndefined();
    }
  });
});
