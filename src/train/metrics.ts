/**
 * Evaluation metrics with sklearn's conventions, on plain arrays (no tensors).
 *
 * - Binary metrics treat class 1 as positive. Precision/recall/F1 with a zero denominator
 *   are 0 (sklearn's `zero_division="warn"` value).
 * - MCC is sklearn's multiclass formula on the confusion matrix (equal to the binary one),
 *   0 when a denominator term vanishes.
 * - ROC: sklearn's `roc_curve` (thresholds at distinct scores, descending, a first point
 *   (0, 0) at threshold +Infinity, collinear points dropped by default) and AUC by the
 *   trapezoid rule over it, so tied scores count half. With only one class present the
 *   AUC is undefined: `rocAuc` is NaN (serialised as null by JSON.stringify) and the
 *   curve's fpr or tpr is NaN throughout, where sklearn raises or warns.
 */
import { DataError } from "../errors";

type Labels = ArrayLike<number>;

export interface RocCurve {
  fpr: number[];
  tpr: number[];
  /** Descending; the first is +Infinity (the point (0, 0)). */
  thresholds: number[];
}

export interface BinaryMetrics {
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  mcc: number;
  /** NaN when scores were not given or only one class is present. */
  rocAuc: number;
  /** [[tn, fp], [fn, tp]] (rows: true label, columns: predicted). */
  confusionMatrix: [[number, number], [number, number]];
  /** Number of examples. */
  count: number;
}

function checkSameLength(a: { length: number }, b: { length: number }, what: string): void {
  if (a.length !== b.length) {
    throw new DataError(`${what}: ${a.length} labels but ${b.length} values`, {
      labels: a.length,
      values: b.length,
    });
  }
}

function checkClasses(values: Labels, numClasses: number, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(Number.isInteger(v) && v >= 0 && v < numClasses)) {
      throw new DataError(
        `${what} ${v} at index ${i} is invalid; expected an integer in 0..${numClasses - 1}`,
        { value: v, index: i, numClasses },
      );
    }
  }
}

function maxClass(values: Labels): number {
  let m = -1;
  for (let i = 0; i < values.length; i++) m = Math.max(m, values[i]!);
  return m;
}

/**
 * n-class confusion matrix: `m[true][pred]`. `numClasses` defaults to 1 + the largest
 * label or prediction seen.
 */
export function confusionMatrix(labels: Labels, preds: Labels, numClasses?: number): number[][] {
  checkSameLength(labels, preds, "confusionMatrix");
  const k = numClasses ?? Math.max(maxClass(labels), maxClass(preds), 1) + 1;
  checkClasses(labels, k, "Label");
  checkClasses(preds, k, "Prediction");
  const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]!]![preds[i]!]! += 1;
  return m;
}

export function accuracy(labels: Labels, preds: Labels): number {
  checkSameLength(labels, preds, "accuracy");
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] === preds[i]) ok++;
  return labels.length === 0 ? Number.NaN : ok / labels.length;
}

/** Matthews correlation from a confusion matrix (sklearn's multiclass formula). */
export function mccFromConfusion(m: number[][]): number {
  const k = m.length;
  let n = 0;
  let correct = 0;
  const t = new Array<number>(k).fill(0);
  const p = new Array<number>(k).fill(0);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = m[i]![j]!;
      n += v;
      t[i]! += v;
      p[j]! += v;
    }
    correct += m[i]![i]!;
  }
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
  const covYtYp = correct * n - dot(t, p);
  const covYpYp = n * n - dot(p, p);
  const covYtYt = n * n - dot(t, t);
  if (covYpYp * covYtYt === 0) return 0;
  return covYtYp / Math.sqrt(covYtYt * covYpYp);
}

export function matthewsCorrcoef(labels: Labels, preds: Labels, numClasses?: number): number {
  return mccFromConfusion(confusionMatrix(labels, preds, numClasses));
}

function checkScores(labels: Labels, scores: Labels): void {
  checkSameLength(labels, scores, "rocCurve");
  checkClasses(labels, 2, "Label");
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i]!)) {
      throw new DataError(`Score at index ${i} is NaN; scores must be numbers`, { index: i });
    }
  }
}

