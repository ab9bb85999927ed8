// Chip images on demand: from the Jupyter server extension (plain <img> URLs, HTTP-cached) or,
// where there is no such server (VS Code, Colab, remote kernels), from the kernel over the comm.
import type { Thumbs } from "../models";
import type { Invoke, Model } from "./model";

/** Base URL of the Jupyter server hosting this page, or null outside Jupyter's own front ends. */
export function jupyterBaseUrl(doc: Document = document): string | null {
  const el = doc.getElementById("jupyter-config-data");
  if (!el || !el.textContent) return null;
  try {
    const cfg = JSON.parse(el.textContent);
    const base = typeof cfg.baseUrl === "string" ? cfg.baseUrl : "/";
    return base.endsWith("/") ? base : base + "/";
  } catch {
    return null;
  }
}

export interface ImageSourceOptions {
  /** name of the trait holding the server path prefix, e.g. "curator/thumbs/<ws>" ('' = use the comm) */
  urlTrait?: keyof Thumbs;
  /** how many decoded images to keep (LRU) */
  keep?: number;
  /** injected for tests */
  baseUrl?: string | null;
}

export class ImageSource {
  private server: boolean;
  private readonly base: string | null;
  private readonly urlTrait: keyof Thumbs;
  private readonly keep: number;
  private blobs = new Map<string, string>();
  private decoded = new Map<string, Promise<HTMLImageElement>>();
  loaded = 0;
  failed = 0;

  constructor(private model: Model<Thumbs>, private invoke: Invoke, opts: ImageSourceOptions = {}) {
    this.urlTrait = opts.urlTrait ?? "thumb_url";
    this.keep = opts.keep ?? 256;
    this.base = opts.baseUrl !== undefined ? opts.baseUrl : jupyterBaseUrl();
    this.server = this.base !== null;
  }

  /** Whether images come from HTTP (true) or through the kernel (false). */
  get viaServer(): boolean {
    return this.server && !!this.model.get(this.urlTrait) && this.base !== null;
  }

  serverUrl(id: number, size: number): string {
    return `${this.base}${this.model.get(this.urlTrait)}/${id}?size=${size}`;
  }

  /** A URL for <img src>: HTTP when possible, else a blob URL of bytes fetched over the comm. */
  async url(id: number, size: number): Promise<string> {
    if (this.viaServer) return this.serverUrl(id, size);
    const key = `${id}@${size}`;
    const hit = this.blobs.get(key);
    if (hit) return hit;
    const [reply, buffers] = await this.invoke<{ ok: boolean; error?: string; mime?: string }>("thumb", { id, size }, { timeout: 30000 });
    if (!reply.ok || !buffers.length) throw new Error(reply.error || `no image for chip ${id}`);
    const url = URL.createObjectURL(bufferBlob(buffers[0], reply.mime || "image/jpeg"));
    this.blobs.set(key, url);
    this.trim(this.blobs, (u) => URL.revokeObjectURL(u));
    return url;
  }

  /** Load and decode an image (kept in an LRU) so showing it later costs no network or decode time. */
  image(id: number, size: number): Promise<HTMLImageElement> {
    const key = `${id}@${size}`;
    const hit = this.decoded.get(key);
    if (hit) {
      this.decoded.delete(key);
      this.decoded.set(key, hit);
      return hit;
    }
    const p = this.load(id, size).catch((e) => {
      this.decoded.delete(key);
      throw e;
    });
    this.decoded.set(key, p);
    this.trim(this.decoded);
    return p;
  }

  private async load(id: number, size: number): Promise<HTMLImageElement> {
    const img = new Image();
    img.decoding = "async";
    img.alt = `chip ${id}`;
    img.dataset.chipId = String(id);
    try {
      img.src = await this.url(id, size);
      await decodeImage(img);
    } catch (e) {
      if (this.viaServer) {
        // the server extension is not answering (disabled, other root): fall back to the comm
        this.server = false;
        img.src = await this.url(id, size);
        await decodeImage(img);
      } else {
        this.failed++;
        throw e;
      }
    }
    this.loaded++;
    return img;
  }

  /** Start loading ids in order (fire and forget); returns when all settled. */
  prefetch(ids: number[], size: number): Promise<unknown> {
    return Promise.allSettled(ids.map((id) => this.image(id, size)));
  }

  private trim<V>(map: Map<string, V>, drop?: (v: V) => void): void {
    while (map.size > this.keep) {
      const first = map.keys().next().value as string;
      const v = map.get(first)!;
      map.delete(first);
      drop?.(v);
    }
  }

  dispose(): void {
    for (const u of this.blobs.values()) URL.revokeObjectURL(u);
    this.blobs.clear();
    this.decoded.clear();
  }
}

/** A Blob of the bytes of a comm buffer (DataView over the message). */
export function bufferBlob(view: DataView, mime: string): Blob {
  const bytes = new Uint8Array(view.byteLength);
  bytes.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return new Blob([bytes], { type: mime });
}

/** img.decode() where supported, else wait for load/error. */
export function decodeImage(img: HTMLImageElement): Promise<void> {
  if (typeof img.decode === "function") {
    return img.decode().catch(() => waitLoad(img));
  }
  return waitLoad(img);
}

function waitLoad(img: HTMLImageElement): Promise<void> {
  return new Promise((resolve, reject) => {
    if (img.complete && img.naturalWidth > 0) return resolve();
    img.addEventListener("load", () => resolve(), { once: true });
    img.addEventListener("error", () => reject(new Error(`image failed: ${img.src}`)), { once: true });
  });
}
