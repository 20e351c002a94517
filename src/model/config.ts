/**
 * The ESM-2 configuration: one typed object, read from and written to a Hugging Face
 * `config.json`. Defaults are those of transformers' `EsmConfig` class, because a
 * field absent from config.json takes the class default in Python too (note
 * `layerNormEps` 1e-12 there, while every ESM-2 checkpoint says 1e-5).
 */
import { ConfigError } from "../errors";

export interface EsmConfig {
  /** Vocabulary size; 33 for ESM-2. (`vocab_size`, required) */
  vocabSize: number;
  /** Width of the residual stream H. (`hidden_size`, default 768) */
  hiddenSize: number;
  /** Number of encoder layers. (`num_hidden_layers`, default 12) */
  numHiddenLayers: number;
  /** Attention heads; must divide `hiddenSize`. (`num_attention_heads`, default 12) */
  numAttentionHeads: number;
  /** Feed-forward width, 4H in ESM-2. (`intermediate_size`, default 3072) */
  intermediateSize: number;
  /** Longest input the checkpoint was trained for, `<cls>`/`<eos>` included. (1026) */
  maxPositionEmbeddings: number;
  /** LayerNorm epsilon, inside the square root. (`layer_norm_eps`, class default 1e-12) */
  layerNormEps: number;
  /** `<pad>` id (1); only used for the zero row of a freshly initialised embedding. */
  padTokenId: number;
  /** `<mask>` id (32); those embeddings are zeroed when `tokenDropout` is on. */
  maskTokenId: number | null;
  /** `<eos>` id (2). */
  eosTokenId: number | null;
  /** ESM's "mask dropout" rescaling of embeddings, on in train AND eval. (default false) */
  tokenDropout: boolean;
  /** Only "rotary" (ESM-2) is implemented; "absolute" is ESM-1b. (default "absolute") */
  positionEmbeddingType: "rotary";
  /** Rotary base: inv_freq[i] = 1 / theta^(2i/head_dim). (`rope_theta`, 10000) */
  ropeTheta: number;
  /** Dropout on hidden states; 0 in every ESM-2 checkpoint, unused at inference. */
  hiddenDropoutProb: number;
  /** Dropout on attention probabilities; 0 in every ESM-2 checkpoint. */
  attentionProbsDropoutProb: number;
  /** Std of the normal initialisation of new weights (the classifier). (0.02) */
  initializerRange: number;
  /** The masked-LM decoder reuses the word embeddings. (default true) */
  tieWordEmbeddings: boolean;
  /** Classifier outputs; from `id2label` / `num_labels`, default 2. */
  numLabels: number;
  /** Label names by index (`id2label`); `LABEL_i` when not given. */
  id2label: Record<number, string>;
  /** Index by label name (`label2id`). */
  label2id: Record<string, number>;
  /** "regression" | "single_label_classification" | "multi_label_classification" | null. */
  problemType: string | null;
  /** Other config.json fields, written back unchanged on save. */
  extra: Record<string, unknown>;
}

/** (layers, hidden, heads) of the six published ESM-2 checkpoints. */
const SIZES = {
  esm2_t6_8M_UR50D: [6, 320, 20],
  esm2_t12_35M_UR50D: [12, 480, 20],
  esm2_t30_150M_UR50D: [30, 640, 20],
  esm2_t33_650M_UR50D: [33, 1280, 20],
  esm2_t36_3B_UR50D: [36, 2560, 40],
  esm2_t48_15B_UR50D: [48, 5120, 40],
} as const;

export type Esm2PresetName = keyof typeof SIZES;
export const ESM2_PRESET_NAMES = Object.keys(SIZES) as Esm2PresetName[];

function labels(n: number): Pick<EsmConfig, "numLabels" | "id2label" | "label2id"> {
  const id2label: Record<number, string> = {};
  const label2id: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    id2label[i] = `LABEL_${i}`;
    label2id[`LABEL_${i}`] = i;
  }
  return { numLabels: n, id2label, label2id };
}

/**
 * An ESM-2 configuration: a preset's architecture (as published in the
 * facebook/esm2_* config.json files) with any field overridden.
 */
export function esm2Config(preset: Esm2PresetName, overrides: Partial<EsmConfig> = {}): EsmConfig {
  const size = SIZES[preset];
  if (size === undefined) {
    throw new ConfigError(
      `Unknown ESM-2 preset "${preset}"; expected one of: ${ESM2_PRESET_NAMES.join(", ")}`,
      { field: "preset", value: preset },
    );
  }
  const [layers, hidden, heads] = size;
  return customEsmConfig({
    numHiddenLayers: layers,
    hiddenSize: hidden,
    numAttentionHeads: heads,
    intermediateSize: 4 * hidden,
    ...overrides,
  });
}

