import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { ConfigError, WeightsError } from "../../src/errors";
import {
  type CheckpointData,
  checkpointPath,
  latestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  readCheckpoint,
  removeStaleTemporaries,
  saveCheckpoint,
  writeCheckpoint,
} from "../../src/train/checkpoint-io";

const root = fs.mkdtempSync(path.join(tmpdir(), "esmkit-ckpt-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function fresh(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d);
  return d;
}

function sample(step: number): CheckpointData {
  return {
    tensors: {
      "esm.encoder.layer.0.attention.self.query.weight": {
        shape: [3, 2],
        data: Float32Array.from([1.5, -2, Math.PI, 1e-30, -0, step]),
      },
      scalar: { shape: [], data: Float32Array.from([Number.NaN]) },
      empty: { shape: [0, 4], data: new Float32Array(0) },
    },
    state: { step, bestMetric: 0.91, rng: 12345 },
  };
}

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

test("a checkpoint round-trips tensors bit-for-bit and the state as JSON", () => {
  const dir = path.join(fresh("roundtrip"), "checkpoint-7");
  const data = sample(7);
  writeCheckpoint(dir, data);
  const back = readCheckpoint(dir);
  assert.deepEqual(back.state, data.state);
  assert.deepEqual(Object.keys(back.tensors), Object.keys(data.tensors));
  for (const [name, t] of Object.entries(data.tensors)) {
    assert.deepEqual(back.tensors[name]!.shape, t.shape);
    assert.ok(bytes(back.tensors[name]!.data).equals(bytes(t.data)), name);
  }
  // Overwriting the same step swaps in the new content and leaves nothing behind.
  writeCheckpoint(dir, sample(8));
  assert.equal(
    readCheckpoint(dir).tensors["esm.encoder.layer.0.attention.self.query.weight"]!.data[5],
    8,
  );
  assert.deepEqual(fs.readdirSync(path.dirname(dir)), ["checkpoint-7"]);
});

test("unfinished, half-deleted and foreign directories are not checkpoints", () => {
  const r = fresh("listing");
  saveCheckpoint(r, 10, sample(10));
  saveCheckpoint(r, 20, sample(20));
  // A crash mid-write of step 30: temp dir with data but no manifest.
  const tmp = `${checkpointPath(r, 30)}.tmp-99999`;
  fs.mkdirSync(tmp);
  fs.writeFileSync(path.join(tmp, "tensors.bin"), Buffer.alloc(16));
  fs.mkdirSync(`${checkpointPath(r, 40)}.del-1`);
  fs.mkdirSync(checkpointPath(r, 50)); // empty: no manifest
  fs.mkdirSync(path.join(r, "runs"));
  assert.deepEqual(
    listCheckpoints(r).map((c) => c.step),
    [10, 20],
  );
  assert.deepEqual(latestCheckpoint(r), { step: 20, path: checkpointPath(r, 20) });
  assert.equal(latestCheckpoint(path.join(r, "missing")), undefined);
});

test("a truncated tensor file makes the checkpoint incomplete and unreadable", () => {
  const r = fresh("truncated");
  saveCheckpoint(r, 1, sample(1));
  saveCheckpoint(r, 2, sample(2));
  fs.truncateSync(path.join(checkpointPath(r, 2), "tensors.bin"), 8);
  assert.equal(latestCheckpoint(r)?.step, 1);
  assert.throws(
    () => readCheckpoint(checkpointPath(r, 2)),
    (e: unknown) =>
      e instanceof WeightsError && /tensors.bin has 8 bytes; the manifest lists 28/.test(e.message),
  );
});

test("a step swapped out when the process died is still found via its .old directory", () => {
  const r = fresh("swap");
  saveCheckpoint(r, 5, sample(5));
  fs.renameSync(checkpointPath(r, 5), `${checkpointPath(r, 5)}.old-4242`);
  const latest = latestCheckpoint(r)!;
  assert.equal(latest.step, 5);
  assert.equal(readCheckpoint(latest.path).tensors.scalar!.shape.length, 0);
});

test("saveTotalLimit keeps the newest N plus protected steps", () => {
  const r = fresh("prune");
  for (const step of [100, 200, 300, 400])
    saveCheckpoint(r, step, sample(step), { saveTotalLimit: 2 });
  assert.deepEqual(
    listCheckpoints(r).map((c) => c.step),
    [300, 400],
  );
  saveCheckpoint(r, 500, sample(500), { saveTotalLimit: 2, protect: [300] });
  assert.deepEqual(
    listCheckpoints(r).map((c) => c.step),
    [300, 400, 500],
  );
  assert.deepEqual(pruneCheckpoints(r, 1), [checkpointPath(r, 300), checkpointPath(r, 400)]);
  assert.throws(
    () => pruneCheckpoints(r, 0),
    (e: unknown) =>
      e instanceof ConfigError &&
      /saveTotalLimit 0 is invalid; expected an integer >= 1/.test(e.message),
  );
  assert.throws(() => saveCheckpoint(r, -1, sample(1)), /Checkpoint step -1 is invalid/);
});

test("leftovers of dead writers are cleaned, live ones kept", () => {
  const r = fresh("stale");
  saveCheckpoint(r, 1, sample(1));
  const dead = spawnSync(process.execPath, ["-e", "process.pid"]).pid!;
  fs.mkdirSync(`${checkpointPath(r, 2)}.tmp-${dead}`);
  fs.mkdirSync(`${checkpointPath(r, 3)}.tmp-${process.pid}`);
  fs.mkdirSync(`${checkpointPath(r, 4)}.del-${dead}`);
  const removed = removeStaleTemporaries(r)
    .map((p) => path.basename(p))
    .sort();
  assert.deepEqual(removed, [`checkpoint-2.tmp-${dead}`, `checkpoint-4.del-${dead}`]);
  assert.ok(fs.existsSync(`${checkpointPath(r, 3)}.tmp-${process.pid}`));
});

test("bad tensors are refused before anything is written", () => {
  const r = fresh("bad");
  assert.throws(
    () =>
      writeCheckpoint(checkpointPath(r, 1), {
        tensors: { w: { shape: [2, 2], data: new Float32Array(3) } },
        state: {},
      }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /"w" .* Float32Array of 4 values \(shape \[2,2\]\)/.test(e.message),
  );
  assert.deepEqual(fs.readdirSync(r), []);
});

test("kill -9 during checkpoint writes always leaves a complete, consistent latest checkpoint", async () => {
  const r = fresh("kill");
  const modulePath = path.resolve(__dirname, "..", "..", "src", "train", "checkpoint-io.js");
  // The writer fills each checkpoint with its step number so mixing would show.
  const child = `
    const io = require(${JSON.stringify(modulePath)});
    const n = 1 << 19;
    for (let step = 1; ; step++) {
      const data = new Float32Array(n).fill(step);
      io.saveCheckpoint(${JSON.stringify(r)}, step, {
        tensors: { a: { shape: [n], data }, b: { shape: [2], data: Float32Array.from([step, -step]) } },
        state: { step },
      }, { saveTotalLimit: 2 });
      if (step === 1) process.stdout.write("first\\n");
    }`;
  for (const delayMs of [5, 37, 111]) {
    const proc = spawn(process.execPath, ["-e", child], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => proc.stdout.once("data", () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
    const latest = latestCheckpoint(r);
    assert.ok(latest, `no checkpoint after kill at ${delayMs} ms`);
    const back = readCheckpoint(latest.path);
    const step = (back.state as { step: number }).step;
    assert.equal(step, latest.step);
    assert.ok(back.tensors.a!.data.every((v) => v === step));
    assert.deepEqual(Array.from(back.tensors.b!.data), [step, -step]);
    removeStaleTemporaries(r);
  }
});
