// Binary ndarray traits: the JS twin of curator_widgets/widgets/serializers.py.
// Wire format: {dtype, shape, view} or {dtype, shape, chunks: [...]}, little-endian, C order.

export type DType = "float32" | "float64" | "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32";
export type TypedArray =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array;

type BufferLike = DataView | ArrayBuffer | ArrayBufferView;

export interface WireArray {
  dtype: DType;
  shape: number[];
  view?: BufferLike;
  chunks?: BufferLike[];
}

const CTORS: Record<DType, { new (n: number): TypedArray; BYTES_PER_ELEMENT: number }> = {
  float32: Float32Array,
  float64: Float64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
};

/** Largest buffer in one browser->kernel message: tornado refuses messages over 10 MiB. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

export function dtypeOf(arr: TypedArray): DType {
  if (arr instanceof Float32Array) return "float32";
  if (arr instanceof Float64Array) return "float64";
  if (arr instanceof Uint8Array) return "uint8";
  if (arr instanceof Int8Array) return "int8";
  if (arr instanceof Uint16Array) return "uint16";
  if (arr instanceof Int16Array) return "int16";
  if (arr instanceof Uint32Array) return "uint32";
  return "int32";
}

function bytesOf(b: BufferLike): Uint8Array {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Decode a wire array into one typed array (zero-copy when the buffer is aligned). */
export function decodeArray(value: WireArray | null | undefined): TypedArray | null {
  if (value == null) return null;
  const Ctor = CTORS[value.dtype];
  if (!Ctor) throw new Error(`curator: unsupported dtype ${value.dtype}`);
  const n = elementCount(value.shape);
  const parts = value.chunks ?? (value.view ? [value.view] : []);
  const total = parts.reduce((a, p) => a + bytesOf(p).byteLength, 0);
  if (total !== n * Ctor.BYTES_PER_ELEMENT) {
    throw new Error(`curator: ${value.dtype}[${value.shape}] needs ${n * Ctor.BYTES_PER_ELEMENT} bytes, got ${total}`);
  }
  if (parts.length === 1) {
    const u8 = bytesOf(parts[0]);
    if (u8.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) {
      return new (Ctor as any)(u8.buffer, u8.byteOffset, n) as TypedArray;
    }
  }
  const out = new Ctor(n);
  const dst = new Uint8Array(out.buffer);
  let off = 0;
  for (const p of parts) {
    const u8 = bytesOf(p);
    dst.set(u8, off);
    off += u8.byteLength;
  }
  return out;
}

/** Encode a typed array for a trait (one buffer: only for small arrays, see chunkMessages). */
export function encodeArray(arr: TypedArray, shape?: number[]): WireArray {
  return { dtype: dtypeOf(arr), shape: shape ?? [arr.length], view: new DataView(arr.buffer, arr.byteOffset, arr.byteLength) };
}

export interface ChunkHeader {
  seq: number;
  index: number;
  count: number;
  dtype: DType;
  shape: number[];
}

/** Split an array into messages of at most `chunkBytes` each (whole elements), for model.send. */
export function chunkMessages(arr: TypedArray, seq: number, chunkBytes = CHUNK_BYTES): Array<[ChunkHeader, ArrayBuffer]> {
  const per = Math.max(1, Math.floor(chunkBytes / arr.BYTES_PER_ELEMENT));
  const count = Math.max(1, Math.ceil(arr.length / per));
  const out: Array<[ChunkHeader, ArrayBuffer]> = [];
  for (let i = 0; i < count; i++) {
    const part = arr.slice(i * per, Math.min(arr.length, (i + 1) * per));
    out.push([{ seq, index: i, count, dtype: dtypeOf(arr), shape: [arr.length] }, part.buffer as ArrayBuffer]);
  }
  return out;
}

/** Reassemble chunk messages (used by tests and by any kernel->browser chunked stream). */
export class ChunkAssembler {
  private seq = -1;
  private parts = new Map<number, Uint8Array>();
  private header: ChunkHeader | null = null;

  add(header: ChunkHeader, buffer: BufferLike): TypedArray | null {
    if (header.seq < this.seq) return null;
    if (header.seq !== this.seq) {
      this.seq = header.seq;
      this.parts = new Map();
      this.header = header;
    }
    this.parts.set(header.index, bytesOf(buffer));
    if (this.parts.size < header.count) return null;
    const chunks = Array.from({ length: header.count }, (_, i) => this.parts.get(i)!);
    this.parts = new Map();
    return decodeArray({ dtype: this.header!.dtype, shape: this.header!.shape, chunks });
  }
}

/** Same contents? (cheap equality used to ignore echoes of our own selection). */
export function sameContents(a: ArrayLike<number> | null, b: ArrayLike<number> | null): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
