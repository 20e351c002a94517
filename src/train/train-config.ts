/**
 * What `train` takes and gives: the training settings (TrainConfig, with their defaults
 * and checks), the options, the events it emits and its result. The trainer itself is
 * trainer.ts.
 */
import type { EsmEngine } from "../engine/engine";
import type { ClassifierModel } from "../engine/tfjs-engine";
import { ConfigError } from "../errors";
import type { LoraModel } from "../lora/lora";
import type { TaskSpec } from "../util/task";
import type { Example } from "./batching";
import type { EvalMetrics, EvalResult } from "./evaluate";
import type { GradientPool } from "./parallel";
import type { RunIdentity } from "./run-identity";
import type { RunLock } from "./run-lock";

export interface TrainConfig {
  learningRate: number;
  weightDecay: number;
  /** Micro-batch size. */
  batchSize: number;
  epochs: number;
  /** Stop after this many optimizer steps (overrides epochs for the schedule). */
  maxSteps?: number;
  warmupSteps?: number;
  warmupRatio?: number;
  maxGradNorm: number;
  gradientAccumulationSteps: number;
  gradientCheckpointing: boolean;
  /**
   * "balanced" (single-label: n / (classes * count) from the training labels;
   * multi-label: pos_weight = negatives / positives per label; regression: none),
   * "none", or explicit weights (one per class, or one pos_weight per label).
   */
  classWeights: "balanced" | "none" | number[];
  seed: number;
  /** Save a checkpoint every N optimizer steps (0: only at epoch ends and the end). */
  saveSteps: number;
  /** Keep this many checkpoints (default 2). */
  saveTotalLimit: number;
  /** Evaluate at the end of each epoch when eval data is given. */
  evalEachEpoch: boolean;
  evalBatchSize: number;
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  learningRate: 1e-4,
  weightDecay: 0.01,
  batchSize: 8,
  epochs: 1,
  maxGradNorm: 1.0,
  gradientAccumulationSteps: 1,
  gradientCheckpointing: false,
  classWeights: "balanced",
  seed: 42,
  saveSteps: 0,
  saveTotalLimit: 2,
  evalEachEpoch: true,
  evalBatchSize: 16,
};

export type TrainEvent =
  | {
      type: "start";
      totalSteps: number;
      stepsPerEpoch: number;
      examples: number;
      trainable: number;
      total: number;
      classWeights: number[] | null;
      resumedFrom: number | null;
    }
  | {
      type: "step";
      step: number;
      totalSteps: number;
      epoch: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokensPerSecond: number;
      elapsedSeconds: number;
    }
  | { type: "eval"; step: number; epoch: number; metrics: EvalMetrics }
  | { type: "checkpoint"; step: number; path: string }
  | {
      type: "end";
      step: number;
      interrupted: boolean;
      /** The run had reached its last step before this call: nothing was trained. */
      alreadyComplete: boolean;
      elapsedSeconds: number;
    };

export interface TrainOptions extends Partial<TrainConfig> {
  model: ClassifierModel;
  /**
   * What the model learns (its loss, class weights and metrics). Without it, the binary
   * task: integer labels 0/1 (Example.label), cross-entropy.
   */
  task?: TaskSpec;
  /** Multi-label: evaluation predicts a label at probability >= threshold (default 0.5). */
  threshold?: number;
  /** LoRA wrapper of `model`: its adapters and saved modules are trained. Without it, every
   * variable marked trainable is (full fine-tuning). */
  lora?: LoraModel;
  train: readonly Example[];
  eval?: readonly Example[];
  /** Directory for `checkpoints/`, `history.jsonl` and `run.json`; locked while training. */
  outDir: string;
  /**
   * true: continue the run in `outDir` from its latest checkpoint; refused when the
   * folder holds no run or a checkpoint of a run with other settings (see
   * run-identity.ts). "auto": continue when there is a run of this identity, else start
   * (SageMaker restarts). false (default): start; refused when `outDir` holds a run.
   */
  resume?: boolean | "auto";
  /** Replace a run found in `outDir` instead of refusing (with resume "auto": only another run's). */
  overwrite?: boolean;
  /** Settings of the caller that define the run too (base model, max length, ...). */
  identity?: RunIdentity;
  /** The caller already holds `outDir`'s lock (fineTune); otherwise train takes it. */
  lock?: RunLock;
  onEvent?: (event: TrainEvent) => void;
  /** Human-readable notes (resume decisions). */
  onMessage?: (message: string) => void;
  /** Aborting stops after the current optimizer step, saving a checkpoint. */
  signal?: AbortSignal;
  /** Worker threads computing the accumulation micro-batches in parallel (LoRA only). */
  pool?: GradientPool;
  /**
   * Computes losses, gradients and evaluation logits (src/engine/engine.ts); default the
   * tfjs engine on `model`. The model's variables hold the weights and get the updates.
   */
  engine?: EsmEngine;
}

export interface TrainResult<M extends EvalMetrics = EvalMetrics> {
  step: number;
  interrupted: boolean;
  /** The run had already reached its last step: nothing was trained or saved. */
  alreadyComplete: boolean;
  /** The evaluation run by this call, if any. */
  lastEval?: EvalResult<M>;
  /** Metrics of the run's last evaluation (this call's, or the history's when already complete). */
  metrics?: M;
  /**
   * The class weights of the loss (multi-label: its pos_weight), as resolved ("balanced"
   * from the labels); null: none.
   */
  classWeights: number[] | null;
  history: string;
}

/** The settings with defaults filled in, each checked (a ConfigError names the bad one). */
export function resolveConfig(o: Partial<TrainConfig>): TrainConfig {
  const c: TrainConfig = { ...DEFAULT_TRAIN_CONFIG };
  for (const [k, v] of Object.entries(o))
    if (v !== undefined) (c as unknown as Record<string, unknown>)[k] = v;
  const bad = (field: string, value: unknown, accepted: string) =>
    new ConfigError(`Invalid ${field}: ${JSON.stringify(value)}; expected ${accepted}`, {
      field,
      value,
    });
  const posInt = (f: keyof TrainConfig) => {
    const v = c[f] as number;
    if (!Number.isInteger(v) || v < 1) throw bad(f, v, "an integer >= 1");
  };
  posInt("batchSize");
  posInt("epochs");
  posInt("gradientAccumulationSteps");
  posInt("saveTotalLimit");
  posInt("evalBatchSize");
  if (!(c.learningRate > 0)) throw bad("learningRate", c.learningRate, "a number > 0");
  if (!(c.weightDecay >= 0)) throw bad("weightDecay", c.weightDecay, "a number >= 0");
  if (!(c.maxGradNorm > 0)) throw bad("maxGradNorm", c.maxGradNorm, "a number > 0");
  if (c.maxSteps !== undefined && (!Number.isInteger(c.maxSteps) || c.maxSteps < 1)) {
    throw bad("maxSteps", c.maxSteps, "an integer >= 1");
  }
  if (!Number.isInteger(c.saveSteps) || c.saveSteps < 0)
    throw bad("saveSteps", c.saveSteps, "an integer >= 0");
  if (
    typeof c.classWeights === "string" &&
    c.classWeights !== "balanced" &&
    c.classWeights !== "none"
  ) {
    throw bad("classWeights", c.classWeights, '"balanced", "none" or a list of numbers');
  }
  return c;
}
