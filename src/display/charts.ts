/**
 * Plotly figure builders for the notebooks: pure functions from our data (prepare
 * stats, lengths, trainer events, metrics) to `{data, layout}`. Show them with
 * `display.plotly(figure)`.
 */
import type { PrepareStats } from "../data/prepare";
import { ConfigError } from "../errors";
import type { PlotlyFigure, PlotlyTrace } from "./plotly";

/** One optimizer step, as the trainer reports it. */
export interface TrainerStepEvent {
  type: "step";
  step: number;
  loss: number;
  lr?: number;
  epoch?: number;
}

/** One evaluation, as the trainer reports it. */
export interface TrainerEvalEvent {
  type: "eval";
  step: number;
  epoch?: number;
  /** Numbers are plotted; anything else (a confusion matrix) is ignored. */
  metrics: Record<string, unknown>;
}

/**
 * What the charts read. Other event types are ignored, and history files' flat form
 * (`{type: "train", step, loss}`, `{type: "eval", step, loss, accuracy, ...}`) is
 * accepted as well.
 */
export type TrainerEvent =
  | TrainerStepEvent
  | TrainerEvalEvent
  | { type: string; step?: number; epoch?: number; [key: string]: unknown };

/**
 * Height of the charts in px. Each layout sets one: without it jupyterlab-plotly draws
 * 360 px and the HTML fallback a height of its own.
 */
export const CHART_HEIGHT = 450;

/** Colours per class, kept the same across charts. */
export const CLASS_COLORS = { negative: "#636efa", positive: "#ef553b", unknown: "#9e9e9e" };

const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Any event, read field by field. */
type Loose = { type: string; [key: string]: unknown };
const loose = (e: TrainerEvent) => e as Loose;

const NOT_METRICS = new Set(["type", "step", "epoch", "metrics", "count", "seconds", "threshold"]);

/** The finite metrics of an eval event: from `metrics` if present, else its own fields. */
export function evalMetrics(event: TrainerEvent): Record<string, number> {
  const { metrics } = loose(event);
  const source = metrics && typeof metrics === "object" ? metrics : event;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(source)) if (finite(v) && !NOT_METRICS.has(k)) out[k] = v;
  return out;
}

/** A step event with a finite loss ("train" is the history file's name for it). */
function stepOf(e: TrainerEvent): { step: number; loss: number; epoch?: number } | undefined {
  const { type, step, loss, epoch } = loose(e);
  if ((type !== "step" && type !== "train") || !finite(step) || !finite(loss)) return undefined;
  return { step, loss, epoch: finite(epoch) ? epoch : undefined };
}

const steps = (events: readonly TrainerEvent[]) =>
  events.map(stepOf).filter((s): s is NonNullable<typeof s> => s !== undefined);

/** Class counts per split as grouped bars, with each class's share of its split. */
export function classBalanceChart(
  stats: Pick<PrepareStats, "splits" | "labelColumn">,
  options: { classNames?: Record<string, string> } = {},
): PlotlyFigure {
  const splits = Object.entries(stats.splits);
  const classes = [...new Set(splits.flatMap(([, s]) => Object.keys(s.classCounts)))].sort();
  const data = classes.map((c, i) => {
    const counts = splits.map(([, s]) => s.classCounts[c] ?? 0);
    return {
      type: "bar",
      name: options.classNames?.[c] ?? `${stats.labelColumn} = ${c}`,
      x: splits.map(([name]) => name),
      y: counts,
      text: counts.map((n, j) => `${n} (${((100 * n) / (splits[j]![1].rows || 1)).toFixed(1)} %)`),
      textposition: "auto",
      marker: {
        color: classes.length === 2 ? [CLASS_COLORS.negative, CLASS_COLORS.positive][i] : undefined,
      },
    };
  });
  return {
    data,
    layout: {
      title: { text: `Class balance per split (${stats.labelColumn})` },
      barmode: "group",
      xaxis: { title: { text: "split" } },
      yaxis: { title: { text: "proteins" } },
      height: CHART_HEIGHT,
    },
  };
}

/** 1, 2 or 5 times a power of ten, near `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 5, 10].find((m) => m * p >= raw) ?? 10) * p;
}

/**
 * Histogram of sequence lengths as bars over `[start, start + binSize)` bins (computed
 * here, so the figure stays small), with the length filter's bounds as dashed lines.
 */
