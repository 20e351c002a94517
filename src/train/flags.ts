/**
 * The settings of a fine-tuning run, declared once (see src/util/flags.ts): they are the
 * flags of `esmkit train` (src/cli/train-command.ts) and, under their snake_case names,
 * the SageMaker hyperparameters of the training container (src/aws/hyperparameters.ts,
 * whose table in docs/aws.md is checked against this one). A flag's camelCase name is
 * the `fineTune` option it sets (`--max-steps` -> `maxSteps`); the `lora*` flags fill
 * the `lora` option. Defaults come from the trainer's and LoRA's own defaults.
 *
 * Adding a train flag: one entry below. Its camelCase name must be a `FineTuneOptions`
 * field of the same type (checked at compile time, under the table). It is also a
 * hyperparameter unless `hyperparameter: false`; then regenerate the table in
 * docs/aws.md from `hyperparameterTable()` and give it a sample value in
 * test/cli/flags.test.ts (both are checked there).
 */
import { BACKEND_NAMES } from "../backend";
import { ENGINE_CHOICES } from "../engine/engine";
import { DEFAULT_LORA } from "../lora/lora";
import { camelCase, flag, type Kind, type Values } from "../util/flags";
import { DEFAULT_THRESHOLD, PROBLEM_TYPES } from "../util/task";
import type { FineTuneOptions } from "./run";
import { DEFAULT_TRAIN_CONFIG, type TrainConfig } from "./trainer";

export const DEFAULT_BASE_MODEL = "facebook/esm2_t6_8M_UR50D";

const CLASS_WEIGHTS = "balanced, none or numbers like 0.7,1.7";

const classWeights: Kind<TrainConfig["classWeights"]> = {
  placeholder: "W",
  accepts: CLASS_WEIGHTS,
  parse(t) {
    if (t === "balanced" || t === "none") return { value: t };
    const ws = t.split(",").map((p) => (p.trim() === "" ? Number.NaN : Number(p)));
    return ws.length >= 2 && ws.every((w) => Number.isFinite(w) && w >= 0)
      ? { value: ws }
      : { expected: CLASS_WEIGHTS };
  },
};

const D = DEFAULT_TRAIN_CONFIG;

