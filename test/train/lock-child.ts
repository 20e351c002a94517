/**
 * Take the run lock of argv[2] and hold it argv[3] ms; prints `acquired <pid>` or
 * `refused <holder pid>` (for the lock race test). Waits for argv[4] to exist first, so
 * every racer starts at once, and pauses 30 ms after each read of the lock file: the
 * scheduling delay that lets another racer act between reading a stale lock and
 * removing it, made certain instead of rare.
 */
import fs from "node:fs";
import { acquireRunLock, LOCK_FILE, RunLockedError } from "../../src/train/run-lock";

const [dir, holdMs, startFile] = process.argv.slice(2) as [string, string, string];
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const read = fs.readFileSync;
(fs as { readFileSync: unknown }).readFileSync = (...args: unknown[]) => {
  const out = (read as (...a: unknown[]) => unknown)(...args);
  if (String(args[0]).endsWith(LOCK_FILE)) sleep(30);
  return out;
};
while (!fs.existsSync(startFile)) sleep(2);
try {
  const lock = acquireRunLock(dir);
  process.stdout.write(`acquired ${process.pid}\n`);
  setTimeout(() => lock.release(), Number(holdMs));
} catch (e) {
  if (!(e instanceof RunLockedError)) throw e;
  process.stdout.write(`refused ${(e.context.holder as { pid: number }).pid}\n`);
}
