/**
 * The ESM-2 Predictor: a Hugging Face directory (config.json, model.safetensors,
 * tokenizer files) -> class probabilities. With an `adapter_config.json` in the same
 * directory, or `adapter` given, a PEFT LoRA adapter is loaded onto the base named in
 * it (or `base`) and merged for speed.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { ensureBackend } from "../backend";
import { inInputOrder } from "../data/length-batches";
import type { EngineChoice, EngineName, EsmEngine } from "../engine/engine";
import { planPasses } from "../engine/passes";
import { isAdapterDir, loadMergedAdapter } from "../lora/merged";
import type { EsmConfig } from "../model/config";
import type { Esm2Model } from "../model/esm2";
import { fromPretrained, openPretrained } from "../model/pretrained";
import { createEmbedder, type Embedder } from "../onnx/embedder";
import { OnnxEsmEngine } from "../onnx/engine";
import {
  checkQuantizeEngine,
  checkThreads,
  createEngine,
  defaultThreads,
  parseQuantize,
  type Quantize,
  quantizeFromEnv,
  resolveEngine,
} from "../onnx/select";
import { checkpointWeights } from "../onnx/weights";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import { type ProblemType, taskOfConfig } from "../util/task";
import type { ClassProbabilities, EmbeddingRequest, Predictor } from "./predictor";

export {
  ATTENTION_BUDGET,
  bucketLength,
  type ForwardPass,
  LENGTH_BUCKET,
  planPasses,
} from "../engine/passes";

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
  /**
   * "int8": the encoder's Linear weights run as int8 (onnx engine; src/onnx/quantize.ts);
   * default `ESMKIT_QUANTIZE`, then "none".
   */
  quantize?: Quantize;
}

export interface EsmPredictor extends Predictor {
  /**
   * The TensorFlow.js model, when one was built: the tfjs engine, or an adapter merged
   * into its base. The onnx engine on a full checkpoint has none (one copy of the weights).
   */
  readonly model?: Esm2Model;
  readonly config: EsmConfig;
  readonly problemType: ProblemType;
  readonly tokenizer: EsmTokenizer;
  /** The engine in use. */
  readonly engineName: EngineName;
  /** The engine that runs the forward passes. */
  readonly engine: EsmEngine;
  /** How the weights are held ("int8": the encoder's Linears). */
  readonly quantize: Quantize;
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
  const quantize =
    options.quantize === undefined
      ? (quantizeFromEnv() ?? "none")
      : parseQuantize(options.quantize, "quantize");
  const decision = resolveEngine(engineChoice, backend.name, quantize);
  checkQuantizeEngine(quantize, decision);
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  // The onnx engine on a full checkpoint reads the weights itself, tensor by tensor: no
  // TensorFlow.js model, so the weights are held once (onnxruntime's inputs, or its int8
  // initializers). An adapter is merged into its base by the tfjs model first.
  let model: Esm2Model | undefined;
  let engine: EsmEngine;
  let config: EsmConfig;
  if (isAdapterDir(dir)) {
    model = (await loadMergedAdapter(dir, { base: options.base, onWarning: warn })).model;
    engine = createEngine(decision.name, model, { threads, quantize });
    config = model.config;
  } else if (decision.name === "onnx") {
    const open = await openPretrained(dir, { onWarning: warn });
    engine = new OnnxEsmEngine(checkpointWeights(open), { threads, quantize });
    config = open.config;
    // Read every weight (and bake the int8 ones) now, not on the first request: load
    // errors surface here, and the memory after load is the memory in service.
    try {
      engine.logits({ inputIds: [0, 2], attentionMask: [1, 1], batchSize: 1, seqLen: 2 });
    } catch (e) {
      engine.dispose();
      throw e;
    }
  } else {
    model = await fromPretrained(dir, { onWarning: warn });
    engine = createEngine(decision.name, model, { threads, quantize });
    config = model.config;
  }
  const tokenizer = existsSync(path.join(dir, "vocab.txt"))
    ? await EsmTokenizer.fromDirectory(dir)
    : new EsmTokenizer();
  const maxLength = options.maxLength ?? tokenizer.modelMaxLength ?? 1024;
  const n = config.numLabels;
  const labels = Array.from({ length: n }, (_, i) => config.id2label[i] ?? String(i));
  const { problemType } = taskOfConfig(config);
  // Logits -> the answer: softmax, a sigmoid per label, or the values themselves.
  const answer = (row: ArrayLike<number>): ClassProbabilities =>
    problemType === "regression"
      ? { labels, probabilities: [], values: Array.from(row) }
      : problemType === "multi_label_classification"
        ? { labels, probabilities: Array.from(row, sigmoid) }
        : { labels, probabilities: softmax(row) };
  // Embeddings come from a float32 onnx engine: the predictor's own when it is one, else
  // one made here (on the tfjs model when there is one, else on the checkpoint's weights).
  let embedder: Embedder | undefined;
  let embedEngine: OnnxEsmEngine | undefined;
  return {
    ...(model ? { model } : {}),
    config,
    tokenizer,
    labels,
    problemType,
    maxLength,
    async predict(sequences: string[]): Promise<ClassProbabilities[]> {
      const rows = sequences.map((seq) => tokenizer.encode(seq, { maxLength, truncation: true }));
      const passes = planPasses(
        rows.map((r) => r.length),
        maxLength,
      );
      const results = passes.map((pass): ClassProbabilities[] => {
        const B = pass.rows.length;
        const L = pass.width;
        // [B, L]: every row padded to the pass's bucket length, padding masked out.
        const inputIds = new Int32Array(B * L).fill(tokenizer.padId);
        const attentionMask = new Int32Array(B * L);
        pass.rows.forEach((i, b) => {
          inputIds.set(rows[i]!, b * L);
          attentionMask.fill(1, b * L, b * L + rows[i]!.length);
        });
        const logits = engine.logits({ inputIds, attentionMask, batchSize: B, seqLen: L });
        return pass.rows.map((_, b) => answer(logits.subarray(b * n, (b + 1) * n)));
      });
      return inInputOrder(
        passes.map((p) => p.rows),
        results,
        rows.length,
      );
    },
    numLayers: config.numHiddenLayers,
    async embed(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]> {
      if (!embedder) {
        // With --quantize int8 the classifier runs on int8 codes; embeddings stay float32
        // (a second, float32 copy of the encoder, made only when embeddings are asked for).
        embedEngine =
          engine instanceof OnnxEsmEngine && engine.quantize === "none"
            ? engine
            : model
              ? new OnnxEsmEngine(model, { threads })
              : new OnnxEsmEngine(
                  checkpointWeights(await openPretrained(dir, { onWarning: warn })),
                  {
                    threads,
                  },
                );
        embedder = createEmbedder(embedEngine, { tokenizer, maxLength });
      }
      return embedder.embed(sequences, request).map((e) => e.embedding);
    },
    engineName: decision.name,
    engine,
    quantize,
    dispose() {
      engine.dispose();
      if (embedEngine !== engine) embedEngine?.dispose();
      model?.dispose();
    },
  };
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
