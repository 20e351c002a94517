/**
 * The weighted trainer: HF Trainer semantics (AdamW with decoupled weight decay on
 * weights only, linear schedule with warmup stepped per optimizer step, global-norm
 * clipping, loss / accumulation steps with summed gradients), class-weighted
 * cross-entropy, optional gradient checkpointing, length-bucketed batches, seeded and
 * resumable: checkpoints at optimizer-step boundaries hold the trainable weights, the
 * optimizer state and every random state, so a resumed run ends on the same weights.
 *
 * The output folder is locked while a run writes it (run-lock.ts), and every checkpoint
 * records the run's identity (run-identity.ts): a resume continues only the run that
 * made the checkpoint, and a new run does not mix into a folder holding another
 * (run-folder.ts).
 */
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors";
import type { LoraModel } from "../lora/lora";
import { balancedPositiveWeights } from "../util/class-weights";
import { SeededRandom } from "../util/random";
import { checkTask, type TaskSpec } from "../util/task";
import { type Batch, batchesPerEpoch, type Example, epochBatches } from "./batching";
import { saveCheckpoint, type TensorRecord } from "./checkpoint-io";
import { clipGradNorm } from "./clip";
import {
  type BinaryEvalResult,
  type EvalMetrics,
  type EvalResult,
  evaluate,
  type LogitsEngine,
} from "./evaluate";
import { HistoryWriter, readHistory } from "./history";
import { balancedClassWeights } from "./loss";
import { AdamW, adamWStateFromRecords, adamWStateToRecords } from "./optimizer";
import type { GradientPool } from "./parallel";
import { CHECKPOINTS_DIR, HISTORY_FILE, openRun } from "./run-folder";
import { examplesFingerprint, parametersFingerprint, type RunIdentity } from "./run-identity";
import { acquireRunLock, type RunLock } from "./run-lock";
import { linearScheduleWithWarmup } from "./schedule";
import {
  type ClassifierModel,
  lossAndGradients,
  type MicroBatch,
  type StepOptions,
  type StepResult,
} from "./step";

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
   * Computes losses, gradients and evaluation logits instead of the tfjs model (the onnx
   * engine, src/onnx); the model's variables still hold the weights and get the updates.
   */
  engine?: StepEngine;
}

