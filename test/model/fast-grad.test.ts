import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { attention, dense, matMul2d, recordingGradients } from "../../src/model/fast-grad";

before(async () => {
  await selectBackend({ backend: "wasm" });
});

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/** Gradients of sum(f(...) * r) for a fixed random r, so every output element matters. */
function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed: number): tf.Tensor[] {
  const r = tf.randomNormal(f(...xs).shape, 0, 1, "float32", seed);
  return tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), r)))(xs);
}

test("dense and matMul2d give tfjs's own values and gradients", () => {
  const x = tf.randomNormal([7, 5], 0, 1, "float32", 1) as tf.Tensor2D;
  const w = tf.randomNormal([5, 3], 0, 1, "float32", 2) as tf.Tensor2D;
  const b = tf.randomNormal([3], 0, 1, "float32", 3) as tf.Tensor1D;
  const ref = (xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) =>
    tf.add(tf.matMul(xi as tf.Tensor2D, wi as tf.Tensor2D), bi);
  const ours = (xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) =>
    dense(xi as tf.Tensor2D, wi as tf.Tensor2D, bi as tf.Tensor1D, true);
  assert.ok(maxDiff(ref(x, w, b), ours(x, w, b)) < 1e-6);
  const g1 = gradsOf(ref, [x, w, b], 9);
  const g2 = gradsOf(ours, [x, w, b], 9);
  for (const [i, g] of g1.entries()) assert.ok(maxDiff(g, g2[i]!) < 1e-5, `input ${i}`);
  const m1 = gradsOf((a, c) => tf.matMul(a as tf.Tensor2D, c as tf.Tensor2D), [x, w], 4);
  const m2 = gradsOf((a, c) => matMul2d(a as tf.Tensor2D, c as tf.Tensor2D), [x, w], 4);
  for (const [i, g] of m1.entries()) assert.ok(maxDiff(g, m2[i]!) < 1e-5, `matMul2d input ${i}`);
  // A frozen weight is not an input of the op: the input's gradient is exact and no
  // gradient path to the weight exists at all.
  const frozenOp = (xi: tf.Tensor) => dense(xi as tf.Tensor2D, w, b, false);
  const [frozenDx] = gradsOf(frozenOp, [x], 9);
  assert.ok(maxDiff(frozenDx!, g1[0]!) < 1e-5);
  assert.throws(
    () => tf.grads((wi: tf.Tensor) => tf.sum(dense(x, wi as tf.Tensor2D, b, false)))([w]),
    /Cannot compute gradient/,
  );
});

test("attention gives softmax(q kT + mask) v and its gradients as tfjs computes them", () => {
  const [B, nh, L, hd] = [2, 3, 5, 4];
  const q = tf.randomNormal([B, nh, L, hd], 0, 1, "float32", 5) as tf.Tensor4D;
  const kT = tf.randomNormal([B, nh, hd, L], 0, 1, "float32", 6) as tf.Tensor4D;
  const v = tf.randomNormal([B, nh, L, hd], 0, 1, "float32", 7) as tf.Tensor4D;
  const mask = tf.tensor4d([0, 0, 0, -1e9, -1e9, 0, 0, 0, 0, 0], [B, 1, 1, L]);
  const ref = (qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
    tf.matMul(
      tf.softmax(tf.add(tf.matMul(qi as tf.Tensor4D, ki as tf.Tensor4D), mask)),
      vi as tf.Tensor4D,
    );
  const ours = (qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
    attention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, mask);
  assert.ok(maxDiff(ref(q, kT, v), ours(q, kT, v)) < 1e-6);
  const g1 = gradsOf(ref, [q, kT, v], 8);
  const g2 = gradsOf(ours, [q, kT, v], 8);
  g1.forEach((g, i) => {
    const d = maxDiff(g, g2[i]!);
    assert.ok(d < 1e-5, `input ${i}: ${d}`);
  });
});

test("recordingGradients is true only under a gradient tape", () => {
  assert.equal(recordingGradients(), false);
  let inside = false;
  tf.grad((x: tf.Tensor) => {
    inside = recordingGradients();
    return tf.sum(x);
  })(tf.ones([2]));
  assert.equal(inside, true);
});
