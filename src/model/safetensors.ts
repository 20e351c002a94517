/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors):
 * `u64 little-endian header length N | N bytes of JSON header | data`, the header
 * mapping each name to `{dtype, shape, data_offsets: [begin, end]}` relative to the
 * data section, plus an optional `__metadata__` string map.
 *
 * The reader validates the whole header up front (so a truncated download fails at
 * open with the file name and the first bad entry) and reads each tensor with one
 * positioned read straight into a fresh Float32Array: no whole-file buffer (a 650M
 * checkpoint is 2.6 GB, past Node's 2 GiB readFile limit) and no alignment copies.
 * F32 is read as is; F16 and BF16 are widened to float32. Other dtypes can be listed
 * but not read as floats (ESM checkpoints hold an unused int64 `position_ids`).
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { endianness } from "node:os";
import { WeightsError } from "../errors";
import { ownedTemporary, removeDeadTemporariesOf, trackTemporary } from "../util/temporaries";

export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Dtypes `readFloat32` converts. */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ["F32", "F16", "BF16"];

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/** The header JSON is capped like the Rust implementation does (100 MB). */
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN = endianness() === "LE";

function fail(file: string, problem: string, context: Record<string, unknown> = {}): never {
  throw new WeightsError(`${file}: ${problem}`, { file, ...context });
}

/** An open safetensors file; `close()` it (or use `readSafetensors`). */
export class SafetensorsFile {
  readonly path: string;
  readonly size: number;
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private fd: number | undefined;

  private constructor(
    path: string,
    fd: number,
    size: number,
    metadata: Record<string, string>,
    tensors: Map<string, TensorInfo>,
  ) {
    this.path = path;
    this.fd = fd;
    this.size = size;
    this.metadata = metadata;
    this.tensors = tensors;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new WeightsError(
        `${path}: cannot open (${(e as Error).message})`,
        { file: path },
        {
          cause: e,
        },
      );
    }
    try {
      return SafetensorsFile.parse(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private static parse(path: string, fd: number): SafetensorsFile {
    const size = fstatSync(fd).size;
    if (size < 8) {
      fail(path, `truncated file: ${size} bytes, shorter than the 8-byte header length`, {
        truncated: true,
        size,
      });
    }
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER) {
      fail(
        path,
        `header length ${headerLen} is implausible (over ${MAX_HEADER} bytes): not a safetensors file?`,
      );
    }
    if (8 + headerLen > size) {
      fail(
        path,
        `truncated file: the header needs ${8 + headerLen} bytes but the file has ${size}`,
        { headerLen, size, truncated: true },
      );
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString("utf8"));
    } catch (e) {
      fail(path, `the header is not valid JSON (${(e as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      fail(path, "the header is not a JSON object");
    }
    const dataStart = 8 + headerLen;
    const metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") {
        Object.assign(metadata, raw as Record<string, string>);
        continue;
      }
      const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = t.dtype as SafetensorsDtype;
      if (!(typeof dtype === "string" && dtype in DTYPE_BYTES)) {
        fail(
          path,
          `tensor "${name}" has unknown dtype ${JSON.stringify(t.dtype)}; known: ${Object.keys(DTYPE_BYTES).join(", ")}`,
        );
      }
      const shape = t.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
        fail(path, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
      }
      const off = t.data_offsets;
      if (
        !Array.isArray(off) ||
        off.length !== 2 ||
        !off.every((o) => Number.isInteger(o) && o >= 0) ||
        off[1] < off[0]
      ) {
        fail(path, `tensor "${name}" has invalid data_offsets ${JSON.stringify(off)}`);
      }
      const numel = (shape as number[]).reduce((a, b) => a * b, 1);
      const bytes = numel * DTYPE_BYTES[dtype];
      if (off[1] - off[0] !== bytes) {
        fail(
          path,
          `tensor "${name}" (${dtype} ${JSON.stringify(shape)}) needs ${bytes} bytes but data_offsets ${JSON.stringify(off)} span ${off[1] - off[0]}`,
        );
      }
      const begin = dataStart + off[0];
      const end = dataStart + off[1];
      if (end > size) {
        fail(
          path,
          `truncated file: tensor "${name}" ends at byte ${end} but the file has ${size} bytes (data_offsets ${JSON.stringify(off)} past the end)`,
          { tensor: name, size, end, truncated: true },
        );
      }
      tensors.set(name, { dtype, shape: shape as number[], begin, end });
    }
    return new SafetensorsFile(path, fd, size, metadata, tensors);
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  /** The tensor's values as float32 (F32, F16, BF16). */
  readFloat32(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) fail(this.path, `no tensor named "${name}"`);
    if (this.fd === undefined) fail(this.path, "the file is closed");
    const numel = (info.end - info.begin) / DTYPE_BYTES[info.dtype];
    if (info.dtype === "F32") {
      const out = new Float32Array(numel);
      this.readInto(new Uint8Array(out.buffer), info.begin);
      if (!LITTLE_ENDIAN) swapInPlace(new Uint8Array(out.buffer), 4);
      return out;
    }
    if (info.dtype === "F16" || info.dtype === "BF16") {
      const raw = new Uint8Array(numel * 2);
      this.readInto(raw, info.begin);
      const out = new Float32Array(numel);
      const view = new DataView(raw.buffer);
      if (info.dtype === "F16") {
        for (let i = 0; i < numel; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      } else {
        const bits = new Uint32Array(out.buffer);
        for (let i = 0; i < numel; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      }
      return out;
    }
    fail(
      this.path,
      `tensor "${name}" is ${info.dtype}; only ${FLOAT_DTYPES.join(", ")} can be loaded as weights`,
      {
        tensor: name,
        dtype: info.dtype,
      },
    );
  }

  private readInto(target: Uint8Array, position: number): void {
    let done = 0;
    while (done < target.length) {
      const n = readSync(this.fd!, target, done, target.length - done, position + done);
      if (n === 0) fail(this.path, `truncated file: unexpected end at byte ${position + done}`);
      done += n;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function swapInPlace(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/** IEEE 754 binary16 bits to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Read every float tensor of a file; `keys` limits the set. */
export function readSafetensors(
  path: string,
  keys?: string[],
): {
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  metadata: Record<string, string>;
} {
  const f = SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const k of keys ?? f.keys()) {
      tensors.set(k, { shape: f.tensors.get(k)?.shape ?? [], data: f.readFloat32(k) });
    }
    return { tensors, metadata: f.metadata };
  } finally {
    f.close();
  }
}

export interface TensorToWrite {
  shape: number[];
  /** The values, or a function producing them just before they are written. */
  data: Float32Array | (() => Float32Array);
}

/**
 * Write float32 tensors (in the given order) with `{"format": "pt"}` metadata, the
 * header padded with spaces to 8 bytes as the reference writer does. Written to a
 * temporary name and renamed, so a crash never leaves a half file under the real name.
 */
export function writeSafetensors(
  path: string,
  tensors: Iterable<[string, TensorToWrite]> | Map<string, TensorToWrite>,
  metadata: Record<string, string> = { format: "pt" },
): void {
  const entries = [...tensors];
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of entries) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + numel * 4] };
    offset += numel * 4;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += " ".repeat(pad);
  const headerBytes = Buffer.from(json, "utf8");
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBytes.length));
  removeDeadTemporariesOf(path);
  const tmp = ownedTemporary(path);
  const untrack = trackTemporary(tmp);
  const fd = openSync(tmp, "w");
  try {
    writeAll(fd, lenBuf);
    writeAll(fd, headerBytes);
    for (const [name, t] of entries) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (numel !== data.length) {
        throw new WeightsError(
          `${path}: tensor "${name}" has ${data.length} values but shape ${JSON.stringify(t.shape)} needs ${numel}`,
          { file: path, tensor: name },
        );
      }
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (LITTLE_ENDIAN) writeAll(fd, bytes);
      else {
        const copy = Uint8Array.from(bytes);
        swapInPlace(copy, 4);
        writeAll(fd, copy);
      }
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    untrack();
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  untrack();
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}
