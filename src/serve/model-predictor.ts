/**
 * The ESM-2 Predictor: a Hugging Face directory (config.json, model.safetensors,
 * tokenizer files) -> class probabilities. With an `adapter_config.json` in the same
 * directory, or `adapter` given, a PEFT LoRA adapter is loaded onto the base named in
 * it (or `base`) and merged for speed.
 */
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { ensureBackend } from "../backend";
import type { EngineChoice, EngineName, EsmEngine } from "../engine/engine";
import { planPasses } from "../engine/passes";
import { ConfigError } from "../errors";
import { ADAPTER_CONFIG, loadAdapter } from "../lora/adapter-io";
import type { Esm2Model } from "../model/esm2";
import { fromPretrained } from "../model/pretrained";
import { createEmbedder, type Embedder } from "../onnx/embedder";
import { OnnxEsmEngine } from "../onnx/engine";
import { checkThreads, createEngine, defaultThreads, resolveEngine } from "../onnx/select";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import { type ProblemType, taskOfConfig } from "../util/task";
import type { ClassProbabilities, EmbeddingRequest, Predictor } from "./predictor";

export interface EsmPredictorOptions {
  /** Tokens per sequence including <cls>/<eos>; default: tokenizer_config's model_max_length or 1024. */
  maxLength?: number;
  /** Base model for an adapter-only directory (default: the adapter's base_model_name_or_path). */
  base?: string;
  onWarning?: (message: string) => void;
  /** Who runs the forward pass; default `ESMKIT_ENGINE`, then "auto" (see src/onnx/select.ts). */
  engine?: EngineChoice;
  /** onnxruntime threads; default `ESMKIT_THREADS` or every core. */
  threads?: number;
}

export interface EsmPredictor extends Predictor {
  readonly problemType: ProblemType;
  readonly model: Esm2Model;
  readonly tokenizer: EsmTokenizer;
  /** The engine in use. */
  readonly engineName: EngineName;
  /** The engine that runs the forward passes (on `model`). */
  readonly engine: EsmEngine;
  /** Pooled embeddings (src/onnx/embedder.ts), computed by the onnx engine whichever engine classifies. */
  embed(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]>;
  readonly numLayers: number;
  dispose(): void;
}

function engineOptions(options: EsmPredictorOptions): { engine?: EngineChoice; threads: number } {
  const engine = options.engine;
  const envThreads = process.env.ESMKIT_THREADS;
  const threads =
    options.threads !== undefined
      ? checkThreads(options.threads, "threads")
      : envThreads
        ? checkThreads(Number(envThreads), "ESMKIT_THREADS")
        : defaultThreads();
  return { engine, threads };
}

export async function loadEsmPredictor(
  dir: string,
  options: EsmPredictorOptions = {},
): Promise<EsmPredictor> {
  const backend = await ensureBackend();
  const { engine: engineChoice, threads } = engineOptions(options);
  const decision = resolveEngine(engineChoice, backend.name);
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  const isAdapter =
    existsSync(path.join(dir, ADAPTER_CONFIG)) && !existsSync(path.join(dir, "config.json"));
  let model: Esm2Model;
  if (isAdapter) {
    const cfg = JSON.parse(readFileSync(path.join(dir, ADAPTER_CONFIG), "utf8"));
    const base = options.base ?? cfg.base_model_name_or_path;
    if (typeof base !== "string" || base === "") {
      throw new ConfigError(
        `${dir} holds an adapter without base_model_name_or_path; pass the base model`,
        { dir },
      );
    }
    model = await fromPretrained(base, { onWarning: warn });
    const lora = loadAdapter(model, dir);
    lora.merge();
  } else {
    model = await fromPretrained(dir, { onWarning: warn });
  }
  const tokenizer = existsSync(path.join(dir, "vocab.txt"))
    ? await EsmTokenizer.fromDirectory(dir)
    : new EsmTokenizer();
  const maxLength = options.maxLength ?? tokenizer.modelMaxLength ?? 1024;
  const engine = createEngine(decision.name, model, { threads });
  const n = model.config.numLabels;
  const labels = Array.from({ length: n }, (_, i) => model.config.id2label[i] ?? String(i));
  const { problemType } = taskOfConfig(model.config);
  // Logits -> the answer: softmax, a sigmoid per label, or the values themselves.
  const answer = (row: ArrayLike<number>): ClassProbabilities =>
    problemType === "regression"
      ? { labels, probabilities: [], values: Array.from(row) }
      : problemType === "multi_label_classification"
        ? { labels, probabilities: Array.from(row, sigmoid) }
        : { labels, probabilities: softmax(row) };
  // Embeddings share the onnx engine (made here when the tfjs engine classifies).
  let embedder: Embedder | undefined;
  let embedEngine: OnnxEsmEngine | undefined;
  return {
    model,
    tokenizer,
    labels,
    problemType,
    maxLength,
    async predict(sequences: string[]): Promise<ClassProbabilities[]> {
      const rows = sequences.map((seq) => tokenizer.encode(seq, { maxLength, truncation: true }));
      const out: ClassProbabilities[] = [];
      for (const pass of planPasses(
        rows.map((r) => r.length),
        maxLength,
      )) {
        const part = rows.slice(pass.start, pass.end);
        // [B, L]: every row padded to the pass's bucket length, padding masked out.
        const inputIds = part.map((r) => padRow(r, pass.width, tokenizer.padId));
        const attentionMask = part.map((r) =>
          padRow(
            r.map(() => 1),
            pass.width,
            0,
          ),
        );
        const logits = engine.logits({
          inputIds: inputIds.flat(),
          attentionMask: attentionMask.flat(),
          batchSize: part.length,
          seqLen: pass.width,
        });
        for (let b = 0; b < part.length; b++) {
          out.push(answer(logits.subarray(b * n, (b + 1) * n)));
        }
      }
      return out;
    },
    numLayers: model.config.numHiddenLayers,
    async embed(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]> {
      if (!embedder) {
        embedEngine =
          engine instanceof OnnxEsmEngine ? engine : new OnnxEsmEngine(model, { threads });
        embedder = createEmbedder(model, { tokenizer, maxLength, engine: embedEngine });
      }
      return embedder.embed(sequences, request).map((e) => e.embedding);
    },
    engineName: decision.name,
    engine,
    dispose() {
      engine.dispose();
      if (embedEngine !== engine) embedEngine?.dispose();
      model.dispose();
    },
  };
}

// The pass planning lives with the engines (src/engine/passes.ts), shared with the embedder.
export {
  ATTENTION_BUDGET,
  bucketLength,
  type ForwardPass,
  LENGTH_BUCKET,
  planPasses,
} from "../engine/passes";

function padRow(row: readonly number[], width: number, value: number): number[] {
  return row.length >= width
    ? [...row]
    : row.concat(new Array<number>(width - row.length).fill(value));
}

/** The logistic function in float64, finite for any input. */
function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

/** Softmax in float64, for one row of logits. */
function softmax(row: ArrayLike<number>): number[] {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  const e = Array.from({ length: row.length }, (_, i) => Math.exp(row[i]! - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