/** What the trainer needs from an engine other than the tfjs model. */
export interface StepEngine extends LogitsEngine {
  lossAndGradients(
    params: Map<string, tf.Variable>,
    batch: MicroBatch,
    options: StepOptions,
  ): StepResult;
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

function resolveConfig(o: Partial<TrainConfig>): TrainConfig {
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

function toTensors(b: Batch): MicroBatch {
  return {
    inputIds: tf.tensor2d(b.inputIds, [b.batchSize, b.seqLen], "int32"),
    attentionMask: tf.tensor2d(b.attentionMask, [b.batchSize, b.seqLen], "int32"),
    labels: tf.tensor1d(b.labels, "int32"),
    ...(b.targets
      ? { targets: tf.tensor2d(b.targets, [b.batchSize, b.targets.length / b.batchSize]) }
      : {}),
  };
}

/** The state of a seeded stream after `draws` more draws from `state`. */
function advance(state: number | null, draws: number): number | null {
  if (state === null) return null;
  const r = new SeededRandom(0);
  r.setState(state);
  for (let i = 0; i < draws; i++) r.next();
  return r.getState();
}

function disposeBatch(b: MicroBatch): void {
  tf.dispose([b.inputIds, b.attentionMask, b.labels, ...(b.targets ? [b.targets] : [])]);
}

/**
 * The loss weights of a run: class weights (single-label) or pos_weight (multi-label),
 * from `setting` and the training labels; undefined for none.
 */
function resolveWeights(
  setting: TrainConfig["classWeights"],
  task: TaskSpec | undefined,
  examples: readonly Example[],
): number[] | undefined {
  if (setting === "none") return undefined;
  const k = task?.labels.length;
  if (task?.problemType === "regression") {
    if (Array.isArray(setting)) {
      throw new ConfigError(
        `Class weights [${setting.join(", ")}] do not apply to regression; use "none" (or leave the default)`,
        { classWeights: setting },
      );
    }
    return undefined;
  }
  const what =
    task?.problemType === "multi_label_classification" ? "positive weights" : "class weights";
  if (Array.isArray(setting)) {
    if (k !== undefined && setting.length !== k) {
      throw new ConfigError(
        `${setting.length} ${what} [${setting.join(", ")}] for ${k} ${task!.problemType === "multi_label_classification" ? "labels" : "classes"} (${task!.labels.join(", ")}); give one per ${task!.problemType === "multi_label_classification" ? "label" : "class"}`,
        { classWeights: setting, labels: task!.labels },
      );
    }
    return setting;
  }
  if (task?.problemType === "multi_label_classification") {
    return balancedPositiveWeights(
      examples.map((e) => e.label as ArrayLike<number>),
      k!,
      task.labels,
    );
  }
  const labels = examples.map((e) => e.label as number);
  const numLabels = k ?? Math.max(...labels) + 1;
  return balancedClassWeights(labels, Math.max(numLabels, 2));
}

function addInto(acc: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>): void {
  for (const [name, g] of grads) {
    const prev = acc.get(name);
    if (prev) {
      acc.set(name, tf.add(prev, g));
      prev.dispose();
      g.dispose();
    } else {
      acc.set(name, g);
    }
  }
}

interface ResumeState {
  step: number;
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  microBatch: number;
  dropoutRng: number | null;
  tokens: number;
}

/** Train; returns when done, or after a checkpoint when `signal` aborts. */
export function train(
  options: TrainOptions & { task?: undefined },
): Promise<TrainResult<BinaryEvalResult["metrics"]>>;
export function train(options: TrainOptions): Promise<TrainResult>;
export async function train(options: TrainOptions): Promise<TrainResult> {
  const cfg = resolveConfig(options);
  const { model, lora } = options;
  const emit = options.onEvent ?? (() => undefined);
  if (options.train.length === 0) throw new ConfigError("No training examples", {});

  const params = lora ? lora.trainableVariables() : trainableOf(model);
  if (params.size === 0) throw new ConfigError("Nothing to train: no trainable variables", {});
  const task = options.task ? checkTask(options.task) : undefined;
  const classWeights = resolveWeights(cfg.classWeights, task, options.train);
  const problemType = task?.problemType ?? "single_label_classification";
  // The weights go to the loss as class weights (single-label) or pos_weight (multi-label).
  const lossWeights =
    problemType === "multi_label_classification" ? { posWeight: classWeights } : { classWeights };

  const microPerEpoch = batchesPerEpoch(options.train.length, cfg.batchSize);
  const stepsPerEpoch = Math.ceil(microPerEpoch / cfg.gradientAccumulationSteps);
  const totalSteps = cfg.maxSteps ?? stepsPerEpoch * cfg.epochs;
  const epochs = Math.ceil(totalSteps / stepsPerEpoch);
  const schedule = linearScheduleWithWarmup({
    lr: cfg.learningRate,
    totalSteps,
    warmupSteps: cfg.warmupSteps,
    warmupRatio: cfg.warmupRatio,
  });
  const dropoutRng = lora?.dropoutRng;
  const pool = options.pool;
  if (pool && options.engine) {
    throw new ConfigError(
      "Parallel training (pool) is for the tfjs engine; the onnx engine uses its own threads",
      {},
    );
  }
  if (pool && !lora)
    throw new ConfigError(
      "Parallel training (pool) needs LoRA: full fine-tuning runs on one thread",
      {},
    );
  // Dropout seeds drawn per micro-batch: one per adapter forward (checkpointing replays).
  // (The masked-LM head never runs in a classification step: its adapters draw nothing.)
  const drawsPerMicroBatch =
    lora && lora.config.dropout > 0
      ? [...lora.adapters.keys()].filter((n) => !n.startsWith("lm_head.")).length
      : 0;

  const ckptRoot = path.join(options.outDir, CHECKPOINTS_DIR);
  const identity: RunIdentity = {
    ...options.identity,
    trainData: examplesFingerprint(options.train),
    evalData: examplesFingerprint(options.eval ?? []),
    seed: cfg.seed,
    lora: lora !== undefined,
    ...(lora
      ? {
          loraRank: lora.config.rank,
          loraAlpha: lora.config.alpha,
          loraDropout: lora.config.dropout,
          loraTargets: [lora.config.targetModules].flat(),
          loraModulesToSave: lora.config.modulesToSave,
        }
      : {}),
    trainableParameters: parametersFingerprint(params),
    batchSize: cfg.batchSize,
    gradientAccumulationSteps: cfg.gradientAccumulationSteps,
    learningRate: cfg.learningRate,
    weightDecay: cfg.weightDecay,
    warmupSteps: cfg.warmupSteps ?? null,
    warmupRatio: cfg.warmupRatio ?? null,
    maxGradNorm: cfg.maxGradNorm,
    classWeights: classWeights ?? null,
    optimizer: "adamw, linear schedule with warm-up",
  };
  const lock = options.lock ?? acquireRunLock(options.outDir, "training output");
  const optimizer = new AdamW(params, { lr: cfg.learningRate, weightDecay: cfg.weightDecay });
  try {
    return await trainLocked();
  } finally {
    optimizer.dispose();
    if (!options.lock) lock.release();
  }

  async function trainLocked(): Promise<TrainResult> {
    const state: ResumeState = { step: 0, epoch: 0, microBatch: 0, dropoutRng: null, tokens: 0 };
    let resumedFrom: number | null = null;
    const start = openRun(options.outDir, {
      identity,
      resume: options.resume,
      overwrite: options.overwrite,
      onMessage: options.onMessage,
    });
    if (start.checkpoint) {
      const { info, data } = start.checkpoint;
      const saved = data.state as ResumeState & { optimizer: unknown; totalSteps: number };
      for (const [name, v] of params) {
        const rec = data.tensors[`param/${name}`];
        // The identity covers names and shapes; this guards checkpoints written by hand.
        if (!rec || rec.shape.join("x") !== v.shape.join("x")) {
          throw new ConfigError(
            `Checkpoint ${info.path} does not fit this model: parameter ${name} is ${rec ? `[${rec.shape}]` : "missing"} there, [${v.shape}] here`,
            { name },
          );
        }
        tf.tidy(() => v.assign(tf.tensor(rec.data, rec.shape)));
      }
      optimizer.importState(adamWStateFromRecords(data.tensors, saved.optimizer as never));
      Object.assign(state, {
        step: saved.step,
        epoch: saved.epoch,
        microBatch: saved.microBatch,
        dropoutRng: saved.dropoutRng,
        tokens: saved.tokens,
      });
      if (dropoutRng && saved.dropoutRng !== null) dropoutRng.setState(saved.dropoutRng);
      resumedFrom = saved.step;
      if (saved.totalSteps !== totalSteps && saved.step < totalSteps) {
        options.onMessage?.(
          `the run now has ${totalSteps} optimizer steps (its checkpoints were made for ${saved.totalSteps}): the learning-rate schedule follows the new total from here`,
        );
      }
    } else if (start.resumed) {
      resumedFrom = 0;
    }
    const historyFile = path.join(options.outDir, HISTORY_FILE);
    const history = new HistoryWriter(historyFile, {
      append: start.resumed,
    });
    const report = lora?.parameterReport();
    emit({
      type: "start",
      totalSteps,
      stepsPerEpoch,
      examples: options.train.length,
      trainable: report?.trainable ?? [...params.values()].reduce((a, v) => a + v.size, 0),
      total: report?.total ?? [...model.namedVariables().values()].reduce((a, v) => a + v.size, 0),
      classWeights: classWeights ?? null,
      resumedFrom,
    });

    const save = () => {
      const tensors: Record<string, TensorRecord> = {};
      for (const [name, v] of params) {
        tensors[`param/${name}`] = { shape: [...v.shape], data: new Float32Array(v.dataSync()) };
      }
      const opt = adamWStateToRecords(optimizer.exportState());
      Object.assign(tensors, opt.tensors);
      const info = saveCheckpoint(
        ckptRoot,
        state.step,
        {
          tensors,
          state: {
            ...state,
            dropoutRng: dropoutRng?.getState() ?? null,
            optimizer: opt.meta,
            totalSteps,
            identity,
          },
        },
        { saveTotalLimit: cfg.saveTotalLimit },
      );
      history.write({ type: "checkpoint", step: state.step, path: info.path });
      emit({ type: "checkpoint", step: state.step, path: info.path });
    };

    const hasEval = options.eval !== undefined && options.eval.length > 0 && cfg.evalEachEpoch;
    const runEval = (epoch: number): EvalResult => {
      if (lora) lora.training = false;
      const result = evaluate(model, options.eval!, {
        batchSize: cfg.evalBatchSize,
        ...lossWeights,
        engine: options.engine,
        task,
        threshold: options.threshold,
      });
      if (lora) lora.training = true;
      const ev = { type: "eval" as const, step: state.step, epoch, metrics: result.metrics };
      history.write(ev);
      emit(ev);
      return result;
    };
    /** The eval event of `step` in the history kept from before (a resumed run). */
    const evalInHistory = (step: number) =>
      start.resumed
        ? readHistory(historyFile)
            .filter((e) => e.type === "eval" && e.step === step)
            .at(-1)
        : undefined;

    const started = performance.now();
    const startTokens = state.tokens;
    let lastEval: EvalResult | undefined;
    let metrics: EvalMetrics | undefined;
    let interrupted = false;
    const alreadyComplete = resumedFrom !== null && state.step >= totalSteps;
    if (lora) lora.training = true;
    try {
      // A checkpoint at the end of an epoch (or of the run) may predate that epoch's
      // evaluation (a stop right after the step): evaluate first if the history lacks it.
      const atEpochEnd = state.step > 0 && (state.microBatch === 0 || alreadyComplete);
      if (start.checkpoint && hasEval && atEpochEnd) {
        const earlier = evalInHistory(state.step);
        if (earlier) metrics = earlier.metrics as EvalMetrics;
        else {
          lastEval = runEval(state.microBatch === 0 ? state.epoch : state.epoch + 1);
          metrics = lastEval.metrics;
        }
      }
      if (alreadyComplete) {
        options.onMessage?.(
          `the run is already complete: step ${state.step} of ${totalSteps}; nothing to train`,
        );
      }
      outer: for (let epoch = state.epoch; epoch < epochs && !alreadyComplete; epoch++) {
        const skip = epoch === state.epoch ? state.microBatch : 0;
        let micro = 0;
        let acc = new Map<string, tf.Tensor>();
        let accLoss = 0;
        let inWindow = 0;
        let windowBatches: Batch[] = [];
        for (const batch of epochBatches(options.train, {
          batchSize: cfg.batchSize,
          seed: cfg.seed,
          epoch,
        })) {
          micro++;
          if (micro <= skip) continue;
          const stepOptions = {
            problemType,
            ...lossWeights,
            lossScale: 1 / cfg.gradientAccumulationSteps,
            gradientCheckpointing: cfg.gradientCheckpointing,
          };
          state.tokens += batch.attentionMask.reduce((a, m) => a + m, 0);
          inWindow++;
          if (pool) {
            windowBatches.push(batch);
          } else {
            const t = toTensors(batch);
            const r = options.engine
              ? options.engine.lossAndGradients(params, t, { ...stepOptions, dropoutRng })
              : lossAndGradients(model, params, t, { ...stepOptions, dropoutRng });
            disposeBatch(t);
            addInto(acc, r.grads);
            accLoss += r.loss;
          }
          const windowDone = micro % cfg.gradientAccumulationSteps === 0 || micro === microPerEpoch;
          if (!windowDone) continue;
          if (pool) {
            // Each job starts from the dropout state the sequential loop would have had.
            const start = dropoutRng?.getState() ?? null;
            const jobs = windowBatches.map((b, k) => ({
              batch: b,
              rngState: advance(start, k * drawsPerMicroBatch),
            }));
            const results = await pool.run(params, jobs, stepOptions);
            for (const r of results) {
              const grads = new Map<string, tf.Tensor>();
              for (const [name, data] of Object.entries(r.grads))
                grads.set(name, tf.tensor(data, params.get(name)!.shape));
              addInto(acc, grads);
              accLoss += r.loss;
            }
            const end = advance(start, windowBatches.length * drawsPerMicroBatch);
            if (dropoutRng && end !== null) dropoutRng.setState(end);
            windowBatches = [];
          }

          const lr = schedule.lrAt(optimizer.stepCount);
          const clipped = clipGradNorm(acc, cfg.maxGradNorm);
          optimizer.step(clipped.grads, lr);
          tf.dispose([...acc.values(), ...clipped.grads.values()]);
          acc = new Map();
          state.step++;
          state.epoch = epoch;
          state.microBatch = micro;
          const elapsed = (performance.now() - started) / 1000;
          const ev = {
            type: "step" as const,
            step: state.step,
            totalSteps,
            epoch: epoch + micro / microPerEpoch,
            loss: accLoss / inWindow,
            lr,
            gradNorm: clipped.totalNorm,
            tokensPerSecond: (state.tokens - startTokens) / Math.max(elapsed, 1e-9),
            elapsedSeconds: elapsed,
          };
          accLoss = 0;
          inWindow = 0;
          history.write(ev);
          emit(ev);
          if (micro === microPerEpoch) {
            state.epoch = epoch + 1;
            state.microBatch = 0;
          }
          // The end of the run or of an epoch: evaluation and the checkpoint follow below.
          if (state.step >= totalSteps || micro === microPerEpoch) break;
          if (options.signal?.aborted) {
            interrupted = true;
            save();
            break outer;
          }
          if (cfg.saveSteps > 0 && state.step % cfg.saveSteps === 0) save();
          // Let timers, signals and progress output run between steps.
          await new Promise((resolve) => setImmediate(resolve));
        }
        tf.dispose([...acc.values()]);
        const last = state.step >= totalSteps;
        if (options.signal?.aborted && !last) {
          // Stop now; the resumed run evaluates this epoch first (see atEpochEnd).
          interrupted = true;
          save();
          break;
        }
        if (hasEval) {
          lastEval = runEval(epoch + 1);
          metrics = lastEval.metrics;
        }
        if (last) break;
        if (epoch + 1 < epochs) save();
      }
      if (!interrupted && !alreadyComplete) save();
    } finally {
      if (lora) lora.training = false;
      history.close();
    }
    const elapsedSeconds = (performance.now() - started) / 1000;
    emit({ type: "end", step: state.step, interrupted, alreadyComplete, elapsedSeconds });
    return {
      step: state.step,
      interrupted,
      alreadyComplete,
      lastEval,
      metrics,
      classWeights: classWeights ?? null,
      history: history.path,
    };
  }
}

/** Variables marked trainable (full fine-tuning). */
function trainableOf(model: ClassifierModel): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, v] of model.namedVariables()) if (v.trainable) out.set(name, v);
  return out;
}
