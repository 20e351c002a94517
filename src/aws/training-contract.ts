/**
 * The SageMaker training container contract, run by `esmkit train` without --data and
 * --out when `<root>/input/config/hyperparameters.json` exists (root: ESMKIT_SM_ROOT,
 * default /opt/ml):
 *
 *   in   input/config/hyperparameters.json   string values -> fineTune options
 *        input/config/inputdataconfig.json   channels (File mode only)
 *        input/config/resourceconfig.json    one host only
 *        input/data/train/                   prepared data (train.parquet, test.parquet)
 *        input/data/model/                   optional base model directory
 *        checkpoints/                        resumed from when it holds a checkpoint of
 *                                            this run (same settings; another run's
 *                                            fails the job unless overwrite=true)
 *   out  model/                              merged HF model at the root (what `serve`
 *                                            loads), plus adapter/, metrics.json, history.jsonl
 *        output/data/                        metrics.json and history.jsonl (output.tar.gz)
 *        output/failure                      the reason, on failure (SageMaker shows
 *                                            its first 1024 characters as FailureReason)
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cp, mkdir, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { ConfigError, isEsmKitError } from "../errors";
import { DEFAULT_BASE_MODEL } from "../train/flags";
import { type FineTuneOptions, fineTune } from "../train/run";
import type { TrainEvent } from "../train/trainer";
import { parseHyperparameters } from "./hyperparameters";

export const SAGEMAKER_ROOT_ENV = "ESMKIT_SM_ROOT";
/** fineTune's output folder inside model/ while the job runs. */
const WORK_DIR = ".esmkit-run";

export interface SageMakerPaths {
  root: string;
  hyperparameters: string;
  inputDataConfig: string;
  resourceConfig: string;
  /** input/data: one folder per channel. */
  channels: string;
  model: string;
  checkpoints: string;
  outputData: string;
  failure: string;
}

/** The container root: ESMKIT_SM_ROOT, else /opt/ml. */
export function sageMakerRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env[SAGEMAKER_ROOT_ENV] || "/opt/ml";
}

export function sageMakerPaths(root: string = sageMakerRoot()): SageMakerPaths {
  const r = path.resolve(root);
  return {
    root: r,
    hyperparameters: path.join(r, "input", "config", "hyperparameters.json"),
    inputDataConfig: path.join(r, "input", "config", "inputdataconfig.json"),
    resourceConfig: path.join(r, "input", "config", "resourceconfig.json"),
    channels: path.join(r, "input", "data"),
    model: path.join(r, "model"),
    checkpoints: path.join(r, "checkpoints"),
    outputData: path.join(r, "output", "data"),
    failure: path.join(r, "output", "failure"),
  };
}

