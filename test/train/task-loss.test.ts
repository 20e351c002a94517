/**
 * The multi-class, multi-label and regression losses against torch
 * (test/fixtures/tasks/losses.json, made by test/reference/make_task_fixtures.py): the
 * tfjs functions (value and autodiff gradient) and the float64 functions (value and
 * analytic gradient).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import {
  bceWithLogits,
  bceWithLogitsGrad,
  crossEntropy,
  crossEntropyGrad,
  mseGrad,
  mseLoss,
} from "../../src/engine/loss";
import { ConfigError } from "../../src/errors";
import { balancedPositiveWeights } from "../../src/util/class-weights";
import { REPO_ROOT } from "../helpers/python";

interface LossCase {
  name: string;
  kind: "cross_entropy" | "bce" | "mse";
  shape: [number, number];
  logits: number[];
  targets: number[];
  weight: number[] | null;
  loss: number;
  grad: number[];
}
const cases: LossCase[] = JSON.parse(
  readFileSync(path.join(REPO_ROOT, "test", "fixtures", "tasks", "losses.json"), "utf8"),
).cases;

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= tol * (1 + Math.abs(e)), `${what}[${i}]: got ${a}, want ${e}`);
  }
}

before(async () => {
  await selectBackend({ backend: "wasm" });
});

function tfLoss(c: LossCase) {
  const w = c.weight ?? undefined;
  return (x: tf.Tensor) =>
    c.kind === "cross_entropy"
      ? crossEntropy(x, c.targets, w ? { weight: w } : {})
      : c.kind === "bce"
        ? bceWithLogits(x, c.targets, w ? { posWeight: w } : {})
        : mseLoss(x, c.targets);
}

test("the fixture covers every loss, with and without weights, large logits and soft targets", () => {
  const names = cases.map((c) => c.name);
  for (const kind of ["cross_entropy", "bce", "mse"]) assert.ok(cases.some((c) => c.kind === kind));
  assert.ok(names.includes("multi-label, large logits"));
  assert.ok(names.includes("soft targets, pos_weight"));
  assert.ok(
    names.includes("regression, one target") && names.includes("regression, three targets"),
  );
});

test("tfjs losses and their autodiff gradients match torch (1e-6 relative)", () => {
  for (const c of cases) {
    const logits = tf.tensor2d(c.logits, c.shape);
    const f = tfLoss(c);
    const loss = f(logits);
    assertClose(loss.dataSync(), [c.loss], 1e-6, `${c.name} loss`);
    const grad = tf.grad(f)(logits);
    assertClose(grad.dataSync(), c.grad, 1e-6, `${c.name} grad`);
    tf.dispose([logits, loss, grad]);
  }
});

test("float64 losses and their analytic gradients match torch (1e-6 relative)", () => {
  for (const c of cases) {
    const [, k] = c.shape;
    const w = c.weight ?? undefined;
    const r =
      c.kind === "cross_entropy"
        ? crossEntropyGrad(c.logits, k, c.targets, w)
        : c.kind === "bce"
          ? bceWithLogitsGrad(c.logits, k, c.targets, w)
          : mseGrad(c.logits, c.targets);
    assertClose([r.loss], [c.loss], 1e-6, `${c.name} loss`);
    assertClose(r.grad, c.grad, 1e-6, `${c.name} grad`);
  }
});

test("pos_weight changes the multi-label loss, and a wrong-sized one is refused", () => {
  const plain = cases.find((c) => c.name === "multi-label")!;
  const weighted = cases.find((c) => c.name === "multi-label, pos_weight")!;
  assert.deepEqual(plain.logits, weighted.logits);
  assert.ok(Math.abs(plain.loss - weighted.loss) > 1e-2);
  const logits = tf.tensor2d(plain.logits, plain.shape);
  assert.throws(
    () => bceWithLogits(logits, plain.targets, { posWeight: [1, 2] }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /pos_weight has 2 entries; expected one per label \(5\)/.test(e.message),
  );
  assert.throws(
    () => mseLoss(logits, [1, 2, 3]),
    /got 3 target values for logits \[6, 5\]; expected 30/,
  );
  logits.dispose();
});

test("balanced positive weights are negatives / positives per label from the training rows", () => {
  const rows = [
    [1, 0, 1],
    [0, 0, 1],
    [0, 1, 1],
    [0, 0, 1],
  ];
  assert.deepEqual(balancedPositiveWeights(rows, 3), [3, 3, 0]);
  assert.throws(
    () =>
      balancedPositiveWeights(
        [
          [1, 0],
          [1, 0],
        ],
        2,
        ["Cytoplasm", "Peroxisome"],
      ),
    (e: unknown) =>
      e instanceof ConfigError &&
      /Peroxisome has no positive among 2 training rows; use class weights "none"/.test(e.message),
  );
  assert.throws(
    () => balancedPositiveWeights([[1, 0.5]], 2),
    /Label 0.5 at row 0, column 1 is not 0 or 1/,
  );
});
