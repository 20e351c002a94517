/**
 * Evaluation over a labelled set: the task's loss, every example counting once
 * (`unweightedLoss`), with weights also the weighted loss the trainer minimises
 * (`weightedLoss`), per-example outputs, and the task's metrics:
 *
 * - single-label, 2 classes (the binary workflow): accuracy, precision, recall, F1,
 *   MCC, ROC-AUC, confusion matrix (class 1 positive);
 * - single-label, k > 2 classes: accuracy, macro F1, MCC, confusion matrix, per class;
 * - multi-label: subset accuracy, Jaccard, micro / macro F1, per-label MCC (labels at
 *   probability >= threshold);
 * - regression: RMSE, MAE, Pearson, Spearman per target and averaged.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { EsmEngine } from "../engine/engine";
import {
  bceWithLogitsGrad,
  crossEntropy,
  crossEntropyGrad,
  mseGrad,
  sigmoid,
} from "../engine/loss";
import type { TaskSpec } from "../util/task";
import { type Example, epochBatches } from "./batching";
import {
  type BinaryMetrics,
  binaryMetrics,
  type MultiClassMetrics,
  type MultiLabelMetrics,
  multiClassMetrics,
  multiLabelMetrics,
  type RegressionMetrics,
  regressionMetrics,
} from "./metrics";

/** The two losses carry distinct names: they differ whenever the classes are weighted. */
export interface EvalLosses {
  /** The task's mean loss over the examples (cross-entropy, BCE or MSE), unweighted. */
  unweightedLoss: number;
  /** The weighted loss (class weights, or pos_weight), what training minimises; only
   * when weights were given. */
  weightedLoss?: number;
}

/** The metrics of one evaluation, by task (see the file header). */
export type EvalMetrics = (
  | BinaryMetrics
  | MultiClassMetrics
  | MultiLabelMetrics
  | RegressionMetrics
) &
  EvalLosses;

export interface EvalResult<M extends EvalMetrics = EvalMetrics> {
  metrics: M;
  /**
   * Per example (in input order): class probabilities (single-label, a softmax), each
   * label's probability (multi-label, sigmoids), or the predicted values (regression).
   */
  probabilities: number[][];
  /** Per example: the argmax class (single-label; empty for the other tasks). */
  predictions: number[];
}

/** Binary metrics (the binary task, or any 2-class single-label task). */
export function isBinaryMetrics(m: EvalMetrics): m is BinaryMetrics & EvalLosses {
  return "rocAuc" in m;
}

/** The eval line of `esmkit train`: the losses, then the task's headline metrics. */
export function describeMetrics(m: EvalMetrics): string {
  const f = (x: number) => x.toFixed(4);
  const loss =
    m.weightedLoss === undefined
      ? `loss ${f(m.unweightedLoss)}`
      : `loss ${f(m.weightedLoss)} (${"perLabel" in m ? "pos_weight" : "class"}-weighted; unweighted ${f(m.unweightedLoss)})`;
  if (isBinaryMetrics(m)) {
    return `${loss} accuracy ${f(m.accuracy)} f1 ${f(m.f1)} mcc ${f(m.mcc)} auc ${m.rocAuc?.toFixed(4)}`;
  }
  if ("perLabel" in m) {
    return `${loss} subset accuracy ${f(m.subsetAccuracy)} jaccard ${f(m.jaccard)} micro-f1 ${f(m.microF1)} macro-f1 ${f(m.macroF1)} mean mcc ${f(m.meanMcc)}`;
  }
  if ("perTarget" in m) {
    return `${loss} rmse ${f(m.rmse)} mae ${f(m.mae)} pearson ${f(m.pearson)} spearman ${f(m.spearman)}`;
  }
  return `${loss} accuracy ${f(m.accuracy)} macro-f1 ${f(m.macroF1)} mcc ${f(m.mcc)}`;
}

/** What evaluating the binary task (no `task` given) returns. */
export type BinaryEvalResult = EvalResult<BinaryMetrics & EvalLosses>;

export interface EvaluateOptions {
  batchSize?: number;
  /** Single-label: per-class weights of `weightedLoss`. */
  classWeights?: number[];
  /** Multi-label: per-label positive weights of `weightedLoss`. */
  posWeight?: number[];
  /** The task; without it, the binary task (labels 0/1). */
  task?: TaskSpec;
  /** Multi-label: a label is predicted at probability >= threshold (default 0.5). */
  threshold?: number;
}

/** Evaluate `engine`'s model (e.g. `new TfjsEngine(model)`) on labelled examples. */
export function evaluate(
  engine: EsmEngine,
  examples: readonly Example[],
  options?: EvaluateOptions & { task?: undefined },
): BinaryEvalResult;
export function evaluate(
  engine: EsmEngine,
  examples: readonly Example[],
  options: EvaluateOptions,
): EvalResult;
export function evaluate(
  engine: EsmEngine,
  examples: readonly Example[],
  options: EvaluateOptions = {},
): EvalResult {
  const task = options.task;
  if (task && !(task.problemType === "single_label_classification" && task.labels.length === 2)) {
    return evaluateTask(engine, examples, { ...options, task });
  }
  return evaluateBinary(engine, examples, options);
}

