/**
 * S3 transfers: `s3://bucket/key` URIs, streamed reads, uploads (multipart through
 * lib-storage's `Upload` for large files) and whole "directories" (every object under a
 * prefix) in both directions, each with byte progress.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { GetObjectCommandOutput } from "@aws-sdk/client-s3";
import { ConfigError, StorageError } from "../errors";
import type { TransferProgress } from "../io/storage";
import { ownedTemporary, removeDeadTemporariesOf, trackTemporary } from "../util/temporaries";
import { type AwsOptions, libStorage, s3Client, s3Sdk } from "./clients";
import { awsCall, toAwsError } from "./errors";

export interface S3Location {
  bucket: string;
  /** Object key or prefix, without a leading slash ("" for the whole bucket). */
  key: string;
}

/** What a transfer reports while it runs. */
export interface S3TransferEvent extends TransferProgress {
  direction: "upload" | "download";
  /** The object or prefix being moved. */
  uri: string;
}

export interface S3TransferOptions {
  aws?: AwsOptions;
  onProgress?: (p: S3TransferEvent) => void;
}

export interface UploadOptions extends S3TransferOptions {
  /** Multipart part size in bytes (>= 5 MiB); files larger than one part go multipart. */
  partSize?: number;
  /** Parts in flight per file (default 4). */
  queueSize?: number;
  contentType?: string;
}

export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const MIN_PART_SIZE = 5 * 1024 * 1024;

export function isS3Uri(location: string): boolean {
  return /^s3:\/\//i.test(location);
}

