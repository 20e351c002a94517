/**
 * One self-contained ONNX model from an Esm2Model, as transformers.js and Hugging
 * Face's Optimum exports expect: int64 `input_ids` / `attention_mask`
 * `[batch_size, sequence_length]` in; `logits [batch_size, num_labels]`
 * (text-classification) or `last_hidden_state [batch_size, sequence_length, hidden]`
 * (feature-extraction) out; every weight an initializer. The forward graph is the
 * onnx engine's own (src/onnx/esm-graph.ts), with its token-input option; with `int8`
 * the encoder's Linear weights are stored int8 per output channel (src/onnx/quantize.ts)
 * while embeddings, LayerNorms and the classifier stay float32.
 */
import { encoderLinears, headLinears } from "../model/architecture";
import type { Esm2Model } from "../model/esm2";
import { EsmGraph, type GraphPlan, type ModulePlan } from "../onnx/esm-graph";
import type { GraphBuilder } from "../onnx/graph";
import { type Int8Weight, int8ScaleName, int8WeightName, quantizeInt8 } from "../onnx/quantize";

export type ExportTask = "text-classification" | "feature-extraction";
export const EXPORT_TASKS: readonly ExportTask[] = ["text-classification", "feature-extraction"];

/** The graph's output name per task (what each transformers.js pipeline reads). */
export const TASK_OUTPUT: Record<ExportTask, string> = {
  "text-classification": "logits",
  "feature-extraction": "last_hidden_state",
};

export interface ExportGraphOptions {
  task: ExportTask;
  /** Encoder Linear weights as int8 (default false). */
  int8?: boolean;
  /** Put back an `<eos>` that a tokenizer cut at this many tokens (see TokenInputs). */
  restoreEos?: { maxLength: number; clsId: number; eosId: number };
}

const bytesOf = (a: Float32Array | Int8Array) =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Builds the export graph with the model's current weights bound as initializers. */
export function buildExportGraph(model: Esm2Model, options: ExportGraphOptions): GraphBuilder {
  const config = model.config;
  const modules = new Map<string, ModulePlan>();
  const int8 = new Set<string>();
  // int8: the encoder's Linear weights; the classifier stays float32.
  for (const { name, bias } of encoderLinears(config)) {
    if (options.int8) int8.add(name);
    modules.set(name, { hasBias: bias, trainable: false, lora: null, int8: int8.has(name) });
  }
  for (const { name, bias } of headLinears(config))
    modules.set(name, { hasBias: bias, trainable: false, lora: null });
  const plan: GraphPlan = { config, modules, trainableNorms: new Set() };

  const vars = model.namedVariables();
  const quantized = new Map<string, Int8Weight>();
  const int8Of = (module: string): Int8Weight => {
    let q = quantized.get(module);
    if (!q) {
      const w = vars.get(`${module}.weight`)!;
      const [rows, cols] = w.shape as [number, number];
      q = quantizeInt8(w.dataSync() as Float32Array, rows, cols);
      quantized.set(module, q);
    }
    return q;
  };
  const eg = new EsmGraph("esm2", plan, (k) => k, {
    tokenInputs: options.restoreEos ? { restoreEos: options.restoreEos } : {},
  });
  eg.g.bindInputs((name) => {
    for (const module of int8) {
      if (name === int8WeightName(module)) return bytesOf(int8Of(module).values);
      if (name === int8ScaleName(module)) return bytesOf(int8Of(module).scales);
    }
    const v = vars.get(name);
    if (!v) return undefined;
    return bytesOf(new Float32Array(v.dataSync() as Float32Array));
  });
  let h = eg.embed();
  for (let i = 0; i < config.numHiddenLayers; i++) h = eg.layer(i, h).out;
  if (options.task === "text-classification") {
    eg.g.output(TASK_OUTPUT[options.task], eg.head(h).logits, "float", [
      "batch_size",
      config.numLabels,
    ]);
  } else {
    eg.g.output(TASK_OUTPUT[options.task], eg.lastHiddenState(h), "float", [
      "batch_size",
      "sequence_length",
      config.hiddenSize,
    ]);
  }
  const inputs = eg.g.modelDef().inputs.map((i) => i.name);
  if (inputs.join() !== "input_ids,attention_mask") {
    throw new Error(`The export graph has inputs [${inputs.join(", ")}]: a weight was not bound`);
  }
  return eg.g;
}