/** Logits `[B, C]` of a batch, from the engine. */
function batchLogits(
  engine: EsmEngine,
  batch: { inputIds: Int32Array; attentionMask: Int32Array; batchSize: number; seqLen: number },
): tf.Tensor2D {
  const z = engine.logits(batch);
  return tf.tensor2d(z, [batch.batchSize, z.length / batch.batchSize]);
}

/** The binary task (2 classes), as the seed workflow evaluates it. */
function evaluateBinary(
  engine: EsmEngine,
  examples: readonly Example[],
  options: EvaluateOptions,
): EvalResult {
  const n = examples.length;
  const probabilities: number[][] = new Array(n);
  let plainSum = 0;
  let weightedSum = 0;
  let weightSum = 0;
  for (const batch of epochBatches(examples, {
    batchSize: options.batchSize ?? 16,
    seed: 0,
    epoch: 0,
    shuffle: false,
  })) {
    const { probs, plain, weighted, wsum } = tf.tidy(() => {
      const logits = batchLogits(engine, batch);
      const labels = tf.tensor1d(batch.labels, "int32");
      const w = options.classWeights;
      // Batch losses are (weighted) means; recombine them into means over all examples.
      const batchWeight = w
        ? Array.from(batch.labels, (l) => w[l] ?? 0).reduce((a, b) => a + b, 0)
        : batch.batchSize;
      return {
        probs: tf.softmax(logits).arraySync() as number[][],
        plain: crossEntropy(logits, labels).dataSync()[0]! * batch.batchSize,
        weighted: w ? crossEntropy(logits, labels, { weight: w }).dataSync()[0]! * batchWeight : 0,
        wsum: batchWeight,
      };
    });
    plainSum += plain;
    weightedSum += weighted;
    weightSum += wsum;
    batch.indices.forEach((idx, row) => {
      probabilities[idx] = probs[row]!;
    });
  }
  const labels = examples.map((e) => e.label as number);
  const predictions = probabilities.map((p) => p.indexOf(Math.max(...p)));
  const scores = probabilities.map((p) => p[1] ?? 0);
  const metrics: BinaryMetrics & EvalLosses = {
    ...binaryMetrics(labels, predictions, scores),
    unweightedLoss: plainSum / n,
  };
  if (options.classWeights) metrics.weightedLoss = weightedSum / weightSum;
  return { metrics, probabilities, predictions };
}

/** k-class single-label, multi-label and regression tasks. */
function evaluateTask(
  engine: EsmEngine,
  examples: readonly Example[],
  options: EvaluateOptions & { task: TaskSpec },
): EvalResult {
  const { task } = options;
  const k = task.labels.length;
  const n = examples.length;
  const logits: number[][] = new Array(n);
  // Sums of per-batch means times their denominators, recombined into overall means.
  let plainSum = 0;
  let weightedSum = 0;
  let weightTotal = 0;
  for (const batch of epochBatches(examples, {
    batchSize: options.batchSize ?? 16,
    seed: 0,
    epoch: 0,
    shuffle: false,
  })) {
    const z = engine.logits(batch);
    const b = batch.batchSize;
    if (task.problemType === "single_label_classification") {
      plainSum += crossEntropyGrad(z, k, batch.labels).loss * b;
      const w = options.classWeights;
      if (w) {
        const total = Array.from(batch.labels, (l) => w[l]!).reduce((a, x) => a + x, 0);
        weightedSum += crossEntropyGrad(z, k, batch.labels, w).loss * total;
        weightTotal += total;
      }
    } else if (task.problemType === "multi_label_classification") {
      plainSum += bceWithLogitsGrad(z, k, batch.targets!).loss * b;
      if (options.posWeight) {
        weightedSum += bceWithLogitsGrad(z, k, batch.targets!, options.posWeight).loss * b;
        weightTotal += b;
      }
    } else {
      plainSum += mseGrad(z, batch.targets!).loss * b;
    }
    batch.indices.forEach((idx, row) => {
      logits[idx] = Array.from(z.subarray(row * k, (row + 1) * k));
    });
  }
  const losses: EvalLosses = { unweightedLoss: plainSum / n };
  if (weightTotal > 0) losses.weightedLoss = weightedSum / weightTotal;
  const vectors = () => examples.map((e) => e.label as ArrayLike<number>);
  if (task.problemType === "regression") {
    return {
      metrics: { ...regressionMetrics(vectors(), logits, task.labels), ...losses },
      probabilities: logits,
      predictions: [],
    };
  }
  if (task.problemType === "multi_label_classification") {
    const probabilities = logits.map((row) => row.map(sigmoid));
    return {
      metrics: {
        ...multiLabelMetrics(vectors(), probabilities, task.labels, options.threshold),
        ...losses,
      },
      probabilities,
      predictions: [],
    };
  }
  const probabilities = logits.map(softmax);
  const predictions = probabilities.map((p) => p.indexOf(Math.max(...p)));
  const labels = examples.map((e) => e.label as number);
  return {
    metrics: { ...multiClassMetrics(labels, predictions, task.labels), ...losses },
    probabilities,
    predictions,
  };
}

function softmax(row: number[]): number[] {
  const max = Math.max(...row);
  const e = row.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