export function lengthHistogram(
  lengths: ArrayLike<number>,
  options: { binSize?: number; minLength?: number; maxLength?: number; title?: string } = {},
): PlotlyFigure {
  const values = Array.from(lengths).filter(finite);
  if (options.binSize !== undefined && !(options.binSize > 0)) {
    throw new ConfigError(`Invalid binSize ${options.binSize}; expected a number > 0`, {
      field: "binSize",
      value: options.binSize,
    });
  }
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const binSize = options.binSize ?? (values.length ? niceStep(Math.max(1, (max - min) / 30)) : 1);
  const start = values.length ? Math.floor(min / binSize) * binSize : 0;
  const bins = values.length ? Math.floor((max - start) / binSize) + 1 : 0;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.floor((v - start) / binSize)]! += 1;
  const lefts = counts.map((_, i) => start + i * binSize);
  const shapes = [options.minLength, options.maxLength].filter(finite).map((x) => ({
    type: "line",
    x0: x,
    x1: x,
    yref: "paper",
    y0: 0,
    y1: 1,
    line: { dash: "dash", color: "#444", width: 1 },
  }));
  return {
    data: [
      {
        type: "bar",
        name: "proteins",
        x: lefts.map((l) => l + binSize / 2),
        y: counts,
        width: binSize,
        customdata: lefts.map((l) => [l, l + binSize]),
        hovertemplate: "length %{customdata[0]}-%{customdata[1]}: %{y}<extra></extra>",
      },
    ],
    layout: {
      title: { text: options.title ?? `Sequence length (${values.length} proteins)` },
      bargap: 0.05,
      shapes,
      xaxis: { title: { text: "residues" } },
      yaxis: { title: { text: "proteins" } },
      height: CHART_HEIGHT,
    },
  };
}

/** Loss names in eval metrics; `loss` is how histories before the split named either. */
const LOSS_KEYS = ["weightedLoss", "unweightedLoss", "loss"];

/**
 * The eval loss to plot next to the training loss: the class-weighted one when there is
 * one (what training minimises), else the unweighted one.
 */
function evalLoss(e: TrainerEvent): number | undefined {
  const m = evalMetrics(e);
  return LOSS_KEYS.map((k) => m[k]).find(finite);
}

/** Train loss per step and eval loss per evaluation, as traces. */
function lossTraces(events: readonly TrainerEvent[]): PlotlyTrace[] {
  const train = steps(events);
  const evals = events
    .filter((e) => e.type === "eval" && finite(loose(e).step))
    .map((e) => ({ step: loose(e).step as number, loss: evalLoss(e) }))
    .filter((e): e is { step: number; loss: number } => finite(e.loss));
  return [
    {
      type: "scatter",
      mode: "lines",
      name: "train loss",
      x: train.map((e) => e.step),
      y: train.map((e) => e.loss),
    },
    {
      type: "scatter",
      mode: "lines+markers",
      name: "eval loss",
      x: evals.map((e) => e.step),
      y: evals.map((e) => e.loss),
    },
  ];
}

/** Train loss per step and eval loss per evaluation. */
export function lossChart(events: readonly TrainerEvent[]): PlotlyFigure {
  return {
    data: lossTraces(events),
    layout: {
      title: { text: "Loss" },
      xaxis: { title: { text: "step" } },
      yaxis: { title: { text: "loss" } },
      height: CHART_HEIGHT,
    },
  };
}

const METRIC_ORDER = ["accuracy", "f1", "precision", "recall", "mcc", "rocAuc"];

/** Metric names in eval events (losses excluded), the usual ones first. */
export function metricNames(events: readonly TrainerEvent[]): string[] {
  const seen = new Set<string>();
  for (const e of events) {
    if (e.type === "eval") for (const k of Object.keys(evalMetrics(e))) seen.add(k);
  }
  for (const k of LOSS_KEYS) seen.delete(k);
  const known = METRIC_ORDER.filter((m) => seen.has(m));
  return [...known, ...[...seen].filter((m) => !METRIC_ORDER.includes(m)).sort()];
}

function metricTraces(
  events: readonly TrainerEvent[],
  x: "epoch" | "step",
  metrics: readonly string[],
): PlotlyTrace[] {
  const evals = events.filter((e) => e.type === "eval" && finite(loose(e)[x]));
  return metrics.map((m) => {
    const points = evals
      .map((e) => [loose(e)[x] as number, evalMetrics(e)[m]] as const)
      .filter(([, v]) => finite(v));
    return {
      type: "scatter",
      mode: "lines+markers",
      name: m,
      x: points.map(([px]) => px),
      y: points.map(([, v]) => v),
    };
  });
}

