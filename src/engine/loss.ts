/**
 * The three losses of `EsmForSequenceClassification`, one per task (task.ts), as torch
 * computes them, in two forms: differentiable tfjs functions (the tfjs engine)
 * and plain float64 functions returning the loss and its gradient with respect to the
 * logits (the reference the onnx engine's loss graph is tested against).
 *
 * - single-label: `nn.CrossEntropyLoss(weight=w, ignore_index=-100)`:
 *   `sum_i w[y_i] * nll_i / sum_i w[y_i]` over non-ignored rows (plain mean without
 *   weights), `nll = -log_softmax(z)[y]`; d/dz_i = w[y_i] (softmax(z_i) - onehot(y_i)) / sum w.
 *   An all-ignored batch gives NaN (0/0), as in torch.
 * - multi-label: `nn.BCEWithLogitsLoss(pos_weight=p)`, the mean over all N x C entries of
 *   `-(p_c y log s(z) + (1 - y) log(1 - s(z)))` = `(p_c y + 1 - y) softplus(z) - p_c y z`;
 *   d/dz = ((p_c y + 1 - y) s(z) - p_c y) / (N C). Without pos_weight, p = 1.
 * - regression: `nn.MSELoss()`, the mean of `(z - t)^2` over all N x C entries (for one
 *   target, transformers squeezes both to [N]: the same mean); d/dz = 2 (z - t) / (N C).
 *
 * In tfjs the class label is picked with a one-hot product rather than a gather, whose
 * gradient needs a kernel wasm lacks.
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

// ---- multi-label and regression losses (tfjs) ------------------------------------------

/** `[N, C]` targets as a float tensor, checked against the logits' shape. */
function targetTensor(
  logits: tf.Tensor,
  targets: tf.Tensor | ArrayLike<number>,
  what: string,
): tf.Tensor2D {
  if (logits.rank !== 2) {
    throw new ConfigError(`${what} expects logits [N, C]; got shape [${logits.shape}]`, {
      shape: logits.shape,
    });
  }
  const [n, c] = logits.shape as [number, number];
  const size = targets instanceof tf.Tensor ? targets.size : targets.length;
  if (size !== n * c) {
    throw new ConfigError(
      `${what} got ${size} target values for logits [${n}, ${c}]; expected ${n * c}`,
      { targets: size, rows: n, columns: c },
    );
  }
  return targets instanceof tf.Tensor
    ? (tf.reshape(tf.cast(targets, "float32"), [n, c]) as tf.Tensor2D)
    : tf.tensor2d(Float32Array.from(targets), [n, c], "float32");
}

/** softplus(z) = log(1 + e^z), computed without overflow; its gradient is sigmoid(z). */
const softplus = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const z = args[0] as tf.Tensor;
  (args[1] as tf.GradSaveFunc)([z]);
  return {
    value: tf.add(tf.relu(z), tf.log1p(tf.exp(tf.neg(tf.abs(z))))),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.sigmoid(saved[0]!)),
  };
}) as (z: tf.Tensor) => tf.Tensor;

export interface BceOptions {
  /** Per-label weight of the positive term (torch's pos_weight), length C. */
  posWeight?: ArrayLike<number>;
}

/**
 * torch's `BCEWithLogitsLoss(pos_weight)`: the mean over all entries of logits `[N, C]`
 * against 0/1 (or soft) float targets `[N, C]`. Returns a scalar.
 */
export function bceWithLogits(
  logits: tf.Tensor,
  targets: tf.Tensor | ArrayLike<number>,
  options: BceOptions = {},
): tf.Scalar {
  const c = logits.shape[1]!;
  if (options.posWeight !== undefined && options.posWeight.length !== c) {
    throw new ConfigError(
      `bceWithLogits pos_weight has ${options.posWeight.length} entries; expected one per label (${c})`,
      { posWeight: options.posWeight.length, numLabels: c },
    );
  }
  return tf.tidy(() => {
    const y = targetTensor(logits, targets, "bceWithLogits");
    const z = logits as tf.Tensor2D;
    // q softplus(z) - p y z with p = pos_weight (row-broadcast), q = p y + 1 - y.
    const py = options.posWeight
      ? tf.mul(y, tf.tensor2d(Float32Array.from(options.posWeight), [1, c]))
      : y;
    const q = tf.add(py, tf.sub(1, y));
    const terms = tf.sub(tf.mul(q, softplus(z)), tf.mul(py, z));
    return tf.mean(terms) as tf.Scalar;
  });
}