/** True inside a SageMaker training container (or a test root laid out like one). */
export function isTrainingContainer(root: string = sageMakerRoot()): boolean {
  return existsSync(sageMakerPaths(root).hyperparameters);
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`Cannot read ${what} ${file}: ${(e as Error).message}`, { file });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${what} ${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export interface ContainerJob {
  paths: SageMakerPaths;
  /** fineTune options, `out` aside (the run decides where to stage it). */
  options: Omit<FineTuneOptions, "out">;
  /** Hyperparameters that were ignored (sagemaker_*). */
  ignored: string[];
}

/** Read and check the container's configuration; ConfigError names what is wrong. */
export function readContainerJob(root: string = sageMakerRoot()): ContainerJob {
  const paths = sageMakerPaths(root);
  const raw = readJson(paths.hyperparameters, "hyperparameters") as Record<string, unknown>;
  const { options, ignored } = parseHyperparameters(raw);

  if (existsSync(paths.resourceConfig)) {
    const rc = readJson(paths.resourceConfig, "resource config") as { hosts?: unknown };
    if (Array.isArray(rc.hosts) && rc.hosts.length > 1) {
      throw new ConfigError(
        `esmkit trains on one instance, but this job has ${rc.hosts.length} (${rc.hosts.join(", ")}); set InstanceCount to 1`,
        { hosts: rc.hosts },
      );
    }
  }
  if (existsSync(paths.inputDataConfig)) {
    const dc = readJson(paths.inputDataConfig, "input data config") as Record<
      string,
      { TrainingInputMode?: string }
    >;
    if (!dc.train) {
      throw new ConfigError(
        `No "train" channel in ${paths.inputDataConfig} (channels: ${Object.keys(dc).join(", ") || "none"}); give the prepared data as the train channel`,
        { channels: Object.keys(dc) },
      );
    }
    for (const [name, c] of Object.entries(dc)) {
      if (c?.TrainingInputMode && c.TrainingInputMode !== "File") {
        throw new ConfigError(
          `Channel ${name} uses input mode ${c.TrainingInputMode}; esmkit reads files: use File mode`,
          { channel: name },
        );
      }
    }
  }
  const data = path.join(paths.channels, "train");
  if (!isDir(data)) {
    const found = isDir(paths.channels) ? readdirNames(paths.channels) : [];
    throw new ConfigError(
      `No train channel at ${data} (channels found: ${found.join(", ") || "none"}); the train channel must hold the output of "esmkit prepare"`,
      { data },
    );
  }
  const modelChannel = path.join(paths.channels, "model");
  const model = options.model ?? (isDir(modelChannel) ? modelChannel : DEFAULT_BASE_MODEL);
  return { paths, options: { ...options, data, model }, ignored };
}

function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

export interface ContainerRunOptions {
  root?: string;
  onMessage?: (m: string) => void;
  onEvent?: (e: TrainEvent) => void;
  /** Abort (SIGTERM from SageMaker) to stop after a checkpoint. */
  signal?: AbortSignal;
}

export interface ContainerRunResult {
  /** 0 on success; non-zero on failure or interruption (the process exit code). */
  exitCode: number;
  /** The failure reason written to output/failure. */
  failure?: string;
  interrupted?: boolean;
  /** Entries written to model/. */
  files?: string[];
}

/** Write output/failure (SageMaker keeps the first 1024 characters). */
export async function writeFailure(paths: SageMakerPaths, reason: string): Promise<void> {
  await mkdir(path.dirname(paths.failure), { recursive: true });
  await writeFile(paths.failure, `${reason}\n`);
}

/**
 * Run the training job the container describes. Never throws: every failure becomes
 * output/failure and a non-zero exit code (2 for configuration and data problems, 1
 * for anything unexpected), as SageMaker expects.
 */
export async function runTrainingContainer(
  options: ContainerRunOptions = {},
): Promise<ContainerRunResult> {
  const paths = sageMakerPaths(options.root);
  const say = options.onMessage ?? (() => undefined);
  let work: string | undefined;
  try {
    const job = readContainerJob(paths.root);
    if (job.ignored.length)
      say(`ignoring SageMaker SDK hyperparameters: ${job.ignored.join(", ")}`);
    say(
      `container mode: data ${job.options.data}, model ${job.options.model}, output ${paths.model}`,
    );
    // fineTune writes <out>/{model,adapter,checkpoints,...}. <out> is a hidden folder
    // inside model/ (the job's volume, not the container's small /tmp), its checkpoints/
    // a link to the folder SageMaker syncs; the results then move up by rename.
    await mkdir(paths.checkpoints, { recursive: true });
    work = path.join(paths.model, WORK_DIR);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    await symlink(paths.checkpoints, path.join(work, "checkpoints"), "dir");
    const result = await fineTune({
      ...job.options,
      out: work,
      resume: "auto",
      signal: options.signal,
      onMessage: say,
      onEvent: options.onEvent,
    });
    if (result.interrupted) {
      say(`stopped at step ${result.step}; the checkpoint is in ${paths.checkpoints}`);
      return { exitCode: 143, interrupted: true };
    }
    // model/ holds the merged model at its root, so the serve container loads it as is.
    for (const f of await readdir(path.join(work, "model"))) {
      await rename(path.join(work, "model", f), path.join(paths.model, f));
    }
    const extras = ["adapter", "metrics.json", "history.jsonl"].filter((f) =>
      existsSync(path.join(work!, f)),
    );
    await mkdir(paths.outputData, { recursive: true });
    for (const f of extras) {
      if (f !== "adapter") await cp(path.join(work, f), path.join(paths.outputData, f));
      await rename(path.join(work, f), path.join(paths.model, f));
    }
    return {
      exitCode: 0,
      files: (await readdir(paths.model)).filter((f) => f !== WORK_DIR).sort(),
    };
  } catch (e) {
    const reason = isEsmKitError(e)
      ? `${e.name}: ${e.message}`
      : `Unexpected error: ${(e as Error).stack ?? String(e)}`;
    await writeFailure(paths, reason).catch((w) =>
      say(`could not write ${paths.failure}: ${(w as Error).message}`),
    );
    return { exitCode: isEsmKitError(e) ? 2 : 1, failure: reason };
  } finally {
    // Unlinks the checkpoints/ link only: the checkpoints themselves stay for a resume.
    if (work) await rm(work, { recursive: true, force: true });
  }
}
