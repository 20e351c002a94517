import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DataError } from "../../src/errors";
import {
  accuracy,
  binaryMetrics,
  confusionMatrix,
  matthewsCorrcoef,
  predictFromScores,
  rocAuc,
  rocCurve,
} from "../../src/train/metrics";
import { REPO_ROOT } from "../helpers/python";

type Num = number | "NaN" | "Infinity" | "-Infinity";
interface Curve {
  fpr: Num[];
  tpr: Num[];
  thresholds: Num[];
}
interface BinaryCase {
  name: string;
  labels: number[];
  scores: number[];
  preds: number[];
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  mcc: number;
  rocAuc: Num;
  confusionMatrix: number[][];
  roc: Curve;
  rocAll: Curve;
}
interface MultiCase {
  numClasses: number;
  labels: number[];
  preds: number[];
  confusionMatrix: number[][];
  accuracy: number;
  mcc: number;
}

const fx = JSON.parse(
  readFileSync(path.join(REPO_ROOT, "test", "fixtures", "train", "metrics.json"), "utf8"),
) as { binary: BinaryCase[]; multiclass: MultiCase[] };

function num(v: Num): number {
  return typeof v === "number" ? v : Number(v);
}

function assertNum(actual: number, expected: Num, what: string): void {
  const e = num(expected);
  if (Number.isNaN(e) || !Number.isFinite(e)) {
    assert.ok(Object.is(actual, e), `${what}: got ${actual}, want ${e}`);
  } else {
    assert.ok(Math.abs(actual - e) <= 1e-12, `${what}: got ${actual}, want ${e}`);
  }
}

function assertCurve(actual: ReturnType<typeof rocCurve>, expected: Curve, what: string): void {
  for (const key of ["fpr", "tpr", "thresholds"] as const) {
    assert.equal(actual[key].length, expected[key].length, `${what} ${key} length`);
    actual[key].forEach((v, i) => {
      assertNum(v, expected[key][i]!, `${what} ${key}[${i}]`);
    });
  }
}

test("binary metrics match the reference, including ties and one-class edge cases", () => {
  const names = fx.binary.map((c) => c.name);
  for (const n of [
    "ties",
    "all scores tied",
    "all positive labels",
    "nothing predicted positive",
  ]) {
    assert.ok(names.includes(n), n);
  }
  for (const c of fx.binary) {
    assert.deepEqual(predictFromScores(c.scores).length, c.labels.length);
    const m = binaryMetrics(c.labels, c.preds, c.scores);
    for (const key of ["accuracy", "precision", "recall", "f1", "mcc", "rocAuc"] as const) {
      assertNum(m[key], c[key], `${c.name} ${key}`);
    }
    assert.deepEqual(m.confusionMatrix, c.confusionMatrix, `${c.name} confusion`);
    assert.equal(m.count, c.labels.length);
  }
});

test("predictions at threshold 0.5 are score >= 0.5, as in the reference", () => {
  for (const c of fx.binary.filter((k) => k.name !== "given preds")) {
    assert.deepEqual(predictFromScores(c.scores), c.preds, c.name);
  }
});

test("ROC curve points match sklearn's roc_curve with and without dropped points", () => {
  for (const c of fx.binary) {
    assertCurve(rocCurve(c.labels, c.scores), c.roc, c.name);
    assertCurve(
      rocCurve(c.labels, c.scores, { dropIntermediate: false }),
      c.rocAll,
      `${c.name} all`,
    );
  }
});

test("ROC-AUC counts tied scores half and is NaN (null in JSON) with one class", () => {
  assert.equal(rocAuc([0, 1], [0.5, 0.5]), 0.5);
  assert.equal(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75);
  const oneClass = binaryMetrics([1, 1, 1], [1, 0, 1], [0.9, 0.1, 0.8]);
  assert.ok(Number.isNaN(oneClass.rocAuc));
  assert.equal(JSON.parse(JSON.stringify(oneClass)).rocAuc, null);
  assert.ok(Number.isNaN(binaryMetrics([0, 1], [0, 1]).rocAuc), "no scores given");
});

test("multiclass confusion matrix, accuracy and MCC match the reference", () => {
  for (const c of fx.multiclass) {
    assert.deepEqual(confusionMatrix(c.labels, c.preds, c.numClasses), c.confusionMatrix);
    assertNum(accuracy(c.labels, c.preds), c.accuracy, "accuracy");
    assertNum(matthewsCorrcoef(c.labels, c.preds, c.numClasses), c.mcc, "mcc");
  }
  assert.deepEqual(confusionMatrix([0, 2], [1, 2]), [
    [0, 1, 0],
    [0, 0, 0],
    [0, 0, 1],
  ]);
});

test("invalid inputs are rejected with the offending value", () => {
  assert.throws(
    () => binaryMetrics([0, 2], [0, 1]),
    (e: unknown) =>
      e instanceof DataError &&
      /Label 2 at index 1 is invalid; expected an integer in 0..1/.test(e.message),
  );
  assert.throws(() => rocCurve([0, 1], [0.1, Number.NaN]), /Score at index 1 is NaN/);
  assert.throws(() => accuracy([0, 1], [0]), /2 labels but 1 values/);
});
