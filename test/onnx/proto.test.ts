/**
 * The hand-written protobuf encoder (src/onnx/proto.ts) and GraphBuilder: tiny models
 * built here must load in onnxruntime and compute what the same maths gives in
 * JavaScript. onnxruntime rejects malformed protobuf, wrong attribute types and
 * wrong dtypes, so each case checks the encoding as well as the numbers.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { floatAttr, GraphBuilder } from "../../src/onnx/graph";
import { DType, encodeModel, type TensorInit } from "../../src/onnx/proto";
import { floatTensor, loadOrt, OrtSession, ortUnavailableReason } from "../../src/onnx/runtime";

function maxAbsDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, "element count");
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (Number.isNaN(d) || d > m) m = d;
  }
  return m;
}

function f32Init(name: string, dims: number[], values: number[]): TensorInit {
  return { name, dtype: "float", dims, raw: new Uint8Array(Float32Array.from(values).buffer) };
}

test("onnxruntime-node loads (the engine's prerequisite)", () => {
  assert.ok(loadOrt(), `onnxruntime-node did not load: ${ortUnavailableReason()}`);
  assert.equal(ortUnavailableReason(), undefined);
});

test("Gemm with an integer-valued float alpha, transB and a bias constant computes alpha x W^T + b", () => {
  // x [2, 3], W [4, 3] (transB), b [4]; alpha = 2 must go out as a FLOAT attribute
  // (an INT alpha is a type error in onnxruntime), transB as an INT.
  const g = new GraphBuilder("gemm");
  const x = g.input("x", "float", ["N", 3]);
  const w = g.input("w", "float", [4, 3]);
  const b = g.f32([0.5, -1, 2, 0.25]);
  g.output("y", g.op("Gemm", [x, w, b], { alpha: floatAttr(2), transB: 1 }), "float", ["N", 4]);
  const s = new OrtSession(g.build());
  assert.deepEqual(s.inputNames, ["x", "w"]);
  assert.deepEqual(s.outputNames, ["y"]);
  const xs = [0.1, -0.2, 0.3, 1.5, 2.5, -3.5];
  const ws = [1, 2, 3, -1, 0.5, 0.25, 0, 0, 1, 4, -2, 0.5];
  const bs = [0.5, -1, 2, 0.25];
  const out = s.run({
    x: floatTensor(Float32Array.from(xs), [2, 3]),
    w: floatTensor(Float32Array.from(ws), [4, 3]),
  });
  const want: number[] = [];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) {
      let acc = 0;
      for (let k = 0; k < 3; k++) acc += xs[i * 3 + k]! * ws[j * 3 + k]!;
      want.push(2 * acc + bs[j]!);
    }
  }
  assert.deepEqual(out.y!.dims, [2, 4]);
  const d = maxAbsDiff(out.y!.data, want);
  assert.ok(d < 1e-5, `Gemm max |diff| ${d}`);
  s.dispose();
});

test("negative ints attributes, int64 constants, scalar constants and multi-output ops round-trip", () => {
  // ReduceMean(axes = [-1]) (negative ints), Reshape by an int64 constant with -1,
  // Mul by a scalar constant (dims []), Split with two outputs, Concat(axis = -1).
  const g = new GraphBuilder("mixed");
  const x = g.input("x", "float", [2, 6]);
  const mean = g.op("ReduceMean", [x], { axes: [-1], keepdims: 1 }); // [2, 1]
  const centred = g.op("Sub", [x, mean]);
  const scaled = g.op("Mul", [centred, g.f32([0.5])]); // scalar constant
  const r = g.op("Reshape", [scaled, g.i64([-1, 3])]); // [4, 3]
  const [a, b] = g.opN("Split", [r], 2, { axis: 0 }); // [2, 3] each
  const swapped = g.op("Concat", [b!, a!], { axis: -1 }); // [2, 6]
  g.output("out", swapped, "float", [2, 6]);
  g.output("mean", mean, "float", [2, 1]);
  const s = new OrtSession(g.build());
  const xs = [1, 2, 3, 4, 5, 6, -6, 0, 6, 1.5, -1.5, 12];
  const out = s.run({ x: floatTensor(Float32Array.from(xs), [2, 6]) });
  const means = [0, 1].map((i) => xs.slice(i * 6, i * 6 + 6).reduce((p, q) => p + q, 0) / 6);
  const sc = xs.map((v, i) => (v - means[Math.floor(i / 6)]!) * 0.5);
  // rows of 3: [r0, r1, r2, r3]; split -> a = [r0, r1], b = [r2, r3]; concat(b, a) per row
  const row = (k: number) => sc.slice(k * 3, k * 3 + 3);
  const want = [...row(2), ...row(0), ...row(3), ...row(1)];
  assert.deepEqual(out.out!.dims, [2, 6]);
  assert.ok(maxAbsDiff(out.out!.data, want) < 1e-6, `got ${Array.from(out.out!.data)}`);
  assert.ok(maxAbsDiff(out.mean!.data, means) < 1e-6, `means ${Array.from(out.mean!.data)}`);
  s.dispose();
});

test("every attribute kind (int, float, ints, floats, string, tensor) encodes as onnxruntime expects", () => {
  // Constant's value_* attributes cover the kinds; the outputs are the values back.
  const t = f32Init("t", [2, 2], [1.25, -2.5, 3.75, 8]);
  const node = (
    name: string,
    attrs: Parameters<typeof encodeModel>[0]["nodes"][number]["attrs"],
  ) => ({
    op: "Constant",
    inputs: [],
    outputs: [name],
    name: `n_${name}`,
    attrs,
  });
  const model = encodeModel({
    graphName: "constants",
    nodes: [
      node("vi", { value_int: { kind: "int", value: -7 } }),
      node("vf", { value_float: { kind: "float", value: 0.375 } }),
      node("vis", { value_ints: { kind: "ints", value: [3, -1, 2 ** 40] } }),
      node("vfs", { value_floats: { kind: "floats", value: [0.5, -4, 1e-3] } }),
      node("vt", { value: { kind: "tensor", value: t } }),
      // A string tensor cannot be a declared output here (DType has no string); a
      // malformed STRING attribute still fails the load.
      node("vs", { value_string: { kind: "string", value: "esmkit" } }),
      {
        op: "Add",
        inputs: ["vt", "init"],
        outputs: ["sum"],
        name: "n_add",
      },
    ],
    initializers: [f32Init("init", [2, 2], [1, 1, 1, 1])],
    inputs: [],
    outputs: [
      { name: "vi", dtype: "int64", shape: [] },
      { name: "vf", dtype: "float", shape: [] },
      { name: "vis", dtype: "int64", shape: [3] },
      { name: "vfs", dtype: "float", shape: [3] },
      { name: "sum", dtype: "float", shape: [2, 2] },
    ],
    opset: 17,
  });
  const s = new OrtSession(model);
  const out = s.run({}) as unknown as Record<
    string,
    { data: ArrayLike<number | bigint>; dims: number[] }
  >;
  assert.deepEqual(Array.from(out.vi!.data), [-7n]);
  assert.deepEqual(Array.from(out.vf!.data), [0.375]);
  assert.deepEqual(Array.from(out.vis!.data), [3n, -1n, 2n ** 40n]);
  assert.ok(maxAbsDiff(Array.from(out.vfs!.data as Float32Array), [0.5, -4, 1e-3]) < 1e-9);
  assert.deepEqual(Array.from(out.sum!.data), [2.25, -1.5, 4.75, 9]);
  s.dispose();
  assert.equal(DType.float, 1);
});

test("symbolic dimensions accept any size; a wrong rank is rejected by onnxruntime", () => {
  const g = new GraphBuilder("sym");
  const x = g.input("x", "float", ["B", "L"]);
  g.output("y", g.op("Add", [x, g.f32([1])]), "float", ["B", "L"]);
  const s = new OrtSession(g.build());
  for (const [b, l] of [
    [1, 1],
    [3, 5],
  ] as const) {
    const xs = Float32Array.from({ length: b * l }, (_, i) => i);
    const out = s.run({ x: floatTensor(xs, [b, l]) });
    assert.deepEqual(out.y!.dims, [b, l]);
    assert.deepEqual(
      Array.from(out.y!.data),
      Array.from(xs, (v) => v + 1),
    );
  }
  assert.throws(() => s.run({ x: floatTensor(new Float32Array(4), [4]) }));
  assert.throws(() => s.run({}), /Missing graph inputs: x/);
  s.dispose();
});
