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
import type { EsmEngine, MicroBatch, StepOptions } from "../engine/engine";
import { type ClassifierModel, TfjsEngine } from "../engine/tfjs-engine";
import { ConfigError } from "../errors";
import { isLmHead } from "../model/architecture";
import { balancedClassWeights, balancedPositiveWeights } from "../util/class-weights";
import { SeededRandom } from "../util/random";
import { checkTask, type TaskSpec } from "../util/task";
import { type Batch, batchesPerEpoch, type Example, epochBatches } from "./batching";
import { saveCheckpoint, type TensorRecord } from "./checkpoint-io";
import { clipGradNorm } from "./clip";
import { type BinaryEvalResult, type EvalMetrics, type EvalResult, evaluate } from "./evaluate";
import { HistoryWriter, readHistory } from "./history";
import { AdamW, adamWStateFromRecords, adamWStateToRecords } from "./optimizer";
import { CHECKPOINTS_DIR, HISTORY_FILE, openRun, type RunStart } from "./run-folder";
import { examplesFingerprint, parametersFingerprint, type RunIdentity } from "./run-identity";
import { acquireRunLock } from "./run-lock";
import { type LrSchedule, linearScheduleWithWarmup } from "./schedule";
import {
  resolveConfig,
  type TrainConfig,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
} from "./train-config";

export {
  DEFAULT_TRAIN_CONFIG,
  type TrainConfig,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
} from "./train-config";

/** Everything `train` settles before it takes the lock; fixed for the whole run. */
interface RunPlan {
  cfg: TrainConfig;
  /** The tensors trained, by name: LoRA's, or every trainable variable. */
  params: Map<string, tf.Variable>;
  /** The task (undefined: the binary task, integer labels 0/1). */
  task: TaskSpec | undefined;
  /**
   * The loss's weights, resolved: per class (single-label) or pos_weight per label
   * (multi-label); undefined: none.
   */
  classWeights: number[] | undefined;
  /** The same weights, as the loss takes them (classWeights or posWeight). */
  lossWeights: Pick<StepOptions, "classWeights" | "posWeight">;
  microPerEpoch: number;
  stepsPerEpoch: number;
  totalSteps: number;
  epochs: number;
  schedule: LrSchedule;
  /** The engine's options for every micro-batch (the dropout stream is added per call). */
  stepOptions: StepOptions;
  /** Dropout seeds drawn per micro-batch: one per adapter forward (checkpointing replays). */
  drawsPerMicroBatch: number;
  identity: RunIdentity;
}

/** Set-up: check the options and derive the plan; nothing is read or written yet. */
function planRun(options: TrainOptions): RunPlan {
  const cfg = resolveConfig(options);
  const { model, lora } = options;
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
  const schedule = linearScheduleWithWarmup({
    lr: cfg.learningRate,
    totalSteps,
    warmupSteps: cfg.warmupSteps,
    warmupRatio: cfg.warmupRatio,
  });
  if (options.pool && options.engine && options.engine.name !== "tfjs") {
    throw new ConfigError(
      "Parallel training (pool) is for the tfjs engine; the onnx engine uses its own threads",
      {},
    );
  }
  if (options.pool && !lora)
    throw new ConfigError(
      "Parallel training (pool) needs LoRA: full fine-tuning runs on one thread",
      {},
    );
  // (The masked-LM head never runs in a classification step: its adapters draw nothing.)
  const drawsPerMicroBatch =
    lora && lora.config.dropout > 0
      ? [...lora.adapters.keys()].filter((n) => !isLmHead(n)).length
      : 0;
  return {
    cfg,
    params,
    task,
    classWeights,
    lossWeights,
    microPerEpoch,
    stepsPerEpoch,
    totalSteps,
    epochs: Math.ceil(totalSteps / stepsPerEpoch),
    schedule,
    stepOptions: {
      task: problemType,
      ...lossWeights,
      lossScale: 1 / cfg.gradientAccumulationSteps,
      gradientCheckpointing: cfg.gradientCheckpointing,
    },
    drawsPerMicroBatch,
    identity: runIdentity(options, cfg, params, classWeights),
  };
}

