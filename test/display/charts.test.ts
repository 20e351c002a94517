import assert from "node:assert/strict";
import { test } from "node:test";
import type { PrepareStats } from "../../src/data/prepare";
import {
  CLASS_COLORS,
  classBalanceChart,
  confusionMatrixChart,
  evalMetrics,
  lengthHistogram,
  lossChart,
  membraneProbabilityChart,
  metricNames,
  metricsChart,
  rocChart,
  type TrainerEvent,
  trainingChart,
} from "../../src/display";
import { ConfigError } from "../../src/errors";
import { rocCurve } from "../../src/train/metrics";

type Trace = Record<string, unknown>;
const trace = (fig: { data: Trace[] }, name: string) => {
  const t = fig.data.find((d) => d.name === name);
  assert.ok(t, `no trace "${name}" in ${fig.data.map((d) => d.name).join(", ")}`);
  return t;
};
const layout = (fig: { layout?: Record<string, unknown> }) => fig.layout ?? {};
const title = (fig: { layout?: Record<string, unknown> }) =>
  (layout(fig).title as { text: string }).text;

const EVENTS: TrainerEvent[] = [
  { type: "step", step: 1, loss: 0.9, lr: 1e-5, epoch: 0.5 },
  { type: "step", step: 2, loss: 0.7, lr: 2e-5, epoch: 1 },
  { type: "eval", step: 2, epoch: 1, metrics: { loss: 0.65, accuracy: 0.7, f1: 0.5, mcc: 0.2 } },
  { type: "checkpoint", step: 2 },
  { type: "step", step: 3, loss: Number.NaN, epoch: 1.5 },
  { type: "step", step: 4, loss: 0.4, lr: 1e-5, epoch: 2 },
  { type: "eval", step: 4, epoch: 2, metrics: { loss: 0.5, accuracy: 0.8, f1: 0.6, mcc: 0.4 } },
];

// The history file's flat form of the same run.
const HISTORY: TrainerEvent[] = [
  { type: "train", step: 1, loss: 0.9, lr: 1e-5, epoch: 0.5 },
  { type: "train", step: 2, loss: 0.7, lr: 2e-5, epoch: 1 },
  { type: "eval", step: 2, epoch: 1, loss: 0.65, accuracy: 0.7, f1: 0.5, mcc: 0.2, rocAuc: null },
  { type: "train", step: 4, loss: 0.4, lr: 1e-5, epoch: 2 },
  { type: "eval", step: 4, epoch: 2, loss: 0.5, accuracy: 0.8, f1: 0.6, mcc: 0.4, rocAuc: null },
];

test("class balance: bars per class over the splits, with the share of each split", () => {
  const stats: Pick<PrepareStats, "splits" | "labelColumn"> = {
    labelColumn: "Membrane",
    splits: {
      train: { rows: 80, classCounts: { "0": 56, "1": 24 } },
      test: { rows: 20, classCounts: { "0": 15, "1": 5 } },
    },
  };
  const fig = classBalanceChart(stats, { classNames: { "1": "membrane" } });
  assert.equal(fig.data.length, 2);
  const neg = trace(fig, "Membrane = 0");
  const pos = trace(fig, "membrane");
  assert.deepEqual(neg.x, ["train", "test"]);
  assert.deepEqual(neg.y, [56, 15]);
  assert.deepEqual(pos.y, [24, 5]);
  assert.deepEqual(pos.text, ["24 (30.0 %)", "5 (25.0 %)"]);
  assert.deepEqual(pos.marker, { color: CLASS_COLORS.positive });
  assert.equal(layout(fig).barmode, "group");
  assert.equal(title(fig), "Class balance per split (Membrane)");
});

