/**
 * The multi-label and embedding chart builders (per-label MCC bars, label balance,
 * probability heatmap, embedding scatter) and the PCA behind the scatter.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  embeddingScatter,
  labelBalanceChart,
  labelMetricChart,
  probabilityHeatmap,
} from "../../src/display/charts";
import { pca } from "../../src/display/pca";
import { ConfigError } from "../../src/errors";
import { SeededRandom } from "../../src/util/random";

test("pca recovers the two directions of largest spread, their variances and shares", () => {
  // Points spread 5 along u1 and 2 along u2 (orthonormal, in 4-D), with a little noise.
  const s = Math.SQRT1_2;
  const u1 = [s, s, 0, 0];
  const u2 = [0, 0, s, -s];
  const rng = new SeededRandom(3);
  const gauss = () => {
    const a = Math.max(rng.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * rng.next());
  };
  // Each draw with its four sign flips: the sample's own axes are exactly u1 and u2.
  const coeffs = Array.from({ length: 100 }, () => [5 * gauss(), 2 * gauss()]).flatMap(([a, b]) => [
    [a!, b!],
    [-a!, b!],
    [a!, -b!],
    [-a!, -b!],
  ]);
  const vectors = coeffs.map(([a, b]) => u1.map((x, j) => 10 + a! * x + b! * u2[j]!));
  const r = pca(vectors);
  const dot = (p: number[], q: number[]) => p.reduce((acc, x, j) => acc + x * q[j]!, 0);
  assert.ok(Math.abs(Math.abs(dot(r.components[0]!, u1)) - 1) < 1e-6, `PC1 ${r.components[0]}`);
  assert.ok(Math.abs(Math.abs(dot(r.components[1]!, u2)) - 1) < 1e-6, `PC2 ${r.components[1]}`);
  // The coordinates are the (centred) coefficients, up to each component's sign.
  const sign = Math.sign(dot(r.components[0]!, u1));
  for (let i = 0; i < 8; i++) {
    assert.ok(Math.abs(r.points[i]![0]! - sign * coeffs[i]![0]!) < 1e-6, `point ${i}`);
  }
  assert.ok(r.variance[0]! > 20 && r.variance[0]! < 30, `variance ${r.variance}`);
  assert.ok(r.explainedRatio[0]! + r.explainedRatio[1]! > 0.999);
  // Signs are fixed: the largest coordinate of each component is positive.
  for (const comp of r.components) {
    const big = comp.reduce((b, x, j) => (Math.abs(x) > Math.abs(comp[b]!) ? j : b), 0);
    assert.ok(comp[big]! > 0);
  }
  assert.throws(
    () => pca([[1, 2]]),
    (e: unknown) => e instanceof ConfigError && /at least 2 vectors/.test(e.message),
  );
  assert.throws(() => pca([[1], [2]], { components: 2 }), /components must be an integer in 1..1/);
});

test("labelMetricChart: one bar per label, the mean as a line; a missing value is refused", () => {
  const fig = labelMetricChart([
    { label: "Cytoplasm", mcc: 0.5 },
    { label: "Nucleus", mcc: -0.1 },
    { label: "Peroxisome", mcc: 0 },
  ]);
  const bar = fig.data[0] as { x: string[]; y: number[] };
  assert.deepEqual(bar.x, ["Cytoplasm", "Nucleus", "Peroxisome"]);
  assert.deepEqual(bar.y, [0.5, -0.1, 0]);
  const line = (fig.layout!.shapes as { y0: number }[])[0]!;
  assert.ok(Math.abs(line.y0 - 0.4 / 3) < 1e-12);
  assert.match(
    String((fig.layout!.title as { text: string }).text),
    /MCC per label \(mean 0\.133\)/,
  );
  assert.throws(() => labelMetricChart([{ label: "a", f1: 0.2 }]), /Label "a" has no finite "mcc"/);
});

test("labelBalanceChart: positives per label for each split, with shares", () => {
  const fig = labelBalanceChart({
    task: { labels: ["Cytoplasm", "Nucleus"] },
    splits: {
      train: { rows: 10, classCounts: { Cytoplasm: 4, Nucleus: 1 } },
      test: { rows: 5, classCounts: { Cytoplasm: 2, Nucleus: 0 } },
    },
  });
  assert.equal(fig.data.length, 2);
  const train = fig.data[0] as { name: string; y: number[]; text: string[] };
  assert.equal(train.name, "train (10 proteins)");
  assert.deepEqual(train.y, [4, 1]);
  assert.deepEqual(train.text, ["4 (40.0 %)", "1 (10.0 %)"]);
  assert.throws(
    () =>
      labelBalanceChart({
        splits: { train: { rows: 1, classCounts: {} }, test: { rows: 1, classCounts: {} } },
      }),
    /needs stats.json's task/,
  );
});

test("probabilityHeatmap: proteins down, labels across, values and threshold marks", () => {
  const fig = probabilityHeatmap(
    [
      { name: "P1", probabilities: { a: 0.9, b: 0.2 } },
      { name: "P2", probabilities: { a: 0.5, b: 0.49 } },
    ],
    { threshold: 0.5 },
  );
  const h = fig.data[0] as { z: number[][]; x: string[]; y: string[]; text: string[][] };
  assert.deepEqual(h.z, [
    [0.9, 0.2],
    [0.5, 0.49],
  ]);
  assert.deepEqual(h.x, ["a", "b"]);
  assert.deepEqual(h.y, ["P1", "P2"]);
  assert.deepEqual(h.text, [
    ["0.90*", "0.20"],
    ["0.50*", "0.49"],
  ]);
  assert.throws(
    () => probabilityHeatmap([{ name: "P1", probabilities: { a: 0.1 } }], { labels: ["a", "b"] }),
    /P1 has no probability for label "b"/,
  );
});

test("embeddingScatter: one trace per group, sorted, with counts", () => {
  const fig = embeddingScatter([
    { x: 1, y: 2, group: "Nucleus", name: "P1" },
    { x: 3, y: 4, group: "Cytoplasm", name: "P2" },
    { x: 5, y: 6, group: "Nucleus", name: "P3" },
  ]);
  const traces = fig.data as { name: string; x: number[]; text: string[] }[];
  assert.deepEqual(
    traces.map((t) => t.name),
    ["Cytoplasm (1)", "Nucleus (2)"],
  );
  assert.deepEqual(traces[1]!.x, [1, 5]);
  assert.deepEqual(traces[1]!.text, ["P1", "P3"]);
});
