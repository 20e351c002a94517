import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { crossEntropy } from "../../src/engine/loss";
import { ConfigError, DataError } from "../../src/errors";
import { balancedClassWeights } from "../../src/util/class-weights";
import { REPO_ROOT } from "../helpers/python";

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, "test", "fixtures", "train", name), "utf8"));
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= 1e-6 + 1e-6 * Math.abs(e), `${what}[${i}]: got ${a}, want ${e}`);
  }
}

interface CeCase {
  name: string;
  shape: [number, number];
  logits: number[];
  labels: number[];
  weight: number[] | null;
  loss: number;
  grad: number[];
}
const ce = fixture<{ cases: CeCase[] }>("cross_entropy.json").cases;

before(async () => {
  await selectBackend({ backend: "wasm" });
});

test("cross-entropy and its logits gradient match torch's CrossEntropyLoss(weight)", () => {
  assert.ok(
    ce.some((c) => c.name === "unbalanced weights") && ce.some((c) => c.name === "ignore_index"),
  );
  for (const c of ce) {
    const logits = tf.tensor2d(c.logits, c.shape);
    const options = c.weight ? { weight: c.weight } : {};
    const loss = crossEntropy(logits, c.labels, options);
    assertClose(loss.dataSync(), [c.loss], `${c.name} loss`);
    const grad = tf.grad((x: tf.Tensor) => crossEntropy(x, c.labels, options))(logits);
    assertClose(grad.dataSync(), c.grad, `${c.name} grad`);
    tf.dispose([logits, loss, grad]);
  }
});

test("weights change the loss: the weighted mean is not the plain mean", () => {
  const [plain, weighted] = [ce[0]!, ce[1]!];
  assert.equal(plain.weight, null);
  assert.ok(Math.abs(plain.loss - weighted.loss) > 1e-3);
});

test("labels and weights may be tensors; gradients flow to variables through variableGrads", () => {
  const c = ce.find((k) => k.name === "unbalanced weights")!;
  const [n, k] = c.shape;
  const x = tf.tensor2d(
    Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
    [n, n],
  ); // identity: logits = W, so dLoss/dW is the logits gradient
  const w = tf.variable(tf.tensor2d(c.logits, [n, k]));
  const labels = tf.tensor1d(c.labels, "int32");
  const weight = tf.tensor1d(c.weight!);
  const { value, grads } = tf.variableGrads(
    () => crossEntropy(tf.matMul(x, w), labels, { weight }),
    [w],
  );
  assertClose(value.dataSync(), [c.loss], "loss");
  assertClose(grads[w.name]!.dataSync(), c.grad, "dW");
  tf.dispose([x, w, labels, weight, value, ...Object.values(grads)]);
});

test("the loss leaks no tensors", () => {
  const c = ce[1]!;
  const logits = tf.tensor2d(c.logits, c.shape);
  const base = tf.memory().numTensors;
  const loss = crossEntropy(logits, c.labels, { weight: c.weight! });
  const grad = tf.grad((x: tf.Tensor) => crossEntropy(x, c.labels, { weight: c.weight! }))(logits);
  assert.equal(tf.memory().numTensors, base + 2);
  tf.dispose([loss, grad]);
  assert.equal(tf.memory().numTensors, base);
  logits.dispose();
});

test("bad labels, weights and logits are rejected", () => {
  const logits = tf.zeros([2, 3]);
  assert.throws(
    () => crossEntropy(logits, [0, 3]),
    (e: unknown) =>
      e instanceof DataError &&
      /Label 3 at index 1 is invalid; expected an integer in 0..2 or -100/.test(e.message),
  );
  assert.throws(
    () => crossEntropy(logits, [0, 1], { weight: [1, 2] }),
    (e: unknown) =>
      e instanceof ConfigError && /2 entries; expected one per class \(3\)/.test(e.message),
  );
  assert.throws(() => crossEntropy(logits, [0]), /1 labels for 2 rows/);
  logits.dispose();
});

test("balancedClassWeights equals n / (numClasses * count_c) from the reference", () => {
  const { cases } = fixture<{
    cases: { labels: number[]; numClasses: number; weights: number[] }[];
  }>("class_weights.json");
  for (const c of cases) {
    const got = balancedClassWeights(c.labels, c.numClasses);
    got.forEach((g, i) => {
      assert.ok(Math.abs(g - c.weights[i]!) <= 1e-12, `${g} vs ${c.weights[i]}`);
    });
  }
  assert.deepEqual(balancedClassWeights([0, 0, 0, 1], 2), [4 / 6, 2]);
});

test("balancedClassWeights names a class without examples", () => {
  assert.throws(
    () => balancedClassWeights([0, 0, 2, 2], 3),
    (e: unknown) =>
      e instanceof ConfigError &&
      /class 1 has no examples among 4 labels \(classes 0..2 must all occur\)/.test(e.message),
  );
  assert.throws(() => balancedClassWeights([0, 5], 2), DataError);
});