test("length histogram: counts in fixed bins, bounds as dashed lines", () => {
  const fig = lengthHistogram([100, 105, 119, 120, 150, 199, 200, Number.NaN], {
    binSize: 20,
    minLength: 100,
    maxLength: 200,
  });
  const [bars] = fig.data;
  assert.deepEqual(bars!.x, [110, 130, 150, 170, 190, 210]);
  assert.deepEqual(bars!.y, [3, 1, 1, 0, 1, 1]);
  assert.equal(bars!.width, 20);
  assert.deepEqual((bars!.customdata as number[][])[0], [100, 120]);
  const shapes = layout(fig).shapes as { x0: number }[];
  assert.deepEqual(
    shapes.map((s) => s.x0),
    [100, 200],
  );
  assert.equal(title(fig), "Sequence length (7 proteins)");

  // Automatic bins are 1, 2 or 5 times a power of ten, about 30 over the range.
  const auto = lengthHistogram(Array.from({ length: 413 }, (_, i) => 100 + i));
  assert.equal(auto.data[0]!.width, 20);
  assert.equal(
    (auto.data[0]!.y as number[]).reduce((a, b) => a + b, 0),
    413,
  );
  assert.deepEqual(lengthHistogram([]).data[0]!.y, []);
  assert.throws(() => lengthHistogram([1], { binSize: 0 }), ConfigError);
});

test("loss chart: train loss per step (non-finite skipped) and eval loss per evaluation", () => {
  for (const events of [EVENTS, HISTORY]) {
    const fig = lossChart(events);
    assert.deepEqual(trace(fig, "train loss").x, [1, 2, 4]);
    assert.deepEqual(trace(fig, "train loss").y, [0.9, 0.7, 0.4]);
    assert.deepEqual(trace(fig, "eval loss").x, [2, 4]);
    assert.deepEqual(trace(fig, "eval loss").y, [0.65, 0.5]);
  }
  // The trainer's eval events name both losses: the class-weighted one is plotted (the
  // training loss is class-weighted too), and neither is a "metric".
  const named: TrainerEvent[] = [
    {
      type: "eval",
      step: 2,
      epoch: 1,
      metrics: { weightedLoss: 0.6, unweightedLoss: 0.55, f1: 0.5 },
    },
    { type: "eval", step: 4, epoch: 2, metrics: { unweightedLoss: 0.45, f1: 0.6 } },
  ];
  assert.deepEqual(trace(lossChart(named), "eval loss").y, [0.6, 0.45]);
  assert.deepEqual(metricNames(named), ["f1"]);
});

test("metrics chart: one line per metric over epochs, the usual metrics first", () => {
  assert.deepEqual(metricNames(EVENTS), ["accuracy", "f1", "mcc"]);
  assert.deepEqual(metricNames(HISTORY), ["accuracy", "f1", "mcc"]);
  assert.deepEqual(evalMetrics(HISTORY[2]!), { loss: 0.65, accuracy: 0.7, f1: 0.5, mcc: 0.2 });
  // The trainer's metrics carry a confusion matrix and the example count: not plotted.
  const trainerEval = {
    type: "eval",
    step: 9,
    epoch: 1,
    metrics: {
      accuracy: 0.5,
      rocAuc: Number.NaN,
      confusionMatrix: [
        [1, 1],
        [1, 1],
      ],
      count: 4,
    },
  };
  assert.deepEqual(evalMetrics(trainerEval), { accuracy: 0.5 });
  const fig = metricsChart(EVENTS);
  assert.deepEqual(
    fig.data.map((t) => t.name),
    ["accuracy", "f1", "mcc"],
  );
  assert.deepEqual(trace(fig, "f1").x, [1, 2]);
  assert.deepEqual(trace(fig, "f1").y, [0.5, 0.6]);
  assert.deepEqual((layout(fig).xaxis as { title: { text: string } }).title.text, "epoch");
  const only = metricsChart(EVENTS, { metrics: ["mcc"] });
  assert.deepEqual(only.data.length, 1);
  // Without epochs, the x axis is the step.
  const bySteps = metricsChart([{ type: "eval", step: 7, metrics: { accuracy: 1 } }]);
  assert.deepEqual(bySteps.data[0]!.x, [7]);
});

test("training chart: loss on top, eval metrics below, the last step in the title", () => {
  const fig = trainingChart(EVENTS);
  assert.equal(title(fig), "Training: step 4, epoch 2.00, loss 0.4000");
  assert.deepEqual(trace(fig, "accuracy").x, [2, 4]);
  assert.equal(trace(fig, "accuracy").yaxis, "y2");
  assert.equal(trace(fig, "train loss").yaxis, undefined);
  assert.equal(title(trainingChart([])), "Training: waiting for the first step");
});

