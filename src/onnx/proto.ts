/**
 * A minimal protobuf writer for the parts of the ONNX schema esmkit emits
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
 * ValueInfoProto). Field numbers follow onnx/onnx.proto (IR version 8).
 */

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.bytes(Uint8Array.from(out));
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): void {
    this.tag(field, 0);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.bytes(b);
  }

  blob(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.bytes(data);
  }

  string(field: number, s: string): void {
    this.blob(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: Writer) => void): void {
    const inner = new Writer();
    build(inner);
    this.tag(field, 2);
    this.varint(inner.length);
    for (const c of inner.chunks) this.bytes(c);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** ONNX TensorProto.DataType values used here. */
export const DType = { float: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9 } as const;
export type DTypeName = keyof typeof DType;

export interface TensorInit {
  name: string;
  dtype: DTypeName;
  dims: readonly number[];
  /** Little-endian element bytes (empty when `external` says where they are). */
  raw: Uint8Array;
  /** Bytes already written to an external data file by the caller (see ExternalRef). */
  external?: ExternalRef;
}

export type AttrValue =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "ints"; value: readonly number[] }
  | { kind: "floats"; value: readonly number[] }
  | { kind: "string"; value: string }
  | { kind: "tensor"; value: TensorInit }
  | { kind: "graph"; value: GraphDef };

export interface NodeDef {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name: string;
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

/** A dimension: a number or a symbolic name. */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  dtype: DTypeName;
  /** null: unknown shape (the field is left out). */
  shape: readonly Dim[] | null;
}

/** A graph body: the model's main graph or a subgraph (If branches). */
export interface GraphDef {
  name: string;
  nodes: readonly NodeDef[];
  initializers: readonly TensorInit[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
}

export interface ModelDef {
  graphName: string;
  nodes: readonly NodeDef[];
  initializers: readonly TensorInit[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  opset: number;
  /** Extra operator sets, e.g. { 'com.microsoft': 1 }. */
  extraOpsets?: Record<string, number>;
}

/**
 * Where a tensor's bytes sit in an external data file (TensorProto.external_data):
 * `location` relative to the model file's folder, `offset` and `length` in bytes.
 */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

function writeTensor(w: Writer, t: TensorInit, refOverride?: ExternalRef): void {
  const external = refOverride ?? t.external;
  for (const d of t.dims) w.int(1, d);
  w.int(2, DType[t.dtype]);
  w.string(8, t.name);
  if (!external) {
    w.blob(9, t.raw);
    return;
  }
  const entry = (key: string, value: string) =>
    w.message(13, (e) => {
      e.string(1, key);
      e.string(2, value);
    });
  entry("location", external.location);
  entry("offset", String(external.offset));
  entry("length", String(external.length));
  w.int(14, 1); // data_location = EXTERNAL
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, DType[v.dtype]);
      if (v.shape === null) return;
      const dims = v.shape;
      tt.message(2, (shape) => {
        for (const d of dims) {
          shape.message(1, (dim) => {
            if (typeof d === "number") dim.int(1, d);
            else dim.string(2, d);
          });
        }
      });
    }),
  );
}

function writeAttr(w: Writer, name: string, a: AttrValue): void {
  w.string(1, name);
  switch (a.kind) {
    case "float":
      w.float(2, a.value);
      w.int(20, 1);
      break;
    case "int":
      w.int(3, a.value);
      w.int(20, 2);
      break;
    case "string":
      w.string(4, a.value);
      w.int(20, 3);
      break;
    case "tensor":
      w.message(5, (t) => writeTensor(t, a.value));
      w.int(20, 4);
      break;
    case "floats":
      for (const f of a.value) w.float(7, f);
      w.int(20, 6);
      break;
    case "graph":
      w.message(6, (g) => writeGraph(g, a.value));
      w.int(20, 5);
      break;
    case "ints":
      for (const i of a.value) w.int(8, i);
      w.int(20, 7);
      break;
  }
}

function writeGraph(g: Writer, d: GraphDef, external?: Map<TensorInit, ExternalRef>): void {
  for (const n of d.nodes) g.message(1, (nw) => writeNode(nw, n));
  g.string(2, d.name);
  for (const t of d.initializers) g.message(5, (tw) => writeTensor(tw, t, external?.get(t)));
  for (const v of d.inputs) g.message(11, (vw) => writeValueInfo(vw, v));
  for (const v of d.outputs) g.message(12, (vw) => writeValueInfo(vw, v));
}

function writeNode(w: Writer, n: NodeDef): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, (a) => writeAttr(a, k, v));
  if (n.domain) w.string(7, n.domain);
}

/** Serialises a model to ONNX protobuf bytes. */
export function encodeModel(m: ModelDef): Uint8Array {
  return encode(m);
}

export interface ExternalDataOptions {
  /** The data file's name, relative to the model file (e.g. `model.onnx_data`). */
  location: string;
  /** Initializers of at least this many bytes go to the file (default 1024). */
  minBytes?: number;
  /** Each tensor starts at a multiple of this many bytes (default 4096, a page). */
  align?: number;
}

export interface EncodedWithExternalData {
  /** The model file: the graph, small initializers inline, references to the rest. */
  model: Uint8Array;
  /** The data file's contents in order: tensor bytes at `offset`, zeros in between. */
  chunks: { offset: number; data: Uint8Array }[];
  /** The data file's size in bytes. */
  dataBytes: number;
}

/**
 * Serialises a model whose large initializers live in a separate data file, as ONNX's
 * external data format does (the way past protobuf's 2 GB message limit). Write
 * `chunks` at their offsets to `location` beside the model file.
 */
export function encodeModelWithExternalData(
  m: ModelDef,
  options: ExternalDataOptions,
): EncodedWithExternalData {
  const minBytes = options.minBytes ?? 1024;
  const align = options.align ?? 4096;
  const refs = new Map<TensorInit, ExternalRef>();
  const chunks: { offset: number; data: Uint8Array }[] = [];
  let end = 0;
  for (const t of m.initializers) {
    if (t.external || t.raw.length < minBytes) continue;
    const offset = Math.ceil(end / align) * align;
    refs.set(t, { location: options.location, offset, length: t.raw.length });
    chunks.push({ offset, data: t.raw });
    end = offset + t.raw.length;
  }
  return { model: encode(m, refs), chunks, dataBytes: end };
}

function encode(m: ModelDef, external?: Map<TensorInit, ExternalRef>): Uint8Array {
  const w = new Writer();
  w.int(1, 8); // ir_version
  w.string(2, "esmkit");
  w.message(7, (g) =>
    writeGraph(
      g,
      {
        name: m.graphName,
        nodes: m.nodes,
        initializers: m.initializers,
        inputs: m.inputs,
        outputs: m.outputs,
      },
      external,
    ),
  );
  w.message(8, (o) => {
    o.string(1, "");
    o.int(2, m.opset);
  });
  for (const [domain, version] of Object.entries(m.extraOpsets ?? {})) {
    w.message(8, (o) => {
      o.string(1, domain);
      o.int(2, version);
    });
  }
  return w.finish();
}
