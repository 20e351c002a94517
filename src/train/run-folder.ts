/**
 * The run folder (`--out`): which run it holds and whether this one may write there.
 *
 *   run.json        the run's identity (run-identity.ts), written when a run starts
 *   checkpoints/    each checkpoint carries the identity too
 *   history.jsonl, model/, adapter/, metrics.json
 *
 * A new run refuses a folder that holds a run unless told to overwrite it; a resume
 * continues only a run with the same identity, and never starts silently from nothing.
 * The caller holds the folder's lock (run-lock.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../errors";
import { removeDeadTemporariesOf, writeFileAtomic } from "../util/temporaries";
import {
  type CheckpointData,
  type CheckpointInfo,
  latestCheckpoint,
  listCheckpoints,
  readCheckpoint,
  removeStaleTemporaries,
} from "./checkpoint-io";
import { truncateHistory } from "./history";
import {
  describeDifferences,
  diffIdentity,
  type RunIdentity,
  SAFE_TO_CHANGE_ON_RESUME,
} from "./run-identity";

export const RUN_FILE = "run.json";
export const HISTORY_FILE = "history.jsonl";
export const CHECKPOINTS_DIR = "checkpoints";
/** What a run writes in its folder besides checkpoints (fineTune's outputs included). */
export const RUN_OUTPUTS = [RUN_FILE, HISTORY_FILE, "model", "adapter", "metrics.json"] as const;

const RUN_FORMAT = "esmkit-run";

interface RunFile {
  format: string;
  version: number;
  identity: RunIdentity;
  startedAt: string;
}

/** Thrown when a folder holds another run, or a checkpoint belongs to another run. */
export class RunMismatchError extends ConfigError {}

export interface OpenRunOptions {
  identity: RunIdentity;
  /**
   * true: continue this folder's run (refused when there is none or it is another run);
   * "auto": continue it when there is one, else start (SageMaker restarts); false: start.
   */
  resume?: boolean | "auto";
  /** Replace a run found in the folder instead of refusing (with "auto": only another run). */
  overwrite?: boolean;
  onMessage?: (m: string) => void;
}

export interface RunStart {
  /** The checkpoint to continue from. */
  checkpoint?: { info: CheckpointInfo; data: CheckpointData };
  /** Continuing a run (from its checkpoint, or from step 0 when it saved none). */
  resumed: boolean;
}

/** The identity a checkpoint recorded, if any. */
export function checkpointIdentity(data: CheckpointData): RunIdentity | undefined {
  const id = (data.state as { identity?: unknown } | null)?.identity;
  return id && typeof id === "object" ? (id as RunIdentity) : undefined;
}

function readRunFile(dir: string): RunFile | undefined {
  try {
    const f = JSON.parse(fs.readFileSync(path.join(dir, RUN_FILE), "utf8")) as RunFile;
    return f.format === RUN_FORMAT && f.identity && typeof f.identity === "object" ? f : undefined;
  } catch {
    return undefined;
  }
}

/** What of a run the folder holds, for messages ("checkpoints/checkpoint-6", "model/"). */
export function runContents(dir: string): string[] {
  const found: string[] = [];
  const last = listCheckpoints(path.join(dir, CHECKPOINTS_DIR)).at(-1);
  if (last) found.push(`${CHECKPOINTS_DIR}/${path.basename(last.path)}`);
  for (const name of RUN_OUTPUTS) {
    const st = fs.statSync(path.join(dir, name), { throwIfNoEntry: false });
    if (st) found.push(st.isDirectory() ? `${name}/` : name);
  }
  return found;
}

/** Remove a run's files from `dir` (checkpoints/ is emptied, not removed: it may be a link). */
function clearRun(dir: string): void {
  const ckpt = path.join(dir, CHECKPOINTS_DIR);
  for (const name of fs.existsSync(ckpt) ? fs.readdirSync(ckpt) : []) {
    if (/^checkpoint-\d+/.test(name))
      fs.rmSync(path.join(ckpt, name), { recursive: true, force: true });
  }
  for (const name of RUN_OUTPUTS) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
}

/** Remove leftovers of writers killed mid-write (their owner process is gone). */
function removeLeftovers(dir: string): void {
  removeStaleTemporaries(path.join(dir, CHECKPOINTS_DIR));
  for (const name of RUN_OUTPUTS) removeDeadTemporariesOf(path.join(dir, name));
}

const HOW_TO_START = "start a new run with --overwrite (replaces it) or in another --out";

/**
 * The checks that need no identity, so a run fails before loading anything: resume and
 * overwrite together, a resume with nothing to continue, a new run into a folder that
 * holds one. `openRun` repeats them and checks the identity.
 */