/** What defines the run (run-identity.ts): a resume must match it. */
function runIdentity(
  options: TrainOptions,
  cfg: TrainConfig,
  params: Map<string, tf.Variable>,
  classWeights: number[] | undefined,
): RunIdentity {
  const lora = options.lora;
  return {
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
}

/**
 * Train; returns when done, or after a checkpoint when `signal` aborts. The phases:
 * set-up (`planRun`), then under the folder's lock a TrainingRun: set-up of the folder
 * and resume (`openAndResume`), the epoch loop (`epochs`, `epoch`), the optimizer step
 * over each accumulation window (`accumulate`, `optimizerStep`), evaluation
 * (`evaluate`, `catchUpEvaluation`) and checkpoints (`save`).
 */
export function train(
  options: TrainOptions & { task?: undefined },
): Promise<TrainResult<BinaryEvalResult["metrics"]>>;
export function train(options: TrainOptions): Promise<TrainResult>;
export async function train(options: TrainOptions): Promise<TrainResult> {
  const plan = planRun(options);
  const lock = options.lock ?? acquireRunLock(options.outDir, "training output");
  const optimizer = new AdamW(plan.params, {
    lr: plan.cfg.learningRate,
    weightDecay: plan.cfg.weightDecay,
  });
  try {
    return await new TrainingRun(options, plan, optimizer).run();
  } finally {
    optimizer.dispose();
    if (!options.lock) lock.release();
  }
}

/** Variables marked trainable (full fine-tuning). */
function trainableOf(model: ClassifierModel): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, v] of model.namedVariables()) if (v.trainable) out.set(name, v);
  return out;
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
  const multi = task?.problemType === "multi_label_classification";
  if (Array.isArray(setting)) {
    if (k !== undefined && setting.length !== k) {
      throw new ConfigError(
        `${setting.length} ${multi ? "positive weights" : "class weights"} [${setting.join(", ")}] for ${k} ${multi ? "labels" : "classes"} (${task!.labels.join(", ")}); give one per ${multi ? "label" : "class"}`,
        { classWeights: setting, labels: task!.labels },
      );
    }
    return setting;
  }
  if (multi) {
    return balancedPositiveWeights(
      examples.map((e) => e.label as ArrayLike<number>),
      k!,
      task!.labels,
    );
  }
  const labels = examples.map((e) => e.label as number);
  const numLabels = k ?? Math.max(...labels) + 1;
  return balancedClassWeights(labels, Math.max(numLabels, 2));
}

/** Where the run stands; saved in every checkpoint, restored on resume. */
interface ResumeState {
  step: number;
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  microBatch: number;
  dropoutRng: number | null;
  tokens: number;
}

/** The micro-batches of one optimizer step: their summed gradients and losses. */
class AccumulationWindow {
  grads = new Map<string, tf.Tensor>();
  loss = 0;
  /** Micro-batches in the window so far. */
  size = 0;
  /** With a pool: the batches, computed together when the window is full. */
  batches: Batch[] = [];

  add(grads: Map<string, tf.Tensor>, loss: number): void {
    for (const [name, g] of grads) {
      const prev = this.grads.get(name);
      if (prev) {
        this.grads.set(name, tf.add(prev, g));
        prev.dispose();
        g.dispose();
      } else {
        this.grads.set(name, g);
      }
    }
    this.loss += loss;
  }

  /** Empty it for the next window, freeing the gradients. */
  clear(): void {
    tf.dispose([...this.grads.values()]);
    this.grads = new Map();
    this.loss = 0;
    this.size = 0;
    this.batches = [];
  }
}

