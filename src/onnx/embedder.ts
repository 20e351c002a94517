/**
 * Protein embeddings from ESM-2's hidden states, computed by the onnx engine.
 *
 * Convention (the same in the CLI, the library, the endpoint and the Parquet metadata):
 * - `layer` numbers hidden states as transformers' `EsmModel(output_hidden_states=True)`
 *   does: 0 is the embeddings output, i the output of encoder layer i, and the last one
 *   (`numLayers`) is taken after the final LayerNorm (`emb_layer_norm_after`), so it
 *   equals `last_hidden_state`. Negative values count from the end, as in Python.
 * - `pooling: "mean"` averages the hidden states of the residue tokens only: `<cls>`
 *   (position 0) and `<eos>` (the last token) are excluded, and so is padding.
 *   `"cls"` takes position 0 (`<cls>`).
 * - Per-residue output holds the residue tokens' rows (no `<cls>`/`<eos>`), one per
 *   residue of the (possibly truncated) sequence.
 * - Sequences longer than `maxLength - 2` residues are truncated to their first
 *   residues (or refused, with tooLong "reject"), as the tokenizer's truncation does.
 *
 * Sequences given together are sorted by length and run in batches of similar lengths,
 * so little is computed on padding; results come back in the order given. Padded
 * widths come from `planPasses` (src/engine/passes.ts), which also bounds the shapes
 * onnxruntime sees (and so its memory arena).
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { ensureBackend } from "../backend";
import { planPasses } from "../engine/passes";
import { ConfigError } from "../errors";
import { isAdapterDir, loadMergedAdapter } from "../lora/merged";
import type { Esm2Model } from "../model/esm2";
import { fromPretrained } from "../model/pretrained";
import { OnnxEsmEngine } from "../onnx/engine";
import { checkThreads, defaultThreads } from "../onnx/select";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";

export const EMBEDDING_POOLINGS = ["mean", "cls"] as const;
export type EmbeddingPooling = (typeof EMBEDDING_POOLINGS)[number];

/** The pooling convention, as written into --help, the README and the Parquet metadata. */
export const POOLING_CONVENTION =
  "mean: average over the residue tokens (<cls>, <eos> and padding excluded); cls: the <cls> token (position 0)";
export const LAYER_CONVENTION =
  "hidden_states[layer] as transformers' EsmModel numbers them: 0 = embeddings output, N = last layer after the final LayerNorm (= last_hidden_state); negative counts from the end";

export interface EmbedSettings {
  /** Default "mean" (residues only). */
  pooling?: EmbeddingPooling;
  /** Hidden state to use (default: the last, numLayers). */
  layer?: number;
  /** Also return every residue's vector. */
  perResidue?: boolean;
  /** Sequences per forward pass (default 8; long ones run in smaller passes). */
  batchSize?: number;
}

export interface ProteinEmbedding {
  /** The pooled vector `[hidden]`. */
  embedding: Float32Array;
  /** With `perResidue`: `[residues, hidden]` row-major (no `<cls>`/`<eos>` rows). */
  residues?: Float32Array;
}

export interface Embedder {
  /** The TensorFlow.js model, when the embedder was made on one (not on an engine alone). */
  readonly model?: Esm2Model;
  readonly tokenizer: EsmTokenizer;
  readonly hiddenSize: number;
  /** Encoder layers: hidden states are numbered 0..numLayers. */
  readonly numLayers: number;
  /** Tokens per sequence, `<cls>`/`<eos>` included (residues: maxLength - 2). */
  readonly maxLength: number;
  /** Where the model came from (a directory or Hub id), for metadata. */
  readonly source: string;
  /**
   * Embeddings of normalised sequences (uppercase residues, see serve/sequences.ts) in
   * the order given; sequences longer than maxLength - 2 residues are truncated.
   */
  embed(sequences: readonly string[], settings?: EmbedSettings): ProteinEmbedding[];
  /** The settings with defaults filled in and checked (layer made non-negative). */
  resolve(settings?: EmbedSettings): Required<EmbedSettings>;
  dispose(): void;
}

