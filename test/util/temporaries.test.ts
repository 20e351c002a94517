import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { writeSafetensors } from "../../src/model/safetensors";
import { ownedTemporary, removeDeadTemporaries, temporaryOwner } from "../../src/util/temporaries";

const tmp = () => mkdtempSync(path.join(tmpdir(), "esmkit-tmp-"));
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

test("temporaries carry their owner's pid; only dead owners' are removed", () => {
  assert.equal(ownedTemporary("/x/model"), `/x/model.tmp-${process.pid}`);
  assert.equal(temporaryOwner("out.jsonl.partial-42", "out.jsonl"), 42);
  assert.equal(temporaryOwner(".out.partial-42-Ab12Cd", ".out"), 42);
  assert.equal(temporaryOwner("out.jsonl.partial-42", "out"), undefined);
  assert.equal(temporaryOwner("model.tmp-x", "model"), undefined);
  const dir = tmp();
  const dead = deadPid();
  for (const name of [`model.tmp-${dead}`, `model.tmp-${process.pid}`, "model", "other.tmp-1"])
    mkdirSync(path.join(dir, name));
  const removed = removeDeadTemporaries(dir, "model");
  assert.deepEqual(removed, [path.join(dir, `model.tmp-${dead}`)]);
  assert.deepEqual(readdirSync(dir).sort(), ["model", `model.tmp-${process.pid}`, "other.tmp-1"]);
});

test("writing a safetensors file removes its dead temporaries and keeps a live one's", () => {
  const dir = tmp();
  const file = path.join(dir, "model.safetensors");
  const dead = `${file}.tmp-${deadPid()}`;
  const live = `${file}.tmp-${process.ppid}`;
  writeFileSync(dead, "half");
  writeFileSync(live, "half");
  writeSafetensors(file, [["w", { shape: [2], data: new Float32Array([1, 2]) }]]);
  assert.ok(!existsSync(dead));
  assert.ok(existsSync(live));
  assert.deepEqual(readdirSync(dir).sort(), ["model.safetensors", path.basename(live)]);
});

test("a tracked temporary goes on SIGTERM / SIGINT and on process.exit; the signal still ends the process", () => {
  const mod = JSON.stringify(require.resolve("../../src/util/temporaries"));
  for (const [how, signal, status] of [
    ["process.kill(process.pid, 'SIGTERM')", "SIGTERM", null],
    ["process.kill(process.pid, 'SIGINT')", "SIGINT", null],
    ["process.exit(4)", null, 4],
  ] as const) {
    const file = path.join(tmp(), "out.partial");
    const script = `const t = require(${mod}); require("fs").writeFileSync(${JSON.stringify(file)}, "x"); t.trackTemporary(${JSON.stringify(file)}); ${how}; setTimeout(() => {}, 5000);`;
    const r = spawnSync(process.execPath, ["-e", script]);
    assert.equal(r.signal, signal, `${how}: ${r.stderr}`);
    assert.equal(r.status, status);
    assert.ok(!existsSync(file), `${how} removed the temporary`);
  }
  // With its own SIGTERM handler (training stops gracefully) the process lives on, and
  // the temporary stays until the writer is done with it or the process exits.
  const file = path.join(tmp(), "out.partial");
  const script = `const t = require(${mod}); const fs = require("fs"); fs.writeFileSync(${JSON.stringify(file)}, "x"); t.trackTemporary(${JSON.stringify(file)}); process.on("SIGTERM", () => { process.stdout.write(String(fs.existsSync(${JSON.stringify(file)}))); process.exit(0); }); process.kill(process.pid, "SIGTERM"); setTimeout(() => {}, 5000);`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "true", "kept while the handler ran");
  assert.ok(!existsSync(file), "removed on exit");
});
