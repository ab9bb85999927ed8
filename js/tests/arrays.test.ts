import { describe, expect, it } from "vitest";
import { ChunkAssembler, chunkMessages, decodeArray, encodeArray, sameContents } from "../src/shared/arrays";

describe("binary arrays (twin of serializers.py)", () => {
  it("decodes a single view zero-copy when aligned", () => {
    const src = new Float32Array([1, 2, 3, 4, 5, 6]);
    const out = decodeArray({ dtype: "float32", shape: [3, 2], view: new DataView(src.buffer) })!;
    expect(out).toBeInstanceOf(Float32Array);
    expect(Array.from(out)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.buffer).toBe(src.buffer);
  });

  it("copies a misaligned view and reassembles chunks", () => {
    const bytes = new Uint8Array(1 + 8);
    new DataView(bytes.buffer).setUint32(1, 7, true);
    new DataView(bytes.buffer).setUint32(5, 9, true);
    const out = decodeArray({ dtype: "uint32", shape: [2], view: new DataView(bytes.buffer, 1, 8) })!;
    expect(Array.from(out)).toEqual([7, 9]);
    const a = new Uint8Array([1, 2]);
    const b = new Uint8Array([3]);
    expect(Array.from(decodeArray({ dtype: "uint8", shape: [3], chunks: [new DataView(a.buffer), new DataView(b.buffer)] })!)).toEqual([1, 2, 3]);
  });

  it("refuses a byte count that does not match the shape", () => {
    expect(() => decodeArray({ dtype: "float32", shape: [3], view: new DataView(new ArrayBuffer(8)) })).toThrow(/needs 12 bytes, got 8/);
    expect(() => decodeArray({ dtype: "int64" as any, shape: [1], view: new DataView(new ArrayBuffer(8)) })).toThrow(/unsupported dtype/);
    expect(decodeArray(null)).toBeNull();
  });

  it("encodes for a trait", () => {
    const w = encodeArray(new Uint32Array([5, 6]));
    expect(w.dtype).toBe("uint32");
    expect(w.shape).toEqual([2]);
    expect((w.view as DataView).byteLength).toBe(8);
  });

  it("chunks selections below the websocket limit and reassembles them in any order", () => {
    const sel = Uint32Array.from({ length: 100_000 }, (_, i) => i * 3);
    const msgs = chunkMessages(sel, 4, 64 * 1024);
    expect(msgs.length).toBe(Math.ceil((sel.length * 4) / (64 * 1024)));
    for (const [h, buf] of msgs) {
      expect(buf.byteLength).toBeLessThanOrEqual(64 * 1024);
      expect(h).toMatchObject({ seq: 4, count: msgs.length, dtype: "uint32", shape: [100_000] });
    }
    const asm = new ChunkAssembler();
    const shuffled = [...msgs].reverse();
    let out: any = null;
    for (const [h, buf] of shuffled) out = asm.add(h, new DataView(buf)) ?? out;
    expect(sameContents(out, sel)).toBe(true);
    // an older transfer arriving late is ignored
    expect(asm.add({ ...msgs[0][0], seq: 1 }, new DataView(msgs[0][1]))).toBeNull();
  });

  it("compares contents cheaply", () => {
    expect(sameContents(new Uint32Array([1, 2]), [1, 2])).toBe(true);
    expect(sameContents(new Uint32Array([1, 2]), [1, 3])).toBe(false);
    expect(sameContents(null, [1])).toBe(false);
  });
});
