/**
 * Hugging Face checkpoint <-> Esm2Model parameters: key mapping, shape checks, and
 * errors that list every missing key, unexpected key and shape mismatch at once
 * (nanoGPT's loader checks counts and shapes; we also say what each key should be).
 *
 * Accepted key spellings, all mapped to the `esm.`-prefixed EsmForSequenceClassification
 * names of `parameterSpecs`:
 * - `esm.*` (EsmForSequenceClassification / EsmForMaskedLM) and bare EsmModel keys;
 * - `LayerNorm.gamma` / `LayerNorm.beta` (what transformers 5.x `save_pretrained` writes
 *   for ESM) as well as `LayerNorm.weight` / `.bias`;
 * - rotary `inv_freq` model-level (`esm.rotary_embeddings.inv_freq`), per layer (Hub
 *   checkpoints: layer 0's is used, as transformers does) or as transformers 5.x's
 *   wildcard key `esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq`;
 *   absent, it is computed from `rope_theta` (as transformers does).
 * Ignored: `position_ids`, absolute `position_embeddings`, `esm.pooler.*`, and a tied
 * `lm_head.decoder.weight`. `esm.contact_head.*` is kept aside and written back on save.
 */
import * as tf from "@tensorflow/tfjs-core";
import { WeightsError } from "../errors";
import { SeededRandom } from "../util/random";
import {
  CHECKPOINT_ONLY,
  CLASSIFIER,
  INV_FREQ_KEY,
  isLmHead,
  LAYERS_PREFIX,
  LM_HEAD,
  layerPrefix,
  type ParamSpec,
  parameterSpecs,
} from "./architecture";
import type { EsmConfig } from "./config";
import { initialValues, toModelTensor } from "./parameters";
import { FLOAT_DTYPES, type SafetensorsDtype } from "./safetensors";

/** Read access to a checkpoint's tensors (one safetensors file, or several shards). */
export interface TensorSource {
  /** For messages: the file or directory. */
  readonly description: string;
  keys(): string[];
  info(key: string): { dtype: SafetensorsDtype; shape: number[] };
  read(key: string): Float32Array;
}

export interface LoadOptions {
  /** Seed for newly initialised weights (the classifier of a MaskedLM checkpoint). */
  seed?: number;
  /** Re-initialise classifier tensors whose shape differs (a new label count). */
  ignoreMismatchedSizes?: boolean;
  /** Keys the model does not know become a warning instead of an error. */
  allowUnexpected?: boolean;
}

export interface LoadReport {
  /** Hugging Face keys absent from the checkpoint and newly initialised (N(0, 0.02), bias 0). */
  missingInitialised: string[];
  /** Checkpoint keys read but not needed (position_ids, pooler, tied decoder, extra inv_freq). */
  ignored: string[];
  /** Unknown keys skipped because `allowUnexpected` was set. */
  unexpected: string[];
  /** Whether the checkpoint carried the masked-LM head. */
  lmHead: boolean;
  /** Where inv_freq came from: the checkpoint key, or "computed". */
  invFreqSource: string;
}

/** A checkpoint key's fate: a model parameter (lower priority wins among aliases),
 * ignored, or kept aside and written back on save. */
export type MappedKey =
  | { kind: "param"; key: string; priority: number }
  | { kind: "ignored" }
  | { kind: "passthrough"; key: string };

const BARE_PREFIXES = ["embeddings.", "encoder.", "pooler.", "contact_head.", "rotary_embeddings."];
/** The layer of a per-layer inv_freq key ("*": transformers 5.x's wildcard), if it is one. */
function invFreqLayer(k: string): string | undefined {
  const suffix = `.${CHECKPOINT_ONLY.layerInvFreq}`;
  if (!k.startsWith(LAYERS_PREFIX) || !k.endsWith(suffix)) return undefined;
  const layer = k.slice(LAYERS_PREFIX.length, -suffix.length);
  return /^(\d+|\*)$/.test(layer) ? layer : undefined;
}

