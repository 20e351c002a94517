/**
 * The ESM-2 Predictor: a Hugging Face directory (config.json, model.safetensors,
 * tokenizer files) -> class probabilities. With an `adapter_config.json` in the same
 * directory, or `adapter` given, a PEFT LoRA adapter is loaded onto the base named in
 * it (or `base`) and merged for speed.
 */
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../backend";
import { ConfigError } from "../errors";
import { ADAPTER_CONFIG, loadAdapter } from "../lora/adapter-io";
import type { Esm2Model } from "../model/esm2";
import { fromPretrained } from "../model/pretrained";
import { OnnxEsmEngine } from "../onnx/engine";
import {
  checkThreads,
  defaultThreads,
  type EngineChoice,
  type EngineName,
  resolveEngine,
} from "../onnx/select";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import type { ClassProbabilities, Predictor } from "./predictor";

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
  readonly model: Esm2Model;
  readonly tokenizer: EsmTokenizer;
  /** The engine in use. */
  readonly engineName: EngineName;
  /** The onnx engine when it runs the forward passes. */
  readonly onnx?: OnnxEsmEngine;
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
  const onnx = decision.name === "onnx" ? new OnnxEsmEngine(model, { threads }) : undefined;
  const n = model.config.numLabels;
  const labels = Array.from({ length: n }, (_, i) => model.config.id2label[i] ?? String(i));
  return {
    model,
    tokenizer,
    labels,
    maxLength,
    async predict(sequences: string[]): Promise<ClassProbabilities[]> {
      const enc = tokenizer.encodeBatch(sequences, {
        maxLength,
        truncation: true,
        padding: "longest",
      });
      if (onnx) {
        const B = enc.inputIds.length;
        const L = enc.inputIds[0]?.length ?? 0;
        const logits = onnx.logits({
          inputIds: enc.inputIds.flat(),
          attentionMask: enc.attentionMask.flat(),
          batchSize: B,
          seqLen: L,
        });
        return Array.from({ length: B }, (_, b) => ({
          labels,
          probabilities: softmax(logits.subarray(b * n, (b + 1) * n)),
        }));
      }
      const probs = tf.tidy(() => {
        const out = model.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask });
        return tf.softmax(out.logits).arraySync() as number[][];
      });
      return probs.map((p) => ({ labels, probabilities: p }));
    },
    engineName: decision.name,
    onnx,
    dispose() {
      onnx?.dispose();
      model.dispose();
    },
  };
}

/** Softmax in float64, for one row of logits. */
function softmax(row: ArrayLike<number>): number[] {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  const e = Array.from({ length: row.length }, (_, i) => Math.exp(row[i]! - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
