/**
 * Hugging Face Hub downloads into the same cache huggingface_hub uses, so Python and
 * esmkit share files:
 *
 *   {cache}/models--{org}--{name}/blobs/{etag}                  file contents
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{file}     symlink -> ../../blobs/{etag}
 *   {cache}/models--{org}--{name}/refs/{revision}               commit hash
 *   {cache}/models--{org}--{name}/.no_exist/{commit}/{file}     "this file is absent"
 *
 * with `{cache}` = `cacheDir` option, else HF_HUB_CACHE, else `${HF_HOME}/hub`, else
 * `~/.cache/huggingface/hub`. URLs are `${HF_ENDPOINT}/{repo}/resolve/{revision}/{file}`.
 *
 * One difference from huggingface_hub: a file already in the snapshot the revision
 * points to is used without asking the server (transformers.js behaves the same), so a
 * second load makes no request; pass `forceDownload` to re-check.
 *
 * Downloads stream into `blobs/{etag}.incomplete`; an interrupted one resumes with a
 * Range request, and the result is checked against the expected size and, for LFS
 * files (64-hex ETag), the sha256. A token (option or HF_TOKEN) is sent as
 * `Authorization: Bearer` to the endpoint only, never to a CDN, and never logged.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, promises as fsp, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { StorageError } from "../errors";

export interface DownloadProgress {
  repoId: string;
  file: string;
  /** Bytes on disk so far (a resumed download starts above 0). */
  bytesDone: number;
  /** Expected size, when the server said. */
  bytesTotal: number | undefined;
  done: boolean;
}

