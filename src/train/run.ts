/**
 * The whole fine-tuning job behind `esmkit train` (and the demo): load the prepared
 * data and the base model, inject LoRA, train, evaluate, and write
 * `model/` (merged, Hugging Face format), `adapter/` (PEFT), `metrics.json`,
 * `history.jsonl`, `run.json` and `checkpoints/`.
 *
 * The output folder is locked for the whole job (run-lock.ts); `model/` and `adapter/`
 * are written under temporary names and renamed into place, `metrics.json` last.
 */
import { existsSync, readFileSync, renameSync, rmdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import { type BackendChoice, describeBackend, ensureBackend } from "../backend";
import { loadPrepared, type PreparedData, preparedTask } from "../data/frame";
import { ENGINE_CAPABILITIES, type EngineChoice, type EsmEngine } from "../engine/engine";
import { ConfigError, DataError } from "../errors";
import { saveAdapter } from "../lora/adapter-io";
import { applyLora, type LoraConfig, type LoraModel } from "../lora/lora";
import { EMBEDDING } from "../model/architecture";
import {
  ESM2_PRESET_NAMES,
  type Esm2PresetName,
  type EsmConfig,
  esm2Config,
  parseEsmConfig,
} from "../model/config";
import { Esm2Model } from "../model/esm2";
import {
  CheckpointSource,
  fromPretrained,
  resolveCheckpoint,
  savePretrained,
} from "../model/pretrained";
import { checkThreads, createEngine, defaultThreads, resolveEngine } from "../onnx/select";
import {
  BINARY_TASK,
  checkHeadMatches,
  defaultLabelNames,
  describeTask,
  type ProblemType,
  type TaskSpec,
} from "../util/task";
import {
  ownedTemporary,
  removeDeadTemporariesOf,
  trackTemporary,
  writeFileAtomic,
} from "../util/temporaries";
import type { Example } from "./batching";
import type { EvalMetrics } from "./evaluate";
import { GradientPool, type ReplicaRecipe } from "./parallel";
import { checkRunFolder } from "./run-folder";
import { type RunIdentity, weightsFingerprint } from "./run-identity";
import { acquireRunLock, type RunLock } from "./run-lock";
import { type TrainConfig, type TrainEvent, train } from "./trainer";

export interface FineTuneOptions extends Partial<TrainConfig> {
  /** Output of `esmkit prepare` (train.parquet, test.parquet). */
  data: string;
  /** Hub id or local directory of the base model. */
  model: string;
  out: string;
  /**
   * The problem type the data must hold. Default: the task `esmkit prepare` recorded in
   * stats.json (else binary); given, it must match that task, or it says what the
   * `label` column holds when stats.json records none (label names LABEL_i).
   */
  task?: ProblemType;
  /** Multi-label evaluation: a label is predicted at probability >= threshold (default 0.5). */
  threshold?: number;
  /** LoRA settings, or false for full fine-tuning. */
  lora?: Partial<LoraConfig> | false;
  /** Truncate examples to this many tokens (<cls>/<eos> included); default 512. */
  maxLength?: number;
  /** Use at most this many training / evaluation examples (quick runs, CI). */
  limitTrain?: number;
  limitEval?: number;
  /** When the base model cannot be loaded from the Hub, use random weights of the same size. */
  randomIfUnavailable?: boolean;
  backend?: BackendChoice;
  /** Worker threads computing the accumulation micro-batches at once (tfjs engine, LoRA, accumulation >= 2); default 1. */
  workers?: number;
  /** Default `ESMKIT_ENGINE`, then "auto": onnxruntime when it loads and TensorFlow.js is on wasm/cpu (src/onnx/select.ts). */
  engine?: EngineChoice;
  /** onnxruntime threads (onnx engine); default: every core. */
  threads?: number;
  /**
   * true: continue the run in `out` (same settings, see run-identity.ts); "auto":
   * continue it if there is one, else start (the SageMaker container); default false.
   */
  resume?: boolean | "auto";
  /** Replace a run already in `out` (by default a new run refuses such a folder). */
  overwrite?: boolean;
  /** A lock on `out` the caller already holds (the s3:// staging holds its own). */
  lock?: RunLock;
  signal?: AbortSignal;
  onEvent?: (event: TrainEvent) => void;
  /** Human-readable notes (backend, random weights, frozen embeddings). */
  onMessage?: (message: string) => void;
}

export interface FineTuneResult {
  out: string;
  randomWeights: boolean;
  /** The task trained (problem type and label names, as saved in model/config.json). */
  task: TaskSpec;
  metrics?: EvalMetrics;
  interrupted: boolean;
  /** The run had already reached its last step (a resume after the end): nothing trained. */
  alreadyComplete: boolean;
  step: number;
  files: string[];
}

/** The seed workflow's task: single-label, two classes. */
function isBinaryTask(task: TaskSpec): boolean {
  return task.problemType === "single_label_classification" && task.labels.length === 2;
}

/** Presets by Hub id and short name, for random-weight fallbacks. */
function presetFor(id: string): Esm2PresetName | undefined {
  const short = id.split("/").pop()!;
  return (ESM2_PRESET_NAMES as readonly string[]).includes(short)
    ? (short as Esm2PresetName)
    : undefined;
}

/** The head a checkpoint already has: its config, and whether it holds classifier weights. */
async function checkpointHead(id: string): Promise<{ config: EsmConfig; hasClassifier: boolean }> {
  const files = await resolveCheckpoint(id);
  const config = parseEsmConfig(JSON.parse(readFileSync(files.config, "utf8")), files.config);
  const source = new CheckpointSource(files);
  try {
    return { config, hasClassifier: source.keys().includes("classifier.out_proj.weight") };
  } finally {
    source.close();
  }
}

/**
 * The label names the model is built with: a checkpoint's own classifier keeps its
 * head, which must fit the task (same problem type when it names one, same count, and
 * the same names unless it has Hugging Face's default LABEL_i); a checkpoint without one
 * (the Hub's masked-LM ESM-2) gets a new head with the task's labels.
 */
async function labelsFor(id: string, task: TaskSpec): Promise<string[]> {
  const head = await checkpointHead(id);
  return head.hasClassifier ? checkHeadMatches(head.config, task, id) : task.labels;
}

/**
 * Load the base model with a head for `task` (default: binary); with
 * `randomIfUnavailable`, fall back to random weights of a known size.
 */
export async function loadBaseModel(
  id: string,
  options: {
    randomIfUnavailable?: boolean;
    seed?: number;
    onMessage?: (m: string) => void;
    task?: TaskSpec;
  } = {},
): Promise<{ model: Esm2Model; randomWeights: boolean; recipe: ReplicaRecipe["model"] }> {
  const say = options.onMessage ?? (() => undefined);
  const task = options.task ?? BINARY_TASK;
  try {
    const id2label = await labelsFor(id, task);
    const model = await fromPretrained(id, { seed: options.seed, onWarning: say, id2label });
    model.config.problemType = task.problemType;
    return {
      model,
      randomWeights: false,
      recipe: { kind: "pretrained", path: id, seed: options.seed, id2label },
    };
  } catch (e) {
    const preset = presetFor(id);
    // A head that does not fit the task is the user's to fix, not a reason for random weights.
    if (!options.randomIfUnavailable || !preset || existsSync(id) || e instanceof ConfigError) {
      throw e;
    }
    say(
      [
        "*".repeat(78),
        `* RANDOM WEIGHTS: could not load ${id}:`,
        `*   ${(e as Error).message.split("\n")[0]!.split(/\.\s/)[0]}`,
        `* Using randomly initialised weights of the ${preset} architecture instead.`,
        "* Results show that the pipeline works; they say nothing about ESM-2's accuracy.",
        "*".repeat(78),
      ].join("\n"),
    );
    const config = esm2Config(preset, {
      id2label: Object.fromEntries(task.labels.map((l, i) => [i, l])),
      problemType: task.problemType,
    });
    const model = Esm2Model.random(config, { seed: options.seed ?? 42 });
    model.nameOrPath = id;
    return {
      model,
      randomWeights: true,
      recipe: { kind: "random", config, seed: options.seed ?? 42 },
    };
  }
}

function truncate(ids: ArrayLike<number>, maxLength: number): number[] {
  const a = Array.from(ids);
  if (a.length <= maxLength) return a;
  // Keep <cls> + the first residues, and close with the original <eos>.
  return [...a.slice(0, maxLength - 1), a[a.length - 1]!];
}

type Frame = { getColumn(name: string): { toArray(): unknown[] }; columns: string[] };

/**
 * The task of a prepared dataset: the one stats.json records (`requested`, when given,
 * must be it), or for stats.json files that record none the binary task, or the
 * `requested` problem type with unnamed labels (LABEL_i) as many as the label column holds.
 */
export function resolveDataTask(
  stats: PreparedData["stats"],
  train: Frame,
  requested: ProblemType | undefined,
  where: string,
): TaskSpec {
  if (stats.task) {
    const recorded = preparedTask(stats);
    if (requested !== undefined && requested !== recorded.problemType) {
      throw new ConfigError(
        `--task ${requested} does not match the data: ${where} was prepared for ${describeTask(recorded)}`,
        { task: requested, data: recorded },
      );
    }
    return { problemType: recorded.problemType, labels: recorded.labels };
  }
  if (requested === undefined) return BINARY_TASK;
  const first = train.columns.includes("label") ? train.getColumn("label").toArray() : [];
  const width = (v: unknown) =>
    typeof v === "number" ? 1 : Array.from(v as ArrayLike<number>).length;
  const k =
    requested === "single_label_classification"
      ? Math.max(2, ...first.map((v) => Number(v) + 1))
      : width(first[0] ?? 0);
  return { problemType: requested, labels: defaultLabelNames(k) };
}

/** A label cell as the task reads it, or a DataError naming the row. */
function readLabel(value: unknown, task: TaskSpec | undefined, row: number, where: string) {
  const fail = (expected: string) =>
    new DataError(
      `${where} row ${row}: label ${JSON.stringify(Array.isArray(value) || ArrayBuffer.isView(value) ? Array.from(value as ArrayLike<number>) : value)} is not ${expected}`,
      { where, row },
    );
  const k = task?.labels.length ?? 2;
  if (!task || task.problemType === "single_label_classification") {
    const y = Number(value);
    if (!(Number.isInteger(y) && y >= 0 && y < k)) throw fail(`a class id in 0..${k - 1}`);
    return y;
  }
  const values =
    typeof value === "number"
      ? [value]
      : value && typeof value === "object"
        ? Array.from(value as ArrayLike<number>, Number)
        : [];
  if (values.length !== k)
    throw fail(`${k} value${k === 1 ? "" : "s"} (${task.labels.join(", ")})`);
  if (task.problemType === "multi_label_classification") {
    if (!values.every((v) => v === 0 || v === 1)) throw fail("a vector of 0/1");
  } else if (!values.every(Number.isFinite)) {
    throw fail("a vector of finite numbers");
  }
  return values;
}

/** Examples from a prepared split (input_ids + label columns), labels read for `task`. */
export function examplesFrom(
  frame: Frame,
  options: { maxLength: number; limit?: number; where: string; task?: TaskSpec },
): Example[] {
  for (const c of ["input_ids", "label"]) {
    if (!frame.columns.includes(c)) {
      throw new ConfigError(
        `${options.where} has no "${c}" column (columns: ${frame.columns.join(", ")}); run "esmkit prepare"`,
        {
          where: options.where,
        },
      );
    }
  }
  const ids = frame.getColumn("input_ids").toArray() as number[][];
  const labels = frame.getColumn("label").toArray();
  const n = Math.min(ids.length, options.limit ?? Number.POSITIVE_INFINITY);
  const out: Example[] = [];
  for (let i = 0; i < n; i++) {
    // Without a task: the binary workflow's integer labels, read as before.
    const label = options.task
      ? readLabel(labels[i], options.task, i, options.where)
      : Number(labels[i]);
    out.push({ inputIds: truncate(ids[i]!, options.maxLength), label });
  }
  return out;
}

export async function fineTune(options: FineTuneOptions): Promise<FineTuneResult> {
  // Fail fast, before anything is loaded: another process on this folder, or a folder
  // that a new run (or a resume) cannot use. The identity is checked once it is known.
  const created = !existsSync(options.out);
  if (created) checkRunFolder(options.out, options); // before the lock creates the folder
  const lock = options.lock ?? acquireRunLock(options.out, "training output");
  try {
    checkRunFolder(options.out, options); // again, now that no other run can change it
    return await fineTuneLocked({ ...options, lock });
  } finally {
    if (!options.lock) {
      lock.release();
      // A run that failed before writing anything leaves no empty folder behind.
      if (created) removeIfEmpty(options.out);
    }
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty (the run wrote something), or already gone
  }
}

/** The label column `esmkit prepare` recorded in stats.json, if any. */
function labelColumn(dataDir: string): string | undefined {
  try {
    const stats = JSON.parse(readFileSync(path.join(dataDir, "stats.json"), "utf8"));
    return typeof stats.labelColumn === "string" ? stats.labelColumn : undefined;
  } catch {
    return undefined;
  }
}

/** Write a directory through `write(tmp)` and rename it into `dir` (replacing it) when complete. */
async function writeDirAtomic(dir: string, write: (tmp: string) => unknown): Promise<void> {
  removeDeadTemporariesOf(dir);
  const tmp = ownedTemporary(dir);
  const untrack = trackTemporary(tmp);
  try {
    rmSync(tmp, { recursive: true, force: true });
    await write(tmp);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    untrack();
  }
}

/** Whether `out` holds every final output of a run that ended at `step`. */
function outputsComplete(out: string, step: number, lora: boolean): boolean {
  try {
    const m = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8"));
    return (
      m.steps === step &&
      existsSync(path.join(out, "model", "config.json")) &&
      (!lora || existsSync(path.join(out, "adapter", "adapter_config.json")))
    );
  } catch {
    return false;
  }
}

async function fineTuneLocked(
  options: FineTuneOptions & { lock: RunLock },
): Promise<FineTuneResult> {
  const say = options.onMessage ?? (() => undefined);
  const backend = await ensureBackend({ backend: options.backend });
  say(`backend: ${describeBackend(backend)}`);
  const maxLength = options.maxLength ?? 512;
  if (!Number.isInteger(maxLength) || maxLength < 3) {
    throw new ConfigError(`Invalid maxLength: ${maxLength}; expected an integer >= 3`, {
      maxLength,
    });
  }
  const data = await loadPrepared(options.data);
  const dataTask = resolveDataTask(data.stats, data.train, options.task, options.data);
  const binary = isBinaryTask(dataTask);
  // The binary workflow reads its labels as it always has; the other tasks are checked.
  const readAs = binary ? undefined : dataTask;
  const trainSet = examplesFrom(data.train, {
    maxLength,
    limit: options.limitTrain,
    where: `${options.data}/train.parquet`,
    task: readAs,
  });
  const evalSet = examplesFrom(data.test, {
    maxLength,
    limit: options.limitEval,
    where: `${options.data}/test.parquet`,
    task: readAs,
  });
  say(
    `data: ${trainSet.length} training and ${evalSet.length} evaluation examples from ${options.data}${binary ? "" : `; task: ${describeTask(dataTask)}`}`,
  );

  const { model, randomWeights, recipe } = await loadBaseModel(options.model, {
    randomIfUnavailable: options.randomIfUnavailable,
    seed: options.seed,
    onMessage: say,
    task: dataTask,
  });
  // The labels the model carries (a fine-tuned head may keep its own names).
  const task: TaskSpec = {
    problemType: dataTask.problemType,
    labels: Array.from({ length: model.config.numLabels }, (_, i) => model.config.id2label[i]!),
  };
  const column = labelColumn(options.data);
  const identity: RunIdentity = {
    model: weightsFingerprint(model.namedVariables()),
    // Worded as before for the binary task, so its existing runs keep their identity.
    task: binary
      ? `sequence classification, ${model.config.numLabels} labels${column ? ` (label column ${column})` : ""}`
      : `${describeTask(task)}${column ? ` (columns ${column})` : ""}`,
    maxLength,
  };
  let lora: LoraModel | undefined;
  let pool: GradientPool | undefined;
  let engine: EsmEngine | undefined;
  const decision = resolveEngine(options.engine, backend.name);
  const threads =
    options.threads === undefined ? defaultThreads() : checkThreads(options.threads, "threads");
  say(decision.name === "onnx" ? `${decision.reason}, ${threads} thread(s)` : decision.reason);
  try {
    if (options.lora !== false) {
      lora = applyLora(model, options.lora ?? {}, options.seed ?? 42);
      const r = lora.parameterReport();
      say(
        `LoRA r=${lora.config.rank} alpha=${lora.config.alpha} on ${lora.adapters.size} layers: ` +
          `${r.trainable.toLocaleString("en")} trainable of ${r.total.toLocaleString("en")} parameters (${r.percent.toFixed(2)} %)`,
      );
      for (const e of lora.excluded) say(`LoRA target ${e.name} skipped: ${e.reason}`);
    } else if (!ENGINE_CAPABILITIES[decision.name].trainsEmbeddings || backend.name === "wasm") {
      // wasm has no UnsortedSegmentSum kernel, which the embedding (gather) gradient
      // needs, and the onnx engine's backward pass stops below the first layer.
      const emb = model.namedVariables().get(EMBEDDING);
      if (emb) (emb as { trainable: boolean }).trainable = false;
      say(
        decision.name === "onnx"
          ? "full fine-tuning with the onnx engine: word embeddings are frozen (--engine tfjs on a native backend trains them)"
          : "full fine-tuning on wasm: word embeddings are frozen (the wasm backend lacks the kernel for their gradient)",
      );
    }
    // The wasm heap stops at 4 GB: a plain LoRA step of the 8M model at 8 x 256 tokens
    // already exceeds it (bench/step-memory.ts), so checkpointing is the default there.
    let gradientCheckpointing = options.gradientCheckpointing;
    if (
      gradientCheckpointing === undefined &&
      decision.name === "tfjs" &&
      (backend.name === "wasm" || backend.name === "cpu")
    ) {
      gradientCheckpointing = true;
      say(
        `gradient checkpointing on (default on the ${backend.name} backend, whose memory is limited; --no-gradient-checkpointing turns it off)`,
      );
    }
    const workers = options.workers ?? 1;
    engine = createEngine(decision.name, model, {
      lora,
      threads,
      needs: { task: task.problemType },
    });
    if (decision.name === "onnx") {
      if (workers > 1)
        say(`--workers is for the tfjs engine; onnxruntime uses ${threads} thread(s)`);
    } else if (workers > 1 && lora && (options.gradientAccumulationSteps ?? 1) >= 2) {
      pool = await GradientPool.start(
        { model: recipe, lora: lora.config, loraSeed: options.seed ?? 42, backend: backend.name },
        workers,
      );
      say(`${workers} worker threads compute the accumulation micro-batches in parallel`);
    } else if (workers > 1) {
      say("--workers applies to LoRA with gradient accumulation >= 2; training on one thread");
    }
    const { task: _requested, ...trainOptions } = options;
    const result = await train({
      ...trainOptions,
      task: binary ? undefined : task,
      pool,
      engine,
      gradientCheckpointing,
      model,
      lora,
      train: trainSet,
      eval: evalSet,
      outDir: options.out,
      identity,
      lock: options.lock,
    });
    const files = ["run.json", "history.jsonl", "checkpoints/"];
    const complete =
      result.alreadyComplete && outputsComplete(options.out, result.step, lora !== undefined);
    if (complete) {
      say(`the outputs of step ${result.step} are in place in ${options.out}`);
    } else if (!result.interrupted) {
      if (result.alreadyComplete) say(`writing the missing outputs of step ${result.step}`);
      const out = (name: string) => path.join(options.out, name);
      if (lora) {
        await writeDirAtomic(out("adapter"), (tmp) =>
          saveAdapter(lora!, model, tmp, { baseModel: options.model }),
        );
        files.push("adapter/");
        lora.merge();
      }
      await writeDirAtomic(out("model"), (tmp) => savePretrained(model, tmp));
      files.push("model/");
      const metrics = {
        model: options.model,
        randomWeights,
        backend: backend.name,
        engine: decision.name,
        steps: result.step,
        trainExamples: trainSet.length,
        evalExamples: evalSet.length,
        /** Problem type and label names (model/config.json's problem_type and id2label). */
        task,
        /**
         * The weights of the training loss and of eval.weightedLoss: per class
         * (single-label) or pos_weight per label (multi-label); null: none.
         */
        classWeights: result.classWeights,
        eval: result.metrics ?? null,
      };
      writeFileAtomic(out("metrics.json"), `${JSON.stringify(metrics, null, 2)}\n`);
      files.push("metrics.json");
    }
    return {
      out: options.out,
      randomWeights,
      task,
      metrics: result.metrics,
      interrupted: result.interrupted,
      alreadyComplete: result.alreadyComplete,
      step: result.step,
      files,
    };
  } finally {
    await pool?.dispose();
    engine?.dispose();
    lora?.dispose();
    model.dispose();
  }
}