export const TRAIN_FLAGS = {
  data: flag.string("prepared data (train.parquet, test.parquet)", {
    value: "DIR|S3",
    required: true,
    hyperparameter: false,
  }),
  out: flag.string("output directory", { value: "DIR|S3", required: true, hyperparameter: false }),
  model: flag.string("base model: Hub id, directory or S3 prefix", {
    value: "ID|DIR|S3",
    default: DEFAULT_BASE_MODEL,
    hyperparameter: `base model: Hub id or a path in the container (default: the \`model\` channel if given, else ${DEFAULT_BASE_MODEL})`,
  }),
  "random-if-unavailable": flag.bool("random weights of the same size when the Hub is unreachable"),
  task: flag.choice(
    PROBLEM_TYPES,
    "the data's problem type: must match stats.json's; says what the label column holds when it records none",
    { defaultText: "stats.json's task, else binary" },
  ),
  lora: flag.bool("LoRA adapters, or full fine-tuning (--no-lora)", {
    negatable: true,
    default: true,
    hyperparameter: "LoRA (true, default) or full fine-tuning (false)",
  }),
  "lora-rank": flag.int("LoRA rank r", { min: 1, default: DEFAULT_LORA.rank }),
  "lora-alpha": flag.float("LoRA alpha (updates scaled by alpha / r)", {
    min: 0,
    minExclusive: true,
    default: DEFAULT_LORA.alpha,
  }),
  "lora-dropout": flag.float("LoRA dropout", {
    min: 0,
    max: 1,
    maxExclusive: true,
    default: DEFAULT_LORA.dropout,
  }),
  "lora-targets": flag.list("module names (exact or suffix)", {
    default: DEFAULT_LORA.targetModules as string[],
  }),
  "learning-rate": flag.float("peak learning rate", {
    min: 0,
    minExclusive: true,
    default: D.learningRate,
  }),
  "weight-decay": flag.float("AdamW weight decay", { min: 0, default: D.weightDecay }),
  "batch-size": flag.int("micro-batch size", { min: 1, default: D.batchSize }),
  epochs: flag.int("epochs", { min: 1, default: D.epochs }),
  "max-steps": flag.int("stop after N optimizer steps", { min: 1 }),
  "max-length": flag.int("tokens per sequence, <cls>/<eos> included", { min: 3, default: 512 }),
  "gradient-accumulation-steps": flag.int("micro-batches per optimizer step", {
    min: 1,
    default: D.gradientAccumulationSteps,
  }),
  "gradient-checkpointing": flag.bool(
    "recompute each layer in the backward pass (less memory, slower)",
    { negatable: true, defaultText: "on for the tfjs engine on wasm/cpu, else off" },
  ),
  "warmup-steps": flag.int("linear warm-up steps", {
    min: 0,
    defaultText: "0",
    conflicts: ["warmup-ratio"],
  }),
  "warmup-ratio": flag.float("warm-up as a fraction of the steps", {
    min: 0,
    max: 1,
    conflicts: ["warmup-steps"],
  }),
  "max-grad-norm": flag.float("gradient clipping norm", {
    min: 0,
    minExclusive: true,
    default: D.maxGradNorm,
  }),
  "class-weights": flag.custom(
    classWeights,
    "loss weights: per class (single-label) or pos_weight per label (multi-label); balanced, none or w0,w1,...",
    { default: D.classWeights },
  ),
  threshold: flag.float(
    "multi-label evaluation: a label is predicted at or above this probability",
    {
      min: 0,
      max: 1,
      default: DEFAULT_THRESHOLD,
    },
  ),
  seed: flag.int("seed", { min: 0, default: D.seed }),
  "save-steps": flag.int("checkpoint every N steps (0: at epoch ends)", {
    min: 0,
    default: D.saveSteps,
    hyperparameter: "checkpoint every N steps into /opt/ml/checkpoints (0: at epoch ends)",
  }),
  "save-total-limit": flag.int("checkpoints kept", { min: 1, default: D.saveTotalLimit }),
  "eval-batch-size": flag.int("evaluation batch size", { min: 1, default: D.evalBatchSize }),
  "limit-train": flag.int("use the first N training examples", { min: 1 }),
  "limit-eval": flag.int("use the first N evaluation examples", { min: 1 }),
  backend: flag.choice(["auto", ...BACKEND_NAMES], "TensorFlow.js backend", {
    defaultText: "ESMKIT_BACKEND, else auto",
  }),
  engine: flag.choice(
    ENGINE_CHOICES,
    "what computes the steps: onnx (onnxruntime) or tfjs (TensorFlow.js); auto: onnx unless TensorFlow.js is native",
    { defaultText: "ESMKIT_ENGINE, else auto" },
  ),
  threads: flag.int("onnxruntime threads (onnx engine)", { min: 1, defaultText: "all cores" }),
  workers: flag.int("tfjs engine: threads for the accumulation micro-batches (LoRA)", {
    min: 1,
    default: 1,
    hyperparameter: false,
  }),
  resume: flag.bool("continue the run in --out from its latest checkpoint (same settings)", {
    hyperparameter: false,
  }),
  overwrite: flag.bool("replace the run --out holds, instead of refusing that folder", {
    hyperparameter:
      "replace checkpoints of another run found in /opt/ml/checkpoints instead of failing the job (false); this run's own checkpoints are always resumed",
  }),
  quiet: flag.bool("no progress output", { hyperparameter: false }),
};

export type TrainValues = Values<typeof TRAIN_FLAGS>;

type Camel<S extends string> = S extends `${infer A}-${infer B}`
  ? `${A}${Capitalize<Camel<B>>}`
  : S;
type LoraFlag = "lora" | "lora-rank" | "lora-alpha" | "lora-dropout" | "lora-targets";
type Plain = Exclude<keyof TrainValues, LoraFlag | "quiet">;
type Settings = { [K in Plain as Camel<K>]?: TrainValues[K] };
// Compile-time: every other flag's camelCase name is a fineTune option of the same type.
true satisfies [keyof Settings] extends [keyof FineTuneOptions]
  ? Settings extends Partial<FineTuneOptions>
    ? true
    : false
  : false;

/**
 * Values of TRAIN_FLAGS (all, from the CLI, or only those given, from hyperparameters)
 * -> `fineTune` options; absent values stay absent, so fineTune's defaults apply.
 */
export function fineTuneSettings(v: Partial<TrainValues>): Partial<FineTuneOptions> {
  const {
    lora,
    "lora-rank": rank,
    "lora-alpha": alpha,
    "lora-dropout": dropout,
    "lora-targets": targetModules,
    quiet: _quiet,
    ...plain
  } = v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(plain)) if (x !== undefined) out[camelCase(k)] = x;
  const adapter = Object.fromEntries(
    Object.entries({ rank, alpha, dropout, targetModules }).filter(([, x]) => x !== undefined),
  );
  if (lora === false) out.lora = false;
  else if (Object.keys(adapter).length > 0) out.lora = adapter;
  return out as Partial<FineTuneOptions>;
}
