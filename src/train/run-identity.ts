/**
 * What defines a training run: the settings that change its trajectory. Each checkpoint
 * (and the run folder's run.json) records them; a resume compares the recorded identity
 * with the new one and refuses any difference, naming each setting with both values, so
 * a checkpoint is only ever continued by the run that made it.
 *
 * Left out on purpose, because they do not change which weights a step produces (or
 * change only how far the run goes): max steps, epochs, save cadence and the number of
 * checkpoints kept, the evaluation batch size, backend, engine, threads, workers,
 * gradient checkpointing, where the data and the model are read from (their content is
 * fingerprinted instead), and quiet.
 */
import { createHash } from "node:crypto";
import * as tf from "@tensorflow/tfjs-core";
import type { Example } from "./batching";

export type IdentityValue = string | number | boolean | null | readonly IdentityValue[];

/** Setting name -> value. Names are the library's (`learningRate`); see IDENTITY_LABELS. */
export type RunIdentity = Record<string, IdentityValue>;

/** How each setting is named in messages: what it is, and the flag that sets it. */
export const IDENTITY_LABELS: Readonly<Record<string, string>> = {
  model: "base model weights (--model)",
  task: "task and labels",
  trainData: "training examples (train.parquet, --max-length, --limit-train)",
  evalData: "evaluation examples (test.parquet, --max-length, --limit-eval)",
  maxLength: "max length (--max-length)",
  seed: "seed (--seed)",
  lora: "LoRA (--no-lora for full fine-tuning)",
  loraRank: "LoRA rank (--lora-rank)",
  loraAlpha: "LoRA alpha (--lora-alpha)",
  loraDropout: "LoRA dropout (--lora-dropout)",
  loraTargets: "LoRA targets (--lora-targets)",
  loraModulesToSave: "LoRA modules trained fully (modulesToSave)",
  trainableParameters: "trainable parameters (names and shapes)",
  batchSize: "batch size (--batch-size)",
  gradientAccumulationSteps: "gradient accumulation (--gradient-accumulation-steps)",
  learningRate: "learning rate (--learning-rate)",
  weightDecay: "weight decay (--weight-decay)",
  warmupSteps: "warm-up steps (--warmup-steps)",
  warmupRatio: "warm-up ratio (--warmup-ratio)",
  maxGradNorm: "gradient clipping (--max-grad-norm)",
  classWeights: "class weights (--class-weights, as resolved)",
  optimizer: "optimizer and schedule",
};

/** Settings that may change between a run and its resume (for messages and docs). */
export const SAFE_TO_CHANGE_ON_RESUME = [
  "--max-steps",
  "--epochs",
  "--save-steps",
  "--save-total-limit",
  "--eval-batch-size",
  "--backend",
  "--engine",
  "--threads",
  "--workers",
  "--gradient-checkpointing",
  "--quiet",
] as const;

export interface IdentityDifference {
  key: string;
  label: string;
  saved: IdentityValue | undefined;
  current: IdentityValue | undefined;
}

const same = (a: IdentityValue | undefined, b: IdentityValue | undefined) =>
  JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** Settings whose recorded and current values differ, in IDENTITY_LABELS order. */
export function diffIdentity(saved: RunIdentity, current: RunIdentity): IdentityDifference[] {
  const order = Object.keys(IDENTITY_LABELS);
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(current)])].sort(
    (a, b) => rank(order, a) - rank(order, b) || (a < b ? -1 : 1),
  );
  return keys
    .filter((k) => !same(saved[k], current[k]))
    .map((k) => ({ key: k, label: IDENTITY_LABELS[k] ?? k, saved: saved[k], current: current[k] }));
}

function rank(order: string[], key: string): number {
  const i = order.indexOf(key);
  return i < 0 ? order.length : i;
}

function show(v: IdentityValue | undefined): string {
  if (v === undefined) return "(not recorded)";
  if (Array.isArray(v)) return v.map((x) => show(x)).join(",");
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** One line per difference: `  label: OLD in <where>, NEW now`. */
export function describeDifferences(diffs: readonly IdentityDifference[], where: string): string {
  return diffs
    .map((d) => `  ${d.label}: ${show(d.saved)} in ${where}, ${show(d.current)} now`)
    .join("\n");
}

/** `N examples, sha256 <16 hex>` over the token ids and labels as trained, in order. */
export function examplesFingerprint(examples: readonly Example[]): string {
  const hash = createHash("sha256");
  const head = new Int32Array(2);
  for (const e of examples) {
    // Class ids as before; a label vector is marked (-1, its length) and hashed as float64.
    const vector = typeof e.label === "number" ? undefined : Float64Array.from(e.label);
    head[0] = vector ? -1 : (e.label as number);
    head[1] = e.inputIds.length;
    hash.update(new Uint8Array(head.buffer));
    if (vector) {
      head[0] = vector.length;
      hash.update(new Uint8Array(head.buffer, 0, 4));
      hash.update(new Uint8Array(vector.buffer));
    }
    const ids = Int32Array.from(e.inputIds);
    hash.update(new Uint8Array(ids.buffer));
  }
  return `${examples.length} examples, sha256 ${hash.digest("hex").slice(0, 16)}`;
}

/** Values sampled per tensor for the weight fingerprint. */
const SAMPLES = 256;

/**
 * A cheap fingerprint of a model's weights: sha256 over every variable's name and shape
 * and 256 values sampled evenly through it (gathered on the backend, so a large model is
 * not copied out). Different checkpoints or random seeds differ in every sample; a
 * single edited weight may go unseen, which is not what it is for.
 */
export function weightsFingerprint(variables: ReadonlyMap<string, tf.Variable>): string {
  const hash = createHash("sha256");
  let values = 0;
  for (const name of [...variables.keys()].sort()) {
    const v = variables.get(name)!;
    values += v.size;
    hash.update(`${name}:${v.shape.join("x")};`);
    const k = Math.min(SAMPLES, v.size);
    if (k === 0) continue;
    const idx = Int32Array.from({ length: k }, (_, i) => Math.floor((i * v.size) / k));
    const sample = tf.tidy(() =>
      tf.gather(tf.reshape(v, [-1]), tf.tensor1d(idx, "int32")).dataSync(),
    ) as Float32Array;
    hash.update(new Uint8Array(sample.buffer, sample.byteOffset, sample.byteLength));
  }
  return `sha256 ${hash.digest("hex").slice(0, 16)} (${variables.size} tensors, ${values} values)`;
}

/** Names and shapes of the trainable variables, as one short value. */
export function parametersFingerprint(params: ReadonlyMap<string, tf.Variable>): string {
  const hash = createHash("sha256");
  let values = 0;
  for (const name of [...params.keys()].sort()) {
    const v = params.get(name)!;
    values += v.size;
    hash.update(`${name}:${v.shape.join("x")};`);
  }
  return `${params.size} tensors, ${values} values, sha256 ${hash.digest("hex").slice(0, 16)}`;
}
