/**
 * A streaming Parquet writer for the few column types embeddings need: the file is
 * written row group by row group as rows arrive, so memory holds one row group, never
 * the whole table.
 *
 * Why not nodejs-polars: its `writeParquet` writes one whole file per call (no row
 * groups appended to an open file) and `sinkParquet` streams only from a scan of files
 * already on disk, so it would need the whole table in memory, or every row written
 * twice. The format subset needed here is small: PLAIN-encoded values in version-1
 * data pages, RLE repetition/definition levels for lists, no compression (float32
 * embeddings hardly compress), and the footer in Thrift's compact protocol
 * (parquet-format's parquet.thrift gives the field numbers used below).
 *
 * Column kinds and their Parquet schema (all REQUIRED, nothing nullable):
 *   "string"          binary (STRING)
 *   "int32"           int32
 *   "bool"            boolean
 *   "float-list"      group (LIST) { repeated group list { required float element } }
 *   "float-list-list" a LIST of such LISTs: [outer][inner] float32
 * pyarrow (pandas) reads the lists as `list<element: float not null>`, polars as
 * `List(Float32)` / `List(List(Float32))`.
 */
import type { FileHandle } from "node:fs/promises";

export type ColumnKind = "string" | "int32" | "bool" | "float-list" | "float-list-list";

export interface ColumnSpec {
  name: string;
  kind: ColumnKind;
}

/** One row's nested lists, flattened: `values.length / width` inner lists of `width` floats. */
export interface FloatMatrix {
  values: Float32Array;
  width: number;
}

export type ColumnValues = string[] | number[] | boolean[] | Float32Array[] | FloatMatrix[];

/** Where bytes go, in order. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

/** A ByteSink on an open file handle. */
export function fileSink(handle: FileHandle): ByteSink {
  return {
    async write(bytes) {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
        done += bytesWritten;
      }
    },
  };
}

// Parquet enums (parquet.thrift).
const TYPE = { BOOLEAN: 0, INT32: 1, FLOAT: 4, BYTE_ARRAY: 6 } as const;
const REPETITION = { REQUIRED: 0, REPEATED: 2 } as const;
const CONVERTED = { UTF8: 0, LIST: 3 } as const;
const ENCODING = { PLAIN: 0, RLE: 3 } as const;
const DATA_PAGE = 0;
const UNCOMPRESSED = 0;
const MAGIC = Buffer.from("PAR1", "ascii");
/** Pages are cut at row boundaries once they pass this many bytes. */
const PAGE_BYTES = 1 << 20;

// ---- Thrift compact protocol (only what the footer and page headers use) ----

const T = { TRUE: 1, FALSE: 2, I32: 5, I64: 6, BINARY: 8, LIST: 9, STRUCT: 12 } as const;

/** A Thrift value: a field is [id, type, value]; a struct is a list of fields. */
type Field = [number, number, unknown];

class CompactWriter {
  private bytes: number[] = [];

  varint(n: number | bigint): void {
    let v = BigInt(n);
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  /** zigzag, for i16/i32/i64 */
  int(n: number | bigint): void {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }

  binary(b: Uint8Array): void {
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
  }

  value(type: number, v: unknown): void {
    switch (type) {
      case T.I32:
      case T.I64:
        this.int(v as number | bigint);
        return;
      case T.BINARY:
        this.binary(typeof v === "string" ? Buffer.from(v, "utf8") : (v as Uint8Array));
        return;
      case T.STRUCT:
        this.struct(v as Field[]);
        return;
      case T.LIST: {
        const [elemType, items] = v as [number, unknown[]];
        if (items.length < 15) this.bytes.push((items.length << 4) | elemType);
        else {
          this.bytes.push(0xf0 | elemType);
          this.varint(items.length);
        }
        for (const item of items) this.value(elemType, item);
        return;
      }
      default:
        throw new Error(`thrift type ${type} is not written here`);
    }
  }

  struct(fields: Field[]): void {
    let last = 0;
    for (const [id, type, v] of fields) {
      if (v === undefined) continue;
      const wire = type === T.TRUE ? (v ? T.TRUE : T.FALSE) : type;
      const delta = id - last;
      if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | wire);
      else {
        this.bytes.push(wire);
        this.int(id);
      }
      if (type !== T.TRUE) this.value(type, v);
      last = id;
    }
    this.bytes.push(0);
  }