/** sklearn's `roc_curve` for binary labels and positive-class scores. */
export function rocCurve(
  labels: Labels,
  scores: Labels,
  options: { dropIntermediate?: boolean } = {},
): RocCurve {
  checkScores(labels, scores);
  // Descending by comparison, not subtraction, so infinite scores sort correctly.
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) =>
    scores[b]! > scores[a]! ? 1 : scores[b]! < scores[a]! ? -1 : 0,
  );
  // One point per distinct score, after all examples with that score.
  let fps: number[] = [];
  let tps: number[] = [];
  let thr: number[] = [];
  let tp = 0;
  for (let r = 0; r < order.length; r++) {
    const i = order[r]!;
    tp += labels[i]!;
    const next = order[r + 1];
    if (next === undefined || scores[next] !== scores[i]) {
      tps.push(tp);
      fps.push(r + 1 - tp);
      thr.push(scores[i]!);
    }
  }
  if ((options.dropIntermediate ?? true) && fps.length > 2) {
    const keep = fps.map(
      (_, j) =>
        j === 0 ||
        j === fps.length - 1 ||
        fps[j + 1]! - 2 * fps[j]! + fps[j - 1]! !== 0 ||
        tps[j + 1]! - 2 * tps[j]! + tps[j - 1]! !== 0,
    );
    fps = fps.filter((_, j) => keep[j]);
    tps = tps.filter((_, j) => keep[j]);
    thr = thr.filter((_, j) => keep[j]);
  }
  fps.unshift(0);
  tps.unshift(0);
  thr.unshift(Number.POSITIVE_INFINITY);
  const negatives = fps[fps.length - 1]!;
  const positives = tps[tps.length - 1]!;
  return {
    fpr: fps.map((f) => (negatives > 0 ? f / negatives : Number.NaN)),
    tpr: tps.map((t) => (positives > 0 ? t / positives : Number.NaN)),
    thresholds: thr,
  };
}

/** Area under the ROC curve (trapezoid); NaN when only one class is present. */
export function rocAuc(labels: Labels, scores: Labels): number {
  const { fpr, tpr } = rocCurve(labels, scores);
  if (Number.isNaN(fpr[1] ?? Number.NaN) || Number.isNaN(tpr[1] ?? Number.NaN)) return Number.NaN;
  let area = 0;
  for (let i = 1; i < fpr.length; i++) {
    area += ((fpr[i]! - fpr[i - 1]!) * (tpr[i]! + tpr[i - 1]!)) / 2;
  }
  return area;
}

/** Hard predictions from positive-class probabilities: 1 where `score >= threshold`. */
export function predictFromScores(scores: Labels, threshold = 0.5): number[] {
  return Array.from(scores, (s) => (s >= threshold ? 1 : 0));
}

/**
 * Binary classification metrics (positive class 1) from labels, predicted labels and,
 * optionally, positive-class probabilities (needed for ROC-AUC).
 */
export function binaryMetrics(labels: Labels, preds: Labels, scores?: Labels): BinaryMetrics {
  const m = confusionMatrix(labels, preds, 2);
  const [tn, fp] = m[0] as [number, number];
  const [fn, tp] = m[1] as [number, number];
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    accuracy: accuracy(labels, preds),
    precision: ratio(tp, tp + fp),
    recall: ratio(tp, tp + fn),
    f1: ratio(2 * tp, 2 * tp + fp + fn),
    mcc: mccFromConfusion(m),
    rocAuc: scores === undefined ? Number.NaN : rocAuc(labels, scores),
    confusionMatrix: [
      [tn, fp],
      [fn, tp],
    ],
    count: labels.length,
  };
}

// ---- multi-class (single-label, k classes) ----------------------------------------------

export interface ClassScores {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  /** True examples of the class. */
  support: number;
}

export interface MultiClassMetrics {
  accuracy: number;
  /** Mean of the per-class F1 over all k classes (sklearn's `f1_score(labels=range(k), average="macro")`). */
  macroF1: number;
  /** sklearn's multiclass MCC. */
  mcc: number;
  /** `m[true][pred]`, k x k. */
  confusionMatrix: number[][];
  perClass: ClassScores[];
  count: number;
}

/** Precision, recall and F1 with sklearn's zero-division value, 0. */
function prf(tp: number, fp: number, fn: number) {
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    precision: ratio(tp, tp + fp),
    recall: ratio(tp, tp + fn),
    f1: ratio(2 * tp, 2 * tp + fp + fn),
  };
}

/**
 * Metrics of a single-label task with `names.length` classes from integer labels and
 * predictions. Every class counts in the macro average, also one absent from both
 * (its F1 is 0, sklearn's zero-division value).
 */
