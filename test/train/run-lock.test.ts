import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { acquireRunLock, LOCK_FILE, RunLockedError } from "../../src/train/run-lock";
import { processStartTime } from "../../src/util/temporaries";

const tmp = () => mkdtempSync(path.join(tmpdir(), "esmkit-lock-"));
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

function fakeLock(dir: string, owner: Record<string, unknown>): void {
  writeFileSync(
    path.join(dir, LOCK_FILE),
    JSON.stringify({
      token: "t0",
      since: "earlier",
      command: "esmkit train",
      host: hostname(),
      ...owner,
    }),
  );
}

test("the lock is exclusive, names its holder, and is released (also on process.exit)", () => {
  const dir = tmp();
  const lock = acquireRunLock(dir, "training output");
  const file = path.join(dir, LOCK_FILE);
  assert.equal(JSON.parse(readFileSync(file, "utf8")).pid, process.pid);
  assert.throws(
    () => acquireRunLock(dir, "training output"),
    (e: unknown) =>
      e instanceof RunLockedError && /training output .* is in use by this process/.test(e.message),
  );
  lock.release();
  assert.ok(!existsSync(file));
  lock.release(); // idempotent
  acquireRunLock(dir).release();

  // A process that exits without releasing (process.exit, an uncaught error) leaves no lock.
  const script = `require(${JSON.stringify(require.resolve("../../src/train/run-lock"))}).acquireRunLock(${JSON.stringify(dir)}); process.exit(3);`;
  const r = spawnSync(process.execPath, ["-e", script]);
  assert.equal(r.status, 3, String(r.stderr));
  assert.ok(!existsSync(file));
});

test("a lock left by a dead process, or by a pid now reused, is taken over; a live one is not", () => {
  const dir = tmp();
  fakeLock(dir, { pid: deadPid() });
  acquireRunLock(dir).release();

  // The holder's pid runs, but it is another process (a different start time): stale.
  fakeLock(dir, { pid: process.pid, start: "1" });
  if (processStartTime() !== undefined) acquireRunLock(dir).release();

  // A live holder: refused, naming its pid and command.
  const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"]);
  try {
    fakeLock(dir, { pid: sleeper.pid, start: processStartTime(sleeper.pid!) });
    assert.throws(
      () => acquireRunLock(dir),
      new RegExp(`is in use by process ${sleeper.pid} \\(since earlier: esmkit train\\)`),
    );
    // A holder on another host cannot be checked: it counts as live.
    fakeLock(dir, { pid: deadPid(), host: "elsewhere" });
    assert.throws(() => acquireRunLock(dir), /on host elsewhere/);
  } finally {
    sleeper.kill();
  }
});

test("racers for one stale lock: exactly one wins, the others name the winner", async () => {
  const dir = tmp();
  fakeLock(dir, { pid: deadPid() });
  const go = path.join(dir, "go");
  const child = path.join(__dirname, "lock-child.js");
  const racers = Array.from({ length: 4 }, () =>
    spawn(process.execPath, [child, dir, "3000", go], { stdio: ["ignore", "pipe", "inherit"] }),
  );
  const outputs = racers.map(
    (c) =>
      new Promise<string>((resolve) => {
        let out = "";
        c.stdout!.on("data", (d) => {
          out += d;
        });
        c.on("close", () => resolve(out.trim()));
      }),
  );
  await new Promise((r) => setTimeout(r, 1500)); // every racer loaded and polling for go
  writeFileSync(go, "");
  const lines = await Promise.all(outputs);
  const winners = lines.filter((l) => l.startsWith("acquired"));
  assert.equal(winners.length, 1, lines.join("\n"));
  const winner = winners[0]!.split(" ")[1];
  for (const l of lines.filter((x) => !x.startsWith("acquired")))
    assert.equal(l, `refused ${winner}`);
  assert.ok(!existsSync(path.join(dir, LOCK_FILE)), "the winner released it");
});