export interface EmbedderOptions {
  /** Base model of an adapter-only directory (default: its base_model_name_or_path). */
  base?: string;
  /** Tokens per sequence incl. <cls>/<eos>; default tokenizer_config's model_max_length, else 1024. */
  maxLength?: number;
  /** onnxruntime threads (default ESMKIT_THREADS, else every core). */
  threads?: number;
  /** Loading warnings (default stderr). */
  onWarning?: (message: string) => void;
}

function resolveThreads(threads: number | undefined): number {
  if (threads !== undefined) return checkThreads(threads, "threads");
  const env = process.env.ESMKIT_THREADS;
  return env ? checkThreads(Number(env), "ESMKIT_THREADS") : defaultThreads();
}

/** Checks `settings` against a model of `numLayers` layers; fills defaults. */
export function resolveEmbedSettings(
  settings: EmbedSettings,
  numLayers: number,
): Required<EmbedSettings> {
  const pooling = settings.pooling ?? "mean";
  if (!(EMBEDDING_POOLINGS as readonly string[]).includes(pooling)) {
    throw new ConfigError(
      `pooling must be ${EMBEDDING_POOLINGS.join(" or ")}, got ${JSON.stringify(pooling)}`,
      { pooling },
    );
  }
  let layer = settings.layer ?? numLayers;
  if (!Number.isInteger(layer) || layer < -(numLayers + 1) || layer > numLayers) {
    throw new ConfigError(
      `layer ${layer} is out of range: the model has ${numLayers} layers, so hidden states 0..${numLayers} (0: embeddings output, ${numLayers}: last layer after the final LayerNorm; -1..-${numLayers + 1} count from the end)`,
      { layer, numLayers },
    );
  }
  if (layer < 0) layer += numLayers + 1;
  const batchSize = settings.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(`batchSize must be an integer >= 1, got ${batchSize}`, { batchSize });
  }
  return { pooling, layer, perResidue: settings.perResidue ?? false, batchSize };
}

/**
 * An Embedder over a model already in memory (e.g. just fine-tuned in a notebook), or
 * over an onnx engine (shared, not disposed here; e.g. a predictor's, which holds the
 * only copy of the weights).
 */
export function createEmbedder(
  source: Esm2Model | OnnxEsmEngine,
  options: {
    tokenizer?: EsmTokenizer;
    maxLength?: number;
    threads?: number;
    source?: string;
    /** An onnx engine over `model` to share (its sessions and weight copies); not disposed here. */
    engine?: OnnxEsmEngine;
  } = {},
): Embedder {
  const tokenizer = options.tokenizer ?? new EsmTokenizer();
  const maxLength = options.maxLength ?? tokenizer.modelMaxLength ?? 1024;
  if (!Number.isInteger(maxLength) || maxLength < 3) {
    throw new ConfigError(`maxLength must be an integer >= 3, got ${maxLength}`, { maxLength });
  }
  const model = source instanceof OnnxEsmEngine ? source.model : source;
  const shared = source instanceof OnnxEsmEngine ? source : options.engine;
  if (shared && model && shared.model !== model) {
    throw new Error("the engine given runs another model");
  }
  const engine = shared ?? new OnnxEsmEngine(model!, { threads: resolveThreads(options.threads) });
  const H = engine.config.hiddenSize;
  const numLayers = engine.config.numHiddenLayers;
  const resolve = (settings: EmbedSettings = {}) => resolveEmbedSettings(settings, numLayers);
  return {
    ...(model ? { model } : {}),
    tokenizer,
    hiddenSize: H,
    numLayers,
    maxLength,
    source: options.source ?? model?.nameOrPath ?? "(in memory)",
    resolve,
    embed(sequences, settings = {}) {
      const s = resolve(settings);
      const rows = sequences.map((seq) => tokenizer.encode(seq, { maxLength, truncation: true }));
      // Longest first, so each batch holds similar lengths (little padding).
      const order = rows.map((_, i) => i).sort((a, b) => rows[b]!.length - rows[a]!.length);
      const out: ProteinEmbedding[] = new Array(rows.length);
      for (let at = 0; at < order.length; at += s.batchSize) {
        const batch = order.slice(at, at + s.batchSize);
        for (const pass of planPasses(
          batch.map((i) => rows[i]!.length),
          maxLength,
        )) {
          const part = pass.rows.map((j) => batch[j]!);
          const W = pass.width;
          const ids = new Int32Array(part.length * W).fill(tokenizer.padId);
          const mask = new Int32Array(part.length * W);
          part.forEach((i, b) => {
            ids.set(rows[i]!, b * W);
            mask.fill(1, b * W, b * W + rows[i]!.length);
          });
          // [B, W, H]
          const hidden = engine.hiddenStates(
            { inputIds: ids, attentionMask: mask, batchSize: part.length, seqLen: W },
            s.layer,
          );
          part.forEach((i, b) => {
            out[i] = pool(hidden, b, W, H, rows[i]!.length, s.pooling, s.perResidue);
          });
        }
      }
      return out;
    },
    dispose() {
      if (!shared) engine.dispose();
    },
  };
}