/** Map one checkpoint key to the model's key (or say why it is not one). */
export function mapCheckpointKey(raw: string, config: EsmConfig): MappedKey {
  let k = raw;
  if (BARE_PREFIXES.some((p) => k.startsWith(p))) k = `esm.${k}`;
  k = k
    .replace(/LayerNorm\.gamma$/, "LayerNorm.weight")
    .replace(/LayerNorm\.beta$/, "LayerNorm.bias");
  if (k === INV_FREQ_KEY) return { kind: "param", key: INV_FREQ_KEY, priority: 0 };
  const layer = invFreqLayer(k);
  if (layer !== undefined) {
    // transformers uses the first layer's (they are all equal in real checkpoints).
    const priority = layer === "*" ? 1 : 2 + Number(layer);
    return { kind: "param", key: INV_FREQ_KEY, priority };
  }
  if (
    k.endsWith(".position_ids") ||
    k === CHECKPOINT_ONLY.positionEmbeddings ||
    k.startsWith(CHECKPOINT_ONLY.pooler) ||
    (k === `${LM_HEAD.decoder}.weight` && config.tieWordEmbeddings)
  ) {
    return { kind: "ignored" };
  }
  if (k.startsWith(CHECKPOINT_ONLY.contactHead)) return { kind: "passthrough", key: k };
  return { kind: "param", key: k, priority: 0 };
}

const fmt = (s: number[]) => `[${s.join(", ")}]`;

/**
 * Check a checkpoint against the config and build the model's parameters (model
 * layout). Throws one WeightsError listing every problem.
 */
export function loadParameters(
  config: EsmConfig,
  source: TensorSource,
  options: LoadOptions = {},
): {
  params: Map<string, tf.Tensor>;
  passthrough: Map<string, { shape: number[]; data: Float32Array }>;
  report: LoadReport;
} {
  const found = new Map<string, { raw: string; priority: number }>();
  const passthroughKeys = new Map<string, string>();
  const ignored: string[] = [];
  const unknown: string[] = [];
  const duplicates: string[] = [];
  for (const raw of source.keys()) {
    const m = mapCheckpointKey(raw, config);
    if (m.kind === "ignored") ignored.push(raw);
    else if (m.kind === "passthrough") passthroughKeys.set(m.key, raw);
    else if (m.kind === "param") {
      const prev = found.get(m.key);
      if (prev === undefined || m.priority < prev.priority) {
        if (prev) ignored.push(prev.raw);
        found.set(m.key, { raw, priority: m.priority });
      } else if (m.priority === prev.priority) {
        duplicates.push(`${raw} and ${prev.raw} both map to ${m.key}`);
      } else ignored.push(raw);
    }
  }
  const lmHead = [...found.keys()].some(isLmHead);
  const specs = parameterSpecs(config, { lmHead });
  const specByKey = new Map(specs.map((s) => [s.key, s]));
  for (const key of found.keys()) if (!specByKey.has(key)) unknown.push(found.get(key)!.raw);

  const missing: string[] = [];
  const mismatched: string[] = [];
  const badDtype: string[] = [];
  const toInit: ParamSpec[] = [];
  const classifier = specs.filter((s) => s.group === "classifier");
  const noClassifier = classifier.every((s) => !found.has(s.key));
  for (const spec of specs) {
    const hit = found.get(spec.key);
    if (!hit) {
      if (spec.key === INV_FREQ_KEY || (spec.group === "classifier" && noClassifier)) {
        toInit.push(spec);
      } else missing.push(spec.key);
      continue;
    }
    const info = source.info(hit.raw);
    if (!tf.util.arraysEqual(info.shape, spec.shape)) {
      if (spec.group === "classifier" && options.ignoreMismatchedSizes) {
        found.delete(spec.key);
        toInit.push(spec);
        continue;
      }
      const hint =
        spec.key === `${CLASSIFIER.outProj}.weight`
          ? ` (the checkpoint has ${info.shape[0]} labels: set numLabels to match, or ignoreMismatchedSizes to re-initialise the classifier)`
          : "";
      mismatched.push(`${hit.raw}: expected ${fmt(spec.shape)}, found ${fmt(info.shape)}${hint}`);
    }
    if (!FLOAT_DTYPES.includes(info.dtype)) {
      badDtype.push(`${hit.raw}: ${info.dtype} (expected one of ${FLOAT_DTYPES.join(", ")})`);
    }
  }
  if (options.allowUnexpected) unknown.sort();
  const problems: string[] = [];
  const list = (title: string, items: string[]) => {
    if (items.length > 0) problems.push(`${title} (${items.length}):\n    ${items.join("\n    ")}`);
  };
  list("missing keys", missing);
  if (!options.allowUnexpected) list("unexpected keys", unknown);
  list("shape mismatches", mismatched);
  list("unsupported dtypes", badDtype);
  list("duplicate keys", duplicates);
  if (problems.length > 0) {
    throw new WeightsError(
      `Checkpoint ${source.description} does not fit the config (${config.numHiddenLayers} layers, hidden ${config.hiddenSize}, ${config.numAttentionHeads} heads, ${config.numLabels} labels):\n  ${problems.join("\n  ")}`,
      {
        file: source.description,
        missing,
        unexpected: options.allowUnexpected ? [] : unknown,
        mismatched,
        badDtype,
        duplicates,
      },
    );
  }

  const params = new Map<string, tf.Tensor>();
  const rng = new SeededRandom(options.seed ?? 42);
  try {
    for (const spec of specs) {
      const hit = found.get(spec.key);
      const values = hit ? source.read(hit.raw) : initialValues(spec, config, rng);
      params.set(spec.key, toModelTensor(spec, values));
    }
  } catch (e) {
    for (const t of params.values()) t.dispose();
    throw e;
  }
  const passthrough = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [key, raw] of passthroughKeys) {
    const info = source.info(raw);
    if (FLOAT_DTYPES.includes(info.dtype))
      passthrough.set(key, { shape: info.shape, data: source.read(raw) });
  }
  const invHit = found.get(INV_FREQ_KEY);
  return {
    params,
    passthrough,
    report: {
      missingInitialised: toInit.filter((s) => s.key !== INV_FREQ_KEY).map((s) => s.key),
      ignored,
      unexpected: options.allowUnexpected ? unknown : [],
      lmHead,
      invFreqSource: invHit ? invHit.raw : "computed",
    },
  };
}