/** Eval metrics per epoch (per step when events carry no epoch), one line each. */
export function metricsChart(
  events: readonly TrainerEvent[],
  options: { metrics?: string[] } = {},
): PlotlyFigure {
  const x = events.some((e) => e.type === "eval" && finite(loose(e).epoch)) ? "epoch" : "step";
  return {
    data: metricTraces(events, x, options.metrics ?? metricNames(events)),
    layout: {
      title: { text: "Evaluation metrics" },
      xaxis: { title: { text: x } },
      yaxis: { title: { text: "value" } },
      height: CHART_HEIGHT,
    },
  };
}

/** Loss (top) and eval metrics (bottom) against the step: the live training chart. */
export function trainingChart(
  events: readonly TrainerEvent[],
  options: { metrics?: string[]; title?: string } = {},
): PlotlyFigure {
  const metrics = metricTraces(events, "step", options.metrics ?? metricNames(events)).map((t) => ({
    ...t,
    xaxis: "x2",
    yaxis: "y2",
  }));
  const last = steps(events).at(-1);
  const status = last
    ? `step ${last.step}${last.epoch !== undefined ? `, epoch ${last.epoch.toFixed(2)}` : ""}, loss ${last.loss.toFixed(4)}`
    : "waiting for the first step";
  return {
    data: [...lossTraces(events), ...metrics],
    layout: {
      title: { text: `${options.title ?? "Training"}: ${status}` },
      grid: { rows: 2, columns: 1, pattern: "independent" },
      xaxis: { title: { text: "step" }, matches: "x2" },
      yaxis: { title: { text: "loss" } },
      xaxis2: { title: { text: "step" } },
      yaxis2: { title: { text: "eval metric" } },
      height: 600,
    },
  };
}

/**
 * Confusion matrix heatmap, true label down, predicted across, each cell annotated
 * with its count and its share of the row.
 */
export function confusionMatrixChart(
  matrix: readonly (readonly number[])[],
  options: { labels?: string[]; title?: string } = {},
): PlotlyFigure {
  const k = matrix.length;
  if (matrix.some((row) => row.length !== k)) {
    throw new ConfigError(
      `Confusion matrix must be square; got rows of length ${matrix.map((r) => r.length).join(", ")}`,
      { rows: k },
    );
  }
  const labels = options.labels ?? matrix.map((_, i) => String(i));
  if (labels.length !== k) {
    throw new ConfigError(`${labels.length} labels for a ${k}x${k} confusion matrix`, {
      labels,
    });
  }
  const text = matrix.map((row) => {
    const total = row.reduce((s, v) => s + v, 0);
    return row.map((v) => `${v}<br>${total ? ((100 * v) / total).toFixed(1) : "0.0"} %`);
  });
  return {
    data: [
      {
        type: "heatmap",
        z: matrix.map((r) => [...r]),
        x: labels,
        y: labels,
        text,
        texttemplate: "%{text}",
        colorscale: "Blues",
        hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
      },
    ],
    layout: {
      title: { text: options.title ?? "Confusion matrix" },
      xaxis: { title: { text: "predicted" }, type: "category" },
      yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" },
      height: CHART_HEIGHT,
    },
  };
}

/** ROC curve with the chance diagonal; the AUC goes in the legend when given. */
export function rocChart(
  curve: { fpr: readonly number[]; tpr: readonly number[] },
  options: { auc?: number; name?: string } = {},
): PlotlyFigure {
  if (curve.fpr.length !== curve.tpr.length) {
    throw new ConfigError(
      `ROC curve has ${curve.fpr.length} fpr but ${curve.tpr.length} tpr values`,
      {},
    );
  }
  const name = options.name ?? "ROC";
  return {
    data: [
      {
        type: "scatter",
        mode: "lines",
        name: finite(options.auc) ? `${name} (AUC ${options.auc.toFixed(3)})` : name,
        x: [...curve.fpr],
        y: [...curve.tpr],
        line: { shape: "linear" },
      },
      {
        type: "scatter",
        mode: "lines",
        name: "chance",
        x: [0, 1],
        y: [0, 1],
        line: { dash: "dash", color: "#999" },
      },
    ],
    layout: {
      title: { text: "ROC curve" },
      xaxis: { title: { text: "false positive rate" }, range: [0, 1] },
      yaxis: { title: { text: "true positive rate" }, range: [0, 1.02], scaleanchor: "x" },
      height: CHART_HEIGHT,
    },
  };
}

