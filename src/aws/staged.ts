/**
 * `fineTune` with s3:// locations: the prepared data and the base model are downloaded
 * into temporary directories, the output is written locally and uploaded when the run
 * ends (also when it is interrupted, so `resume` can continue from the uploaded
 * checkpoints, which it downloads first). Local paths pass through untouched.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { StorageError } from "../errors";
import { type FineTuneOptions, type FineTuneResult, fineTune } from "../train/run";
import type { AwsOptions } from "./clients";
import {
  dirPrefix,
  downloadPrefix,
  isS3Uri,
  listObjects,
  type S3TransferEvent,
  uploadDir,
} from "./s3";

export interface StagedFineTuneOptions extends FineTuneOptions {
  aws?: AwsOptions;
  /** Progress of the downloads and the final upload. */
  onTransfer?: (e: S3TransferEvent) => void;
}

/** fineTune where `data`, `model` and `out` may also be s3:// prefixes. */
export async function fineTuneStaged(options: StagedFineTuneOptions): Promise<FineTuneResult> {
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
    let out = options.out;
    const remoteOut = isS3Uri(out) ? out : undefined;
    if (remoteOut) {
      out = await temp("out");
      const checkpoints = `${dirPrefix(remoteOut)}checkpoints/`;
      if (
        options.resume &&
        (await listObjects(checkpoints, { aws: options.aws, limit: 1 })).length
      ) {
        say(`downloading checkpoints from ${checkpoints}`);
        await downloadPrefix(checkpoints, path.join(out, "checkpoints"), transfer);
      }
    }
    const result = await fineTune({ ...options, data, model, out });
    if (remoteOut) {
      say(`uploading ${out} to ${remoteOut}`);
      try {
        await uploadDir(out, remoteOut, transfer);
      } catch (e) {
        temps.splice(temps.indexOf(out), 1); // keep the results on disk
        throw new StorageError(
          `The upload to ${remoteOut} failed (${(e as Error).message}); the output is kept in ${out}`,
          { location: remoteOut, localDir: out },
          { cause: e },
        );
      }
      return { ...result, out: remoteOut };
    }
    return result;
  } finally {
    for (const t of temps) await rm(t, { recursive: true, force: true });
  }
}