/** One call of `train` under the folder's lock, phase by phase. */
class TrainingRun {
  private readonly state: ResumeState = {
    step: 0,
    epoch: 0,
    microBatch: 0,
    dropoutRng: null,
    tokens: 0,
  };
  private readonly model: ClassifierModel;
  private readonly engine: EsmEngine;
  private readonly lora: TrainOptions["lora"];
  private readonly dropoutRng: SeededRandom | undefined;
  private readonly emit: (event: TrainEvent) => void;
  private readonly hasEval: boolean;
  private start!: RunStart;
  private history!: HistoryWriter;
  private started = 0;
  private startTokens = 0;
  private lastEval: EvalResult | undefined;
  private metrics: EvalMetrics | undefined;
  private interrupted = false;

  constructor(
    private readonly options: TrainOptions,
    private readonly plan: RunPlan,
    private readonly optimizer: AdamW,
  ) {
    this.model = options.model;
    this.engine = options.engine ?? new TfjsEngine(options.model);
    this.lora = options.lora;
    this.dropoutRng = options.lora?.dropoutRng;
    this.emit = options.onEvent ?? (() => undefined);
    this.hasEval = options.eval !== undefined && options.eval.length > 0 && plan.cfg.evalEachEpoch;
  }

  async run(): Promise<TrainResult> {
    const resumedFrom = this.openAndResume();
    const historyFile = path.join(this.options.outDir, HISTORY_FILE);
    this.history = new HistoryWriter(historyFile, { append: this.start.resumed });
    const report = this.lora?.parameterReport();
    const { params, totalSteps } = this.plan;
    this.emit({
      type: "start",
      totalSteps,
      stepsPerEpoch: this.plan.stepsPerEpoch,
      examples: this.options.train.length,
      trainable: report?.trainable ?? [...params.values()].reduce((a, v) => a + v.size, 0),
      total:
        report?.total ?? [...this.model.namedVariables().values()].reduce((a, v) => a + v.size, 0),
      classWeights: this.plan.classWeights ?? null,
      resumedFrom,
    });
    this.started = performance.now();
    this.startTokens = this.state.tokens;
    const alreadyComplete = resumedFrom !== null && this.state.step >= totalSteps;
    if (this.lora) this.lora.training = true;
    try {
      this.catchUpEvaluation(alreadyComplete);
      if (alreadyComplete) {
        this.options.onMessage?.(
          `the run is already complete: step ${this.state.step} of ${totalSteps}; nothing to train`,
        );
      } else {
        await this.epochs();
        if (!this.interrupted) this.save();
      }
    } finally {
      if (this.lora) this.lora.training = false;
      this.history.close();
    }
    const elapsedSeconds = (performance.now() - this.started) / 1000;
    const { step } = this.state;
    const interrupted = this.interrupted;
    this.emit({ type: "end", step, interrupted, alreadyComplete, elapsedSeconds });
    return {
      step,
      interrupted,
      alreadyComplete,
      lastEval: this.lastEval,
      metrics: this.metrics,
      classWeights: this.plan.classWeights ?? null,
      history: this.history.path,
    };
  }

  // ---- set-up and resume ----

  /** Open the output folder (run-folder.ts) and restore its checkpoint; returns the step resumed from. */
  private openAndResume(): number | null {
    const { params, totalSteps } = this.plan;
    this.start = openRun(this.options.outDir, {
      identity: this.plan.identity,
      resume: this.options.resume,
      overwrite: this.options.overwrite,
      onMessage: this.options.onMessage,
    });
    if (!this.start.checkpoint) return this.start.resumed ? 0 : null;
    const { info, data } = this.start.checkpoint;
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
    this.optimizer.importState(adamWStateFromRecords(data.tensors, saved.optimizer as never));
    Object.assign(this.state, {
      step: saved.step,
      epoch: saved.epoch,
      microBatch: saved.microBatch,
      dropoutRng: saved.dropoutRng,
      tokens: saved.tokens,
    });
    if (this.dropoutRng && saved.dropoutRng !== null) this.dropoutRng.setState(saved.dropoutRng);
    if (saved.totalSteps !== totalSteps && saved.step < totalSteps) {
      this.options.onMessage?.(
        `the run now has ${totalSteps} optimizer steps (its checkpoints were made for ${saved.totalSteps}): the learning-rate schedule follows the new total from here`,
      );
    }
    return saved.step;
  }