export function multiClassMetrics(
  labels: Labels,
  preds: Labels,
  names: readonly string[],
): MultiClassMetrics {
  const k = names.length;
  const m = confusionMatrix(labels, preds, k);
  const perClass = names.map((label, c) => {
    const tp = m[c]![c]!;
    let fp = 0;
    let fn = 0;
    for (let j = 0; j < k; j++) {
      if (j === c) continue;
      fp += m[j]![c]!;
      fn += m[c]![j]!;
    }
    return { label, ...prf(tp, fp, fn), support: tp + fn };
  });
  return {
    accuracy: accuracy(labels, preds),
    macroF1: perClass.reduce((a, s) => a + s.f1, 0) / k,
    mcc: mccFromConfusion(m),
    confusionMatrix: m,
    perClass,
    count: labels.length,
  };
}

// ---- multi-label (k independent 0/1 labels) ---------------------------------------------

export interface LabelScores {
  label: string;
  /** Matthews correlation of this label's column (sklearn's binary MCC; 0 when undefined). */
  mcc: number;
  precision: number;
  recall: number;
  f1: number;
  /** True positives + false negatives: rows where the label is 1. */
  positives: number;
  /** Rows predicted 1. */
  predicted: number;
}

export interface MultiLabelMetrics {
  /** Exact-match ratio: rows whose whole predicted set equals the true set. */
  subsetAccuracy: number;
  /** Per-row |true ∩ pred| / |true ∪ pred|, averaged over rows (a row with both empty counts 0, as sklearn). */
  jaccard: number;
  /** F1 of the pooled true/false positives and false negatives of every label. */
  microF1: number;
  /** Mean of the per-label F1. */
  macroF1: number;
  /** Mean of the per-label MCC. */
  meanMcc: number;
  perLabel: LabelScores[];
  /** The probability at or above which a label is predicted. */
  threshold: number;
  count: number;
}

/**
 * Multi-label metrics as the DeepLoc-2.0 paper reports them (its evaluation code uses
 * sklearn): subset accuracy, Jaccard (sample-averaged), micro and macro F1, and the MCC of
 * each label. `targets` and `probabilities` hold one row of `names.length` values per
 * example; a label is predicted where its probability is >= `threshold`.
 */
export function multiLabelMetrics(
  targets: readonly ArrayLike<number>[],
  probabilities: readonly ArrayLike<number>[],
  names: readonly string[],
  threshold = 0.5,
): MultiLabelMetrics {
  const k = names.length;
  checkSameLength(targets, probabilities, "multiLabelMetrics");
  const counts = names.map(() => ({ tp: 0, fp: 0, fn: 0, tn: 0 }));
  let exact = 0;
  let jaccard = 0;
  targets.forEach((row, i) => {
    const probs = probabilities[i]!;
    if (row.length !== k || probs.length !== k) {
      throw new DataError(
        `multiLabelMetrics: row ${i} has ${row.length} targets and ${probs.length} probabilities; expected ${k} (${names.join(", ")})`,
        { index: i, numLabels: k },
      );
    }
    let inter = 0;
    let union = 0;
    let same = true;
    for (let c = 0; c < k; c++) {
      const y = row[c]!;
      if (y !== 0 && y !== 1) {
        throw new DataError(`Target ${y} at row ${i}, label ${names[c]} is not 0 or 1`, {
          index: i,
          label: names[c],
        });
      }
      const p = probs[c]! >= threshold ? 1 : 0;
      const cell = counts[c]!;
      if (y === 1 && p === 1) cell.tp++;
      else if (y === 0 && p === 1) cell.fp++;
      else if (y === 1) cell.fn++;
      else cell.tn++;
      if (y === 1 && p === 1) inter++;
      if (y === 1 || p === 1) union++;
      if (y !== p) same = false;
    }
    if (same) exact++;
    jaccard += union > 0 ? inter / union : 0;
  });
  const n = targets.length;
  const perLabel = names.map((label, c) => {
    const { tp, fp, fn, tn } = counts[c]!;
    return {
      label,
      mcc: mccFromConfusion([
        [tn, fp],
        [fn, tp],
      ]),
      ...prf(tp, fp, fn),
      positives: tp + fn,
      predicted: tp + fp,
    };
  });
  const sum = (f: (c: { tp: number; fp: number; fn: number }) => number) =>
    counts.reduce((a, c) => a + f(c), 0);
  const mean = (f: (s: LabelScores) => number) => perLabel.reduce((a, s) => a + f(s), 0) / k;
  return {
    subsetAccuracy: n > 0 ? exact / n : Number.NaN,
    jaccard: n > 0 ? jaccard / n : Number.NaN,
    microF1: prf(
      sum((c) => c.tp),
      sum((c) => c.fp),
      sum((c) => c.fn),
    ).f1,
    macroF1: mean((s) => s.f1),
    meanMcc: mean((s) => s.mcc),
    perLabel,
    threshold,
    count: n,
  };
}

