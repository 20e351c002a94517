import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { ensureGradients } from "../../src/gradients";
import { SeededRandom } from "../../src/util/random";

before(async () => {
  await selectBackend({ backend: "wasm" });
  ensureGradients();
});

const rng = new SeededRandom(17);
function rand(shape: number[], lo = -1, hi = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Array.from({ length: n }, () => lo + (hi - lo) * rng.next()),
    shape,
  );
}

/**
 * Compare tf.grads of `sum(f(xs) * r)` (a random projection, so every output matters)
 * with central finite differences, input by input.
 */
function checkGrad(name: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): void {
  const r = tf.tidy(() => rand(f(...inputs).shape));
  const scalarF = (...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), r));
  const grads = tf.grads(scalarF)(inputs);
  const h = 1e-2;
  inputs.forEach((x, k) => {
    const base = x.dataSync();
    const g = grads[k]!.dataSync();
    for (let i = 0; i < base.length; i++) {
      const at = (delta: number) =>
        tf.tidy(() => {
          const v = Float32Array.from(base);
          v[i]! += delta;
          const xs = inputs.map((t, j) => (j === k ? tf.tensor(v, x.shape) : t));
          return scalarF(...xs).dataSync()[0]!;
        });
      const fd = (at(h) - at(-h)) / (2 * h);
      assert.ok(
        Math.abs(fd - g[i]!) <= 2e-3 + 2e-3 * Math.abs(fd),
        `${name} d/dx${k}[${i}]: autodiff ${g[i]}, finite difference ${fd}`,
      );
    }
  });
  tf.dispose([r, ...grads]);
}

test("registered gradients agree with finite differences, broadcasting included", () => {
  const a = rand([2, 3]);
  const row = rand([3]);
  const pos = rand([2, 3], 0.5, 2);
  const m = rand([3, 4]);
  checkGrad("add", (x, y) => tf.add(x, y), [a, row]);
  checkGrad("sub", (x, y) => tf.sub(x, y), [row, a]);
  checkGrad("mul", (x, y) => tf.mul(x, y), [a, row]);
  checkGrad("div", (x, y) => tf.div(x, y), [row, pos]);
  checkGrad("neg/sum", (x) => tf.sum(tf.neg(x), 1), [a]);
  checkGrad("matMul", (x, y) => tf.matMul(x, y), [a, m]);
  checkGrad("matMul tA", (x, y) => tf.matMul(x, y, true, false), [tf.transpose(a), m]);
  checkGrad("matMul tB", (x, y) => tf.matMul(x, y, false, true), [a, tf.transpose(m)]);
  checkGrad("matMul tA tB", (x, y) => tf.matMul(x, y, true, true), [
    tf.transpose(a),
    tf.transpose(m),
  ]);
  checkGrad("reshape/transpose", (x) => tf.transpose(tf.reshape(x, [3, 2]), [1, 0]), [a]);
  checkGrad("cast", (x) => tf.cast(x, "float32"), [a]);
  checkGrad("tanh/exp", (x) => tf.tanh(tf.exp(x)), [a]);
  checkGrad("log/sqrt/square", (x) => tf.add(tf.log(x), tf.mul(tf.sqrt(x), tf.square(x))), [pos]);
  // Ops the ESM-2 encoder needs beyond the loss.
  checkGrad("erf", (x) => tf.erf(x), [a]);
  checkGrad("softmax", (x) => tf.softmax(x), [a]);
  checkGrad("concat/slice", (x) => tf.concat([tf.slice(x, [0, 1], [2, 2]), tf.neg(x)], 1), [a]);
  checkGrad("rsqrt/mean", (x) => tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5)), [a]);
});

test("registration is idempotent and leaves the active backend alone", () => {
  ensureGradients();
  ensureGradients();
  assert.equal(tf.getBackend(), "wasm");
  for (const k of ["RealDiv", "Erf", "Softmax", "BatchMatMul", "GatherV2"])
    assert.ok(tf.getGradient(k), k);
});