/** A tensor to write: shape in the Hugging Face layout, values produced on demand. */
export interface StateDictEntry {
  shape: number[];
  data: () => Float32Array;
}

/** What `stateDict` reads from a model (an Esm2Model; weights.ts does not import it). */
export interface StateDictModel {
  readonly config: EsmConfig;
  parameterSpecs(): readonly ParamSpec[];
  namedVariables(): Map<string, tf.Variable>;
  /** Checkpoint tensors kept aside and written back (`esm.contact_head.*`). */
  readonly passthrough: ReadonlyMap<string, { shape: number[]; data: Float32Array }>;
}

/**
 * The model as a Hugging Face state dict, in the Hub layout (`LayerNorm.weight`, a
 * per-layer `inv_freq`, Linear weights `[out, in]`), which every transformers version
 * loads. A tied decoder is omitted (as transformers does); `lmHead: false` drops the
 * masked-LM head.
 */
export function stateDict(
  model: StateDictModel,
  options: { lmHead?: boolean } = {},
): Map<string, StateDictEntry> {
  const vars = model.namedVariables();
  const out = new Map<string, StateDictEntry>();
  const read = (spec: ParamSpec) => () =>
    tf.tidy(() => {
      const v = vars.get(spec.key)!;
      return (spec.linear ? tf.transpose(v) : v).dataSync() as Float32Array;
    });
  for (const spec of model.parameterSpecs()) {
    if (spec.group === "lm_head" && options.lmHead === false) continue;
    if (spec.key === INV_FREQ_KEY) {
      for (let i = 0; i < model.config.numHiddenLayers; i++) {
        out.set(`${layerPrefix(i)}${CHECKPOINT_ONLY.layerInvFreq}`, {
          shape: spec.shape,
          data: read(spec),
        });
      }
      continue;
    }
    out.set(spec.key, { shape: spec.shape, data: read(spec) });
  }
  for (const [key, t] of model.passthrough) out.set(key, { shape: t.shape, data: () => t.data });
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
