/**
 * Global L2-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`: the total norm is
 * the norm of the per-tensor norms; every gradient is multiplied by
 * `min(1, maxNorm / (totalNorm + 1e-6))` (always, as torch does, so no branch on the value).
 * A non-finite total norm is returned as is and propagates into the gradients, like
 * torch's default `error_if_nonfinite=False`: the caller decides whether to skip the step.
 */
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors";

export interface ClipResult {
  /** The total L2 norm before clipping (HF logs it as `grad_norm`). */
  totalNorm: number;
  /** The factor applied, `min(1, maxNorm / (totalNorm + 1e-6))`. */
  clipCoef: number;
  /** New gradient tensors; the caller owns (and disposes) both these and the inputs. */
  grads: Map<string, tf.Tensor>;
}

/** Total L2 norm over all gradients, without clipping. */
export function globalGradNorm(grads: Map<string, tf.Tensor>): number {
  if (grads.size === 0) return 0;
  const total = tf.tidy(() => totalNormTensor([...grads.values()]));
  const value = total.dataSync()[0]!;
  total.dispose();
  return value;
}

function totalNormTensor(grads: tf.Tensor[]): tf.Scalar {
  const norms = grads.map((g) => tf.sqrt(tf.sum(tf.square(g)))); // one scalar per tensor
  return tf.sqrt(tf.sum(tf.square(tf.stack(norms)))) as tf.Scalar;
}

export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm = 1.0): ClipResult {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0)) {
    throw new ConfigError(`maxGradNorm ${maxNorm} is invalid; expected a finite number > 0`, {
      maxNorm,
    });
  }
  const names = [...grads.keys()];
  if (names.length === 0) return { totalNorm: 0, clipCoef: 1, grads: new Map() };
  const [total, coef, ...clipped] = tf.tidy(() => {
    const total = totalNormTensor([...grads.values()]);
    const coef = tf.minimum(tf.div(maxNorm, tf.add(total, 1e-6)), 1);
    return [total, coef, ...names.map((n) => tf.mul(grads.get(n)!, coef))];
  });
  const totalNorm = total!.dataSync()[0]!;
  const clipCoef = coef!.dataSync()[0]!;
  tf.dispose([total!, coef!]);
  return { totalNorm, clipCoef, grads: new Map(names.map((n, i) => [n, clipped[i]!])) };
}
