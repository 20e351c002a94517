/**
 * `esmkit ...` (bin/esmkit.js's main) with a hook on history.jsonl, so a test can stop a
 * training run at an exact step instead of guessing with timers. After the line of step
 * N has been written (and only then), per environment variable:
 *
 *   ESMKIT_TEST_KILL_AFTER_STEP=N      SIGKILL itself: a kill -9 after step N
 *   ESMKIT_TEST_SIGNAL_AFTER_STEP=N:SIG  send itself SIG (SIGTERM, SIGINT)
 *   ESMKIT_TEST_PAUSE_AFTER_STEP=N     create $ESMKIT_TEST_PAUSED, then block until
 *                                      $ESMKIT_TEST_GO exists (the run holds its lock)
 *
 * The run itself is the real CLI; nothing else is changed.
 */
import fs from "node:fs";
import { main } from "../../src/cli/main";

const env = process.env;
const at = (v: string | undefined) => (v ? Number(v.split(":")[0]) : undefined);
const killAt = at(env.ESMKIT_TEST_KILL_AFTER_STEP);
const signalAt = at(env.ESMKIT_TEST_SIGNAL_AFTER_STEP);
const signal = env.ESMKIT_TEST_SIGNAL_AFTER_STEP?.split(":")[1] as NodeJS.Signals | undefined;
const pauseAt = at(env.ESMKIT_TEST_PAUSE_AFTER_STEP);
const fired = new Set<number>();

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function afterStep(step: number): void {
  if (fired.has(step)) return;
  fired.add(step);
  if (step === killAt) process.kill(process.pid, "SIGKILL");
  if (step === signalAt && signal) process.kill(process.pid, signal);
  if (step === pauseAt) {
    fs.writeFileSync(env.ESMKIT_TEST_PAUSED!, String(process.pid));
    while (!fs.existsSync(env.ESMKIT_TEST_GO!)) sleepSync(20);
  }
}

const original = fs.writeSync;
(fs as { writeSync: unknown }).writeSync = function writeSync(
  this: unknown,
  fd: number,
  data: unknown,
  ...rest: unknown[]
) {
  const written = (original as (...a: unknown[]) => number).call(this, fd, data, ...rest);
  const m = typeof data === "string" ? /^\{"type":"step","step":(\d+),/.exec(data) : null;
  if (m) afterStep(Number(m[1]));
  return written;
};

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