export interface ProteinPrediction {
  /** Shown on the x axis, e.g. "P43220 GLP1R". */
  name: string;
  /** Predicted probability of the membrane class. */
  probability: number;
  /** Expected class: "membrane"/"non-membrane", 1/0, true/false; absent if unknown. */
  expected?: string | number | boolean;
}

/**
 * Predicted membrane probability per protein as bars coloured by the expected class,
 * with the decision threshold as a dashed line.
 */
export function membraneProbabilityChart(
  predictions: readonly ProteinPrediction[],
  options: { threshold?: number; title?: string } = {},
): PlotlyFigure {
  const threshold = options.threshold ?? 0.5;
  const classOf = (e: ProteinPrediction["expected"]) => {
    if (e === undefined || e === null) return "unknown";
    const s = String(e).trim().toLowerCase();
    if (["1", "true", "membrane", "m"].includes(s)) return "membrane";
    if (["0", "false", "non-membrane", "nonmembrane", "soluble", "s"].includes(s)) {
      return "non-membrane";
    }
    return String(e);
  };
  const groups = new Map<string, ProteinPrediction[]>();
  for (const p of predictions) {
    const c = classOf(p.expected);
    groups.set(c, [...(groups.get(c) ?? []), p]);
  }
  const color: Record<string, string> = {
    membrane: CLASS_COLORS.positive,
    "non-membrane": CLASS_COLORS.negative,
  };
  const order = ["membrane", "non-membrane"];
  const classes = [...groups.keys()].sort(
    (a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b),
  );
  return {
    data: classes.map((c) => {
      const ps = groups.get(c)!;
      return {
        type: "bar",
        name: `expected ${c}`,
        x: ps.map((p) => p.name),
        y: ps.map((p) => p.probability),
        text: ps.map((p) => p.probability.toFixed(3)),
        textposition: "outside",
        marker: { color: color[c] ?? CLASS_COLORS.unknown },
      };
    }),
    layout: {
      title: { text: options.title ?? "Predicted membrane probability" },
      // Long names are slanted; automargin grows the bottom margin to fit them and puts
      // the axis title below them instead of over them.
      xaxis: {
        title: { text: "protein", standoff: 16 },
        categoryorder: "array",
        categoryarray: predictions.map((p) => p.name),
        tickangle: -30,
        automargin: true,
      },
      yaxis: { title: { text: "P(membrane)" }, range: [0, 1.1], automargin: true },
      height: CHART_HEIGHT + 100,
      shapes: [
        {
          type: "line",
          xref: "paper",
          x0: 0,
          x1: 1,
          y0: threshold,
          y1: threshold,
          line: { dash: "dash", color: "#444", width: 1 },
        },
      ],
    },
  };
}

// ---- multi-label and embedding charts ----------------------------------------------------

/**
 * One bar per label of a per-label score (multi-label metrics' `perLabel`), e.g. each
 * location's MCC; the mean over labels as a dashed line.
 */
export function labelMetricChart<T extends { readonly label: string }>(
  perLabel: readonly T[],
  options: { metric?: string; title?: string } = {},
): PlotlyFigure {
  const metric = options.metric ?? "mcc";
  const values = perLabel.map((s) => (s as unknown as Record<string, unknown>)[metric]);
  const bad = values.findIndex((v) => !finite(v));
  if (bad >= 0) {
    throw new ConfigError(
      `Label ${JSON.stringify(perLabel[bad]!.label)} has no finite "${metric}" (${String(values[bad])})`,
      { metric },
    );
  }
  const ys = values as number[];
  const mean = ys.reduce((a, b) => a + b, 0) / (ys.length || 1);
  const bounded = metric === "mcc" ? [-1, 1.1] : [0, 1.1];
  return {
    data: [
      {
        type: "bar",
        name: metric,
        x: perLabel.map((s) => s.label),
        y: ys,
        text: ys.map((v) => v.toFixed(2)),
        textposition: "outside",
        marker: { color: ys.map((v) => (v >= 0 ? CLASS_COLORS.positive : CLASS_COLORS.negative)) },
      },
    ],
    layout: {
      title: {
        text: options.title ?? `${metric.toUpperCase()} per label (mean ${mean.toFixed(3)})`,
      },
      xaxis: { title: { text: "label" }, type: "category" },
      yaxis: {
        title: { text: metric },
        range: ys.every((v) => v >= -1 && v <= 1) ? bounded : undefined,
      },
      shapes: [
        {
          type: "line",
          xref: "paper",
          x0: 0,
          x1: 1,
          y0: mean,
          y1: mean,
          line: { dash: "dash", color: "#444", width: 1 },
        },
      ],
    },
  };
}