// ---- regression ------------------------------------------------------------------------

export interface TargetScores {
  target: string;
  rmse: number;
  mae: number;
  /** Pearson's r (NaN when either side is constant, as scipy). */
  pearson: number;
  /** Spearman's rho: Pearson's r of the ranks, ties sharing their average rank. */
  spearman: number;
}

export interface RegressionMetrics {
  /** Means over the targets of the per-target values (for one target: its values). */
  rmse: number;
  mae: number;
  pearson: number;
  spearman: number;
  perTarget: TargetScores[];
  count: number;
}

/** Pearson's correlation coefficient of two equal-length samples. */
export function pearson(a: Labels, b: Labels): number {
  checkSameLength(a, b, "pearson");
  const n = a.length;
  if (n < 2) return Number.NaN;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return Number.NaN;
  // Clamp the rounding of a perfect correlation into [-1, 1].
  return Math.max(-1, Math.min(1, sab / Math.sqrt(saa * sbb)));
}

/** 1-based ranks; tied values share the average of their ranks. */
export function averageRanks(values: Labels): number[] {
  const order = Array.from({ length: values.length }, (_, i) => i).sort(
    (x, y) => values[x]! - values[y]!,
  );
  const ranks = new Array<number>(values.length);
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && values[order[end]!] === values[order[start]!]) end++;
    const rank = (start + 1 + end) / 2; // mean of ranks start+1 .. end
    for (let j = start; j < end; j++) ranks[order[j]!] = rank;
    start = end;
  }
  return ranks;
}

/** Spearman's rank correlation (scipy's `spearmanr`: average ranks for ties). */
export function spearman(a: Labels, b: Labels): number {
  checkSameLength(a, b, "spearman");
  return pearson(averageRanks(a), averageRanks(b));
}

/**
 * Regression metrics per target and averaged over targets. `targets` and `predictions`
 * hold one row of `names.length` values per example.
 */
export function regressionMetrics(
  targets: readonly ArrayLike<number>[],
  predictions: readonly ArrayLike<number>[],
  names: readonly string[],
): RegressionMetrics {
  checkSameLength(targets, predictions, "regressionMetrics");
  const k = names.length;
  const column = (rows: readonly ArrayLike<number>[], c: number, what: string) =>
    rows.map((r, i) => {
      if (r.length !== k) {
        throw new DataError(
          `regressionMetrics: ${what} row ${i} has ${r.length} values; expected ${k}`,
          {
            index: i,
          },
        );
      }
      const v = r[c]!;
      if (!Number.isFinite(v)) {
        throw new DataError(
          `regressionMetrics: ${what} ${v} at row ${i}, target ${names[c]} is not a finite number`,
          {
            index: i,
          },
        );
      }
      return v;
    });
  const perTarget = names.map((target, c) => {
    const t = column(targets, c, "target");
    const p = column(predictions, c, "prediction");
    let se = 0;
    let ae = 0;
    for (let i = 0; i < t.length; i++) {
      se += (p[i]! - t[i]!) ** 2;
      ae += Math.abs(p[i]! - t[i]!);
    }
    const n = t.length;
    return {
      target,
      rmse: n > 0 ? Math.sqrt(se / n) : Number.NaN,
      mae: n > 0 ? ae / n : Number.NaN,
      pearson: pearson(p, t),
      spearman: spearman(p, t),
    };
  });
  const mean = (f: (s: TargetScores) => number) => perTarget.reduce((a, s) => a + f(s), 0) / k;
  return {
    rmse: mean((s) => s.rmse),
    mae: mean((s) => s.mae),
    pearson: mean((s) => s.pearson),
    spearman: mean((s) => s.spearman),
    perTarget,
    count: targets.length,
  };
}