/** torch's `MSELoss()`: the mean over all entries of `(logits - targets)^2`. */
export function mseLoss(logits: tf.Tensor, targets: tf.Tensor | ArrayLike<number>): tf.Scalar {
  return tf.tidy(() => {
    const t = targetTensor(logits, targets, "mseLoss");
    return tf.mean(tf.square(tf.sub(logits, t))) as tf.Scalar;
  });
}

// ---- plain float64 losses with their logits gradients -------------------------------------

export interface LossAndGradient {
  loss: number;
  /** d loss / d logits, `[N * C]` row-major. */
  grad: Float64Array;
}

/** Cross-entropy (weighted, ignore_index -100) and its gradient; see the file header. */
export function crossEntropyGrad(
  logits: ArrayLike<number>,
  numClasses: number,
  labels: ArrayLike<number>,
  weight?: ArrayLike<number>,
): LossAndGradient {
  const n = labels.length;
  checkShape(logits, n, numClasses, "crossEntropyGrad");
  checkLabels(labels, numClasses, -100);
  const grad = new Float64Array(n * numClasses);
  let total = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    if (y === -100) continue;
    const w = weight ? weight[y]! : 1;
    const { logSoftmax, softmax } = softmaxRow(logits, i * numClasses, numClasses);
    sum += w * -logSoftmax[y]!;
    total += w;
    for (let c = 0; c < numClasses; c++) {
      grad[i * numClasses + c] = w * (softmax[c]! - (c === y ? 1 : 0));
    }
  }
  for (let k = 0; k < grad.length; k++) grad[k]! /= total;
  return { loss: sum / total, grad };
}

/** BCE-with-logits (optional pos_weight) and its gradient; see the file header. */
export function bceWithLogitsGrad(
  logits: ArrayLike<number>,
  numLabels: number,
  targets: ArrayLike<number>,
  posWeight?: ArrayLike<number>,
): LossAndGradient {
  const m = logits.length;
  checkShape(targets, m / numLabels, numLabels, "bceWithLogitsGrad targets");
  const grad = new Float64Array(m);
  let sum = 0;
  for (let k = 0; k < m; k++) {
    const z = logits[k]!;
    const y = targets[k]!;
    const py = (posWeight ? posWeight[k % numLabels]! : 1) * y;
    const q = py + 1 - y;
    const softplus = Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));
    sum += q * softplus - py * z;
    grad[k] = (q * sigmoid(z) - py) / m;
  }
  return { loss: sum / m, grad };
}

/** MSE and its gradient; see the file header. */
export function mseGrad(logits: ArrayLike<number>, targets: ArrayLike<number>): LossAndGradient {
  const m = logits.length;
  if (targets.length !== m) {
    throw new ConfigError(`mseGrad got ${targets.length} targets for ${m} logits`, {
      targets: targets.length,
      logits: m,
    });
  }
  const grad = new Float64Array(m);
  let sum = 0;
  for (let k = 0; k < m; k++) {
    const d = logits[k]! - targets[k]!;
    sum += d * d;
    grad[k] = (2 * d) / m;
  }
  return { loss: sum / m, grad };
}

function checkShape(values: ArrayLike<number>, rows: number, columns: number, what: string) {
  if (!Number.isInteger(rows) || values.length !== rows * columns) {
    throw new ConfigError(`${what}: ${values.length} values do not fill [${rows}, ${columns}]`, {
      values: values.length,
      columns,
    });
  }
}

export function sigmoid(z: number): number {
  // Both branches stay finite: exp of a non-positive number.
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

function softmaxRow(values: ArrayLike<number>, offset: number, c: number) {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < c; j++) max = Math.max(max, values[offset + j]!);
  let sum = 0;
  for (let j = 0; j < c; j++) sum += Math.exp(values[offset + j]! - max);
  const logZ = max + Math.log(sum);
  const logSoftmax = Array.from({ length: c }, (_, j) => values[offset + j]! - logZ);
  return { logSoftmax, softmax: logSoftmax.map(Math.exp) };
}