/**
 * Multi-label: positive proteins per label and split as grouped bars (from stats.json's
 * task and per-split counts), each annotated with its share of the split.
 */
export function labelBalanceChart(
  stats: Pick<PrepareStats, "splits"> & { task?: { labels: string[] } },
  options: { title?: string } = {},
): PlotlyFigure {
  const labels = stats.task?.labels;
  if (!labels) {
    throw new ConfigError(
      "labelBalanceChart needs stats.json's task (prepared by this version)",
      {},
    );
  }
  return {
    data: Object.entries(stats.splits).map(([split, s]) => {
      const counts = labels.map((l) => s.classCounts[l] ?? 0);
      return {
        type: "bar",
        name: `${split} (${s.rows} proteins)`,
        x: labels,
        y: counts,
        text: counts.map((n) => `${n} (${((100 * n) / (s.rows || 1)).toFixed(1)} %)`),
        textposition: "auto",
      };
    }),
    layout: {
      title: { text: options.title ?? "Positive proteins per label and split" },
      barmode: "group",
      xaxis: { title: { text: "label" }, type: "category" },
      yaxis: { title: { text: "proteins" } },
    },
  };
}

/** A protein's probability per label (a multi-label answer's `probabilities`). */
export interface LabelProbabilities {
  /** Shown on the y axis, e.g. "P43220 GLP1R". */
  name: string;
  probabilities: Record<string, number>;
}

/**
 * Proteins down, labels across, each cell the label's probability (0..1), annotated;
 * with `threshold`, cells at or above it are marked with a "*".
 */
export function probabilityHeatmap(
  rows: readonly LabelProbabilities[],
  options: { labels?: string[]; threshold?: number; title?: string } = {},
): PlotlyFigure {
  const labels = options.labels ?? Object.keys(rows[0]?.probabilities ?? {});
  const z = rows.map((r) =>
    labels.map((l) => {
      const p = r.probabilities[l];
      if (!finite(p)) {
        throw new ConfigError(`${r.name} has no probability for label ${JSON.stringify(l)}`, {
          name: r.name,
          label: l,
        });
      }
      return p;
    }),
  );
  const t = options.threshold;
  return {
    data: [
      {
        type: "heatmap",
        z,
        x: labels,
        y: rows.map((r) => r.name),
        zmin: 0,
        zmax: 1,
        colorscale: "Viridis",
        text: z.map((row) =>
          row.map((p) => `${p.toFixed(2)}${t !== undefined && p >= t ? "*" : ""}`),
        ),
        texttemplate: "%{text}",
        hovertemplate: "%{y}<br>%{x}: %{z:.3f}<extra></extra>",
      },
    ],
    layout: {
      title: {
        text:
          options.title ?? `Probability per label${t !== undefined ? ` (* at or above ${t})` : ""}`,
      },
      xaxis: { title: { text: "label" }, type: "category" },
      yaxis: { type: "category", autorange: "reversed" },
    },
  };
}

/** A point of a 2-D embedding plot. */
export interface EmbeddingPoint {
  x: number;
  y: number;
  /** Colour group (e.g. the protein's location). */
  group: string;
  /** Shown on hover. */
  name?: string;
}

/** A scatter of 2-D points (e.g. a PCA of embeddings), one colour per group. */
export function embeddingScatter(
  points: readonly EmbeddingPoint[],
  options: { title?: string; xTitle?: string; yTitle?: string } = {},
): PlotlyFigure {
  const groups = [...new Set(points.map((p) => p.group))].sort();
  return {
    data: groups.map((g) => {
      const ps = points.filter((p) => p.group === g);
      return {
        type: "scatter",
        mode: "markers",
        name: `${g} (${ps.length})`,
        x: ps.map((p) => p.x),
        y: ps.map((p) => p.y),
        text: ps.map((p) => p.name ?? ""),
        hovertemplate: "%{text}<br>(%{x:.2f}, %{y:.2f})<extra></extra>",
        marker: { size: 6, opacity: 0.8 },
      };
    }),
    layout: {
      title: { text: options.title ?? "Embeddings" },
      xaxis: { title: { text: options.xTitle ?? "PC 1" }, zeroline: false },
      yaxis: { title: { text: options.yTitle ?? "PC 2" }, zeroline: false },
    },
  };
}
