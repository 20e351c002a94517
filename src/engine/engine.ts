/**
 * What an engine is: the part that turns weights and token batches into logits, and
 * into a loss and its gradients. Two implement it: the tfjs engine (the TensorFlow.js
 * model itself, src/model/esm2.ts with src/train/step.ts) and the onnx engine
 * (src/onnx/engine.ts). The trainer and evaluation talk to these types only; the
 * weights stay in the model's tf.Variables whichever engine computes.
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { SeededRandom } from "../util/random";

/** Inputs of one batch as plain arrays. */
export interface TokenBatch {
  /** `[B * L]` row-major token ids. */
  inputIds: ArrayLike<number>;
  /** `[B * L]` 0/1. */
  attentionMask: ArrayLike<number>;
  batchSize: number;
  seqLen: number;
}

/** One micro-batch of a training step, as tensors. */
export interface MicroBatch {
  /** `[B, L]` int32 */
  inputIds: tf.Tensor2D;
  /** `[B, L]` int32 or float32 0/1 */
  attentionMask: tf.Tensor2D;
  /** `[B]` int32 */
  labels: tf.Tensor1D;
}

export interface StepOptions {
  /** Per-class loss weights (torch's CrossEntropyLoss(weight=...)). */
  classWeights?: number[];
  /** Multiplies the loss (1 / gradient accumulation steps). */
  lossScale?: number;
  gradientCheckpointing?: boolean;
  /** The random stream behind dropout masks; replayed when recomputing a layer. */
  dropoutRng?: SeededRandom;
}

export interface StepResult {
  /** The unscaled loss of this micro-batch. */
  loss: number;
  /** Gradients of the SCALED loss, by parameter name; the caller disposes them. */
  grads: Map<string, tf.Tensor>;
}

/** Computes logits `[B * numLabels]` (row-major) for a batch instead of the tfjs model. */
export interface LogitsEngine {
  logits(batch: TokenBatch): Float32Array;
}

/** What the trainer needs from an engine other than the tfjs model. */
export interface StepEngine extends LogitsEngine {
  lossAndGradients(
    params: Map<string, tf.Variable>,
    batch: MicroBatch,
    options: StepOptions,
  ): StepResult;
}
