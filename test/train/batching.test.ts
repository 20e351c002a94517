import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, DataError } from "../../src/errors";
import {
  batchesPerEpoch,
  collate,
  type Example,
  epochBatches,
  planBatches,
} from "../../src/train/batching";
import { SeededRandom } from "../../src/util/random";

/** Tokenized-looking examples: <cls>, residues 4..23, <eos>; lengths 3..602. */
function makeExamples(n: number, seed = 5): Example[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => {
    const len = 1 + rng.int(600);
    const ids = [0, ...Array.from({ length: len }, () => 4 + rng.int(20)), 2];
    return { inputIds: ids, label: rng.int(2) };
  });
}

const examples = makeExamples(1037);
const lengths = examples.map((e) => e.inputIds.length);

test("every example appears exactly once per epoch", () => {
  for (const dropLast of [false, true]) {
    for (let epoch = 0; epoch < 3; epoch++) {
      const plan = planBatches(lengths, {
        batchSize: 8,
        seed: 42,
        epoch,
        bucketFactor: 10,
        dropLast,
      });
      const seen = plan.flat().sort((a, b) => a - b);
      assert.equal(plan.length, batchesPerEpoch(examples.length, 8, dropLast));
      if (dropLast) {
        assert.ok(plan.every((b) => b.length === 8));
        assert.equal(new Set(seen).size, seen.length, "no duplicates");
        assert.equal(seen.length, Math.floor(examples.length / 8) * 8);
      } else {
        assert.deepEqual(
          seen,
          Array.from({ length: examples.length }, (_, i) => i),
        );
      }
    }
  }
});

test("the plan is a function of (seed, epoch): same inputs same batches, else different", () => {
  const opts = { batchSize: 16, seed: 7, epoch: 2 };
  assert.deepEqual(planBatches(lengths, opts), planBatches(lengths, opts));
  assert.notDeepEqual(planBatches(lengths, opts), planBatches(lengths, { ...opts, epoch: 3 }));
  assert.notDeepEqual(planBatches(lengths, opts), planBatches(lengths, { ...opts, seed: 8 }));
  // Evaluation order ignores seed and epoch.
  const evalOpts = { batchSize: 16, seed: 1, epoch: 0, shuffle: false };
  assert.deepEqual(
    planBatches(lengths, evalOpts),
    planBatches(lengths, { ...evalOpts, seed: 9, epoch: 4 }),
  );
});

test("length bucketing pads far less than random batches", () => {
  const padded = (bucketFactor: number) =>
    planBatches(lengths, { batchSize: 8, seed: 3, epoch: 0, bucketFactor }).reduce(
      (sum, b) => sum + b.length * Math.max(...b.map((i) => lengths[i]!)),
      0,
    );
  const real = lengths.reduce((a, b) => a + b, 0);
  const bucketed = padded(50);
  const unsorted = padded(1) / real; // bucketFactor 1 = no sorting across batches
  assert.ok(bucketed / real < 1.1, `bucketed padding ratio ${bucketed / real}`);
  assert.ok(unsorted > 1.4, `random padding ratio ${unsorted}`);
});

test("collate pads each batch to its longest member with id 1 and mask 0", () => {
  const batches = [...epochBatches(examples.slice(0, 50), { batchSize: 7, seed: 1, epoch: 0 })];
  assert.equal(batches.length, 8);
  for (const b of batches) {
    const lens = Array.from(b.indices, (i) => examples[i]!.inputIds.length);
    assert.equal(b.seqLen, Math.max(...lens));
    assert.equal(b.inputIds.length, b.batchSize * b.seqLen);
    assert.equal(b.attentionMask.length, b.batchSize * b.seqLen);
    b.indices.forEach((ex, row) => {
      const ids = examples[ex]!.inputIds as number[];
      const rowIds = Array.from(b.inputIds.subarray(row * b.seqLen, (row + 1) * b.seqLen));
      const rowMask = Array.from(b.attentionMask.subarray(row * b.seqLen, (row + 1) * b.seqLen));
      assert.deepEqual(rowIds.slice(0, ids.length), ids);
      assert.ok(rowIds.slice(ids.length).every((t) => t === 1));
      assert.deepEqual(
        rowMask,
        rowIds.map((_, j) => (j < ids.length ? 1 : 0)),
      );
      assert.equal(b.labels[row], examples[ex]!.label);
    });
  }
});

test("bad options and examples are rejected", () => {
  assert.throws(
    () => planBatches(lengths, { batchSize: 0, seed: 1, epoch: 0 }),
    (e: unknown) =>
      e instanceof ConfigError && /batchSize 0 is invalid; expected an integer > 0/.test(e.message),
  );
  assert.throws(
    () => planBatches(lengths, { batchSize: 2, seed: 1.5, epoch: 0 }),
    /seed 1.5 is invalid/,
  );
  assert.throws(
    () => collate([{ inputIds: [], label: 0 }], [0]),
    (e: unknown) => e instanceof DataError && /Example 0 has no tokens/.test(e.message),
  );
  assert.throws(() => collate(examples, [5000]), /Example index 5000 is out of range/);
});

test("label vectors (multi-label, regression) go to targets, row-major; class ids and vectors do not mix", () => {
  const vectors: Example[] = [
    { inputIds: [0, 5, 2], label: [1, 0, 1] },
    { inputIds: [0, 5, 6, 7, 2], label: [0, 0, 1] },
    { inputIds: [0, 2], label: Float32Array.from([0.5, -2, 3]) },
  ];
  const b = collate(vectors, [2, 0, 1]);
  assert.deepEqual(Array.from(b.targets!), [0.5, -2, 3, 1, 0, 1, 0, 0, 1]);
  assert.deepEqual(Array.from(b.labels), [0, 0, 0]);
  const ids = collate(examples, [0, 1, 2]);
  assert.equal(ids.targets, undefined, "class ids: no targets");
  assert.throws(
    () => collate([...vectors, { inputIds: [0, 2], label: 1 }], [0, 3]),
    (e: unknown) =>
      e instanceof DataError && /Example 3's label does not match the others/.test(e.message),
  );
  assert.throws(
    () => collate([vectors[0]!, { inputIds: [0, 2], label: [1, 0] }], [0, 1]),
    /Example 1's label does not match the others: a batch holds class ids or vectors of one length/,
  );
});