export function checkRunFolder(
  dir: string,
  options: Pick<OpenRunOptions, "resume" | "overwrite">,
): void {
  const resume = options.resume ?? false;
  if (resume === true && options.overwrite) {
    throw new ConfigError(
      "--resume continues the run in the output folder and --overwrite replaces it: give one of them",
      { dir },
    );
  }
  const hasRun = () =>
    latestCheckpoint(path.join(dir, CHECKPOINTS_DIR)) !== undefined ||
    readRunFile(dir) !== undefined;
  if (resume === true && !hasRun()) {
    const contents = runContents(dir);
    throw new RunMismatchError(
      `Nothing to resume in ${dir}: it has no checkpoint${contents.length ? ` (it holds ${contents.join(", ")})` : fs.existsSync(dir) ? "" : " (the folder does not exist)"}. ` +
        `To start a new run there, run without --resume${contents.length ? " and with --overwrite" : ""}.`,
      { dir },
    );
  }
  if (!resume && !options.overwrite) {
    const contents = runContents(dir);
    if (contents.length > 0) {
      throw new RunMismatchError(
        `${dir} already holds a training run (${contents.join(", ")}). ` +
          "Continue it with --resume, replace it with --overwrite, or choose another --out.",
        { dir, contents },
      );
    }
  }
}

/**
 * Decide how a run starts in `dir`: fresh (after checking the folder is free, or
 * clearing it with `overwrite`) or from its checkpoint (after checking the identity).
 * Cuts history.jsonl back to the checkpoint and writes run.json.
 */
export function openRun(dir: string, options: OpenRunOptions): RunStart {
  const say = options.onMessage ?? (() => undefined);
  const resume = options.resume ?? false;
  fs.mkdirSync(dir, { recursive: true });
  removeLeftovers(dir);
  checkRunFolder(dir, options);
  const identity = options.identity;
  const ckptRoot = path.join(dir, CHECKPOINTS_DIR);

  const mismatch = (where: string, saved: RunIdentity | undefined): string | undefined => {
    if (!saved) {
      return `${where} records no run settings (made by an older esmkit or another tool), so it cannot be checked against this run`;
    }
    const diffs = diffIdentity(saved, identity);
    if (diffs.length === 0) return undefined;
    return `${where} belongs to a run with other settings:\n${describeDifferences(diffs, "the folder's run")}`;
  };
  const refuse = (problem: string): never => {
    throw new RunMismatchError(
      `Cannot resume in ${dir}: ${problem}\nResume with the settings the run was started with, or ${HOW_TO_START}. ` +
        `May change on resume: ${SAFE_TO_CHANGE_ON_RESUME.join(", ")}.`,
      { dir },
    );
  };

  if (resume) {
    const latest = latestCheckpoint(ckptRoot);
    if (latest) {
      const data = readCheckpoint(latest.path);
      const problem = mismatch(`checkpoint ${latest.path}`, checkpointIdentity(data));
      if (!problem) {
        const dropped = truncateHistory(path.join(dir, HISTORY_FILE), latest.step);
        if (dropped > 0)
          say(`history.jsonl: dropped ${dropped} event(s) after step ${latest.step}`);
        writeRunFile(dir, identity);
        return { checkpoint: { info: latest, data }, resumed: true };
      }
      if (!(resume === "auto" && options.overwrite)) refuse(problem);
      say(`replacing another run in ${dir} (overwrite): ${problem.split("\n")[0]}`);
      clearRun(dir);
    } else {
      const runFile = readRunFile(dir);
      if (runFile) {
        const problem = mismatch(`the run in ${RUN_FILE}`, runFile.identity);
        if (!problem) {
          say(`no checkpoint was saved before the run stopped: starting it again from step 0`);
          truncateHistory(path.join(dir, HISTORY_FILE), 0);
          return { resumed: true };
        }
        if (!(resume === "auto" && options.overwrite)) refuse(problem);
        clearRun(dir);
      }
    }
  }

  const contents = runContents(dir);
  if (contents.length > 0) {
    // Only reached with overwrite (checkRunFolder refused the rest) or "auto" without a run.
    if (!options.overwrite) {
      throw new RunMismatchError(
        `${dir} already holds files of a training run (${contents.join(", ")}) but no run to continue; replace them with --overwrite or choose another --out.`,
        { dir, contents },
      );
    }
    say(`replacing the run in ${dir} (overwrite): ${contents.join(", ")}`);
    clearRun(dir);
  }
  writeRunFile(dir, identity);
  return { resumed: false };
}

function writeRunFile(dir: string, identity: RunIdentity): void {
  const file: RunFile = {
    format: RUN_FORMAT,
    version: 1,
    identity,
    startedAt: readRunFile(dir)?.startedAt ?? new Date().toISOString(),
  };
  writeFileAtomic(path.join(dir, RUN_FILE), `${JSON.stringify(file, null, 2)}\n`);
}
