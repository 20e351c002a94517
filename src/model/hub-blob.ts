/**
 * Blobs of the Hub cache: verified before they are trusted, written once per file.
 *
 * A blob is trusted when its size is the one the Hub announced (when known) and, when its
 * name (the ETag) is a sha256 as for LFS files, its contents hash to that name. A blob that
 * fails is downloaded again, with a warning. A download holds the blob's lock
 * (`blobs/{etag}.lock`, hub-lock.ts), writes `blobs/{etag}.{pid}-{thread}-{random}.incomplete`
 * and renames it to `blobs/{etag}` once verified, so nothing half-written is ever under
 * the blob's name. An interrupted download leaves `blobs/{etag}.incomplete` (or, if the
 * process died, its own temporary file) for the next one to resume with a Range request;
 * only sha256-named blobs are resumed, as only those can be verified afterwards.
 */
import { createHash } from "node:crypto";
import { createReadStream, promises as fsp } from "node:fs";
import * as path from "node:path";
import { StorageError } from "../errors";
import { acquireLock, describeOwner, type LockOwner, pidAlive } from "./hub-lock";

export const SHA256 = /^[0-9a-f]{64}$/;

/** What the Hub says about a file. */
export interface FileMeta {
  commit: string;
  etag: string;
  size: number | undefined;
  downloadUrl: string;
}

/** How a blob download talks to the network and the user (from HubSettings). */
export interface BlobIo {
  request(url: string, headers: Record<string, string>): Promise<Response>;
  httpError(res: Response): StorageError;
  progress(bytesDone: number, done: boolean, waitingFor?: string): void;
  warn(message: string): void;
  staleLockMs: number;
  lockTimeoutMs: number;
}

type Check = { ok: true } | { ok: false; absent: boolean; why: string };

/** Blobs hashed in this thread, by path and identity, so a second load does not rehash. */
const verified = new Set<string>();

async function hashFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Check a blob against the Hub's size (when `size` is given) and, for a sha256 name,
 * its contents.
 */
export async function checkBlob(blob: string, size?: number): Promise<Check> {
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  try {
    st = await fsp.stat(blob);
  } catch {
    return { ok: false, absent: true, why: "absent" };
  }
  if (size !== undefined && st.size !== size)
    return { ok: false, absent: false, why: `${st.size} bytes where the Hub says ${size}` };
  const etag = path.basename(blob);
  if (!SHA256.test(etag)) return { ok: true };
  if (verified.has(identity(blob, st))) return { ok: true };
  const digest = await hashFile(blob);
  if (digest !== etag) return { ok: false, absent: false, why: `its sha256 is ${digest}` };
  verified.add(identity(blob, st));
  return { ok: true };
}

