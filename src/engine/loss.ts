/**
 * The tfjs engine's losses, one per task (task.ts). single_label_classification:
 * cross-entropy as torch's `nn.CrossEntropyLoss(weight=w, ignore_index=-100)`:
 * `sum_i w[y_i] * nll_i / sum_i w[y_i]` over non-ignored rows (plain mean without weights),
 * with `nll = -log_softmax(logits)[y]`. Differentiable in tfjs: the label is picked with a
 * one-hot product rather than a gather, whose gradient needs a kernel wasm lacks.
 * An all-ignored batch gives NaN (0/0), as in torch.
 */
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors";
import { ensureGradients } from "../gradients";
import { checkLabels } from "./task";

// tfjs-core's CommonJS build registers no gradients (see src/gradients.ts).
ensureGradients();

export interface CrossEntropyOptions {
  /** Per-class weights, length = number of classes. */
  weight?: tf.Tensor1D | ArrayLike<number>;
  /** Label value whose rows are left out of the loss; default -100 (torch's). */
  ignoreIndex?: number;
}

/**
 * Mean (optionally class-weighted) cross-entropy of `logits` [N, C] against integer
 * `labels` [N]. Returns a scalar; use inside `tf.variableGrads` / `tf.grads`.
 */
export function crossEntropy(
  logits: tf.Tensor,
  labels: tf.Tensor | ArrayLike<number>,
  options: CrossEntropyOptions = {},
): tf.Scalar {
  const ignoreIndex = options.ignoreIndex ?? -100;
  if (logits.rank !== 2) {
    throw new ConfigError(`crossEntropy expects logits [N, C]; got shape [${logits.shape}]`, {
      shape: logits.shape,
    });
  }
  const [n, c] = logits.shape as [number, number];
  const labelValues = labels instanceof tf.Tensor ? labels.dataSync() : labels;
  if (labelValues.length !== n) {
    throw new ConfigError(`crossEntropy got ${labelValues.length} labels for ${n} rows of logits`, {
      labels: labelValues.length,
      rows: n,
    });
  }
  checkLabels(labelValues, c, ignoreIndex);
  const weightLength =
    options.weight === undefined
      ? c
      : options.weight instanceof tf.Tensor
        ? options.weight.size
        : options.weight.length;
  if (weightLength !== c) {
    throw new ConfigError(
      `crossEntropy class weights have ${weightLength} entries; expected one per class (${c})`,
      { weights: weightLength, numClasses: c },
    );
  }
  return tf.tidy(() => {
    const y = tf.tensor1d(Array.from(labelValues), "int32");
    const valid = tf.notEqual(y, ignoreIndex); // [N] bool
    const onehot = tf.cast(tf.oneHot(tf.where(valid, y, tf.zerosLike(y)), c), "float32"); // [N, C]
    const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot), 1)); // [N]
    let w: tf.Tensor = tf.cast(valid, "float32"); // [N]
    if (options.weight !== undefined) {
      const cw =
        options.weight instanceof tf.Tensor
          ? tf.reshape(tf.cast(options.weight, "float32"), [1, c])
          : tf.tensor2d(Array.from(options.weight), [1, c], "float32");
      w = tf.mul(w, tf.sum(tf.mul(onehot, cw), 1)); // w[y_i]
    }
    return tf.div(tf.sum(tf.mul(w, nll)), tf.sum(w)) as tf.Scalar;
  });
}
