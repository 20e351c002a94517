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
 * Cache integrity (hub-blob.ts, hub-lock.ts): a blob is trusted only once its size matches
 * the Hub's and, for LFS files (64-hex ETag), its sha256 matches its name; a cached blob
 * that fails is downloaded again with a warning (offline: an error). Each file is
 * downloaded once across threads and processes (a lock next to the blob), into a
 * temporary file of its own that is renamed into place once verified; an interrupted
 * download resumes with a Range request. Snapshot links and refs are replaced atomically.
 * A token (option or HF_TOKEN) is sent as `Authorization: Bearer` to the endpoint only,
 * never to a CDN, and never logged.
 */
import { existsSync, promises as fsp, readFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { threadId } from "node:worker_threads";
import { StorageError } from "../errors";
import { checkBlob, ensureBlob, type FileMeta } from "./hub-blob";

export interface DownloadProgress {
  repoId: string;
  file: string;
  /** Bytes on disk so far (a resumed download starts above 0). */
  bytesDone: number;
  /** Expected size, when the server said. */
  bytesTotal: number | undefined;
  done: boolean;
  /** Set while another thread or process downloads the file and this one waits for it. */
  waitingFor?: string;
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
  /** Called when a cached file is found corrupt and downloaded again (default console.warn). */
  onWarning?: (message: string) => void;
  /** Another downloader's lock untouched this long is taken over (default 60 s). */
  staleLockMs?: number;
  /** Waiting for another downloader fails after this long without progress (default 5 min). */
  lockTimeoutMs?: number;
}

export interface HubSettings {
  endpoint: string;
  cacheDir: string;
  revision: string;
  token: string | undefined;
  offline: boolean;
  forceDownload: boolean;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  onWarning: (message: string) => void;
  staleLockMs: number;
  lockTimeoutMs: number;
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const COMMIT = /^[0-9a-f]{40}$/;

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
    onWarning: options.onWarning ?? ((m: string) => console.warn(m)),
    staleLockMs: options.staleLockMs ?? 60_000,
    lockTimeoutMs: options.lockTimeoutMs ?? 300_000,
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

/** A name next to `file` unique to this thread and call, for atomic replacement. */
function tempName(file: string): string {
  return `${file}.${process.pid}-${threadId}-${Math.random().toString(36).slice(2, 8)}.tmp`;
}

/** Point `snapshots/{commit}/{file}` at the blob, replacing any old entry atomically. */
async function linkSnapshot(
  repoDir: string,
  commit: string,
  file: string,
  blob: string,
): Promise<string> {
  const target = path.join(repoDir, "snapshots", commit, file);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  try {
    await fsp.symlink(path.relative(path.dirname(target), blob), tmp);
  } catch {
    await fsp.copyFile(blob, tmp); // filesystems without symlinks
  }
  await fsp.rename(tmp, target);
  return target;
}

async function writeRef(s: HubSettings, repoDir: string, commit: string): Promise<void> {
  if (s.revision === commit) return;
  const ref = path.join(repoDir, "refs", s.revision);
  await fsp.mkdir(path.dirname(ref), { recursive: true });
  const tmp = tempName(ref);
  await fsp.writeFile(tmp, commit);
  await fsp.rename(tmp, ref); // readers never see an empty ref
}

/** The blob a snapshot entry links to, when it is a link into `blobs/`. */
async function blobBehind(repoDir: string, snapshotFile: string): Promise<string | undefined> {
  try {
    const real = await fsp.realpath(snapshotFile);
    const blobs = await fsp.realpath(path.join(repoDir, "blobs"));
    return path.dirname(real) === blobs ? real : undefined;
  } catch {
    return undefined;
  }
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
  const what = `${repoId}/${file}`;
  const repoDir = repoCacheDir(s.cacheDir, repoId);
  const cached = cachedFile(s, repoId, file);
  if (cached && (!s.forceDownload || s.offline)) {
    const blob = await blobBehind(repoDir, cached);
    const check = blob ? await checkBlob(blob) : { ok: true as const };
    if (check.ok) return cached;
    if (s.offline) {
      throw new StorageError(
        `The cached ${what} (${blob}) is corrupt: ${check.why}, and offline mode is on (HF_HUB_OFFLINE). Unset HF_HUB_OFFLINE to download it again.`,
        { repoId, file, blob },
      );
    }
    // Online below: the blob is checked against the Hub's metadata and replaced.
  }
  if (options.optional && !s.forceDownload && cachedAbsent(s, repoId, file)) return null;
  if (s.offline) {
    if (options.optional && cachedAbsent(s, repoId, file)) return null;
    throw new StorageError(
      `${what} (revision "${s.revision}") is not in the cache at ${repoDir} and offline mode is on (HF_HUB_OFFLINE). Download it once online, or unset HF_HUB_OFFLINE.`,
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
  await ensureBlob(
    {
      request: (url, extra) =>
        request(url, { headers: headersFor(s, url, extra) }, `${repoId}/${file}`),
      httpError: (res) => httpError(s, repoId, file, res),
      progress: (bytesDone, done, waitingFor) =>
        s.onProgress?.({
          repoId,
          file,
          bytesDone,
          bytesTotal: m.size,
          done,
          ...(waitingFor ? { waitingFor } : {}),
        }),
      warn: s.onWarning,
      staleLockMs: s.staleLockMs,
      lockTimeoutMs: s.lockTimeoutMs,
    },
    what,
    m,
    blob,
  );
  const out = await linkSnapshot(repoDir, m.commit, file, blob);
  await writeRef(s, repoDir, m.commit);
  return out;
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
    const wait = p.waitingFor ? ` (downloaded by ${p.waitingFor})` : "";
    stream.write(`\r${p.repoId}/${p.file}: ${mb(p.bytesDone)}${total}${wait}${p.done ? "\n" : ""}`);
  };
}
