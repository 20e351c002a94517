/**
 * The "s3" store of the storage layer (src/io/storage.ts). src/register-defaults.ts
 * registers it, loading this module the first time a location is an s3:// one.
 *
 * - Reads are streamed GetObject calls with byte progress.
 * - An output "directory" is a local staging directory; `commit()` uploads every file
 *   under the prefix (multipart for large ones) and, with `overwrite`, then deletes the
 *   objects of the previous output that the new one does not replace. `abort()` only
 *   removes the staging directory: nothing reached S3, so nothing is half-written there.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { StorageError } from "../errors";
import type { Store } from "../io/storage";
import type { AwsOptions } from "./clients";
import {
  deleteKeys,
  listObjects,
  openS3Read,
  parseS3Uri,
  type S3TransferEvent,
  uploadDir,
} from "./s3";

let transferListener: ((e: S3TransferEvent) => void) | undefined;

/**
 * Observe the uploads and downloads the s3 store makes on behalf of callers that have
 * no progress hook of their own (the upload at `commit()`), e.g. to print progress.
 */
export function onS3Transfer(listener: ((e: S3TransferEvent) => void) | undefined): void {
  transferListener = listener;
}

async function exists(location: string, aws?: AwsOptions): Promise<boolean> {
  return (await listObjects(location, { aws, limit: 1 })).length > 0;
}

function alreadyExists(location: string): StorageError {
  return new StorageError(
    `Output ${location} already exists (objects under that prefix); choose another prefix or pass overwrite`,
    { location },
  );
}

export function s3Store(aws?: AwsOptions): Store {
  return {
    async openRead(location, options) {
      const { stream, size } = await openS3Read(location, {
        aws,
        onProgress: (p) => {
          options.onProgress?.({ bytes: p.bytes, total: p.total });
          transferListener?.(p);
        },
      });
      return { stream, size, displayName: location };
    },

    async openOutputDir(location, { overwrite }) {
      const { bucket } = parseS3Uri(location);
      if (!overwrite && (await exists(location, aws))) throw alreadyExists(location);
      const staging = await mkdtemp(path.join(tmpdir(), "esmkit-s3-out-"));
      return {
        localDir: staging,
        displayName: location,
        async commit() {
          try {
            const previous = await listObjects(location, { aws });
            if (!overwrite && previous.length > 0) throw alreadyExists(location);
            const written = new Set(
              await uploadDir(staging, location, { aws, onProgress: transferListener }),
            );
            const stale = previous.map((o) => o.key).filter((k) => !written.has(k));
            await deleteKeys(bucket, stale, { aws });
          } finally {
            await rm(staging, { recursive: true, force: true });
          }
        },
        async abort() {
          await rm(staging, { recursive: true, force: true });
        },
      };
    },
  };
}
