/**
 * Evaluation over a labelled set: the mean cross-entropy (`unweightedLoss`), with class
 * weights also the class-weighted loss the trainer minimises (`weightedLoss`), class
 * probabilities per example, and the binary metrics (accuracy, precision, recall, F1,
 * MCC, ROC-AUC, confusion matrix).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { EsmEngine } from "../engine/engine";
import { crossEntropy } from "../engine/loss";
import { type Example, epochBatches } from "./batching";
import { type BinaryMetrics, binaryMetrics } from "./metrics";

/** The two losses carry distinct names: they differ whenever the classes are weighted. */
export interface EvalLosses {
  /** Mean cross-entropy over the examples, every example counting once. */
  unweightedLoss: number;
  /** Class-weighted mean cross-entropy (torch's weighted CrossEntropyLoss, what training
   * minimises); only when class weights were given. */
  weightedLoss?: number;
}

export interface EvalResult {
  metrics: BinaryMetrics & EvalLosses;
  /** Per example (in input order): class probabilities. */
  probabilities: number[][];
  /** Per example: argmax class. */
  predictions: number[];
}

/** Evaluate `engine`'s model (e.g. `new TfjsEngine(model)`) on labelled examples. */
export function evaluate(
  engine: EsmEngine,
  examples: readonly Example[],
  options: { batchSize?: number; classWeights?: number[] } = {},
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
      const fromEngine = engine.logits(batch);
      const logits = tf.tensor2d(fromEngine, [
        batch.batchSize,
        fromEngine.length / batch.batchSize,
      ]);
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
  const labels = examples.map((e) => e.label);
  const predictions = probabilities.map((p) => p.indexOf(Math.max(...p)));
  const scores = probabilities.map((p) => p[1] ?? 0);
  const metrics: EvalResult["metrics"] = {
    ...binaryMetrics(labels, predictions, scores),
    unweightedLoss: plainSum / n,
  };
  if (options.classWeights) metrics.weightedLoss = weightedSum / weightSum;
  return { metrics, probabilities, predictions };
}