export interface HubOptions {
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Cache root (the folder holding `models--*`); default HF_HUB_CACHE / HF_HOME/hub. */
  cacheDir?: string;
  /** Hub URL; default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Access token; default HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the `huggingface-cli login` file. */
  token?: string;
  /** Use the cache only; default HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Ask the server even when the file is cached. */
  forceDownload?: boolean;
  /** Progress callback; default: a line on stderr when it is a terminal; false: none. */
  onProgress?: ((p: DownloadProgress) => void) | false;
  /** Environment to read HF_* variables from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface HubSettings {
  endpoint: string;
  cacheDir: string;
  revision: string;
  token: string | undefined;
  offline: boolean;
  forceDownload: boolean;
  onProgress: ((p: DownloadProgress) => void) | undefined;
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const COMMIT = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export function hubSettings(options: HubOptions = {}): HubSettings {
  const env = options.env ?? process.env;
  const home =
    env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "huggingface");
  return {
    endpoint: (options.endpoint ?? env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
    cacheDir: options.cacheDir ?? env.HF_HUB_CACHE ?? path.join(home, "hub"),
    revision: options.revision ?? "main",
    token:
      options.token ??
      (env.HF_TOKEN ||
        env.HUGGING_FACE_HUB_TOKEN ||
        tokenFile(env.HF_TOKEN_PATH ?? path.join(home, "token"))),
    offline: options.offline ?? TRUE.has((env.HF_HUB_OFFLINE ?? "").trim().toLowerCase()),
    forceDownload: options.forceDownload ?? false,
    onProgress:
      options.onProgress === false
        ? undefined
        : (options.onProgress ?? (process.stderr.isTTY ? terminalProgress() : undefined)),
  };
}

/** The token `huggingface-cli login` saved, if any. */
function tokenFile(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A Hub id such as "facebook/esm2_t6_8M_UR50D" (or a single name). */
export function isRepoId(s: string): boolean {
  return /^[\w.-]+(\/[\w.-]+)?$/.test(s) && !s.includes("..") && !s.startsWith(".");
}

export function repoCacheDir(cacheDir: string, repoId: string): string {
  return path.join(cacheDir, `models--${repoId.split("/").join("--")}`);
}

function commitFor(s: HubSettings, repoDir: string): string | undefined {
  if (COMMIT.test(s.revision)) return s.revision;
  try {
    return readFileSync(path.join(repoDir, "refs", s.revision), "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The cached path of a file for the settings' revision, or undefined. */
export function cachedFile(s: HubSettings, repoId: string, file: string): string | undefined {
  const repoDir = repoCacheDir(s.cacheDir, repoId);
  const commit = commitFor(s, repoDir);
  if (!commit) return undefined;
  const p = path.join(repoDir, "snapshots", commit, file);
  return existsSync(p) ? p : undefined;
}

/** Whether an earlier request found the file absent at the cached revision. */
export function cachedAbsent(s: HubSettings, repoId: string, file: string): boolean {
  const repoDir = repoCacheDir(s.cacheDir, repoId);
  const commit = commitFor(s, repoDir);
  return commit !== undefined && existsSync(path.join(repoDir, ".no_exist", commit, file));
}

function fileUrl(s: HubSettings, repoId: string, file: string): string {
  const f = file.split("/").map(encodeURIComponent).join("/");
  return `${s.endpoint}/${repoId}/resolve/${encodeURIComponent(s.revision)}/${f}`;
}

function headersFor(
  s: HubSettings,
  url: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  const h: Record<string, string> = {
    "user-agent": "esmkit",
    "accept-encoding": "identity",
    ...extra,
  };
  if (s.token && new URL(url).origin === new URL(s.endpoint).origin)
    h.authorization = `Bearer ${s.token}`;
  return h;
}

interface FileMeta {
  commit: string;
  etag: string;
  size: number | undefined;
  downloadUrl: string;
}

function httpError(s: HubSettings, repoId: string, file: string, res: Response): StorageError {
  const code = res.headers.get("x-error-code") ?? "";
  const where = `${repoId}/${file} (revision "${s.revision}", ${s.endpoint})`;
  let msg: string;
  if (code === "RepoNotFound" || res.status === 401) {
    msg = `Repository ${repoId} not found on ${s.endpoint}, or it is private or gated (HTTP ${res.status}). Check the id${s.token ? "; the token sent was refused" : "; for a private or gated repo set HF_TOKEN"}.`;
  } else if (code === "RevisionNotFound") {
    msg = `Revision "${s.revision}" not found in ${repoId} (HTTP ${res.status}).`;
  } else if (res.status === 404) {
    msg = `File ${file} not found in ${repoId} at revision "${s.revision}" (HTTP 404 from ${s.endpoint}).`;
  } else if (res.status === 403) {
    msg = `Access to ${where} denied (HTTP 403): a gated repo needs its terms accepted and HF_TOKEN set.`;
  } else {
    msg = `Downloading ${where} failed: HTTP ${res.status} ${res.statusText}.`;
  }
  return new StorageError(msg, {
    repoId,
    file,
    revision: s.revision,
    status: res.status,
    errorCode: code,
  });
}

async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
    throw new StorageError(
      `Cannot reach ${new URL(url).origin} for ${what} (${cause}). Offline? Set HF_HUB_OFFLINE=1 to use the cache only.`,
      { url: new URL(url).origin },
      { cause: e },
    );
  }
}

/** HEAD the resolve URL without following a CDN redirect, as huggingface_hub does. */
async function fileMetadata(
  s: HubSettings,
  repoId: string,
  file: string,
): Promise<FileMeta | { status: 404; commit: string | undefined }> {
  let url = fileUrl(s, repoId, file);
  for (let hop = 0; hop < 5; hop++) {
    const res = await request(
      url,
      { method: "HEAD", redirect: "manual", headers: headersFor(s, url) },
      `${repoId}/${file}`,
    );
    const commit =
      res.headers.get("x-repo-commit") ?? (COMMIT.test(s.revision) ? s.revision : undefined);
    if (
      res.status === 404 &&
      (res.headers.get("x-error-code") ?? "EntryNotFound") === "EntryNotFound"
    ) {
      return { status: 404, commit: commit ?? undefined };
    }
    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, url).toString();
      if (new URL(next).origin === new URL(url).origin && !res.headers.get("x-linked-etag")) {
        url = next; // a renamed repo: ask again at the new place
        continue;
      }
      return meta(res, commit, next);
    }
    if (!res.ok) throw httpError(s, repoId, file, res);
    return meta(res, commit, url);
  }
  throw new StorageError(`Too many redirects for ${repoId}/${file}`, { repoId, file });

  function meta(res: Response, commit: string | undefined, downloadUrl: string): FileMeta {
    const etag = (res.headers.get("x-linked-etag") ?? res.headers.get("etag") ?? "")
      .replace(/^W\//, "")
      .replace(/"/g, "");
    const sizeHeader = res.headers.get("x-linked-size") ?? res.headers.get("content-length");
    if (!commit || !etag) {
      throw new StorageError(
        `${s.endpoint} did not send ${!commit ? "X-Repo-Commit" : "an ETag"} for ${repoId}/${file}: is HF_ENDPOINT a Hugging Face Hub (or mirror)?`,
        { repoId, file, endpoint: s.endpoint },
      );
    }
    return {
      commit,
      etag,
      size: sizeHeader === null ? undefined : Number(sizeHeader),
      downloadUrl,
    };
  }
}

async function linkSnapshot(
  repoDir: string,
  commit: string,
  file: string,
  blob: string,
): Promise<string> {
  const target = path.join(repoDir, "snapshots", commit, file);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  await fsp.rm(target, { force: true });
  try {
    await fsp.symlink(path.relative(path.dirname(target), blob), target);
  } catch {
    await fsp.copyFile(blob, target); // filesystems without symlinks
  }
  return target;
}

async function writeRef(s: HubSettings, repoDir: string, commit: string): Promise<void> {
  if (s.revision === commit) return;
  const ref = path.join(repoDir, "refs", s.revision);
  await fsp.mkdir(path.dirname(ref), { recursive: true });
  await fsp.writeFile(ref, commit);
}

async function hashFile(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

/**
 * The local path of `file` from a Hub repo, downloading it when needed. With
 * `optional`, a file the repo lacks gives null instead of an error.
 */
export async function hubDownload(
  repoId: string,
  file: string,
  options: HubOptions & { optional?: boolean } = {},
  settings: HubSettings = hubSettings(options),
): Promise<string | null> {
  const s = settings;
  const repoDir = repoCacheDir(s.cacheDir, repoId);
  const cached = cachedFile(s, repoId, file);
  if (cached && (!s.forceDownload || s.offline)) return cached;
  if (s.offline) {
    if (options.optional && cachedAbsent(s, repoId, file)) return null;
    throw new StorageError(
      `${repoId}/${file} (revision "${s.revision}") is not in the cache at ${repoDir} and offline mode is on (HF_HUB_OFFLINE). Download it once online, or unset HF_HUB_OFFLINE.`,
      { repoId, file, cacheDir: s.cacheDir },
    );
  }
  const m = await fileMetadata(s, repoId, file);
  if ("status" in m) {
    if (m.commit) {
      const marker = path.join(repoDir, ".no_exist", m.commit, file);
      await fsp.mkdir(path.dirname(marker), { recursive: true });
      await fsp.writeFile(marker, "");
      await writeRef(s, repoDir, m.commit);
    }
    if (options.optional) return null;
    throw new StorageError(
      `File ${file} not found in ${repoId} at revision "${s.revision}" (HTTP 404 from ${s.endpoint}).`,
      { repoId, file, revision: s.revision, status: 404 },
    );
  }
  const blob = path.join(repoDir, "blobs", m.etag);
  if (!existsSync(blob) || (m.size !== undefined && statSync(blob).size !== m.size)) {
    await fsp.mkdir(path.dirname(blob), { recursive: true });
    await downloadBlob(s, repoId, file, m, blob);
  }
  const out = await linkSnapshot(repoDir, m.commit, file, blob);
  await writeRef(s, repoDir, m.commit);
  return out;
}

async function downloadBlob(
  s: HubSettings,
  repoId: string,
  file: string,
  m: FileMeta,
  blob: string,
): Promise<void> {
  const partial = `${blob}.incomplete`;
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (m.size !== undefined && have > m.size) have = 0;
  const verifySha = SHA256.test(m.etag);
  const hash = createHash("sha256");
  const report = (bytesDone: number, done: boolean) =>
    s.onProgress?.({ repoId, file, bytesDone, bytesTotal: m.size, done });

  if (m.size === undefined || have < m.size) {
    const range: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
    const res = await request(
      m.downloadUrl,
      { headers: headersFor(s, m.downloadUrl, range) },
      `${repoId}/${file}`,
    );
    if (res.status === 416) {
      have = 0; // the server disagrees about the partial file: start over
      await fsp.rm(partial, { force: true });
      return downloadBlob(s, repoId, file, m, blob);
    }
    if (!res.ok) throw httpError(s, repoId, file, res);
    if (res.status !== 206) have = 0; // Range ignored: the body is the whole file
    const handle = await fsp.open(partial, have > 0 ? "a" : "w");
    try {
      if (have > 0 && verifySha) await hashFile(partial, hash);
      let done = have;
      report(done, false);
      try {
        for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
          await handle.write(chunk);
          if (verifySha) hash.update(chunk);
          done += chunk.length;
          report(done, false);
        }
      } catch (e) {
        const why = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
        throw new StorageError(
          `Download of ${repoId}/${file} was interrupted after ${done}${m.size ? ` of ${m.size}` : ""} bytes (${why}); run again to resume from ${partial}.`,
          { repoId, file, bytesDone: done, partial },
          { cause: e },
        );
      }
    } finally {
      await handle.close();
    }
  } else if (verifySha) {
    await hashFile(partial, hash); // complete but never verified: re-verify
  }

  const size = statSync(partial).size;
  if (m.size !== undefined && size !== m.size) {
    throw new StorageError(
      `Download of ${repoId}/${file} stopped at ${size} of ${m.size} bytes; run again to resume from ${partial}.`,
      { repoId, file, size, expected: m.size, partial },
    );
  }
  if (verifySha) {
    const digest = hash.digest("hex");
    if (digest !== m.etag) {
      await fsp.rm(partial, { force: true });
      throw new StorageError(
        `Download of ${repoId}/${file} is corrupt: sha256 ${digest} but the Hub says ${m.etag}; the partial file was removed, run again.`,
        { repoId, file, sha256: digest, expected: m.etag },
      );
    }
  }
  await fsp.rename(partial, blob);
  report(size, true);
}

/** Whether the repo has `file` (no download; cache first). */
export async function hubFileExists(
  repoId: string,
  file: string,
  s: HubSettings,
): Promise<boolean> {
  if (cachedFile(s, repoId, file)) return true;
  if (cachedAbsent(s, repoId, file) || s.offline) return false;
  const m = await fileMetadata(s, repoId, file);
  return !("status" in m);
}

/** A stderr progress line, redrawn in place. */
export function terminalProgress(
  stream: NodeJS.WriteStream = process.stderr,
): (p: DownloadProgress) => void {
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (!p.done && now - last < 100) return;
    last = now;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const total = p.bytesTotal
      ? `/${mb(p.bytesTotal)} MB (${Math.floor((100 * p.bytesDone) / p.bytesTotal)}%)`
      : " MB";
    stream.write(`\r${p.repoId}/${p.file}: ${mb(p.bytesDone)}${total}${p.done ? "\n" : ""}`);
  };
}
