import assert from "node:assert/strict";
import { test } from "node:test";
import { MicroBatcher } from "../../src/serve/batcher";
import {
  PredictionError,
  PredictionTimeoutError,
  QueueFullError,
  ShuttingDownError,
  toHttpError,
} from "../../src/serve/errors";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A run function that records batches and answers item * 10 after `delayMs`. */
function recorder(delayMs = 0) {
  const batches: number[][] = [];
  const run = async (items: number[]) => {
    batches.push([...items]);
    if (delayMs) await sleep(delayMs);
    return items.map((i) => i * 10);
  };
  return { batches, run };
}

test("concurrent jobs share batches up to maxBatchSize and keep their order", async () => {
  const { batches, run } = recorder(5);
  const b = new MicroBatcher(run, {
    maxBatchSize: 4,
    maxWaitMs: 20,
    maxQueue: 100,
    timeoutMs: 5000,
  });
  const answers = await Promise.all([
    b.submit([1, 2]),
    b.submit([3]),
    b.submit([4, 5, 6]),
    b.submit([7]),
  ]);
  assert.deepEqual(answers, [[10, 20], [30], [40, 50, 60], [70]]);
  assert.deepEqual(batches, [
    [1, 2, 3, 4],
    [5, 6, 7],
  ]);
  assert.equal(b.stats.batches, 2);
  assert.equal(b.stats.largestBatch, 4);
  await b.idle();
});

test("a lone item waits maxWaitMs for company, then goes alone", async () => {
  const { batches, run } = recorder();
  const b = new MicroBatcher(run, {
    maxBatchSize: 8,
    maxWaitMs: 40,
    maxQueue: 100,
    timeoutMs: 5000,
  });
  const t0 = Date.now();
  assert.deepEqual(await b.submit([1]), [10]);
  const waited = Date.now() - t0;
  assert.ok(waited >= 35 && waited < 1000, `waited ${waited} ms`);
  assert.deepEqual(batches, [[1]]);
});

test("a full queue refuses the whole job with QueueFullError (503 + Retry-After)", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const b = new MicroBatcher(
    async (items: number[]) => {
      await gate;
      return items;
    },
    { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2, timeoutMs: 5000 },
  );
  const running = b.submit([1]); // taken by the first batch at once
  await sleep(5);
  const queued = b.submit([2, 3]); // fills the queue
  assert.equal(b.queued, 2);
  await assert.rejects(b.submit([4]), (e: unknown) => {
    assert.ok(e instanceof QueueFullError);
    const http = toHttpError(e);
    assert.equal(http.status, 503);
    assert.match(http.headers["Retry-After"]!, /^[1-9]\d*$/);
    assert.match(http.body.error.message, /2 of 2 sequences waiting/);
    return true;
  });
  assert.equal(b.stats.refused, 1);
  release();
  assert.deepEqual(await running, [1]);
  assert.deepEqual(await queued, [2, 3]);
});

test("the per-job timeout fails the job and frees its queue slots", async () => {
  const { batches, run } = recorder(150);
  const b = new MicroBatcher(run, { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 10, timeoutMs: 60 });
  const first = b.submit([1]);
  const second = b.submit([2, 3]);
  await assert.rejects(first, PredictionTimeoutError);
  await assert.rejects(second, (e: unknown) => toHttpError(e).status === 504);
  assert.equal(b.queued, 0, "timed-out items left the queue");
  await b.idle();
  assert.deepEqual(batches, [[1]], "items still waiting were never computed");
  assert.equal(b.stats.timedOut, 2);
});

test("an aborted job leaves the queue; a failing predictor fails only its batch", async () => {
  const { batches, run } = recorder(30);
  const b = new MicroBatcher(run, { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 10, timeoutMs: 5000 });
  const first = b.submit([1]);
  const ac = new AbortController();
  const gone = b.submit([2], ac.signal);
  ac.abort();
  await assert.rejects(gone, /cancelled/);
  assert.deepEqual(await first, [10]);
  await b.idle();
  assert.deepEqual(batches, [[1]]);

  let calls = 0;
  const flaky = new MicroBatcher(
    async (items: number[]) => {
      if (calls++ === 0) throw new Error("out of memory");
      return items;
    },
    { maxBatchSize: 2, maxWaitMs: 0, maxQueue: 10, timeoutMs: 5000 },
  );
  await assert.rejects(flaky.submit([1]), (e: unknown) => {
    assert.ok(e instanceof PredictionError);
    assert.equal(toHttpError(e).status, 500);
    assert.match(e.message, /out of memory/);
    return true;
  });
  assert.deepEqual(await flaky.submit([5]), [5], "the next batch works");
  const wrong = new MicroBatcher(async () => [1], {
    maxBatchSize: 2,
    maxWaitMs: 10,
    maxQueue: 10,
    timeoutMs: 5000,
  });
  await assert.rejects(wrong.submit([1, 2]), /answered 1 results for 2 sequences/);
});

test("close() refuses new jobs and fails waiting ones with ShuttingDownError", async () => {
  const { run } = recorder(40);
  const b = new MicroBatcher(run, { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 10, timeoutMs: 5000 });
  const running = b.submit([1]);
  const waiting = b.submit([2]);
  await sleep(5);
  b.close();
  await assert.rejects(waiting, ShuttingDownError);
  await assert.rejects(b.submit([3]), (e: unknown) => toHttpError(e).status === 503);
  assert.deepEqual(await running, [10], "the running batch finishes");
  await b.idle();
});

test("options are checked", () => {
  const run = async (x: number[]) => x;
  assert.throws(
    () => new MicroBatcher(run, { maxBatchSize: 0, maxWaitMs: 0, maxQueue: 1, timeoutMs: 1 }),
    /maxBatchSize must be an integer >= 1, got 0/,
  );
  assert.throws(
    () => new MicroBatcher(run, { maxBatchSize: 1, maxWaitMs: -1, maxQueue: 1, timeoutMs: 1 }),
    /maxWaitMs must be >= 0/,
  );
});
