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
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import type { ClassProbabilities, Predictor } from "./predictor";

export interface EsmPredictorOptions {
  /** Tokens per sequence including <cls>/<eos>; default: tokenizer_config's model_max_length or 1024. */
  maxLength?: number;
  /** Base model for an adapter-only directory (default: the adapter's base_model_name_or_path). */
  base?: string;
  onWarning?: (message: string) => void;
}

export interface EsmPredictor extends Predictor {
  readonly model: Esm2Model;
  readonly tokenizer: EsmTokenizer;
  dispose(): void;
}

export async function loadEsmPredictor(
  dir: string,
  options: EsmPredictorOptions = {},
): Promise<EsmPredictor> {
  await ensureBackend();
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
      const probs = tf.tidy(() => {
        const out = model.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask });
        return tf.softmax(out.logits).arraySync() as number[][];
      });
      return probs.map((p) => ({ labels, probabilities: p }));
    },
    dispose() {
      model.dispose();
    },
  };
}
