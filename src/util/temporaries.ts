/**
 * Temporaries named after the process that owns them, so leftovers can be told apart
 * from work in progress.
 *
 * A temporary for `target` is `<target>.<kind>-<pid>` (or `<target>.<kind>-<pid>-<suffix>`
 * for several at once). A process killed mid-write (kill -9, power loss) leaves it
 * behind; the next process that writes `target` removes the ones whose owner is no
 * longer running (`removeDeadTemporaries`) and keeps those of live processes. A pid
 * reused by an unrelated process makes a leftover look alive: it is then kept, never
 * wrongly removed.
 *
 * `trackTemporary` also removes a temporary when this process exits early: on
 * `process.exit` and, when nothing else handles them, on SIGINT / SIGTERM (after which
 * the signal is raised again, so the process still ends the way the signal asks).
 */
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { isMainThread } from "node:worker_threads";

export type TemporaryKind = "tmp" | "partial";

/** `<target>.<kind>-<pid>[-<suffix>]`: a temporary owned by this process. */
export function ownedTemporary(
  target: string,
  kind: TemporaryKind = "tmp",
  suffix?: string,
): string {
  return `${target}.${kind}-${process.pid}${suffix ? `-${suffix}` : ""}`;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The pid in a temporary's name made for `base` (a file or directory name), if it is one. */
export function temporaryOwner(name: string, base: string): number | undefined {
  const m = new RegExp(`^${escapeRegExp(base)}\\.(?:tmp|partial)-(\\d+)(?:-[A-Za-z0-9_-]+)?$`).exec(
    name,
  );
  return m ? Number(m[1]) : undefined;
}

/** Whether a process with this pid runs on this machine (EPERM: it runs as another user). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * When a process started, in clock ticks since boot (Linux `/proc/<pid>/stat`, field 22),
 * or undefined where that cannot be read. With the pid it names one process for good:
 * a pid reused later comes with another start time.
 */
export function processStartTime(pid: number = process.pid): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (the command) is in parentheses and may hold spaces: count after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Who owns something: enough to tell later whether that process still runs. */
export interface ProcessIdentity {
  pid: number;
  /** processStartTime at creation, when known. */
  start?: string;
  host: string;
}

export function currentProcess(): ProcessIdentity {
  return { pid: process.pid, start: processStartTime(), host: hostname() };
}

/**
 * Whether the process described still runs. Another host's process cannot be checked
 * and counts as running (the safe answer for a lock on a shared file system).
 */
export function isOwnerAlive(owner: ProcessIdentity): boolean {
  if (owner.host !== hostname()) return true;
  if (!isProcessAlive(owner.pid)) return false;
  const start = processStartTime(owner.pid);
  return owner.start === undefined || start === undefined || start === owner.start;
}

/**
 * Remove the temporaries of `base` in `dir` (see `temporaryOwner`) whose owner process is
 * gone. Returns the removed paths.
 */
export function removeDeadTemporaries(dir: string, base: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = temporaryOwner(name, base);
    if (pid === undefined || pid === process.pid || isProcessAlive(pid)) continue;
    const full = path.join(dir, name);
    rmSync(full, { recursive: true, force: true });
    removed.push(full);
  }
  return removed;
}

/** Remove dead temporaries of `target` (next to it) before writing it. */
export function removeDeadTemporariesOf(target: string): string[] {
  return removeDeadTemporaries(path.dirname(path.resolve(target)), path.basename(target));
}

const tracked = new Set<string>();
const exitHooks = new Set<() => void>();
let exitHooked = false;
const SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM"];

function removeTracked(): void {
  for (const p of tracked) rmSync(p, { recursive: true, force: true });
  tracked.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // Someone else handles the signal (training stops gracefully): they own the exit path.
  if (process.listenerCount(signal) > 1) return;
  removeTracked();
  for (const s of SIGNALS) process.off(s, onSignal);
  process.kill(process.pid, signal); // no listener left: the default action ends the process
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on("exit", () => {
    for (const hook of exitHooks) {
      try {
        hook();
      } catch {
        // best effort while exiting
      }
    }
    removeTracked();
  });
}

/** Run `hook` (synchronous) if the process exits while it is registered; returns the unregister. */
export function onExit(hook: () => void): () => void {
  hookExit();
  exitHooks.add(hook);
  return () => {
    exitHooks.delete(hook);
  };
}

/**
 * Remove `p` if the process exits (or gets SIGINT / SIGTERM with no other handler)
 * before the returned function is called, which the writer calls once `p` was renamed
 * into place or removed.
 */
export function trackTemporary(p: string): () => void {
  hookExit();
  tracked.add(p);
  if (isMainThread && tracked.size === 1) for (const s of SIGNALS) process.on(s, onSignal);
  return () => {
    if (!tracked.delete(p)) return;
    if (isMainThread && tracked.size === 0) for (const s of SIGNALS) process.off(s, onSignal);
  };
}

/** Write a small file atomically (temporary, fsync, rename). */
export function writeFileAtomic(file: string, text: string): void {
  removeDeadTemporariesOf(file);
  const tmp = ownedTemporary(file);
  const untrack = trackTemporary(tmp);
  try {
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrack();
  }
}
