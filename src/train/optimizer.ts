/**
 * AdamW as `torch.optim.AdamW` (single-tensor path): decoupled weight decay
 * `p *= 1 - lr*wd` first, then the Adam update with torch's bias correction
 * `p += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
 * tfjs has no AdamW, and its Adam folds the correction differently, hence this file.
 *
 * Works on any `Map<name, tf.Variable>`: weight decay goes to weights only, decided from
 * the HF-style name by the Trainer's rule (see `isDecayParameter`). The state is
 * per parameter as in torch (a parameter without a gradient in a step is skipped and its
 * step count does not advance), and round-trips through plain Float32Arrays so a resumed
 * run continues bit-for-bit.
 */
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError, WeightsError } from "../errors";
import type { TensorRecord } from "./checkpoint-io";

/**
 * HF Trainer's `get_decay_parameter_names` patterns, applied to the lower-cased name. The
 * Trainer also excludes every `nn.LayerNorm` by type; names cannot show a type, so
 * `layer_norm` is added (ESM's `emb_layer_norm_after` is a LayerNorm whose name the
 * Trainer's patterns alone would miss).
 */
const NO_DECAY_PATTERNS: readonly RegExp[] = [
  /bias/,
  /layernorm/,
  /layer_norm/,
  /rmsnorm/,
  /(?:^|\.)norm(?:$|\.)/,
  /_norm(?:$|\.)/,
];

/** Whether a parameter gets weight decay: not biases, not LayerNorm (HF Trainer's rule). */
export function isDecayParameter(name: string): boolean {
  const lower = name.toLowerCase();
  return !NO_DECAY_PATTERNS.some((p) => p.test(lower));
}

export interface AdamWOptions {
  /** Base learning rate; a schedule usually passes the current one to `step`. */
  lr: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay for decayed parameters; default 0.01 as torch's AdamW. */
  weightDecay?: number;
  /** Which parameters get weight decay; default `isDecayParameter`. */
  decay?: (name: string) => boolean;
}

/** One parameter's optimizer state as plain arrays. */
export interface AdamWParamState {
  /** Updates this parameter has received (torch's per-parameter `step`). */
  step: number;
  shape: number[];
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** Everything needed to resume: global step count and per-parameter moments. */
export interface AdamWState {
  /** Number of `step()` calls made. */
  step: number;
  params: Record<string, AdamWParamState>;
}

interface ParamState {
  step: number;
  expAvg: tf.Tensor;
  expAvgSq: tf.Tensor;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function listNames(names: Iterable<string>, max = 5): string {
  const all = [...names];
  const shown = all.slice(0, max).join(", ");
  return all.length > max ? `${shown}, ... (${all.length} in all)` : shown;
}

function checkRange(name: string, value: number, ok: boolean, accepted: string): void {
  if (!ok) {
    throw new ConfigError(`AdamW ${name} ${value} is invalid; expected ${accepted}`, {
      [name]: value,
    });
  }
}

export class AdamW {
  /** Learning rate used when `step` is called without one. */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly params: Map<string, tf.Variable>;
  private readonly decay: (name: string) => boolean;
  private state = new Map<string, ParamState>();
  private steps = 0;

  constructor(params: Map<string, tf.Variable>, options: AdamWOptions) {
    const [beta1, beta2] = options.betas ?? [0.9, 0.999];
    const eps = options.eps ?? 1e-8;
    const weightDecay = options.weightDecay ?? 0.01;
    checkRange("lr", options.lr, Number.isFinite(options.lr) && options.lr >= 0, "a number >= 0");
    checkRange("beta1", beta1, beta1 >= 0 && beta1 < 1, "a number in [0, 1)");
    checkRange("beta2", beta2, beta2 >= 0 && beta2 < 1, "a number in [0, 1)");
    checkRange("eps", eps, Number.isFinite(eps) && eps >= 0, "a number >= 0");
    checkRange("weightDecay", weightDecay, weightDecay >= 0, "a number >= 0");
    this.params = params;
    this.lr = options.lr;
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.decay = options.decay ?? isDecayParameter;
  }

  /** Number of `step()` calls made (restored by `importState`). */
  get stepCount(): number {
    return this.steps;
  }

  /** Names of the parameters that receive weight decay, in map order. */
  decayedNames(): string[] {
    return [...this.params.keys()].filter((n) => this.decay(n));
  }

