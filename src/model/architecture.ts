/**
 * ESM-2's modules, written down once: the embedding, the encoder layer's Linear and
 * LayerNorm modules, the final LayerNorm, the classification head and the masked-LM head,
 * with their Hugging Face names (EsmForSequenceClassification's, `esm.`-prefixed) and,
 * from an EsmConfig, every parameter's name and shape.
 *
 * Everything that names a module reads it here: the TensorFlow.js model (esm2.ts), the
 * checkpoint loader (weights.ts), the parameter initialisation (parameters.ts), LoRA and
 * its PEFT files (src/lora), the onnx engine's graphs and plans (src/onnx), the
 * transformers.js export and its int8 weights (src/export), and the trainer's
 * checkpointed step. A new head or module is declared here first.
 *
 * The classification head is one for every task (src/engine/task.ts): `classifier.dense`
 * then `tanh` then `classifier.out_proj` to `num_labels` outputs, on `<cls>`; tasks differ
 * only in `num_labels` and the loss.
 */
import { type EsmConfig, headDim } from "./config";

/** The token embedding matrix `[V, H]` (a parameter key). */
export const EMBEDDING = "esm.embeddings.word_embeddings.weight";
/** The rotary frequencies (a buffer, transformers 5.x's model-level name). */
export const INV_FREQ_KEY = "esm.rotary_embeddings.inv_freq";
/** The LayerNorm after the last encoder layer. */
export const FINAL_NORM = "esm.encoder.emb_layer_norm_after";

/** What every encoder layer's module names start with, before the layer index. */
export const LAYERS_PREFIX = "esm.encoder.layer.";

/** The module-name prefix of encoder layer `i`, dot included. */
export function layerPrefix(i: number): string {
  return `${LAYERS_PREFIX}${i}.`;
}

/** An encoder layer's modules by role, relative to `layerPrefix(i)`. Pre-LayerNorm: */
export const LAYER = {
  /** LayerNorm before self-attention. */
  attnNorm: "attention.LayerNorm",
  query: "attention.self.query",
  key: "attention.self.key",
  value: "attention.self.value",
  /** Self-attention's output projection. */
  attnOut: "attention.output.dense",
  /** LayerNorm before the feed-forward block. */
  ffnNorm: "LayerNorm",
  /** Feed-forward `H -> I`, then GELU. */
  ffnIn: "intermediate.dense",
  /** Feed-forward `I -> H`. */
  ffnOut: "output.dense",
} as const;

/** The roles of an encoder layer's Linear modules, in forward order. */
export const LINEAR_ROLES = ["query", "key", "value", "attnOut", "ffnIn", "ffnOut"] as const;
export type LinearRole = (typeof LINEAR_ROLES)[number];

/** An encoder layer's Linear modules in forward order (relative names). */
export const LAYER_LINEARS = LINEAR_ROLES.map((r) => LAYER[r]);
/** An encoder layer's LayerNorms in forward order (relative names). */
export const LAYER_NORMS = [LAYER.attnNorm, LAYER.ffnNorm] as const;

/** The classification head: `out_proj(tanh(dense(h_cls)))`. */
export const CLASSIFIER = {
  dense: "classifier.dense",
  outProj: "classifier.out_proj",
} as const;
/** The classification head's Linear modules in forward order. */
export const HEAD_LINEARS = [CLASSIFIER.dense, CLASSIFIER.outProj] as const;

/** The masked-LM head: `decoder(LayerNorm(gelu(dense(h)))) + bias`; absent from classifiers. */
export const LM_HEAD = {
  dense: "lm_head.dense",
  layerNorm: "lm_head.layer_norm",
  /** Bias-free; left out of checkpoints (and of the model) when tied to the embedding. */
  decoder: "lm_head.decoder",
  /** A parameter key: the decoder's bias. */
  bias: "lm_head.bias",
} as const;

/**
 * The top-level modules PEFT's PeftModelForSequenceClassification trains whole and saves
 * with an adapter (it adds both names to any `modules_to_save`; ESM-2's head is
 * `classifier`), so LoRA never adapts them.
 */
export const SEQ_CLS_MODULES_TO_SAVE = ["classifier", "score"] as const;

/**
 * Checkpoint tensors outside the model. Hub checkpoints hold the rotary frequencies per
 * layer (this name, relative to `layerPrefix(i)`; transformers 5.x writes `*` for the
 * index); the loader reads past the pooler and the absolute position embeddings, and
 * keeps the contact head aside to write it back on save.
 */
export const CHECKPOINT_ONLY = {
  layerInvFreq: "attention.self.rotary_embeddings.inv_freq",
  pooler: "esm.pooler.",
  positionEmbeddings: "esm.embeddings.position_embeddings.weight",
  contactHead: "esm.contact_head.",
} as const;