  // ---- the epoch loop ----

  /** Epoch after epoch to the last step; each ends with evaluation and a checkpoint. */
  private async epochs(): Promise<void> {
    const { epochs, totalSteps } = this.plan;
    for (let epoch = this.state.epoch; epoch < epochs; epoch++) {
      if (await this.epoch(epoch)) return; // stopped mid-epoch, checkpoint saved
      const last = this.state.step >= totalSteps;
      if (this.options.signal?.aborted && !last) {
        // Stop now; the resumed run evaluates this epoch first (see catchUpEvaluation).
        this.interrupted = true;
        this.save();
        return;
      }
      if (this.hasEval) this.evaluate(epoch + 1);
      if (last) return;
      if (epoch + 1 < epochs) this.save();
    }
  }

  /**
   * The micro-batches of one epoch (after those a resumed run already consumed), an
   * optimizer step at the end of each window. True when the signal stopped it.
   */
  private async epoch(epoch: number): Promise<boolean> {
    const { cfg, microPerEpoch, totalSteps } = this.plan;
    const skip = epoch === this.state.epoch ? this.state.microBatch : 0;
    const window = new AccumulationWindow();
    let micro = 0;
    for (const batch of epochBatches(this.options.train, {
      batchSize: cfg.batchSize,
      seed: cfg.seed,
      epoch,
    })) {
      micro++;
      if (micro <= skip) continue;
      this.state.tokens += batch.attentionMask.reduce((a, m) => a + m, 0);
      this.accumulate(window, batch);
      const windowDone = micro % cfg.gradientAccumulationSteps === 0 || micro === microPerEpoch;
      if (!windowDone) continue;
      if (this.options.pool) await this.poolGradients(window);
      this.optimizerStep(window, epoch, micro);
      // The end of the run or of an epoch: evaluation and the checkpoint follow in `epochs`.
      if (this.state.step >= totalSteps || micro === microPerEpoch) break;
      if (this.options.signal?.aborted) {
        this.interrupted = true;
        this.save();
        return true;
      }
      if (cfg.saveSteps > 0 && this.state.step % cfg.saveSteps === 0) this.save();
      // Let timers, signals and progress output run between steps.
      await new Promise((resolve) => setImmediate(resolve));
    }
    window.clear();
    return false;
  }

  // ---- the optimizer step ----

  /** Add one micro-batch to the window: its gradients now, or (with a pool) at the window's end. */
  private accumulate(window: AccumulationWindow, batch: Batch): void {
    window.size++;
    if (this.options.pool) {
      window.batches.push(batch);
      return;
    }
    const { params, stepOptions } = this.plan;
    const options = { ...stepOptions, dropoutRng: this.dropoutRng };
    const t = toTensors(batch);
    const r = this.engine.lossAndGradients(params, t, options);
    disposeBatch(t);
    window.add(r.grads, r.loss);
  }

  /** The window's micro-batches on the pool's workers, with the dropout states a sequential run has. */
  private async poolGradients(window: AccumulationWindow): Promise<void> {
    const { params, stepOptions, drawsPerMicroBatch } = this.plan;
    const start = this.dropoutRng?.getState() ?? null;
    const jobs = window.batches.map((b, k) => ({
      batch: b,
      rngState: advance(start, k * drawsPerMicroBatch),
    }));
    const results = await this.options.pool!.run(params, jobs, stepOptions);
    for (const r of results) {
      const grads = new Map<string, tf.Tensor>();
      for (const [name, data] of Object.entries(r.grads))
        grads.set(name, tf.tensor(data, params.get(name)!.shape));
      window.add(grads, r.loss);
    }
    const end = advance(start, window.batches.length * drawsPerMicroBatch);
    if (this.dropoutRng && end !== null) this.dropoutRng.setState(end);
    window.batches = [];
  }