  /**
   * One update. `grads` maps parameter names to gradients (the caller keeps ownership);
   * parameters absent from it are skipped as torch skips `grad is None`.
   */
  step(grads: Map<string, tf.Tensor>, lr: number = this.lr): void {
    checkRange("lr", lr, Number.isFinite(lr) && lr >= 0, "a number >= 0");
    // Validate everything before touching any parameter: no half-applied steps.
    for (const [name, g] of grads) {
      const p = this.params.get(name);
      if (!p) {
        throw new ConfigError(
          `Gradient for unknown parameter "${name}"; known parameters: ${listNames(this.params.keys())}`,
          { name },
        );
      }
      if (!sameShape(g.shape, p.shape)) {
        throw new ConfigError(
          `Gradient for "${name}" has shape [${g.shape}] but the parameter is [${p.shape}]`,
          { name, gradShape: g.shape, paramShape: p.shape },
        );
      }
    }
    const { beta1, beta2, eps } = this;
    for (const [name, grad] of grads) {
      const p = this.params.get(name)!;
      let st = this.state.get(name);
      if (!st) {
        st = { step: 0, expAvg: tf.zerosLike(p), expAvgSq: tf.zerosLike(p) };
        this.state.set(name, st);
      }
      st.step += 1;
      const wd = this.decay(name) ? this.weightDecay : 0;
      // Scalars computed in float64 as torch does in Python, then used as float32.
      const stepSize = lr / (1 - beta1 ** st.step);
      const bc2Sqrt = Math.sqrt(1 - beta2 ** st.step);
      const prev = st;
      const [m, v] = tf.tidy(() => {
        const decayed = wd !== 0 ? tf.mul(p, 1 - lr * wd) : p;
        // torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        const m = tf.add(prev.expAvg, tf.mul(tf.sub(grad, prev.expAvg), 1 - beta1));
        const v = tf.add(tf.mul(prev.expAvgSq, beta2), tf.mul(tf.mul(grad, 1 - beta2), grad));
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
        p.assign(tf.add(decayed, tf.div(tf.mul(m, -stepSize), denom)));
        return [m, v];
      });
      prev.expAvg.dispose();
      prev.expAvgSq.dispose();
      st.expAvg = m!;
      st.expAvgSq = v!;
    }
    this.steps += 1;
  }

  /** A copy of the state as plain arrays (reads tensors back synchronously). */
  exportState(): AdamWState {
    const params: Record<string, AdamWParamState> = {};
    for (const [name, st] of this.state) {
      params[name] = {
        step: st.step,
        shape: [...st.expAvg.shape],
        expAvg: new Float32Array(st.expAvg.dataSync()),
        expAvgSq: new Float32Array(st.expAvgSq.dataSync()),
      };
    }
    return { step: this.steps, params };
  }

  /** Replace the state with an exported one; it must fit these parameters. */
  importState(state: AdamWState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) {
      throw new WeightsError(`Optimizer state step ${state.step} is not an integer >= 0`, {
        step: state.step,
      });
    }
    const next = new Map<string, ParamState>();
    for (const [name, s] of Object.entries(state.params)) {
      const p = this.params.get(name);
      if (!p) {
        throw new WeightsError(
          `Optimizer state has parameter "${name}" that the model does not; known: ${listNames(this.params.keys())}`,
          { name },
        );
      }
      const size = p.size;
      if (
        !sameShape(s.shape, p.shape) ||
        s.expAvg.length !== size ||
        s.expAvgSq.length !== size ||
        !(Number.isInteger(s.step) && s.step >= 0)
      ) {
        throw new WeightsError(
          `Optimizer state for "${name}" does not fit: shape [${s.shape}], ${s.expAvg.length}/${s.expAvgSq.length} values, step ${s.step}; parameter is [${p.shape}]`,
          { name, stateShape: s.shape, paramShape: p.shape },
        );
      }
      next.set(name, {
        step: s.step,
        expAvg: tf.tensor(Float32Array.from(s.expAvg), p.shape, "float32"),
        expAvgSq: tf.tensor(Float32Array.from(s.expAvgSq), p.shape, "float32"),
      });
    }
    this.disposeState();
    this.state = next;
    this.steps = state.step;
  }

  /** Free the moment tensors (the parameters belong to the caller). */
  dispose(): void {
    this.disposeState();
    this.state = new Map();
  }

  private disposeState(): void {
    for (const st of this.state.values()) {
      st.expAvg.dispose();
      st.expAvgSq.dispose();
    }
  }
}

/** Checkpoint layout of the optimizer: tensors `exp_avg/<name>`, `exp_avg_sq/<name>`. */
export function adamWStateToRecords(state: AdamWState): {
  tensors: Record<string, TensorRecord>;
  meta: { step: number; steps: Record<string, number> };
} {
  const tensors: Record<string, TensorRecord> = {};
  const steps: Record<string, number> = {};
  for (const [name, s] of Object.entries(state.params)) {
    tensors[`exp_avg/${name}`] = { shape: s.shape, data: s.expAvg };
    tensors[`exp_avg_sq/${name}`] = { shape: s.shape, data: s.expAvgSq };
    steps[name] = s.step;
  }
  return { tensors, meta: { step: state.step, steps } };
}

/** Inverse of `adamWStateToRecords`; other tensors in the record set are ignored. */
export function adamWStateFromRecords(
  tensors: Record<string, TensorRecord>,
  meta: { step: number; steps: Record<string, number> },
): AdamWState {
  const params: Record<string, AdamWParamState> = {};
  for (const [name, step] of Object.entries(meta.steps)) {
    const m = tensors[`exp_avg/${name}`];
    const v = tensors[`exp_avg_sq/${name}`];
    if (!m || !v) {
      throw new WeightsError(`Optimizer checkpoint lacks exp_avg/exp_avg_sq for "${name}"`, {
        name,
      });
    }
    params[name] = { step, shape: m.shape, expAvg: m.data, expAvgSq: v.data };
  }
  return { step: meta.step, params };
}
