/**
 * `fineTune` with s3:// locations: the prepared data and the base model are downloaded
 * into temporary directories, the output is written locally and uploaded when the run
 * ends (also when it is interrupted, so `resume` can continue from the uploaded
 * checkpoints, run.json and history.jsonl, which it downloads first). Local paths pass
 * through untouched.
 *
 * The local copy of an s3:// output has a fixed place per URI (under the system's
 * temporary directory) and is locked like a local output, so two runs on this machine
 * never write one s3:// output at once. (Runs on other machines are not excluded.)
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { StorageError } from "../errors";
import { type FineTuneOptions, type FineTuneResult, fineTune } from "../train/run";
import {
  CHECKPOINTS_DIR,
  checkRunFolder,
  HISTORY_FILE,
  RUN_FILE,
  RUN_OUTPUTS,
  RunMismatchError,
} from "../train/run-folder";
import { acquireRunLock, type RunLock } from "../train/run-lock";
import type { AwsOptions } from "./clients";
import {
  deleteKeys,
  dirPrefix,
  downloadFile,
  downloadPrefix,
  isS3Uri,
  listObjects,
  parseS3Uri,
  type S3TransferEvent,
  s3Uri,
  uploadDir,
} from "./s3";

export interface StagedFineTuneOptions extends FineTuneOptions {
  aws?: AwsOptions;
  /** Progress of the downloads and the final upload. */
  onTransfer?: (e: S3TransferEvent) => void;
}

/** fineTune where `data`, `model` and `out` may also be s3:// prefixes. */
export async function fineTuneStaged(options: StagedFineTuneOptions): Promise<FineTuneResult> {
  const remote = isS3Uri(options.out);
  const created = !remote && !existsSync(options.out);
  // A resume into a folder that does not exist: say so before the lock creates it.
  if (created) checkRunFolder(options.out, options);
  // Lock first, so a second run on the same output fails before downloading anything.
  const lock = remote
    ? acquireRunLock(stagingDir(options.out), `the local copy of ${options.out}`)
    : acquireRunLock(options.out, "training output");
  try {
    if (!remote) checkRunFolder(options.out, options);
    return await withInputs(options, (data, model) =>
      remote
        ? fineTuneToS3({ ...options, data, model }, lock)
        : fineTune({ ...options, data, model, lock }),
    );
  } finally {
    lock.release();
    // The s3:// copy's folder, or a new --out the run wrote nothing to (it failed early);
    // not empty (or in use again already): kept.
    if (remote || created) await rmdir(lock.dir).catch(() => undefined);
  }
}

/** The fixed local place of an s3:// output's copy. */
function stagingDir(remoteOut: string): string {
  const id = createHash("sha256").update(dirPrefix(remoteOut)).digest("hex").slice(0, 16);
  return path.join(tmpdir(), `esmkit-out-${id}`);
}

/** Run `body` with s3:// data and model downloaded to temporary directories. */
async function withInputs<T>(
  options: StagedFineTuneOptions,
  body: (data: string, model: string) => Promise<T>,
): Promise<T> {
  const say = options.onMessage ?? (() => undefined);
  const temps: string[] = [];
  const temp = async (label: string) => {
    const dir = await mkdtemp(path.join(tmpdir(), `esmkit-${label}-`));
    temps.push(dir);
    return dir;
  };
  const transfer = { aws: options.aws, onProgress: options.onTransfer };
  try {
    let data = options.data;
    if (isS3Uri(data)) {
      data = await temp("data");
      say(`downloading ${options.data}`);
      await downloadPrefix(options.data, data, transfer);
    }
    let model = options.model;
    if (isS3Uri(model)) {
      model = await temp("model");
      say(`downloading ${options.model}`);
      await downloadPrefix(options.model, model, transfer);
    }
    return await body(data, model);
  } finally {
    for (const t of temps) await rm(t, { recursive: true, force: true });
  }
}

/** The run's files under an s3:// output (keys whose first part is a run output). */
async function runKeys(remoteOut: string, aws: AwsOptions | undefined): Promise<string[]> {
  const prefix = dirPrefix(parseS3Uri(remoteOut).key);
  const names = new Set<string>([CHECKPOINTS_DIR, ...RUN_OUTPUTS]);
  return (await listObjects(remoteOut, { aws }))
    .map((o) => o.key)
    .filter((k) => names.has(k.slice(prefix.length).split("/")[0]!));
}

/** Train into the locked local copy of an s3:// output, then upload it. */
async function fineTuneToS3(
  options: StagedFineTuneOptions,
  lock: RunLock,
): Promise<FineTuneResult> {
  const say = options.onMessage ?? (() => undefined);
  const transfer = { aws: options.aws, onProgress: options.onTransfer };
  const remoteOut = options.out;
  const { bucket } = parseS3Uri(remoteOut);
  const out = path.join(lock.dir, "out");
  let keep = false;
  try {
    await rm(out, { recursive: true, force: true }); // a dead run's copy: ours now
    await mkdir(out, { recursive: true });
    const existing = await runKeys(remoteOut, options.aws);
    if (!options.resume && existing.length > 0) {
      if (!options.overwrite) {
        throw new RunMismatchError(
          `${remoteOut} already holds a training run (${existing.length} objects, e.g. ${existing.slice(0, 3).join(", ")}). ` +
            "Continue it with --resume, replace it with --overwrite, or choose another --out.",
          { location: remoteOut },
        );
      }
      say(`replacing the run in ${remoteOut} (overwrite): deleting ${existing.length} objects`);
      await deleteKeys(bucket, existing, { aws: options.aws });
    }
    if (options.resume) {
      const base = dirPrefix(remoteOut);
      const prefix = dirPrefix(parseS3Uri(remoteOut).key);
      if (existing.some((k) => k.startsWith(`${prefix}${CHECKPOINTS_DIR}/`))) {
        say(`downloading checkpoints from ${base}${CHECKPOINTS_DIR}/`);
        await downloadPrefix(
          `${base}${CHECKPOINTS_DIR}/`,
          path.join(out, CHECKPOINTS_DIR),
          transfer,
        );
      }
      for (const f of [RUN_FILE, HISTORY_FILE]) {
        const key = `${prefix}${f}`;
        if (existing.includes(key))
          await downloadFile(s3Uri({ bucket, key }), path.join(out, f), transfer);
      }
    }
    const result = await fineTune({ ...options, out, lock });
    say(`uploading ${out} to ${remoteOut}`);
    try {
      await uploadDir(out, remoteOut, transfer);
    } catch (e) {
      const kept = await mkdtemp(path.join(tmpdir(), "esmkit-out-kept-"));
      await rename(out, path.join(kept, "out"));
      keep = true;
      throw new StorageError(
        `The upload to ${remoteOut} failed (${(e as Error).message}); the output is kept in ${path.join(kept, "out")}`,
        { location: remoteOut, localDir: path.join(kept, "out") },
        { cause: e },
      );
    }
    return { ...result, out: remoteOut };
  } finally {
    if (!keep) await rm(out, { recursive: true, force: true });
  }
}