/** Presets by facebook/esm2_* name, for reference tables and notebooks. */
export const ESM2_PRESETS: Readonly<Record<Esm2PresetName, EsmConfig>> = Object.fromEntries(
  ESM2_PRESET_NAMES.map((n) => [n, esm2Config(n)]),
) as Record<Esm2PresetName, EsmConfig>;

/** An ESM-2-style configuration of any size (hub values for everything not given). */
export function customEsmConfig(
  fields: Partial<EsmConfig> & Pick<EsmConfig, "hiddenSize" | "numHiddenLayers">,
): EsmConfig {
  // Labels: id2label alone sets the count and the reverse map; numLabels alone, LABEL_i.
  const named = fields.id2label ? Object.keys(fields.id2label).length : undefined;
  const numLabels = fields.numLabels ?? named ?? 2;
  const labelFields = labels(numLabels);
  if (fields.id2label) {
    labelFields.id2label = { ...fields.id2label };
    labelFields.label2id =
      fields.label2id ??
      Object.fromEntries(Object.entries(fields.id2label).map(([i, n]) => [n, Number(i)]));
  }
  if (named !== undefined && named !== numLabels) {
    throw new ConfigError(
      `the config: numLabels ${numLabels} disagrees with id2label, which names ${named} labels`,
      { field: "numLabels", value: numLabels },
    );
  }
  const config: EsmConfig = {
    vocabSize: 33,
    numAttentionHeads: 20,
    intermediateSize: 4 * fields.hiddenSize,
    maxPositionEmbeddings: 1026,
    layerNormEps: 1e-5,
    padTokenId: 1,
    maskTokenId: 32,
    eosTokenId: 2,
    tokenDropout: true,
    positionEmbeddingType: "rotary",
    ropeTheta: 10000,
    hiddenDropoutProb: 0,
    attentionProbsDropoutProb: 0,
    initializerRange: 0.02,
    tieWordEmbeddings: true,
    problemType: null,
    extra: {},
    ...fields,
    ...labelFields,
  };
  validateConfig(config, "the config");
  return config;
}

// ---- reading config.json -------------------------------------------------------------

/** Fields we interpret; everything else in config.json is kept in `extra`. */
const KNOWN = new Set([
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "intermediate_size",
  "max_position_embeddings",
  "layer_norm_eps",
  "pad_token_id",
  "mask_token_id",
  "eos_token_id",
  "token_dropout",
  "position_embedding_type",
  "rope_theta",
  "hidden_dropout_prob",
  "attention_probs_dropout_prob",
  "initializer_range",
  "tie_word_embeddings",
  "num_labels",
  "id2label",
  "label2id",
  "problem_type",
  "hidden_act",
  "emb_layer_norm_before",
  "is_decoder",
  "add_cross_attention",
  "is_folding_model",
  "model_type",
  "architectures",
  "transformers_version",
  "torch_dtype",
  "dtype",
]);

const PROBLEM_TYPES = ["regression", "single_label_classification", "multi_label_classification"];

class Reader {
  constructor(
    private readonly json: Record<string, unknown>,
    private readonly source: string,
  ) {}

  fail(field: string, value: unknown, accepted: string): never {
    throw new ConfigError(
      `${this.source}: unsupported ${field} ${JSON.stringify(value)}; accepted: ${accepted}`,
      { field, value, source: this.source },
    );
  }

  int(field: string, def: number | undefined, min = 1): number {
    const v = this.json[field] ?? def;
    if (v === undefined) this.fail(field, v, `an integer >= ${min} (the field is required)`);
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      this.fail(field, v, `an integer >= ${min}`);
    }
    return v;
  }

  optionalInt(field: string, def: number | null): number | null {
    const v = this.json[field] === undefined ? def : this.json[field];
    if (v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      this.fail(field, v, "a non-negative integer or null");
    }
    return v;
  }

  number(field: string, def: number, check: (x: number) => boolean, accepted: string): number {
    const v = this.json[field] ?? def;
    if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) this.fail(field, v, accepted);
    return v;
  }

  bool(field: string, def: boolean): boolean {
    const v = this.json[field] ?? def;
    if (typeof v !== "boolean") this.fail(field, v, "true or false");
    return v;
  }

  /** A flag that must keep one value (a feature we do not implement). */
  fixed(field: string, allowed: unknown[], why: string): void {
    const v = this.json[field];
    if (v !== undefined && !allowed.includes(v)) {
      this.fail(field, v, `${allowed.map((a) => JSON.stringify(a)).join(" or ")} (${why})`);
    }
  }
}

/**
 * Parse a Hugging Face ESM config.json. Unsupported values (absolute positions,
 * embedding LayerNorm, decoders, non-GELU activations) fail with a ConfigError naming
 * the field, the value and what is accepted.
 */
