/**
 * One downloader per blob across threads and processes: a lock file next to the blob.
 *
 * The lock is created atomically (its content is written under a unique name, then
 * hard-linked to the lock name, which fails when the lock exists) and names its owner:
 * host, pid, thread and a random token. The owner touches it every few seconds. Others
 * wait, reporting the owner's progress, and take the lock over when its owner is gone:
 * a pid that no longer runs on this host, or no touch for `staleMs` (a dead thread, or
 * another host). A takeover renames the lock aside and checks it renamed the same file
 * (inode) it judged stale, so two waiters cannot both take over a fresh lock.
 *
 * The lock only avoids duplicate downloads: correctness does not rest on it, because each
 * downloader writes its own temporary file and renames it into place once verified.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { hostname } from "node:os";
import { threadId } from "node:worker_threads";
import { StorageError } from "../errors";

export interface LockOwner {
  host: string;
  pid: number;
  thread: number;
  /** Unique per lock taken; also names the owner's temporary file. */
  token: string;
  /** Epoch ms when the lock was taken. */
  since: number;
}

export interface HeldLock {
  readonly owner: LockOwner;
  release(): Promise<void>;
}

export interface LockWait {
  /** A lock older than this without a touch is taken over. */
  staleMs: number;
  /** Give up after this long without progress from the owner. */
  timeoutMs: number;
  /** Polled while waiting: true when someone else finished the work (no lock is taken then). */
  done(): Promise<boolean>;
  /** The owner's bytes so far, for progress and the timeout. */
  progress(owner: LockOwner | undefined): Promise<number>;
  onWait?(owner: LockOwner | undefined, bytes: number): void;
  /** What is being waited for, for messages. */
  what: string;
}

const HEARTBEAT_MS = 2_000;

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** Whether a pid runs on this host (EPERM: it runs, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return code(e) === "EPERM";
  }
}

export function newOwner(): LockOwner {
  return {
    host: hostname(),
    pid: process.pid,
    thread: threadId,
    token: `${process.pid}-${threadId}-${randomBytes(4).toString("hex")}`,
    since: Date.now(),
  };
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const o = JSON.parse(await fsp.readFile(file, "utf8")) as LockOwner;
    return typeof o?.token === "string" && Number.isInteger(o.pid) ? o : undefined;
  } catch {
    return undefined; // gone, or not ours to read
  }
}

/** Create the lock with its content in one step; false when it exists. */
async function tryCreate(lockPath: string, owner: LockOwner): Promise<boolean> {
  const text = JSON.stringify(owner);
  const tmp = `${lockPath}.${owner.token}.tmp`;
  await fsp.writeFile(tmp, text);
  try {
    await fsp.link(tmp, lockPath);
    return true;
  } catch (e) {
    if (code(e) === "EEXIST") return false;
    if (!["EPERM", "ENOTSUP", "ENOSYS", "EOPNOTSUPP"].includes(code(e) ?? "")) throw e;
    // No hard links here: exclusive create (the content follows a moment later).
    try {
      await fsp.writeFile(lockPath, text, { flag: "wx" });
      return true;
    } catch (e2) {
      if (code(e2) === "EEXIST") return false;
      throw e2;
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/** Why the lock is stale, or undefined while its owner lives. */
function staleReason(
  owner: LockOwner | undefined,
  mtimeMs: number,
  staleMs: number,
): string | undefined {
  if (owner && owner.host === hostname() && owner.pid !== process.pid && !pidAlive(owner.pid))
    return `process ${owner.pid} is gone`;
  const idle = Date.now() - mtimeMs;
  if (idle > staleMs) return `no sign of life for ${Math.round(idle / 1000)} s`;
  return undefined;
}

/** Move the stale lock (inode `ino`) away, putting back a fresher one moved by mistake. */
async function takeOver(lockPath: string, ino: number, me: LockOwner): Promise<void> {
  const aside = `${lockPath}.stale-${me.token}`;
  try {
    await fsp.rename(lockPath, aside);
  } catch (e) {
    if (code(e) === "ENOENT") return; // another waiter took it over first
    throw e;
  }
  const moved = await fsp.stat(aside);
  // A different inode: a fresh lock was created since we looked; put it back.
  if (moved.ino !== ino) await fsp.link(aside, lockPath).catch(() => undefined);
  await fsp.rm(aside, { force: true });
}

function describe(owner: LockOwner | undefined): string {
  if (!owner) return "another downloader";
  const where = owner.host === hostname() ? "" : ` on ${owner.host}`;
  return owner.pid === process.pid
    ? `thread ${owner.thread} of this process`
    : `process ${owner.pid}${where}`;
}

/**
 * Take the lock at `lockPath`, waiting for its owner as needed; null when `done()`
 * turned true while waiting.
 */
export async function acquireLock(lockPath: string, wait: LockWait): Promise<HeldLock | null> {
  const me = newOwner();
  let lastBytes = -1;
  let lastChange = Date.now();
  let pollMs = 25;
  for (;;) {
    let st: Awaited<ReturnType<typeof fsp.stat>>;
    try {
      st = await fsp.stat(lockPath);
    } catch (e) {
      if (code(e) !== "ENOENT") throw e;
      if (await tryCreate(lockPath, me)) return hold(lockPath, me);
      continue; // someone else was quicker: look at their lock
    }
    const owner = await readOwner(lockPath);
    if (await wait.done()) return null;
    if (staleReason(owner, st.mtimeMs, wait.staleMs) !== undefined) {
      await takeOver(lockPath, st.ino, me);
      continue;
    }
    const bytes = await wait.progress(owner);
    if (bytes !== lastBytes) {
      lastBytes = bytes;
      lastChange = Date.now();
    }
    wait.onWait?.(owner, bytes);
    if (Date.now() - lastChange > wait.timeoutMs) {
      throw new StorageError(
        `Waited ${Math.round((Date.now() - lastChange) / 1000)} s for ${describe(owner)} to download ${wait.what}, with no progress. If nothing is downloading it, delete ${lockPath} and run again.`,
        { lock: lockPath, owner },
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
    pollMs = Math.min(pollMs * 2, 500);
  }
}

function hold(lockPath: string, me: LockOwner): HeldLock {
  const beat = setInterval(() => {
    const now = new Date();
    fsp.utimes(lockPath, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  return {
    owner: me,
    async release() {
      clearInterval(beat);
      // Only our own lock: after a takeover it may be someone else's.
      if ((await readOwner(lockPath))?.token === me.token) await fsp.rm(lockPath, { force: true });
    },
  };
}

export { describe as describeOwner };
