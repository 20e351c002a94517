/**
 * Length-sorted batches (src/data/length-batches.ts): windows sorted longest first,
 * every input in exactly one batch, batches inside their window, and results put back
 * in input order.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  DEFAULT_SORT_WINDOW,
  inInputOrder,
  lengthSortedBatches,
} from "../../src/data/length-batches";
import { ConfigError } from "../../src/errors";
import { SeededRandom } from "../../src/util/random";

const rng = new SeededRandom(11);
const lengths = Array.from({ length: 1000 }, () => 3 + rng.int(510));

/** Padded tokens of `batches` over real tokens. */
function computedOverReal(batches: number[][]): number {
  let computed = 0;
  let real = 0;
  for (const b of batches) {
    const ls = b.map((i) => lengths[i]!);
    computed += b.length * Math.max(...ls);
    real += ls.reduce((a, c) => a + c, 0);
  }
  return computed / real;
}

test("windows of 256 sorted longest first, cut into batches that stay inside them", () => {
  const batches = lengthSortedBatches(lengths, { batchSize: 16 });
  assert.equal(DEFAULT_SORT_WINDOW, 256);
  assert.deepEqual(
    batches.flat().sort((a, b) => a - b),
    [...lengths.keys()],
    "every input exactly once",
  );
  let seen = 0;
  for (const b of batches) {
    assert.ok(b.length >= 1 && b.length <= 16);
    const window = Math.floor(seen / 256);
    for (const i of b) assert.equal(Math.floor(i / 256), window, `input ${i} left its window`);
    seen += b.length;
  }
  // Within a window the batches run longest first.
  const firstWindow = batches.flat().slice(0, 256);
  for (let k = 1; k < 256; k++) {
    assert.ok(lengths[firstWindow[k]!]! <= lengths[firstWindow[k - 1]!]!, `order at ${k}`);
  }
  // The point of it: much less padding than batches in input order.
  const inputOrder = lengthSortedBatches(lengths, { batchSize: 16, window: 1 });
  assert.deepEqual(inputOrder.flat(), [...lengths.keys()], "window 1 keeps the order");
  assert.ok(computedOverReal(batches) < 1.1, `sorted: ${computedOverReal(batches)}`);
  assert.ok(computedOverReal(inputOrder) > 1.3, `input order: ${computedOverReal(inputOrder)}`);
});

test("equal lengths keep their order (stable), also in a given order", () => {
  const flat = new Array(40).fill(100);
  assert.deepEqual(lengthSortedBatches(flat, { batchSize: 7 }).flat(), [...flat.keys()]);
  const order = [...flat.keys()].reverse();
  assert.deepEqual(lengthSortedBatches(flat, { batchSize: 7, order }).flat(), order);
  // Windows are cut from `order`, not from the indices.
  const ls = [5, 1, 4, 2, 3];
  assert.deepEqual(lengthSortedBatches(ls, { batchSize: 2, window: 2, order: [4, 3, 2, 1, 0] }), [
    [4, 3],
    [2, 1],
    [0],
  ]);
});

test("fits limits a batch by its rows and lengths", () => {
  const ls = [300, 300, 300, 100, 100, 90, 10];
  const calls: [number, number, number][] = [];
  const batches = lengthSortedBatches(ls, {
    batchSize: Number.POSITIVE_INFINITY,
    fits: (rows, longest, length) => {
      calls.push([rows, longest, length]);
      return rows * longest <= 600 && length * 2 > longest;
    },
  });
  assert.deepEqual(batches, [[0, 1], [2], [3, 4, 5], [6]]);
  assert.deepEqual(calls[0], [2, 300, 300], "rows it would have, longest so far, the new row");
});

test("inInputOrder puts results back; refuses missing rows and count mismatches", () => {
  const batches = lengthSortedBatches(lengths, { batchSize: 16 });
  const results = batches.map((b) => b.map((i) => `result of ${i}`));
  const back = inInputOrder(batches, results, lengths.length);
  assert.deepEqual(
    back,
    lengths.map((_, i) => `result of ${i}`),
  );
  assert.throws(() => inInputOrder([[0, 2]], [["a", "b"]], 3), /input 1 is in no batch/);
  assert.throws(() => inInputOrder([[0, 1]], [["a"]], 2), /batch 0 has 2 rows but 1 results/);
});

test("bad sizes are refused with the value", () => {
  assert.throws(
    () => lengthSortedBatches(lengths, { batchSize: 0 }),
    (e) => e instanceof ConfigError && /batchSize 0 is invalid/.test(e.message),
  );
  assert.throws(() => lengthSortedBatches(lengths, { batchSize: 4, window: 2.5 }), /window 2.5/);
  assert.deepEqual(lengthSortedBatches([], { batchSize: 4 }), []);
});