export function parseEsmConfig(json: unknown, source = "config.json"): EsmConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(`${source}: expected a JSON object, got ${JSON.stringify(json)}`, {
      source,
    });
  }
  const j = json as Record<string, unknown>;
  const r = new Reader(j, source);
  r.fixed("model_type", ["esm"], "this is an ESM model loader");
  r.fixed("hidden_act", ["gelu"], "ESM-2 uses the exact erf GELU");
  r.fixed("emb_layer_norm_before", [false, null], "ESM-2 has no embedding LayerNorm");
  r.fixed("is_decoder", [false], "ESM-2 is a bidirectional encoder");
  r.fixed("add_cross_attention", [false], "ESM-2 has no cross-attention");
  r.fixed("is_folding_model", [false], "ESMFold is not supported");
  if (j.position_embedding_type === undefined) {
    throw new ConfigError(
      `${source}: position_embedding_type is missing, which transformers reads as "absolute" (ESM-1b, not supported); accepted: "rotary" (ESM-2)`,
      { field: "position_embedding_type", value: undefined, source },
    );
  }
  if (j.position_embedding_type !== "rotary") {
    r.fail(
      "position_embedding_type",
      j.position_embedding_type,
      '"rotary" (ESM-2; "absolute" is ESM-1b, not supported)',
    );
  }

  const { numLabels, id2label, label2id } = readLabels(j, r);
  const problemType = j.problem_type ?? null;
  if (problemType !== null && !PROBLEM_TYPES.includes(problemType as string)) {
    r.fail("problem_type", problemType, `null or ${PROBLEM_TYPES.join(", ")}`);
  }
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(j)) if (!KNOWN.has(k)) extra[k] = v;
  const prob = (x: number) => x >= 0 && x < 1;
  const config: EsmConfig = {
    vocabSize: r.int("vocab_size", undefined),
    hiddenSize: r.int("hidden_size", 768),
    numHiddenLayers: r.int("num_hidden_layers", 12),
    numAttentionHeads: r.int("num_attention_heads", 12),
    intermediateSize: r.int("intermediate_size", 3072),
    maxPositionEmbeddings: r.int("max_position_embeddings", 1026),
    layerNormEps: r.number("layer_norm_eps", 1e-12, (x) => x > 0, "a number > 0"),
    padTokenId: r.int("pad_token_id", 1, 0),
    maskTokenId: r.optionalInt("mask_token_id", null),
    eosTokenId: Array.isArray(j.eos_token_id)
      ? r.fail("eos_token_id", j.eos_token_id, "one integer or null")
      : r.optionalInt("eos_token_id", 2),
    tokenDropout: r.bool("token_dropout", false),
    positionEmbeddingType: "rotary",
    ropeTheta: r.number("rope_theta", 10000, (x) => x > 0, "a number > 0"),
    hiddenDropoutProb: r.number("hidden_dropout_prob", 0.1, prob, "a number in [0, 1)"),
    attentionProbsDropoutProb: r.number(
      "attention_probs_dropout_prob",
      0.1,
      prob,
      "a number in [0, 1)",
    ),
    initializerRange: r.number("initializer_range", 0.02, (x) => x > 0, "a number > 0"),
    tieWordEmbeddings: r.bool("tie_word_embeddings", true),
    numLabels,
    id2label,
    label2id,
    problemType: problemType as string | null,
    extra,
  };
  validateConfig(config, source);
  return config;
}

function readLabels(
  j: Record<string, unknown>,
  r: Reader,
): Pick<EsmConfig, "numLabels" | "id2label" | "label2id"> {
  const raw = j.id2label;
  if (raw === undefined || raw === null) {
    const base = labels(r.int("num_labels", 2));
    if (j.label2id && typeof j.label2id === "object") {
      base.label2id = { ...(j.label2id as Record<string, number>) };
    }
    return base;
  }
  if (typeof raw !== "object" || Array.isArray(raw)) {
    r.fail("id2label", raw, 'an object such as {"0": "soluble", "1": "membrane"}');
  }
  const id2label: Record<number, string> = {};
  const entries = Object.entries(raw as Record<string, unknown>);
  for (const [k, v] of entries) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= entries.length || typeof v !== "string") {
      r.fail("id2label", raw, "keys 0..n-1 mapping to label names");
    }
    id2label[i] = v as string;
  }
  const numLabels = entries.length;
  if (j.num_labels !== undefined && j.num_labels !== numLabels) {
    r.fail("num_labels", j.num_labels, `${numLabels}, the number of id2label entries`);
  }
  let label2id: Record<string, number> = {};
  if (j.label2id && typeof j.label2id === "object") {
    label2id = { ...(j.label2id as Record<string, number>) };
  } else {
    for (const [i, name] of Object.entries(id2label)) label2id[name] = Number(i);
  }
  return { numLabels, id2label, label2id };
}

