/**
 * An exclusive lock on a run folder, so two trainings never write one `--out`.
 *
 * The lock is the file `<dir>/.esmkit.lock` holding its owner (pid, start time, host) and
 * a random token. It is created whole or not at all: the content is written to a
 * temporary, then hard-linked to the lock name, which fails if the name exists (the
 * O_EXCL guarantee, without a window in which the lock exists but is empty).
 *
 * A lock whose owner is gone (kill -9, a crash) is stale and taken over. Two processes
 * may find the same stale lock at once; each must first win `<lock>.takeover` (also
 * created by link), re-read the lock under it and remove it only if it is still the same
 * stale one. So a lock just taken by another process is never removed. A takeover file
 * left by a process killed in those few system calls is removed once its owner is gone.
 *
 * Released on return, on `process.exit`, and by the next run when the process died.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../errors";
import {
  currentProcess,
  isOwnerAlive,
  onExit,
  ownedTemporary,
  type ProcessIdentity,
  removeDeadTemporariesOf,
} from "../util/temporaries";

export const LOCK_FILE = ".esmkit.lock";

/** What a lock file holds. */
export interface LockOwner extends ProcessIdentity {
  token: string;
  /** ISO time the lock was taken. */
  since: string;
  /** The command line, for the message another process shows. */
  command: string;
}

/** Thrown when another live process holds the lock. */
export class RunLockedError extends ConfigError {}

export interface RunLock {
  readonly dir: string;
  readonly file: string;
  readonly owner: LockOwner;
  /** Remove the lock (only if it is still ours). Idempotent. */
  release(): void;
}

function readOwner(file: string): LockOwner | undefined {
  try {
    const o = JSON.parse(fs.readFileSync(file, "utf8")) as LockOwner;
    return typeof o.pid === "number" && typeof o.token === "string" ? o : undefined;
  } catch {
    return undefined; // gone, or not ours to understand
  }
}

/** Create `file` with `content` only if it does not exist (link is atomic and exclusive). */
function createExclusive(file: string, content: string): boolean {
  const tmp = ownedTemporary(file, "tmp", randomBytes(4).toString("hex"));
  fs.writeFileSync(tmp, content, { flag: "wx" });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function describeOwner(o: LockOwner): string {
  const where = o.host === currentProcess().host ? "" : ` on host ${o.host}`;
  return `process ${o.pid}${where} (since ${o.since}: ${o.command})`;
}

/** Remove `file` if it still holds the owner with `token` (a best-effort compare-and-delete). */
function removeIfOwned(file: string, token: string): void {
  if (readOwner(file)?.token === token) fs.rmSync(file, { force: true });
}

/**
 * Take the lock of `dir` (created if missing) or fail at once with a RunLockedError
 * naming the holder. `what` names the folder's use in the message ("training output").
 */
export function acquireRunLock(dir: string, what = "run folder"): RunLock {
  const root = path.resolve(dir);
  fs.mkdirSync(root, { recursive: true });
  const file = path.join(root, LOCK_FILE);
  const takeover = `${file}.takeover`;
  removeDeadTemporariesOf(file);
  removeDeadTemporariesOf(takeover);
  const owner: LockOwner = {
    ...currentProcess(),
    token: randomBytes(12).toString("hex"),
    since: new Date().toISOString(),
    command: process.argv.slice(1).join(" ").slice(0, 300),
  };
  const content = `${JSON.stringify(owner)}\n`;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (createExclusive(file, content)) return held(root, file, owner);
    const holder = readOwner(file);
    if (holder && isOwnerAlive(holder)) {
      const self = holder.pid === process.pid && holder.host === owner.host;
      throw new RunLockedError(
        `${what} ${root} is in use by ${self ? "this process (another run in it is not finished)" : describeOwner(holder)}; ` +
          `wait for it to finish, stop it, or choose another output folder. If no such process runs, remove ${file}.`,
        { dir: root, holder },
      );
    }
    // Stale (owner gone) or unreadable (written by something else, or half-removed).
    if (createExclusive(takeover, content)) {
      try {
        const again = readOwner(file);
        const same = holder ? again?.token === holder.token : again === undefined;
        if (same) fs.rmSync(file, { force: true });
      } finally {
        removeIfOwned(takeover, owner.token);
      }
    } else {
      const other = readOwner(takeover);
      if (other && !isOwnerAlive(other)) removeIfOwned(takeover, other.token);
    }
    // Someone else may be mid-takeover: give them a moment, then look again.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 + attempt * 5);
  }
  throw new RunLockedError(`Could not take the lock ${file}: it keeps changing hands`, {
    dir: root,
  });
}

function held(dir: string, file: string, owner: LockOwner): RunLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    unhook();
    removeIfOwned(file, owner.token);
  };
  const unhook = onExit(release);
  return { dir, file, owner, release };
}
