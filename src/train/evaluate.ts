/**
 * Evaluation over a labelled set: the (class-weighted) loss as the trainer computes it,
 * class probabilities per example, and the binary metrics (accuracy, precision, recall,
 * F1, MCC, ROC-AUC, confusion matrix).
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Example, epochBatches } from "./batching";
import { crossEntropy } from "./loss";
import { type BinaryMetrics, binaryMetrics } from "./metrics";
import { type ClassifierModel, forwardLogits } from "./step";

export interface EvalResult {
  metrics: BinaryMetrics & { loss: number };
  /** Per example (in input order): class probabilities. */
  probabilities: number[][];
  /** Per example: argmax class. */
  predictions: number[];
}

/** Computes logits `[B * numLabels]` (row-major) for a batch instead of the tfjs model. */
export interface LogitsEngine {
  logits(batch: {
    inputIds: ArrayLike<number>;
    attentionMask: ArrayLike<number>;
    batchSize: number;
    seqLen: number;
  }): Float32Array;
}

export function evaluate(
  model: ClassifierModel,
  examples: readonly Example[],
  options: { batchSize?: number; classWeights?: number[]; engine?: LogitsEngine } = {},
): EvalResult {
  const n = examples.length;
  const probabilities: number[][] = new Array(n);
  let weightedLoss = 0;
  let weightSum = 0;
  for (const batch of epochBatches(examples, {
    batchSize: options.batchSize ?? 16,
    seed: 0,
    epoch: 0,
    shuffle: false,
  })) {
    const { probs, loss, wsum } = tf.tidy(() => {
      const shape: [number, number] = [batch.batchSize, batch.seqLen];
      const fromEngine = options.engine?.logits(batch);
      const logits = fromEngine
        ? tf.tensor2d(fromEngine, [batch.batchSize, fromEngine.length / batch.batchSize])
        : forwardLogits(model, {
            inputIds: tf.tensor2d(batch.inputIds, shape, "int32"),
            attentionMask: tf.tensor2d(batch.attentionMask, shape, "int32"),
            labels: tf.tensor1d([], "int32"),
          });
      const labels = tf.tensor1d(batch.labels, "int32");
      const w = options.classWeights;
      // Batch losses are weighted means; recombine them into the weighted mean over all.
      const batchWeight = w
        ? Array.from(batch.labels, (l) => w[l] ?? 0).reduce((a, b) => a + b, 0)
        : batch.batchSize;
      const l = crossEntropy(logits, labels, w ? { weight: w } : {});
      return {
        probs: tf.softmax(logits).arraySync() as number[][],
        loss: l.dataSync()[0]! * batchWeight,
        wsum: batchWeight,
      };
    });
    weightedLoss += loss;
    weightSum += wsum;
    batch.indices.forEach((idx, row) => {
      probabilities[idx] = probs[row]!;
    });
  }
  const labels = examples.map((e) => e.label);
  const predictions = probabilities.map((p) => p.indexOf(Math.max(...p)));
  const scores = probabilities.map((p) => p[1] ?? 0);
  const metrics = { ...binaryMetrics(labels, predictions, scores), loss: weightedLoss / weightSum };
  return { metrics, probabilities, predictions };
}
