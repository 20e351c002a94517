/**
 * int8 weights (src/onnx/quantize.ts): per-column symmetric quantization within half a
 * step of the float weight, in 7 or 8 bits; and the int8 matmul graph in onnxruntime
 * equals the same arithmetic done in JavaScript (activations quantized per tensor to
 * uint8 as ONNX's DynamicQuantizeLinear defines, int32 accumulation, both scales).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../../src/onnx/graph";
import {
  dequantizeInt8,
  int8BackwardMatMul,
  int8DynamicMatMul,
  int8MatMul,
  quantizeInt8,
  transposeInt8,
} from "../../src/onnx/quantize";
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

test("quantizeInt8 per row ([out, in], Hugging Face's layout) = per column of the transpose", () => {
  const rows = 6;
  const cols = 11;
  const w = randomMatrix(rows, cols, 4);
  const byRow = quantizeInt8(w, rows, cols, { channelAxis: 0, reduceRange: false });
  assert.equal(byRow.scales.length, rows);
  const wT = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) wT[c * rows + r] = w[r * cols + c]!;
  const byCol = quantizeInt8(wT, cols, rows, { reduceRange: false });
  assert.deepEqual(byRow.scales, byCol.scales);
  assert.deepEqual(transposeInt8(byCol.values, cols, rows), byRow.values);
  assert.deepEqual(transposeInt8(byRow.values, rows, cols), byCol.values);
  // Round trip within half a step of each row's scale.
  const back = dequantizeInt8(byRow);
  for (let i = 0; i < w.length; i++) {
    assert.ok(Math.abs(back[i]! - w[i]!) <= byRow.scales[Math.floor(i / cols)]! / 2 + 1e-7, `${i}`);
  }
});

/** The JavaScript reference of `x [N, K] @ (q [K, M] * scale[M])` with x quantized as ONNX does. */
function integerMatMul(
  x: Float32Array,
  N: number,
  K: number,
  q: Int8Array,
  M: number,
  scale: (m: number) => number,
): Float32Array {
  const xq = dynamicQuantize(x);
  const out = new Float32Array(N * M);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += (xq.q[n * K + k]! - xq.zero) * q[k * M + m]!;
      out[n * M + m] = acc * Math.fround(xq.scale * scale(m));
    }
  }
  return out;
}

test("DynamicQuantizeMatMul forward and backward (the engine's int8 kernel) = integer arithmetic in JavaScript", () => {
  const N = 7;
  const K = 40;
  const M = 13;
  const x = randomMatrix(N, K, 5, 2);
  const w = randomMatrix(K, M, 6, 0.1); // [in, out]
  const bias = randomMatrix(1, M, 7, 0.5);
  const dy = randomMatrix(N, M, 8, 1e-3);
  const q = quantizeInt8(w, K, M, { reduceRange: false });
  const qT = transposeInt8(q.values, K, M); // [out, in]
  const g = new GraphBuilder("dqmm");
  g.bindInputs((name) => {
    const t = { wq: q.values, wqT: qT, scales: q.scales, bias }[name];
    return t ? new Uint8Array(t.buffer, t.byteOffset, t.byteLength) : undefined;
  });
  const xIn = g.input("x", "float", ["N", K]);
  const dyIn = g.input("dy", "float", ["N", M]);
  const scales = g.input("scales", "float", [M]);
  const y = int8DynamicMatMul(
    g,
    xIn,
    g.input("wq", "int8", [K, M]),
    scales,
    g.input("bias", "float", [M]),
  );
  const dx = int8BackwardMatMul(g, dyIn, g.input("wqT", "int8", [M, K]), scales);
  g.output("y", y, "float", ["N", M]);
  g.output("dx", dx, "float", ["N", K]);
  const s = new OrtSession(g.build());
  assert.deepEqual(s.inputNames, ["x", "dy"], "weights are initializers");
  const out = s.run({ x: floatTensor(x, [N, K]), dy: floatTensor(dy, [N, M]) });
  const gotY = out.y!.data as Float32Array;
  const gotDx = out.dx!.data as Float32Array;

  const wantY = integerMatMul(x, N, K, q.values, M, (m) => q.scales[m]!);
  for (let i = 0; i < wantY.length; i++) wantY[i]! += bias[i % M]!;
  // Backward: (dy * s) quantized dynamically, times the [out, in] codes, scale 1.
  const dys = dy.map((v, i) => Math.fround(v * q.scales[i % M]!));
  const wantDx = integerMatMul(dys, N, M, qT, K, () => 1);
  const rel = (a: Float32Array, b: Float32Array) => {
    let d = 0;
    let ref = 0;
    for (let i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i]! - b[i]!));
      ref = Math.max(ref, Math.abs(b[i]!));
    }
    return d / ref;
  };
  assert.ok(rel(gotY, wantY) < 1e-5, `forward vs integer arithmetic ${rel(gotY, wantY)}`);
  assert.ok(rel(gotDx, wantDx) < 1e-5, `backward vs integer arithmetic ${rel(gotDx, wantDx)}`);
  // And both close to float: y = x W + b, dx = dy W^T.
  const floatY = new Float32Array(N * M);
  const floatDx = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let a = bias[m]!;
      for (let k = 0; k < K; k++) a += x[n * K + k]! * w[k * M + m]!;
      floatY[n * M + m] = a;
    }
    for (let k = 0; k < K; k++) {
      let a = 0;
      for (let m = 0; m < M; m++) a += dy[n * M + m]! * w[k * M + m]!;
      floatDx[n * K + k] = a;
    }
  }
  assert.ok(rel(gotY, floatY) < 0.03, `forward vs float ${rel(gotY, floatY)}`);
  assert.ok(rel(gotDx, floatDx) < 0.03, `backward vs float ${rel(gotDx, floatDx)}`);
  s.dispose();
});
