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
import { loadPrepared } from "../data/frame";
import { ENGINE_CAPABILITIES, type EngineChoice, type EsmEngine } from "../engine/engine";
import { DEFAULT_TASK } from "../engine/task";
import { ConfigError } from "../errors";
import { saveAdapter } from "../lora/adapter-io";
import { applyLora, type LoraConfig, type LoraModel } from "../lora/lora";
import { EMBEDDING } from "../model/architecture";
import { ESM2_PRESET_NAMES, type Esm2PresetName, esm2Config } from "../model/config";
import { Esm2Model } from "../model/esm2";
import { fromPretrained, savePretrained } from "../model/pretrained";
import { checkThreads, createEngine, defaultThreads, resolveEngine } from "../onnx/select";
import {
  ownedTemporary,
  removeDeadTemporariesOf,
  trackTemporary,
  writeFileAtomic,
} from "../util/temporaries";
import type { Example } from "./batching";
import type { EvalResult } from "./evaluate";
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
  metrics?: EvalResult["metrics"];
  interrupted: boolean;
  /** The run had already reached its last step (a resume after the end): nothing trained. */
  alreadyComplete: boolean;
  step: number;
  files: string[];
}

/** Presets by Hub id and short name, for random-weight fallbacks. */
function presetFor(id: string): Esm2PresetName | undefined {
  const short = id.split("/").pop()!;
  return (ESM2_PRESET_NAMES as readonly string[]).includes(short)
    ? (short as Esm2PresetName)
    : undefined;
}

/** Load the base model; with `randomIfUnavailable`, fall back to random weights of a known size. */
export async function loadBaseModel(
  id: string,
  options: { randomIfUnavailable?: boolean; seed?: number; onMessage?: (m: string) => void } = {},
): Promise<{ model: Esm2Model; randomWeights: boolean; recipe: ReplicaRecipe["model"] }> {
  const say = options.onMessage ?? (() => undefined);
  try {
    const model = await fromPretrained(id, { seed: options.seed, onWarning: say });
    return {
      model,
      randomWeights: false,
      recipe: { kind: "pretrained", path: id, seed: options.seed },
    };
  } catch (e) {
    const preset = presetFor(id);
    if (!options.randomIfUnavailable || !preset || existsSync(id)) throw e;
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
    const config = esm2Config(preset);
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

/** Examples from a prepared split (input_ids + label columns). */
export function examplesFrom(
  frame: { getColumn(name: string): { toArray(): unknown[] }; columns: string[] },
  options: { maxLength: number; limit?: number; where: string },
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
  const labels = frame.getColumn("label").toArray() as number[];
  const n = Math.min(ids.length, options.limit ?? Number.POSITIVE_INFINITY);
  const out: Example[] = [];
  for (let i = 0; i < n; i++)
    out.push({ inputIds: truncate(ids[i]!, options.maxLength), label: Number(labels[i]) });
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
  const trainSet = examplesFrom(data.train, {
    maxLength,
    limit: options.limitTrain,
    where: `${options.data}/train.parquet`,
  });
  const evalSet = examplesFrom(data.test, {
    maxLength,
    limit: options.limitEval,
    where: `${options.data}/test.parquet`,
  });
  say(
    `data: ${trainSet.length} training and ${evalSet.length} evaluation examples from ${options.data}`,
  );

  const { model, randomWeights, recipe } = await loadBaseModel(options.model, {
    randomIfUnavailable: options.randomIfUnavailable,
    seed: options.seed,
    onMessage: say,
  });
  const column = labelColumn(options.data);
  const identity: RunIdentity = {
    model: weightsFingerprint(model.namedVariables()),
    task: `sequence classification, ${model.config.numLabels} labels${column ? ` (label column ${column})` : ""}`,
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
    engine = createEngine(decision.name, model, { lora, threads, needs: { task: DEFAULT_TASK } });
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
    const result = await train({
      ...options,
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
        /** The class weights of the training loss and of eval.weightedLoss (null: none). */
        classWeights: result.classWeights,
        eval: result.metrics ?? null,
      };
      writeFileAtomic(out("metrics.json"), `${JSON.stringify(metrics, null, 2)}\n`);
      files.push("metrics.json");
    }
    return {
      out: options.out,
      randomWeights,
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
