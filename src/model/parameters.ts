/**
 * Values for the parameter table of architecture.ts: fresh ones as transformers
 * initialises them, the rotary frequencies, and tensors in the model's layout.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { SeededRandom } from "../util/random";
import type { ParamSpec } from "./architecture";
import { type EsmConfig, headDim } from "./config";

/** `inv_freq[i] = 1 / theta^(2i / head_dim)`, as transformers computes it. */
export function defaultInvFreq(config: EsmConfig): Float32Array {
  const d = headDim(config);
  const out = new Float32Array(d / 2);
  for (let i = 0; i < d / 2; i++) out[i] = 1 / config.ropeTheta ** (Math.fround(2 * i) / d);
  return out;
}

/**
 * Fresh values for one parameter as transformers initialises them: Linear weights and
 * embeddings N(0, initializer_range) (the `<pad>` row zero), biases 0, LayerNorm 1/0.
 * Values are in the Hugging Face layout.
 */
export function initialValues(spec: ParamSpec, config: EsmConfig, rng: SeededRandom): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  switch (spec.init) {
    case "zeros":
      break;
    case "ones":
      out.fill(1);
      break;
    case "inv_freq":
      out.set(defaultInvFreq(config));
      break;
    case "normal":
    case "embedding": {
      const std = config.initializerRange;
      for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
      if (spec.init === "embedding") {
        const H = spec.shape[1]!;
        out.fill(0, config.padTokenId * H, (config.padTokenId + 1) * H);
      }
      break;
    }
  }
  return out;
}

/** A tensor in the model's layout (Linear weights transposed) from Hugging Face values. */
export function toModelTensor(spec: ParamSpec, values: Float32Array): tf.Tensor {
  return tf.tidy(() => {
    const t = tf.tensor(values, spec.shape, "float32");
    return spec.linear ? tf.transpose(t) : t;
  });
}
