import assert from "node:assert/strict";
import fs from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, mock, test } from "node:test";
import { DataError } from "../../src/errors";
import { HistoryWriter, parseHistory, readHistory, truncateHistory } from "../../src/train/history";

const dir = fs.mkdtempSync(path.join(tmpdir(), "esmkit-history-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test("events are appended one per line and read back in order", () => {
  const file = path.join(dir, "run", "history.jsonl");
  const w = new HistoryWriter(file);
  w.write({ type: "train", step: 1, loss: 0.7, lr: 0 });
  w.write({ type: "eval", step: 1, accuracy: 0.5, rocAuc: Number.NaN });
  w.close();
  const again = new HistoryWriter(file); // resume appends
  again.write({ type: "train", step: 2, loss: 0.6 });
  again.close();
  assert.equal(fs.readFileSync(file, "utf8").split("\n").length, 4);
  assert.deepEqual(readHistory(file), [
    { type: "train", step: 1, loss: 0.7, lr: 0 },
    { type: "eval", step: 1, accuracy: 0.5, rocAuc: null },
    { type: "train", step: 2, loss: 0.6 },
  ]);
  const fresh = new HistoryWriter(file, { append: false });
  fresh.close();
  assert.deepEqual(readHistory(file), []);
});

test("only eval events are fsynced while writing", () => {
  const file = path.join(dir, "sync.jsonl");
  const w = new HistoryWriter(file);
  const fsync = mock.method(fs, "fsyncSync");
  try {
    w.write({ type: "train", step: 1 });
    w.write({ type: "train", step: 2 });
    assert.equal(fsync.mock.callCount(), 0);
    w.write({ type: "eval", step: 2 });
    assert.equal(fsync.mock.callCount(), 1);
  } finally {
    fsync.mock.restore();
    w.close();
  }
  assert.throws(() => w.write({ type: "train" }), /is closed; cannot write a "train" event/);
});

test("a line cut off by a crash is ignored on read and dropped before appending", () => {
  const file = path.join(dir, "crash.jsonl");
  fs.writeFileSync(file, '{"type":"train","step":1}\n{"type":"eval","st');
  assert.deepEqual(readHistory(file), [{ type: "train", step: 1 }]);
  const w = new HistoryWriter(file);
  w.write({ type: "train", step: 2 });
  w.close();
  assert.deepEqual(readHistory(file), [
    { type: "train", step: 1 },
    { type: "train", step: 2 },
  ]);
});

test("a malformed line in the middle is an error naming the line", () => {
  assert.throws(
    () => parseHistory('{"type":"train"}\nnot json\n{"type":"eval"}\n', "h.jsonl"),
    (e: unknown) =>
      e instanceof DataError && /h.jsonl line 2 is not a history event/.test(e.message),
  );
  assert.throws(
    () => parseHistory('{"step":1}\n'),
    /line 1 is not a history event \(not an object with a string "type"\)/,
  );
});

test("truncateHistory cuts back to a checkpoint's step, drops a torn line, replaces the file whole", () => {
  const file = path.join(dir, "cut", "history.jsonl");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const events = [
    { type: "step", step: 1, loss: 0.9 },
    { type: "step", step: 2, loss: 0.8 },
    { type: "checkpoint", step: 2, path: "checkpoints/checkpoint-2" },
    { type: "step", step: 3, loss: 0.7 },
    { type: "eval", step: 3, epoch: 1, metrics: { accuracy: 0.5 } },
  ];
  fs.writeFileSync(file, `${events.map((e) => JSON.stringify(e)).join("\n")}\n{"type":"st`);
  assert.equal(truncateHistory(file, 2), 2, "step 3 and its eval (and the torn line)");
  assert.deepEqual(readHistory(file), events.slice(0, 3));
  assert.ok(fs.readFileSync(file, "utf8").endsWith("\n"));
  assert.equal(truncateHistory(file, 2), 0, "nothing more to drop");
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ["history.jsonl"], "no temporary left");
  assert.equal(truncateHistory(file, 0), 3);
  assert.equal(fs.readFileSync(file, "utf8"), "");
  assert.equal(truncateHistory(path.join(dir, "cut", "missing.jsonl"), 5), 0);
  assert.ok(!fs.existsSync(path.join(dir, "cut", "missing.jsonl")));
});