test("confusion matrix: heatmap with true labels down, counts and row shares as text", () => {
  const fig = confusionMatrixChart(
    [
      [50, 10],
      [5, 35],
    ],
    { labels: ["soluble", "membrane"] },
  );
  const [h] = fig.data;
  assert.equal(h!.type, "heatmap");
  assert.deepEqual(h!.z, [
    [50, 10],
    [5, 35],
  ]);
  assert.deepEqual(h!.x, ["soluble", "membrane"]);
  assert.deepEqual(h!.text, [
    ["50<br>83.3 %", "10<br>16.7 %"],
    ["5<br>12.5 %", "35<br>87.5 %"],
  ]);
  assert.equal((layout(fig).yaxis as { autorange: string }).autorange, "reversed");
  assert.throws(() => confusionMatrixChart([[1, 2]]), ConfigError);
  assert.throws(() => confusionMatrixChart([[1]], { labels: ["a", "b"] }), ConfigError);
});

test("ROC chart: the curve from rocCurve, AUC in the legend, chance diagonal", () => {
  const curve = rocCurve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]);
  const fig = rocChart(curve, { auc: 0.75 });
  const roc = trace(fig, "ROC (AUC 0.750)");
  assert.deepEqual(roc.x, curve.fpr);
  assert.deepEqual(roc.y, curve.tpr);
  assert.deepEqual(trace(fig, "chance").x, [0, 1]);
  assert.throws(() => rocChart({ fpr: [0, 1], tpr: [0] }), ConfigError);
});

test("membrane probability: bars coloured by expected class, in the given order, threshold line", () => {
  const fig = membraneProbabilityChart(
    [
      { name: "GLP1R", probability: 0.97, expected: "membrane" },
      { name: "p53", probability: 0.08, expected: "non-membrane" },
      { name: "PD-1", probability: 0.62, expected: 1 },
      { name: "ADH5", probability: 0.51, expected: false },
      { name: "new", probability: 0.3 },
    ],
    { threshold: 0.6 },
  );
  assert.deepEqual(
    fig.data.map((t) => t.name),
    ["expected membrane", "expected non-membrane", "expected unknown"],
  );
  const m = trace(fig, "expected membrane");
  assert.deepEqual(m.x, ["GLP1R", "PD-1"]);
  assert.deepEqual(m.y, [0.97, 0.62]);
  assert.deepEqual(m.text, ["0.970", "0.620"]);
  assert.deepEqual(m.marker, { color: CLASS_COLORS.positive });
  assert.deepEqual(trace(fig, "expected non-membrane").x, ["p53", "ADH5"]);
  assert.deepEqual(trace(fig, "expected unknown").marker, { color: CLASS_COLORS.unknown });
  const xaxis = layout(fig).xaxis as { categoryarray: string[] };
  assert.deepEqual(xaxis.categoryarray, ["GLP1R", "p53", "PD-1", "ADH5", "new"]);
  const [line] = layout(fig).shapes as { y0: number }[];
  assert.equal(line!.y0, 0.6);
});

test("every chart sets its height (jupyterlab-plotly would draw 360 px) and slanted protein names get room", () => {
  const stats: Pick<PrepareStats, "splits" | "labelColumn"> = {
    labelColumn: "Membrane",
    splits: {
      train: { rows: 2, classCounts: { "0": 1, "1": 1 } },
      test: { rows: 1, classCounts: { "0": 1 } },
    },
  };
  const bars = membraneProbabilityChart([
    { name: "P43220 Glucagon-like peptide 1 receptor", probability: 0.9, expected: "membrane" },
  ]);
  const figures = {
    classBalanceChart: classBalanceChart(stats),
    lengthHistogram: lengthHistogram([120, 130]),
    lossChart: lossChart(EVENTS),
    metricsChart: metricsChart(EVENTS),
    trainingChart: trainingChart(EVENTS),
    confusionMatrixChart: confusionMatrixChart([
      [1, 0],
      [0, 1],
    ]),
    rocChart: rocChart({ fpr: [0, 1], tpr: [0, 1] }),
    membraneProbabilityChart: bars,
  };
  for (const [name, fig] of Object.entries(figures)) {
    const height = layout(fig).height;
    assert.ok(typeof height === "number" && height >= 400, `${name}: height ${height}`);
  }
  // The bottom margin grows to fit the slanted names, with the axis title below them.
  const xaxis = layout(bars).xaxis as Record<string, unknown>;
  assert.equal(xaxis.automargin, true);
  assert.ok(typeof xaxis.tickangle === "number" && xaxis.tickangle < 0);
});
