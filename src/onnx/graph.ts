/**
 * A small ONNX graph builder: named inputs, ops that return fresh value names,
 * constants, and outputs; `build()` gives protobuf bytes (see proto.ts).
 */
import {
  type AttrValue,
  type Dim,
  type DTypeName,
  type ExternalRef,
  encodeModel,
  type GraphDef,
  type ModelDef,
  type NodeDef,
  type TensorInit,
  type ValueInfo,
} from "./proto";

export type Attrs = Record<
  string,
  number | number[] | string | { floats: number[] } | { graph: GraphBuilder }
>;

function toAttr(v: Attrs[string]): AttrValue {
  if (typeof v === "string") return { kind: "string", value: v };
  if (typeof v === "number") {
    return Number.isInteger(v) ? { kind: "int", value: v } : { kind: "float", value: v };
  }
  if (Array.isArray(v)) return { kind: "ints", value: v };
  if ("graph" in v) return { kind: "graph", value: v.graph.graphDef() };
  return { kind: "floats", value: v.floats };
}

/** The domain of onnxruntime's contrib ops (DynamicQuantizeMatMul, MultiHeadAttention, ...). */
export const MS_DOMAIN = "com.microsoft";

/** A float attribute that happens to be an integer (e.g. alpha = 1). */
export function floatAttr(value: number): { floats: number[] } & { single: true } {
  return { floats: [value], single: true };
}

/**
 * The value of a bound input (see `bindInputs`): its bytes, or where the caller wrote
 * them in an external data file; undefined keeps it an input.
 */
export type InputBinding = (
  name: string,
  dtype: DTypeName,
  shape: readonly Dim[],
) => Uint8Array | ExternalRef | undefined;

export class GraphBuilder {
  private readonly nodes: NodeDef[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly initializers: TensorInit[] = [];
  private readonly constCache = new Map<string, string>();
  private readonly inputNames = new Set<string>();
  private ownCounter = 0;
  private bound?: InputBinding;

  /**
   * With `parent`, a subgraph (an If branch): graph inputs and constants go to the
   * parent (subgraphs see the enclosing scope), value names stay unique across both.
   */
  constructor(
    readonly name: string,
    private readonly parent?: GraphBuilder,
  ) {}

  /** A subgraph builder for a control-flow branch of this graph. */
  branch(name: string): GraphBuilder {
    return new GraphBuilder(name, this);
  }

  private next(): number {
    if (this.parent) return this.parent.next();
    return this.ownCounter++;
  }

  input(name: string, dtype: DTypeName, shape: readonly Dim[]): string {
    if (this.parent) return this.parent.input(name, dtype, shape);
    if (!this.inputNames.has(name)) {
      this.inputNames.add(name);
      const raw = this.bound?.(name, dtype, shape);
      if (raw) {
        if (!shape.every((d) => typeof d === "number")) {
          throw new Error(`Input ${name} has a symbolic shape [${shape}]; it cannot be bound`);
        }
        const dims = shape as number[];
        this.initializers.push(
          raw instanceof Uint8Array
            ? { name, dtype, dims, raw }
            : { name, dtype, dims, raw: new Uint8Array(0), external: raw },
        );
      } else {
        this.inputs.push({ name, dtype, shape });
      }
    }
    return name;
  }

  /**
   * From now on, an input `binding` has a value for (little-endian element bytes)
   * becomes an initializer holding that value instead: weights baked into the model
   * rather than fed at every run.
   */
  bindInputs(binding: InputBinding): void {
    if (this.parent) throw new Error("Bind inputs on the root graph");
    this.bound = binding;
  }

  /** Marks `value` as a graph output called `name`. */
  output(name: string, value: string, dtype: DTypeName, shape: readonly Dim[] | null): void {
    if (value !== name) this.nodes.push(this.node("Identity", [value], [name]));
    this.outputs.push({ name, dtype, shape });
  }

  /** One op with one output; returns the output name. */
  op(op: string, inputs: readonly string[], attrs: Attrs = {}, domain?: string): string {
    const out = `${op.toLowerCase()}_${this.next()}`;
    this.nodes.push(this.node(op, inputs, [out], attrs, domain));
    return out;
  }

  /** One op with several outputs. */
  opN(op: string, inputs: readonly string[], nOut: number, attrs: Attrs = {}): string[] {
    const id = this.next();
    const outs = Array.from({ length: nOut }, (_, i) => `${op.toLowerCase()}_${id}_${i}`);
    this.nodes.push(this.node(op, inputs, outs, attrs));
    return outs;
  }

  /** A float32 constant (cached by value). */
  f32(values: number[], dims: number[] = values.length === 1 ? [] : [values.length]): string {
    return this.constant("float", values, dims);
  }

  /** An int64 constant (cached by value). */
  i64(values: number[], dims: number[] = [values.length]): string {
    return this.constant("int64", values, dims);
  }

  build(opset = 17): Uint8Array {
    return encodeModel(this.modelDef(opset));
  }

  /** The whole model, for encoders with options (e.g. external data, proto.ts). */
  modelDef(opset = 17): ModelDef {
    return {
      graphName: this.name,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
      opset,
      extraOpsets: { [MS_DOMAIN]: 1 },
    };
  }

  /** The body of this (sub)graph. */
  graphDef(): GraphDef {
    return {
      name: this.name,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
    };
  }

  private constant(dtype: "float" | "int64", values: number[], dims: number[]): string {
    if (this.parent) return this.parent.constant(dtype, values, dims);
    const key = `${dtype}:${dims.join(",")}:${values.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = `const_${this.next()}`;
    const raw =
      dtype === "float"
        ? new Uint8Array(Float32Array.from(values).buffer)
        : new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer);
    this.initializers.push({ name, dtype, dims, raw });
    this.constCache.set(key, name);
    return name;
  }

  private node(
    op: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attrs: Attrs = {},
    domain?: string,
  ): NodeDef {
    const converted: Record<string, AttrValue> = {};
    for (const [k, v] of Object.entries(attrs)) {
      if (typeof v === "object" && !Array.isArray(v) && "single" in v) {
        converted[k] = { kind: "float", value: (v as { floats: number[] }).floats[0]! };
      } else converted[k] = toAttr(v);
    }
    return {
      op,
      inputs,
      outputs,
      name: `n${this.next()}_${op}`,
      domain,
      attrs: converted,
    };
  }
}