/** Row `b` of hidden `[B, W, H]` with `tokens` real tokens -> its embedding. */
function pool(
  hidden: Float32Array,
  b: number,
  W: number,
  H: number,
  tokens: number,
  pooling: EmbeddingPooling,
  perResidue: boolean,
): ProteinEmbedding {
  const row = b * W * H;
  const embedding = new Float32Array(H);
  if (pooling === "cls") {
    embedding.set(hidden.subarray(row, row + H));
  } else {
    // Residues are tokens 1 .. tokens - 2. Sums in float64, as exact as it gets.
    const n = tokens - 2;
    const sum = new Float64Array(H);
    for (let l = 1; l <= n; l++) {
      const at = row + l * H;
      for (let h = 0; h < H; h++) sum[h]! += hidden[at + h]!;
    }
    for (let h = 0; h < H; h++) embedding[h] = sum[h]! / n;
  }
  const residues = perResidue
    ? hidden.slice(row + H, row + (tokens - 1) * H) // [tokens - 2, H]
    : undefined;
  return residues ? { embedding, residues } : { embedding };
}

/**
 * Load a model for embeddings: a Hub id, a model directory, or a PEFT adapter directory
 * (merged onto its base). A checkpoint without a classifier (the Hub's masked-LM ones)
 * is expected here: the classifier is not used, so its absence is not reported.
 */
export async function loadEmbedder(
  model: string,
  options: EmbedderOptions = {},
): Promise<Embedder> {
  await ensureBackend();
  const threads = resolveThreads(options.threads);
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  const quietWarn = (m: string) => {
    // Only the (unused) classifier newly initialised: nothing the user needs to hear.
    if (m.startsWith("Some weights of the model were not in the checkpoint")) return;
    warn(m);
  };
  let esm: Esm2Model;
  let tokenizerDir: string | undefined = model;
  if (existsSync(model) && isAdapterDir(model)) {
    const merged = await loadMergedAdapter(model, { base: options.base, onWarning: quietWarn });
    esm = merged.model;
    if (!existsSync(path.join(model, "vocab.txt"))) tokenizerDir = merged.base;
  } else {
    esm = await fromPretrained(model, { onWarning: quietWarn });
  }
  const encoderMissing = (esm.loadReport?.missingInitialised ?? []).filter(
    (k) => !k.startsWith("classifier."),
  );
  if (encoderMissing.length > 0) {
    warn(
      `${model}: encoder weights missing from the checkpoint were initialised at random: [${encoderMissing.join(", ")}]; the embeddings are not meaningful`,
    );
  }
  const tokenizer =
    tokenizerDir && existsSync(path.join(tokenizerDir, "vocab.txt"))
      ? await EsmTokenizer.fromDirectory(tokenizerDir)
      : new EsmTokenizer();
  try {
    const embedder = createEmbedder(esm, {
      tokenizer,
      maxLength: options.maxLength,
      threads,
      source: model,
    });
    // This embedder loaded the model, so it frees it too.
    return {
      ...embedder,
      dispose() {
        embedder.dispose();
        esm.dispose();
      },
    };
  } catch (e) {
    esm.dispose();
    throw e;
  }
}
