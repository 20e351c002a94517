/**
 * The ESM-2 parameter table: every tensor of the Hugging Face state dict with its
 * shape, layout and initialisation. The model (esm2.ts), the checkpoint loader
 * (weights.ts) and adapters all read it, so names and shapes live in one place.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { SeededRandom } from "../util/random";
import { type EsmConfig, headDim } from "./config";

export type ParamInit = "normal" | "zeros" | "ones" | "embedding" | "inv_freq";
export type ParamGroup = "encoder" | "classifier" | "lm_head";

/** One tensor of the Hugging Face state dict. */
export interface ParamSpec {
  /** Hugging Face key, `esm.`-prefixed as EsmForSequenceClassification saves it. */
  key: string;
  /** Shape in the Hugging Face layout (`[out, in]` for Linear weights). */
  shape: number[];
  /** A Linear weight: held transposed, `[in, out]`. */
  linear: boolean;
  init: ParamInit;
  group: ParamGroup;
  /** False for buffers (rotary `inv_freq`). */
  trainable: boolean;
}

/** The key under which the rotary frequencies are held (transformers 5.x name). */
export const INV_FREQ_KEY = "esm.rotary_embeddings.inv_freq";

/** Every tensor the model holds, in a stable order. */
export function parameterSpecs(config: EsmConfig, options: { lmHead: boolean }): ParamSpec[] {
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const V = config.vocabSize;
  const specs: ParamSpec[] = [];
  const add = (key: string, shape: number[], init: ParamInit, group: ParamGroup) =>
    specs.push({
      key,
      shape,
      linear: init === "normal",
      init,
      group,
      trainable: init !== "inv_freq",
    });
  const linear = (name: string, out: number, inp: number, group: ParamGroup, bias = true) => {
    add(`${name}.weight`, [out, inp], "normal", group);
    if (bias) add(`${name}.bias`, [out], "zeros", group);
  };
  const norm = (name: string, group: ParamGroup) => {
    add(`${name}.weight`, [H], "ones", group);
    add(`${name}.bias`, [H], "zeros", group);
  };
  add("esm.embeddings.word_embeddings.weight", [V, H], "embedding", "encoder");
  add(INV_FREQ_KEY, [headDim(config) / 2], "inv_freq", "encoder");
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = `esm.encoder.layer.${i}`;
    norm(`${p}.attention.LayerNorm`, "encoder");
    for (const m of ["query", "key", "value"]) linear(`${p}.attention.self.${m}`, H, H, "encoder");
    linear(`${p}.attention.output.dense`, H, H, "encoder");
    norm(`${p}.LayerNorm`, "encoder");
    linear(`${p}.intermediate.dense`, I, H, "encoder");
    linear(`${p}.output.dense`, H, I, "encoder");
  }
  norm("esm.encoder.emb_layer_norm_after", "encoder");
  linear("classifier.dense", H, H, "classifier");
  linear("classifier.out_proj", config.numLabels, H, "classifier");
  if (options.lmHead) {
    linear("lm_head.dense", H, H, "lm_head");
    norm("lm_head.layer_norm", "lm_head");
    if (!config.tieWordEmbeddings) linear("lm_head.decoder", V, H, "lm_head", false);
    add("lm_head.bias", [V], "zeros", "lm_head");
  }
  return specs;
}

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