function identity(file: string, st: { ino: number; size: number; mtimeMs: number }): string {
  return `${file}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return undefined;
  }
}

async function inodeOf(file: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(file)).ino;
  } catch {
    return undefined;
  }
}

/** The temporary file of a downloader. */
function tempOf(blob: string, token: string): string {
  return `${blob}.${token}.incomplete`;
}

const OUR_TEMP = /^(\d+)-\d+-[0-9a-f]+$/;

/**
 * Under the lock: the partial download to resume, moved to `mine`. Candidates are
 * `{etag}.incomplete` and the temporaries of esmkit downloaders whose process is gone
 * (huggingface_hub's own `{etag}.{uuid}.incomplete` files are left alone). The largest
 * wins; the other orphans are removed.
 */
async function adoptPartial(blob: string, mine: string): Promise<void> {
  const dir = path.dirname(blob);
  const etag = path.basename(blob);
  const candidates: { file: string; size: number }[] = [];
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(`${etag}.`) || !name.endsWith(".incomplete")) continue;
    const middle = name.slice(etag.length + 1, -".incomplete".length);
    const ours = OUR_TEMP.exec(middle);
    if (middle !== "" && !(ours && !pidAlive(Number(ours[1])))) continue;
    const size = await sizeOf(path.join(dir, name));
    if (size !== undefined) candidates.push({ file: path.join(dir, name), size });
  }
  candidates.sort((a, b) => b.size - a.size);
  for (const [i, c] of candidates.entries()) {
    if (i === 0) await fsp.rename(c.file, mine).catch(() => undefined);
    else await fsp.rm(c.file, { force: true });
  }
}

/**
 * Make `blob` hold the verified file, downloading it when needed (once across threads
 * and processes). A blob there that fails the checks is replaced, with a warning.
 */
export async function ensureBlob(
  io: BlobIo,
  what: string,
  m: FileMeta,
  blob: string,
): Promise<void> {
  const first = await checkBlob(blob, m.size);
  if (first.ok) return;
  await fsp.mkdir(path.dirname(blob), { recursive: true });
  if (!first.absent)
    io.warn(`The cached ${what} (${blob}) is corrupt: ${first.why}. Downloading it again.`);
  const startInode = await inodeOf(blob);
  const lock = await acquireLock(`${blob}.lock`, {
    staleMs: io.staleLockMs,
    timeoutMs: io.lockTimeoutMs,
    what,
    // Someone renamed a new verified blob into place while we waited.
    done: async () => {
      const ino = await inodeOf(blob);
      return ino !== undefined && ino !== startInode && (await checkBlob(blob, m.size)).ok;
    },
    progress: async (owner: LockOwner | undefined) =>
      owner ? ((await sizeOf(tempOf(blob, owner.token))) ?? 0) : 0,
    onWait: (owner, bytes) => io.progress(bytes, false, describeOwner(owner)),
  });
  if (!lock) {
    io.progress(m.size ?? (await sizeOf(blob)) ?? 0, true);
    return;
  }
  try {
    if ((await checkBlob(blob, m.size)).ok) return; // finished by the previous owner
    const mine = tempOf(blob, lock.owner.token);
    await adoptPartial(blob, mine);
    await download(io, what, m, blob, mine);
  } finally {
    await lock.release();
  }
}

/** Download into `mine` (resuming what it holds), verify, rename to `blob`. */
async function download(
  io: BlobIo,
  what: string,
  m: FileMeta,
  blob: string,
  mine: string,
): Promise<void> {
  const partial = `${blob}.incomplete`;
  const verifySha = SHA256.test(m.etag);
  // Only a sha256 can prove a resumed file right; others start over (they are small).
  let have = verifySha ? ((await sizeOf(mine)) ?? 0) : 0;
  if (m.size !== undefined && have > m.size) have = 0;
  if (m.size === undefined || have < m.size) {
    let res = await io.request(m.downloadUrl, have > 0 ? { range: `bytes=${have}-` } : {});
    if (res.status === 416) {
      have = 0; // the server disagrees about the partial file: start over
      res = await io.request(m.downloadUrl, {});
    }
    if (!res.ok) throw io.httpError(res);
    if (res.status !== 206) have = 0; // Range ignored: the body is the whole file
    const handle = await fsp.open(mine, have > 0 ? "a" : "w");
    let done = have;
    try {
      io.progress(done, false);
      for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        done += chunk.length;
        io.progress(done, false);
      }
    } catch (e) {
      await handle.close();
      await fsp.rename(mine, partial).catch(() => undefined);
      const why = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new StorageError(
        `Download of ${what} was interrupted after ${done}${m.size ? ` of ${m.size}` : ""} bytes (${why}); run again to resume from ${partial}.`,
        { file: what, bytesDone: done, partial },
        { cause: e },
      );
    }
    await handle.close();
  }
  const size = (await sizeOf(mine)) ?? 0;
  if (m.size !== undefined && size !== m.size) {
    await fsp.rename(mine, partial);
    throw new StorageError(
      `Download of ${what} stopped at ${size} of ${m.size} bytes; run again to resume from ${partial}.`,
      { file: what, size, expected: m.size, partial },
    );
  }
  if (verifySha) {
    const digest = await hashFile(mine);
    if (digest !== m.etag) {
      await fsp.rm(mine, { force: true });
      throw new StorageError(
        `Download of ${what} is corrupt: sha256 ${digest} but the Hub says ${m.etag}; the partial file was removed, run again.`,
        { file: what, sha256: digest, expected: m.etag },
      );
    }
  }
  try {
    await fsp.rename(mine, blob);
    if (verifySha) verified.add(identity(blob, await fsp.stat(blob)));
  } catch (e) {
    if (code(e) === "ENOENT")
      throw new StorageError(
        `Download of ${what} was taken over by another downloader (this one stalled); run again.`,
        { file: what },
        { cause: e },
      );
    throw e;
  }
  io.progress(size, true);
}