/** Checks that hold for configs from any source (config.json, presets, user code). */
export function validateConfig(c: EsmConfig, source = "the config"): void {
  const bad = (field: string, value: unknown, accepted: string): never => {
    throw new ConfigError(
      `${source}: unsupported ${field} ${JSON.stringify(value)}; accepted: ${accepted}`,
      { field, value, source },
    );
  };
  for (const f of [
    "vocabSize",
    "hiddenSize",
    "numHiddenLayers",
    "numAttentionHeads",
    "intermediateSize",
    "maxPositionEmbeddings",
    "numLabels",
  ] as const) {
    if (!Number.isInteger(c[f]) || c[f] < 1) bad(f, c[f], "an integer >= 1");
  }
  if (c.hiddenSize % c.numAttentionHeads !== 0) {
    bad(
      "hidden_size",
      c.hiddenSize,
      `a multiple of num_attention_heads (${c.numAttentionHeads}); e.g. ${c.numAttentionHeads * Math.max(1, Math.round(c.hiddenSize / c.numAttentionHeads))}`,
    );
  }
  if ((c.hiddenSize / c.numAttentionHeads) % 2 !== 0) {
    bad(
      "num_attention_heads",
      c.numAttentionHeads,
      `a head count giving an even head dimension (rotary embeddings rotate pairs); hidden_size ${c.hiddenSize} / ${c.numAttentionHeads} = ${c.hiddenSize / c.numAttentionHeads}`,
    );
  }
  if (c.positionEmbeddingType !== "rotary") {
    bad("position_embedding_type", c.positionEmbeddingType, '"rotary"');
  }
  if (typeof c.tokenDropout !== "boolean") bad("token_dropout", c.tokenDropout, "true or false");
  if (c.tokenDropout && c.maskTokenId === null) {
    bad("mask_token_id", null, "an integer token id (token_dropout needs the <mask> id)");
  }
  for (const [f, v] of [
    ["pad_token_id", c.padTokenId],
    ["mask_token_id", c.maskTokenId],
  ] as const) {
    if (v !== null && (!Number.isInteger(v) || v < 0 || v >= c.vocabSize)) {
      bad(f, v, `an id in [0, ${c.vocabSize})`);
    }
  }
  if (!(c.layerNormEps > 0)) bad("layer_norm_eps", c.layerNormEps, "a number > 0");
}

/** The Hugging Face config.json object for an EsmForSequenceClassification checkpoint. */
export function esmConfigToJson(c: EsmConfig): Record<string, unknown> {
  const id2label: Record<string, string> = {};
  for (let i = 0; i < c.numLabels; i++) id2label[String(i)] = c.id2label[i] ?? `LABEL_${i}`;
  const label2id =
    Object.keys(c.label2id).length > 0
      ? c.label2id
      : Object.fromEntries(Object.entries(id2label).map(([i, n]) => [n, Number(i)]));
  const json: Record<string, unknown> = {
    ...c.extra,
    architectures: ["EsmForSequenceClassification"],
    model_type: "esm",
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    layer_norm_eps: c.layerNormEps,
    pad_token_id: c.padTokenId,
    mask_token_id: c.maskTokenId,
    eos_token_id: c.eosTokenId,
    token_dropout: c.tokenDropout,
    position_embedding_type: c.positionEmbeddingType,
    rope_theta: c.ropeTheta,
    emb_layer_norm_before: false,
    hidden_act: "gelu",
    hidden_dropout_prob: c.hiddenDropoutProb,
    attention_probs_dropout_prob: c.attentionProbsDropoutProb,
    initializer_range: c.initializerRange,
    tie_word_embeddings: c.tieWordEmbeddings,
    is_decoder: false,
    add_cross_attention: false,
    is_folding_model: false,
    id2label,
    label2id,
    problem_type: c.problemType,
    dtype: "float32",
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Fields transformers declares as float: its strict config classes reject `0` for `0.0`. */
const FLOAT_FIELDS = [
  "hidden_dropout_prob",
  "attention_probs_dropout_prob",
  "layer_norm_eps",
  "initializer_range",
  "rope_theta",
];

/** config.json text; integral values of float fields keep a ".0" (Python reads them as float). */
export function esmConfigJsonText(c: EsmConfig): string {
  const marker = "\u0000float:";
  const json = esmConfigToJson(c);
  for (const f of FLOAT_FIELDS) {
    const v = json[f];
    if (typeof v === "number" && Number.isInteger(v)) json[f] = `${marker}${v}`;
  }
  const text = JSON.stringify(json, null, 2).replace(/"\\u0000float:(-?\d+)"/g, "$1.0");
  return `${text}\n`;
}

/** Head dimension H / heads. */
export function headDim(c: EsmConfig): number {
  return c.hiddenSize / c.numAttentionHeads;
}