/** Split `s3://bucket/key`; a ConfigError names the bad URI and the expected shape. */
export function parseS3Uri(uri: string): S3Location {
  const m = /^s3:\/\/([^/?#]+)\/?(.*)$/i.exec(uri);
  // Bucket names: 3-63 characters of lowercase letters, digits, dots and hyphens.
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(m[1]!)) {
    throw new ConfigError(
      `Invalid S3 URI ${JSON.stringify(uri)}; expected s3://bucket/key with a valid bucket name`,
      { uri },
    );
  }
  return { bucket: m[1]!, key: m[2]! };
}

export function s3Uri(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.key}`;
}

/** The key prefix that stands for a "directory": "" or ending with "/". */
export function dirPrefix(key: string): string {
  return key === "" || key.endsWith("/") ? key : `${key}/`;
}

export interface S3Object {
  key: string;
  size: number;
}

/** Every object under `uri` taken as a directory (or at most `limit` of them). */
export async function listObjects(
  uri: string,
  options: { aws?: AwsOptions; limit?: number } = {},
): Promise<S3Object[]> {
  const { bucket, key } = parseS3Uri(uri);
  const prefix = dirPrefix(key);
  const client = s3Client(options.aws);
  const { ListObjectsV2Command } = s3Sdk();
  const out: S3Object[] = [];
  let token: string | undefined;
  try {
    do {
      const page = await awsCall("S3 ListObjectsV2", { bucket, prefix }, () =>
        client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            ContinuationToken: token,
            MaxKeys: options.limit ? Math.min(1000, options.limit) : undefined,
          }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key !== undefined && !o.Key.endsWith("/"))
          out.push({ key: o.Key, size: o.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && (options.limit === undefined || out.length < options.limit));
  } finally {
    client.destroy();
  }
  return options.limit === undefined ? out : out.slice(0, options.limit);
}

/** A streamed GetObject; the client lives until the stream ends. */
export async function openS3Read(
  uri: string,
  options: S3TransferOptions = {},
): Promise<{ stream: Readable; size?: number }> {
  const { bucket, key } = parseS3Uri(uri);
  if (key === "" || key.endsWith("/")) {
    throw new StorageError(`${uri} names a prefix, not an object`, { location: uri });
  }
  const client = s3Client(options.aws);
  const { GetObjectCommand } = s3Sdk();
  let res: GetObjectCommandOutput;
  try {
    res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    client.destroy();
    throw toAwsError("S3 GetObject", e, { bucket, key }, { notFound: `Cannot read ${uri}` });
  }
  const body = res.Body as Readable;
  const size = res.ContentLength;
  let bytes = 0;
  // Count in a pass-through: a "data" listener on the body would start it flowing
  // before the caller reads, losing the first chunks.
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      options.onProgress?.({ direction: "download", uri, bytes, total: size });
      done(null, chunk);
    },
  });
  pipeline(body, counted)
    .catch(() => undefined) // the error reaches the reader through `counted`
    .finally(() => client.destroy());
  return { stream: counted, size };
}

/** Upload one file; multipart when it is larger than one part. */
export async function uploadFile(
  file: string,
  uri: string,
  options: UploadOptions = {},
): Promise<{ uri: string; bytes: number; parts: number }> {
  const { bucket, key } = parseS3Uri(uri);
  if (key === "" || key.endsWith("/")) {
    throw new ConfigError(`Upload target ${uri} must name an object, not a prefix`, { uri });
  }
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new ConfigError(`partSize ${partSize} is too small; S3 parts are at least 5 MiB`, {
      partSize,
    });
  }
  const size = (await stat(file)).size;
  const client = s3Client(options.aws);
  const { Upload } = libStorage();
  try {
    const upload = new Upload({
      client,
      params: {
        Bucket: bucket,
        Key: key,
        Body: createReadStream(file, { highWaterMark: 1 << 20 }),
        ContentLength: size,
        ...(options.contentType ? { ContentType: options.contentType } : {}),
      },
      partSize,
      queueSize: options.queueSize ?? 4,
      leavePartsOnError: false,
    });
    upload.on("httpUploadProgress", (p) => {
      options.onProgress?.({ direction: "upload", uri, bytes: p.loaded ?? 0, total: size });
    });
    await awsCall("S3 upload", { bucket, key }, () => upload.done());
    options.onProgress?.({ direction: "upload", uri, bytes: size, total: size });
    return { uri, bytes: size, parts: Math.max(1, Math.ceil(size / partSize)) };
  } finally {
    client.destroy();
  }
}

/** Files under `dir`, relative with "/" separators, sorted. */
export async function listFiles(dir: string): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  const walk = async (sub: string) => {
    const entries = await readdir(path.join(dir, sub), { withFileTypes: true });
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      const st = await stat(path.join(dir, rel));
      if (st.isDirectory()) await walk(rel);
      else if (st.isFile()) out.push({ rel, size: st.size });
    }
  };
  await walk("");
  return out;
}

/** Upload every file under `dir` to `uri` + relative path; returns the keys written. */
export async function uploadDir(
  dir: string,
  uri: string,
  options: UploadOptions = {},
): Promise<string[]> {
  const { bucket, key } = parseS3Uri(uri);
  const prefix = dirPrefix(key);
  const files = await listFiles(dir);
  const total = files.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const keys: string[] = [];
  for (const f of files) {
    const target = `${prefix}${f.rel}`;
    await uploadFile(path.join(dir, f.rel), s3Uri({ bucket, key: target }), {
      ...options,
      onProgress: (p) =>
        options.onProgress?.({ direction: "upload", uri, bytes: done + p.bytes, total }),
    });
    done += f.size;
    keys.push(target);
  }
  return keys;
}

/** Download one object to `file` (written under a temporary name, renamed when complete). */
export async function downloadFile(
  uri: string,
  file: string,
  options: S3TransferOptions = {},
): Promise<number> {
  const { stream, size } = await openS3Read(uri, options);
  await mkdir(path.dirname(file), { recursive: true });
  removeDeadTemporariesOf(file);
  const partial = ownedTemporary(file, "partial");
  const untrack = trackTemporary(partial);
  try {
    await pipeline(stream, createWriteStream(partial));
    await rename(partial, file);
  } catch (e) {
    await rm(partial, { force: true });
    throw toAwsError("S3 GetObject", e, { uri });
  } finally {
    untrack();
  }
  return size ?? (await stat(file)).size;
}

/**
 * Download every object under `uri` (a "directory") into `dir`, keeping relative paths.
 * Fails when the prefix is empty, and on keys that would land outside `dir`.
 */
export async function downloadPrefix(
  uri: string,
  dir: string,
  options: S3TransferOptions = {},
): Promise<string[]> {
  const { bucket, key } = parseS3Uri(uri);
  const prefix = dirPrefix(key);
  const objects = await listObjects(uri, { aws: options.aws });
  if (objects.length === 0) {
    throw new StorageError(`No objects under ${s3Uri({ bucket, key: prefix })}`, {
      location: uri,
    });
  }
  const root = path.resolve(dir);
  const total = objects.reduce((a, o) => a + o.size, 0);
  let done = 0;
  const files: string[] = [];
  for (const o of objects) {
    const rel = o.key.slice(prefix.length);
    const target = path.resolve(root, rel);
    if (!target.startsWith(root + path.sep)) {
      throw new StorageError(`Refusing to download ${o.key}: it would be written outside ${dir}`, {
        key: o.key,
      });
    }
    await downloadFile(s3Uri({ bucket, key: o.key }), target, {
      aws: options.aws,
      onProgress: (p) =>
        options.onProgress?.({ direction: "download", uri, bytes: done + p.bytes, total }),
    });
    done += o.size;
    files.push(rel);
  }
  return files;
}

/** Delete keys of one bucket (batches of 1000). */
export async function deleteKeys(
  bucket: string,
  keys: readonly string[],
  options: { aws?: AwsOptions } = {},
): Promise<void> {
  if (keys.length === 0) return;
  const client = s3Client(options.aws);
  const { DeleteObjectsCommand } = s3Sdk();
  try {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await awsCall("S3 DeleteObjects", { bucket }, () =>
        client.send(
          new DeleteObjectsCommand({
            Bucket: bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      if (res.Errors?.length) {
        const first = res.Errors[0]!;
        throw new StorageError(
          `Could not delete ${res.Errors.length} object(s) in s3://${bucket}, first ${first.Key}: ${first.Code} ${first.Message ?? ""}`,
          { bucket },
        );
      }
    }
  } finally {
    client.destroy();
  }
}

/** Size of one object; a StorageError when it does not exist. */
export async function objectSize(uri: string, options: { aws?: AwsOptions } = {}): Promise<number> {
  const { bucket, key } = parseS3Uri(uri);
  const client = s3Client(options.aws);
  const { HeadObjectCommand } = s3Sdk();
  try {
    const res = await awsCall(
      "S3 HeadObject",
      { bucket, key },
      () => client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })),
      { notFound: `${uri} does not exist` },
    );
    return res.ContentLength ?? 0;
  } finally {
    client.destroy();
  }
}
