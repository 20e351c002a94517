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

function checkSameLength(a: Labels, b: Labels, what: string): void {
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
