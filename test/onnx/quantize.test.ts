/**
 * int8 weights (src/onnx/quantize.ts): per-column symmetric quantization within half a
 * step of the float weight, in 7 or 8 bits; and the int8 matmul graph in onnxruntime
 * equals the same arithmetic done in JavaScript (activations quantized per tensor to
 * uint8 as ONNX's DynamicQuantizeLinear defines, int32 accumulation, both scales).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../../src/onnx/graph";
import { dequantizeInt8, int8MatMul, quantizeInt8 } from "../../src/onnx/quantize";
import { floatTensor, OrtSession } from "../../src/onnx/runtime";
import { SeededRandom } from "../../src/util/random";

function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const r = new SeededRandom(seed);
  return Float32Array.from({ length: rows * cols }, () => (r.next() * 2 - 1) * scale);
}

test("quantizeInt8: per output column, within half a step, 7 bits by default", () => {
  const rows = 20;
  const cols = 7;
  const w = randomMatrix(rows, cols, 1);
  for (let r = 0; r < rows; r++) w[r * cols + 3] = w[r * cols + 3]! * 100; // one wide column
  for (let r = 0; r < rows; r++) w[r * cols + 5] = 0; // one empty column
  for (const [reduceRange, qmax] of [
    [true, 64],
    [false, 127],
  ] as const) {
    const q = quantizeInt8(w, rows, cols, { reduceRange });
    const back = dequantizeInt8(q);
    for (let c = 0; c < cols; c++) {
      let maxAbs = 0;
      for (let r = 0; r < rows; r++) maxAbs = Math.max(maxAbs, Math.abs(w[r * cols + c]!));
      const step = q.scales[c]!;
      if (maxAbs > 0) assert.ok(Math.abs(step - maxAbs / qmax) < 1e-6 * maxAbs, `scale ${c}`);
      for (let r = 0; r < rows; r++) {
        const i = r * cols + c;
        assert.ok(Math.abs(q.values[i]!) <= qmax, `range ${i}`);
        assert.ok(Math.abs(back[i]! - w[i]!) <= step / 2 + 1e-6 * maxAbs, `error ${i}`);
      }
    }
    // The widest value of each column uses the full range.
    assert.equal(Math.max(...Array.from(q.values).map(Math.abs)), qmax);
  }
  assert.throws(() => quantizeInt8(w, rows, cols + 1), /do not make \[20, 8\]/);
});

/** DynamicQuantizeLinear as the ONNX spec defines it (round half to even). */
function dynamicQuantize(x: Float32Array): { q: Uint8Array; scale: number; zero: number } {
  let lo = 0;
  let hi = 0;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = Math.fround((hi - lo) / 255);
  const rint = (v: number) => {
    const f = Math.floor(v);
    const d = v - f;
    return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  };
  const zero = Math.max(0, Math.min(255, rint(Math.fround(-lo / scale))));
  const q = Uint8Array.from(x, (v) =>
    Math.max(0, Math.min(255, rint(Math.fround(v / scale)) + zero)),
  );
  return { q, scale, zero };
}

test("int8MatMul in onnxruntime = the integer arithmetic in JavaScript, and close to float", () => {
  const N = 5;
  const K = 33;
  const M = 9;
  const x = randomMatrix(N, K, 2, 3);
  const w = randomMatrix(K, M, 3, 0.2);
  const q = quantizeInt8(w, K, M);
  const g = new GraphBuilder("int8");
  const xIn = g.input("x", "float", ["N", K]);
  g.bindInputs((name) => {
    if (name === "wq") return new Uint8Array(q.values.buffer);
    if (name === "scales") return new Uint8Array(q.scales.buffer);
    return undefined;
  });
  const y = int8MatMul(g, xIn, g.input("wq", "int8", [K, M]), g.input("scales", "float", [M]));
  g.output("y", y, "float", ["N", M]);
  const s = new OrtSession(g.build());
  assert.deepEqual(s.inputNames, ["x"], "weights are initializers");
  const got = s.run({ x: floatTensor(x, [N, K]) }).y!.data as Float32Array;

  const xq = dynamicQuantize(x);
  let maxInt = 0;
  let maxFloat = 0;
  let maxRef = 0;
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let acc = 0;
      let exact = 0;
      for (let k = 0; k < K; k++) {
        acc += (xq.q[n * K + k]! - xq.zero) * q.values[k * M + m]!;
        exact += x[n * K + k]! * w[k * M + m]!;
      }
      const want = acc * Math.fround(xq.scale * q.scales[m]!);
      const v = got[n * M + m]!;
      maxInt = Math.max(maxInt, Math.abs(v - want) / Math.max(1, Math.abs(want)));
      maxFloat = Math.max(maxFloat, Math.abs(v - exact));
      maxRef = Math.max(maxRef, Math.abs(exact));
    }
  }
  assert.ok(maxInt < 1e-5, `vs integer arithmetic ${maxInt}`);
  assert.ok(maxFloat < 0.03 * maxRef, `vs float ${maxFloat} (largest |y| ${maxRef})`);
});
