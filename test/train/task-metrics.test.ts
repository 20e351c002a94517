/**
 * Multi-class, multi-label and regression metrics against sklearn and scipy
 * (test/fixtures/tasks/metrics.json, made by test/reference/make_task_fixtures.py), plus
 * hand-checked cases.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DataError } from "../../src/errors";
import {
  averageRanks,
  multiClassMetrics,
  multiLabelMetrics,
  pearson,
  regressionMetrics,
  spearman,
} from "../../src/train/metrics";
import { REPO_ROOT } from "../helpers/python";

const fixture = JSON.parse(
  readFileSync(path.join(REPO_ROOT, "test", "fixtures", "tasks", "metrics.json"), "utf8"),
);

const close = (a: number, e: number, what: string, tol = 1e-12) =>
  assert.ok(Math.abs(a - e) <= tol, `${what}: got ${a}, want ${e}`);

test("multi-class: accuracy, macro F1 over every class, MCC, confusion matrix and per-class scores match sklearn", () => {
  assert.equal(fixture.multiclass.length, 3);
  for (const c of fixture.multiclass) {
    const names = Array.from({ length: c.numClasses }, (_, i) => `class ${i}`);
    const m = multiClassMetrics(c.labels, c.preds, names);
    close(m.accuracy, c.accuracy, `${c.name} accuracy`);
    close(m.macroF1, c.macroF1, `${c.name} macroF1`);
    close(m.mcc, c.mcc, `${c.name} mcc`);
    assert.deepEqual(m.confusionMatrix, c.confusionMatrix);
    m.perClass.forEach((s, k) => {
      assert.equal(s.label, names[k]);
      close(s.precision, c.precision[k], `${c.name} precision ${k}`);
      close(s.recall, c.recall[k], `${c.name} recall ${k}`);
      close(s.f1, c.f1[k], `${c.name} f1 ${k}`);
      assert.equal(s.support, c.support[k]);
    });
    assert.equal(m.count, c.labels.length);
  }
  // An absent class counts in the macro mean with F1 0: 4 classes, not the 3 seen.
  const absent = fixture.multiclass.find((c: { name: string }) => c.name === "absent classes");
  assert.equal(absent.f1[3], 0);
});

test("multi-label: subset accuracy, sample Jaccard, micro/macro F1 and per-label MCC match sklearn", () => {
  assert.equal(fixture.multilabel.length, 3);
  for (const c of fixture.multilabel) {
    const names = c.targets[0].map((_: number, i: number) => `L${i}`);
    const m = multiLabelMetrics(c.targets, c.probabilities, names, c.threshold);
    close(m.subsetAccuracy, c.subsetAccuracy, `${c.name} subsetAccuracy`);
    close(m.jaccard, c.jaccard, `${c.name} jaccard`);
    close(m.microF1, c.microF1, `${c.name} microF1`);
    close(m.macroF1, c.macroF1, `${c.name} macroF1`);
    m.perLabel.forEach((s, k) => {
      close(s.mcc, c.mcc[k], `${c.name} mcc ${k}`);
      close(s.precision, c.precision[k], `${c.name} precision ${k}`);
      close(s.recall, c.recall[k], `${c.name} recall ${k}`);
      close(s.f1, c.f1[k], `${c.name} f1 ${k}`);
    });
    close(m.meanMcc, c.mcc.reduce((a: number, b: number) => a + b, 0) / c.mcc.length, "meanMcc");
    assert.equal(m.threshold, c.threshold);
  }
});

test("multi-label by hand: a probability equal to the threshold is predicted; counts per label", () => {
  const m = multiLabelMetrics(
    [
      [1, 0],
      [0, 1],
      [1, 1],
    ],
    [
      [0.5, 0.2],
      [0.1, 0.9],
      [0.7, 0.4],
    ],
    ["a", "b"],
  );
  assert.equal(m.subsetAccuracy, 2 / 3);
  assert.equal(m.jaccard, (1 + 1 + 0.5) / 3);
  assert.deepEqual(
    m.perLabel.map((s) => [s.label, s.positives, s.predicted]),
    [
      ["a", 2, 2],
      ["b", 2, 1],
    ],
  );
  assert.throws(
    () => multiLabelMetrics([[1, 2]], [[0.1, 0.2]], ["a", "b"]),
    (e: unknown) =>
      e instanceof DataError && /Target 2 at row 0, label b is not 0 or 1/.test(e.message),
  );
});

test("regression: RMSE, MAE, Pearson and Spearman (ties: average ranks) match sklearn and scipy", () => {
  assert.equal(fixture.regression.length, 2);
  for (const c of fixture.regression) {
    const names = c.targets[0].map((_: number, i: number) => `t${i}`);
    const m = regressionMetrics(c.targets, c.predictions, names);
    m.perTarget.forEach((s, k) => {
      const e = c.perTarget[k];
      close(s.rmse, e.rmse, `${c.name} rmse`, 1e-9);
      close(s.mae, e.mae, `${c.name} mae`, 1e-9);
      close(s.pearson, e.pearson, `${c.name} pearson`, 1e-9);
      close(s.spearman, e.spearman, `${c.name} spearman`, 1e-9);
    });
    const mean = (f: (e: { rmse: number }) => number) =>
      c.perTarget.reduce((a: number, e: { rmse: number }) => a + f(e), 0) / c.perTarget.length;
    close(
      m.rmse,
      mean((e) => e.rmse),
      `${c.name} mean rmse`,
      1e-9,
    );
  }
});

test("ranks by hand; a constant side has no correlation (NaN)", () => {
  assert.deepEqual(averageRanks([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4]);
  assert.equal(spearman([1, 2, 3], [3, 2, 1]), -1);
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3])));
  assert.throws(
    () => regressionMetrics([[1], [Number.NaN]], [[1], [2]], ["Tm"]),
    /target NaN at row 1, target Tm is not a finite number/,
  );
});