  /** Clip the window's gradients, step the optimizer, record the step; empties the window. */
  private optimizerStep(window: AccumulationWindow, epoch: number, micro: number): void {
    const { cfg, microPerEpoch, totalSteps, schedule } = this.plan;
    const lr = schedule.lrAt(this.optimizer.stepCount);
    const clipped = clipGradNorm(window.grads, cfg.maxGradNorm);
    this.optimizer.step(clipped.grads, lr);
    tf.dispose([...clipped.grads.values()]);
    const loss = window.loss / window.size;
    window.clear();
    const state = this.state;
    state.step++;
    state.epoch = epoch;
    state.microBatch = micro;
    const elapsed = (performance.now() - this.started) / 1000;
    const ev = {
      type: "step" as const,
      step: state.step,
      totalSteps,
      epoch: epoch + micro / microPerEpoch,
      loss,
      lr,
      gradNorm: clipped.totalNorm,
      tokensPerSecond: (state.tokens - this.startTokens) / Math.max(elapsed, 1e-9),
      elapsedSeconds: elapsed,
    };
    this.history.write(ev);
    this.emit(ev);
    if (micro === microPerEpoch) {
      state.epoch = epoch + 1;
      state.microBatch = 0;
    }
  }

  // ---- evaluation ----

  /** Evaluate on the eval set (adapter dropout off) and record it. */
  private evaluate(epoch: number): void {
    if (this.lora) this.lora.training = false;
    const result = evaluate(this.engine, this.options.eval!, {
      batchSize: this.plan.cfg.evalBatchSize,
      ...this.plan.lossWeights,
      task: this.plan.task,
      threshold: this.options.threshold,
    });
    if (this.lora) this.lora.training = true;
    const ev = { type: "eval" as const, step: this.state.step, epoch, metrics: result.metrics };
    this.history.write(ev);
    this.emit(ev);
    this.lastEval = result;
    this.metrics = result.metrics;
  }

  /**
   * A checkpoint at the end of an epoch (or of the run) may predate that epoch's
   * evaluation (a stop right after the step): evaluate first if the history lacks it.
   */
  private catchUpEvaluation(alreadyComplete: boolean): void {
    const state = this.state;
    const atEpochEnd = state.step > 0 && (state.microBatch === 0 || alreadyComplete);
    if (!this.start.checkpoint || !this.hasEval || !atEpochEnd) return;
    // The eval event of this step in the history kept from before (a resumed run).
    const earlier = this.start.resumed
      ? readHistory(this.history.path)
          .filter((e) => e.type === "eval" && e.step === state.step)
          .at(-1)
      : undefined;
    if (earlier) this.metrics = earlier.metrics as EvalMetrics;
    else this.evaluate(state.microBatch === 0 ? state.epoch : state.epoch + 1);
  }

  // ---- saving ----

  /** A checkpoint of the trainable weights, the optimizer and every random state. */
  private save(): void {
    const tensors: Record<string, TensorRecord> = {};
    for (const [name, v] of this.plan.params) {
      tensors[`param/${name}`] = { shape: [...v.shape], data: new Float32Array(v.dataSync()) };
    }
    const opt = adamWStateToRecords(this.optimizer.exportState());
    Object.assign(tensors, opt.tensors);
    const info = saveCheckpoint(
      path.join(this.options.outDir, CHECKPOINTS_DIR),
      this.state.step,
      {
        tensors,
        state: {
          ...this.state,
          dropoutRng: this.dropoutRng?.getState() ?? null,
          optimizer: opt.meta,
          totalSteps: this.plan.totalSteps,
          identity: this.plan.identity,
        },
      },
      { saveTotalLimit: this.plan.cfg.saveTotalLimit },
    );
    this.history.write({ type: "checkpoint", step: this.state.step, path: info.path });
    this.emit({ type: "checkpoint", step: this.state.step, path: info.path });
  }
}