export type ParamGroup = "encoder" | "classifier" | "lm_head";

/** The group a parameter or module belongs to, by its name. */
export function groupOf(name: string): ParamGroup {
  if (name.startsWith("classifier.")) return "classifier";
  if (name.startsWith("lm_head.")) return "lm_head";
  return "encoder";
}

/** Is this module part of the masked-LM head (which a classification step never runs)? */
export function isLmHead(name: string): boolean {
  return groupOf(name) === "lm_head";
}

/** Is this module part of the classification head (it sees `<cls>` only: one row per sequence)? */
export function isClassifier(name: string): boolean {
  return groupOf(name) === "classifier";
}

/** A Linear module: `y = x W^T + b` in Hugging Face's layout (`weight [out, in]`). */
export interface LinearModule {
  name: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

/** Encoder layer `i`'s Linear module of one role, with its sizes. */
export function layerLinear(config: EsmConfig, i: number, role: LinearRole): LinearModule {
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const [inFeatures, outFeatures] = role === "ffnIn" ? [H, I] : role === "ffnOut" ? [I, H] : [H, H];
  return { name: `${layerPrefix(i)}${LAYER[role]}`, inFeatures, outFeatures, bias: true };
}

/** Encoder layer `i`'s Linear modules in forward order, with their sizes. */
export function layerLinears(config: EsmConfig, i: number): LinearModule[] {
  return LINEAR_ROLES.map((r) => layerLinear(config, i, r));
}

/** The classification head's Linear modules in forward order: dense, out_proj. */
export function headLinears(config: EsmConfig): LinearModule[] {
  const H = config.hiddenSize;
  return [
    { name: CLASSIFIER.dense, inFeatures: H, outFeatures: H, bias: true },
    { name: CLASSIFIER.outProj, inFeatures: H, outFeatures: config.numLabels, bias: true },
  ];
}

/** The encoder's Linear modules, every layer in order (what an int8 base quantizes). */
export function encoderLinears(config: EsmConfig): LinearModule[] {
  return Array.from({ length: config.numHiddenLayers }, (_, i) => layerLinears(config, i)).flat();
}

/** The Linear modules a classification forward pass runs, in order: encoder, then head. */
export function classificationLinears(config: EsmConfig): LinearModule[] {
  return [...encoderLinears(config), ...headLinears(config)];
}

/** Every LayerNorm of the encoder, in order, the final one last. */
export function encoderNorms(config: EsmConfig): string[] {
  const out: string[] = [];
  for (let i = 0; i < config.numHiddenLayers; i++)
    for (const n of LAYER_NORMS) out.push(`${layerPrefix(i)}${n}`);
  out.push(FINAL_NORM);
  return out;
}

export type ParamInit = "normal" | "zeros" | "ones" | "embedding" | "inv_freq";

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

/** Every tensor the model holds, in a stable order (the model's and the checkpoints'). */
export function parameterSpecs(config: EsmConfig, options: { lmHead: boolean }): ParamSpec[] {
  const H = config.hiddenSize;
  const V = config.vocabSize;
  const specs: ParamSpec[] = [];
  const add = (key: string, shape: number[], init: ParamInit) =>
    specs.push({
      key,
      shape,
      linear: init === "normal",
      init,
      group: groupOf(key),
      trainable: init !== "inv_freq",
    });
  const linear = (m: LinearModule) => {
    add(`${m.name}.weight`, [m.outFeatures, m.inFeatures], "normal");
    if (m.bias) add(`${m.name}.bias`, [m.outFeatures], "zeros");
  };
  const norm = (name: string) => {
    add(`${name}.weight`, [H], "ones");
    add(`${name}.bias`, [H], "zeros");
  };
  add(EMBEDDING, [V, H], "embedding");
  add(INV_FREQ_KEY, [headDim(config) / 2], "inv_freq");
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const m = (role: LinearRole) => layerLinear(config, i, role);
    norm(`${layerPrefix(i)}${LAYER.attnNorm}`);
    for (const role of ["query", "key", "value", "attnOut"] as const) linear(m(role));
    norm(`${layerPrefix(i)}${LAYER.ffnNorm}`);
    linear(m("ffnIn"));
    linear(m("ffnOut"));
  }
  norm(FINAL_NORM);
  for (const m of headLinears(config)) linear(m);
  if (options.lmHead) {
    linear({ name: LM_HEAD.dense, inFeatures: H, outFeatures: H, bias: true });
    norm(LM_HEAD.layerNorm);
    if (!config.tieWordEmbeddings)
      linear({ name: LM_HEAD.decoder, inFeatures: H, outFeatures: V, bias: false });
    add(LM_HEAD.bias, [V], "zeros");
  }
  return specs;
}