  toBuffer(): Buffer {
    return Buffer.from(this.bytes);
  }
}

function thriftStruct(fields: Field[]): Buffer {
  const w = new CompactWriter();
  w.struct(fields);
  return w.toBuffer();
}

// ---- levels and values ----

/** Bytes that grow as needed. */
class Bytes {
  buf = Buffer.allocUnsafe(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.length++] = b;
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.byte((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    this.byte(n);
  }

  u32(n: number): void {
    this.room(4);
    this.buf.writeUInt32LE(n, this.length);
    this.length += 4;
  }

  i32(n: number): void {
    this.room(4);
    this.buf.writeInt32LE(n, this.length);
    this.length += 4;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/**
 * Levels in the RLE / bit-packed hybrid, as runs (value, count) of RLE only: lists give
 * long runs. Levels here are at most 2, so every value fits in one byte.
 */
class LevelRuns {
  private runs = new Bytes();
  private value = -1;
  private count = 0;

  add(value: number, count = 1): void {
    if (count <= 0) return;
    if (value === this.value) {
      this.count += count;
      return;
    }
    this.flush();
    this.value = value;
    this.count = count;
  }

  private flush(): void {
    if (this.count === 0) return;
    this.runs.varint(this.count * 2); // RLE run header: count << 1, low bit 0
    this.runs.byte(this.value);
    this.count = 0;
  }

  /** 4-byte length, then the runs (the data page v1 layout). */
  writeTo(out: Bytes): void {
    this.flush();
    out.u32(this.runs.length);
    out.bytes(this.runs.view());
  }
}

/** A column chunk's pages, built for one row group. */
interface ChunkBytes {
  pages: Buffer[];
  numValues: number;
  uncompressed: number;
}

function schemaDepth(kind: ColumnKind): number {
  return kind === "float-list" ? 1 : kind === "float-list-list" ? 2 : 0;
}

function physicalType(kind: ColumnKind): number {
  if (kind === "string") return TYPE.BYTE_ARRAY;
  if (kind === "int32") return TYPE.INT32;
  if (kind === "bool") return TYPE.BOOLEAN;
  return TYPE.FLOAT;
}

/** Values of rows [start, end) of a column as one page body: levels, then PLAIN values. */
function pageBody(
  kind: ColumnKind,
  values: ColumnValues,
  start: number,
  end: number,
): { body: Buffer; numValues: number } {
  const depth = schemaDepth(kind);
  const out = new Bytes();
  if (depth === 0) {
    if (kind === "string") {
      for (let r = start; r < end; r++) {
        const b = Buffer.from((values as string[])[r]!, "utf8");
        out.u32(b.length);
        out.bytes(b);
      }
    } else if (kind === "int32") {
      for (let r = start; r < end; r++) {
        out.i32((values as number[])[r]!);
      }
    } else {
      const flags = values as boolean[];
      for (let r = start; r < end; r += 8) {
        let byte = 0;
        for (let j = 0; j < 8 && r + j < end; j++) if (flags[r + j]) byte |= 1 << j;
        out.byte(byte);
      }
    }
    return { body: Buffer.from(out.view()), numValues: end - start };
  }
  // Lists: repetition level 0 starts a row, 1 a new inner list (depth 2), `depth`
  // continues the innermost list; every float has the full definition level.
  const rep = new LevelRuns();
  const def = new LevelRuns();
  const floats: Float32Array[] = [];
  for (let r = start; r < end; r++) {
    if (depth === 1) {
      const v = (values as Float32Array[])[r]!;
      if (v.length === 0) throw new Error("an empty list is not written here");
      rep.add(0);
      rep.add(1, v.length - 1);
      floats.push(v);
    } else {
      const m = (values as FloatMatrix[])[r]!;
      const rows = m.values.length / m.width;
      if (!(m.width > 0 && Number.isInteger(rows) && rows > 0)) {
        throw new Error(`a ${m.values.length}-value matrix does not split into rows of ${m.width}`);
      }
      for (let i = 0; i < rows; i++) {
        rep.add(i === 0 ? 0 : 1);
        rep.add(2, m.width - 1);
      }
      floats.push(m.values);
    }
  }
  let count = 0;
  for (const f of floats) count += f.length;
  def.add(depth, count);
  rep.writeTo(out);
  def.writeTo(out);
  for (const f of floats) out.bytes(new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  return { body: Buffer.from(out.view()), numValues: count };
}

/** Approximate bytes of one row of a column, for cutting pages. */
function rowBytes(kind: ColumnKind, v: unknown): number {
  if (kind === "string") return 4 + Buffer.byteLength(v as string);
  if (kind === "int32") return 4;
  if (kind === "bool") return 1;
  if (kind === "float-list") return 6 + 4 * (v as Float32Array).length;
  return 6 + 4 * (v as FloatMatrix).values.length;
}

function buildChunk(kind: ColumnKind, values: ColumnValues, rows: number): ChunkBytes {
  const pages: Buffer[] = [];
  let numValues = 0;
  let uncompressed = 0;
  let start = 0;
  while (start < rows) {
    let end = start;
    let size = 0;
    while (end < rows && (end === start || size < PAGE_BYTES)) {
      size += rowBytes(kind, values[end]);
      end++;
    }
    const page = pageBody(kind, values, start, end);
    const header = thriftStruct([
      [1, T.I32, DATA_PAGE],
      [2, T.I32, page.body.length],
      [3, T.I32, page.body.length],
      [
        5,
        T.STRUCT,
        [
          [1, T.I32, page.numValues],
          [2, T.I32, ENCODING.PLAIN],
          [3, T.I32, ENCODING.RLE],
          [4, T.I32, ENCODING.RLE],
        ],
      ],
    ]);
    pages.push(header, page.body);
    numValues += page.numValues;
    uncompressed += header.length + page.body.length;
    start = end;
  }
  return { pages, numValues, uncompressed };
}

/** The schema elements (depth-first) of the columns under a root. */
function schemaElements(columns: readonly ColumnSpec[]): Field[][] {
  const out: Field[][] = [
    [
      [4, T.BINARY, "schema"],
      [5, T.I32, columns.length],
    ],
  ];
  const listGroup = (name: string): Field[][] => [
    [
      [3, T.I32, REPETITION.REQUIRED],
      [4, T.BINARY, name],
      [5, T.I32, 1],
      [6, T.I32, CONVERTED.LIST],
      [10, T.STRUCT, [[3, T.STRUCT, []]]], // LogicalType: LIST
    ],
    [
      [3, T.I32, REPETITION.REPEATED],
      [4, T.BINARY, "list"],
      [5, T.I32, 1],
    ],
  ];
  for (const c of columns) {
    if (c.kind === "string") {
      out.push([
        [1, T.I32, TYPE.BYTE_ARRAY],
        [3, T.I32, REPETITION.REQUIRED],
        [4, T.BINARY, c.name],
        [6, T.I32, CONVERTED.UTF8],
        [10, T.STRUCT, [[1, T.STRUCT, []]]], // LogicalType: STRING
      ]);
    } else if (c.kind === "int32" || c.kind === "bool") {
      out.push([
        [1, T.I32, physicalType(c.kind)],
        [3, T.I32, REPETITION.REQUIRED],
        [4, T.BINARY, c.name],
      ]);
    } else {
      out.push(...listGroup(c.name));
      if (c.kind === "float-list-list") out.push(...listGroup("element"));
      out.push([
        [1, T.I32, TYPE.FLOAT],
        [3, T.I32, REPETITION.REQUIRED],
        [4, T.BINARY, "element"],
      ]);
    }
  }
  return out;
}

function pathInSchema(c: ColumnSpec): string[] {
  if (c.kind === "float-list") return [c.name, "list", "element"];
  if (c.kind === "float-list-list") return [c.name, "list", "element", "list", "element"];
  return [c.name];
}

export interface ParquetWriterOptions {
  /** Key-value metadata of the file (pyarrow: `schema.metadata`). */
  metadata?: Record<string, string>;
  createdBy?: string;
}

/**
 * Writes a Parquet file to `sink`: the magic bytes at once, each `writeRowGroup` as it
 * comes, the footer at `close()`. Nothing is buffered between calls.
 */
export class ParquetStreamWriter {
  private offset = 0;
  private rows = 0;
  private readonly rowGroups: Field[][] = [];
  private started = false;
  private closed = false;

  constructor(
    private readonly sink: ByteSink,
    readonly columns: readonly ColumnSpec[],
    private readonly options: ParquetWriterOptions = {},
  ) {
    const names = new Set(columns.map((c) => c.name));
    if (columns.length === 0 || names.size !== columns.length) {
      throw new Error("a Parquet file needs columns with distinct names");
    }
  }

  /** Rows written so far. */
  get rowCount(): number {
    return this.rows;
  }

  private async put(bytes: Uint8Array): Promise<void> {
    await this.sink.write(bytes);
    this.offset += bytes.length;
  }

  /** One row group: `values[i]` holds column i's values, the same number of rows each. */
  async writeRowGroup(values: readonly ColumnValues[]): Promise<void> {
    if (this.closed) throw new Error("the Parquet file is closed");
    if (values.length !== this.columns.length) {
      throw new Error(`${values.length} columns given, the schema has ${this.columns.length}`);
    }
    const rows = values[0]!.length;
    if (values.some((v) => v.length !== rows)) throw new Error("columns of different lengths");
    if (rows === 0) return;
    if (!this.started) {
      await this.put(MAGIC);
      this.started = true;
    }
    const start = this.offset;
    const chunks: Field[][] = [];
    for (let i = 0; i < this.columns.length; i++) {
      const c = this.columns[i]!;
      const chunk = buildChunk(c.kind, values[i]!, rows);
      const pageOffset = this.offset;
      for (const p of chunk.pages) await this.put(p);
      const meta: Field[] = [
        [1, T.I32, physicalType(c.kind)],
        [
          2,
          T.LIST,
          [T.I32, schemaDepth(c.kind) > 0 ? [ENCODING.PLAIN, ENCODING.RLE] : [ENCODING.PLAIN]],
        ],
        [3, T.LIST, [T.BINARY, pathInSchema(c)]],
        [4, T.I32, UNCOMPRESSED],
        [5, T.I64, chunk.numValues],
        [6, T.I64, chunk.uncompressed],
        [7, T.I64, chunk.uncompressed],
        [9, T.I64, pageOffset],
      ];
      chunks.push([
        [2, T.I64, pageOffset],
        [3, T.STRUCT, meta],
      ]);
    }
    const size = this.offset - start;
    this.rowGroups.push([
      [1, T.LIST, [T.STRUCT, chunks]],
      [2, T.I64, size],
      [3, T.I64, rows],
      [5, T.I64, start],
      [6, T.I64, size],
      [7, T.I32, this.rowGroups.length],
    ]);
    this.rows += rows;
  }

  /** Writes the footer; the file is complete after this. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.started) {
      await this.put(MAGIC);
      this.started = true;
    }
    this.closed = true;
    const kv = Object.entries(this.options.metadata ?? {}).map(([key, value]): Field[] => [
      [1, T.BINARY, key],
      [2, T.BINARY, value],
    ]);
    const footer = thriftStruct([
      [1, T.I32, 1],
      [2, T.LIST, [T.STRUCT, schemaElements(this.columns)]],
      [3, T.I64, this.rows],
      [4, T.LIST, [T.STRUCT, this.rowGroups]],
      [5, T.LIST, kv.length ? [T.STRUCT, kv] : undefined],
      [6, T.BINARY, this.options.createdBy],
    ]);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(footer.length);
    await this.put(footer);
    await this.put(len);
    await this.put(MAGIC);
  }
}
