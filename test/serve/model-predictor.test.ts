import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import {
  ATTENTION_BUDGET,
  bucketLength,
  type EsmPredictor,
  LENGTH_BUCKET,
  loadEsmPredictor,
  planPasses,
} from "../../src/serve/model-predictor";
import { SeededRandom } from "../../src/util/random";
import { REPO_ROOT } from "../helpers/python";

const MODEL = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
const AMINO = "ACDEFGHIKLMNPQRSTVWY";

let predictor: EsmPredictor;

before(async () => {
  await selectBackend({ backend: "wasm" });
  predictor = await loadEsmPredictor(MODEL, { onWarning: () => undefined, engine: "onnx" });
});

after(() => predictor.dispose());

function randomProtein(rng: SeededRandom, n: number): string {
  return Array.from({ length: n }, () => AMINO[rng.int(AMINO.length)]).join("");
}

test("passes: rows in order, padded to a bucket, within the attention budget", () => {
  assert.equal(bucketLength(3, 1024), LENGTH_BUCKET);
  assert.equal(bucketLength(LENGTH_BUCKET + 1, 1024), 2 * LENGTH_BUCKET);
  assert.equal(bucketLength(1000, 1024), 1024);
  assert.equal(bucketLength(1000, 1002), 1002, "never past the model's max length");
  const lengths = [10, 300, 1024, 20, 20, 500, 70, 70, 70, 70, 70, 70, 70, 70, 70];
  const passes = planPasses(lengths, 1024);
  assert.deepEqual(
    passes.map((p) => [p.start, p.end, p.width]),
    [
      [0, 2, 320],
      [2, 3, 1024],
      [3, 7, 512],
      [7, 15, 128],
    ],
  );
  let next = 0;
  for (const p of passes) {
    assert.equal(p.start, next, "consecutive, in order");
    next = p.end;
    const longest = Math.max(...lengths.slice(p.start, p.end));
    assert.equal(p.width, bucketLength(longest, 1024));
    const rows = p.end - p.start;
    assert.ok(rows === 1 || rows * p.width ** 2 <= ATTENTION_BUDGET, JSON.stringify(p));
  }
  assert.equal(next, lengths.length);
  assert.deepEqual(planPasses([], 1024), []);
});

test("the model sees only bucketed shapes, and padding does not change any answer (1e-5)", async () => {
  const rng = new SeededRandom(7);
  const sequences = [5, 130, 61, 700, 9, 250, 251, 40].map((n) => randomProtein(rng, n));
  const onnx = predictor.engine;
  const original = onnx.logits.bind(onnx);
  const shapes: [number, number][] = [];
  onnx.logits = (batch) => {
    shapes.push([batch.batchSize, batch.seqLen]);
    return original(batch);
  };
  let answers: Awaited<ReturnType<EsmPredictor["predict"]>>;
  try {
    answers = await predictor.predict(sequences);
  } finally {
    onnx.logits = original;
  }
  assert.equal(answers.length, sequences.length);
  assert.deepEqual(
    shapes.reduce((n, [b]) => n + b, 0),
    sequences.length,
    "every row in exactly one pass",
  );
  for (const [b, l] of shapes) {
    assert.equal(l % LENGTH_BUCKET, 0, `length ${l} is a bucket`);
    assert.ok(b === 1 || b * l * l <= ATTENTION_BUDGET, `${b} x ${l} within the budget`);
  }
  // Each answer equals the model run on that sequence alone, without any padding.
  for (const [i, seq] of sequences.entries()) {
    const ids = predictor.tokenizer.encode(seq);
    const logits = original({
      inputIds: ids,
      attentionMask: ids.map(() => 1),
      batchSize: 1,
      seqLen: ids.length,
    });
    const max = Math.max(...logits);
    const e = Array.from(logits, (z) => Math.exp(z - max));
    const sum = e.reduce((a, b) => a + b, 0);
    e.forEach((x, k) => {
      assert.ok(Math.abs(x / sum - answers[i]!.probabilities[k]!) < 1e-5, `${i} class ${k}`);
    });
  }
});
