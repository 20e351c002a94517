/**
 * Parity with Hugging Face transformers on the committed fixtures
 * (test/reference/make_model_fixtures.py): last hidden states, classification logits,
 * masked-LM logits and pooled embeddings, on the wasm and cpu backends and through
 * both attention paths. Inputs are the ids Python's tokenizer produced.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { type AttentionImpl, fromPretrained } from "../../src/model";
import { REPO_ROOT } from "../helpers/python";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "model");
const TOLERANCE = 1e-4;

interface Expected {
  last_hidden_state: number[][][];
  logits: number[][];
  mlm_logits: number[][][];
  pooled_mean: number[][];
  pooled_cls: number[][];
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

function maxAbsDiff(actual: tf.Tensor, expected: unknown): number {
  const want = (expected as number[]).flat(3) as number[];
  const got = actual.dataSync();
  assert.equal(got.length, want.length, "element count");
  let max = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= max)) max = d; // NaN propagates as a failure
  }
  return max;
}

for (const backend of ["wasm", "cpu"] as const) {
  for (const fixture of ["tiny", "odd"]) {
    test(`${fixture} fixture matches transformers on ${backend}`, async () => {
      await selectBackend({ backend });
      const dir = path.join(FIXTURES, fixture);
      const inputs = readJson<{ input_ids: number[][]; attention_mask: number[][] }>(
        path.join(dir, "inputs.json"),
      );
      const want = readJson<Expected>(path.join(dir, "expected.json"));
      const before = tf.memory().numTensors;
      const model = await fromPretrained(dir, { onWarning: (m) => assert.fail(m) });
      assert.ok(model.hasLmHead);
      assert.equal(model.loadReport?.missingInitialised.length, 0);
      const modes: AttentionImpl[] = ["batched", "per-head"];
      for (const mode of modes) {
        model.attention = mode;
        const feed = { inputIds: inputs.input_ids, attentionMask: inputs.attention_mask };
        const { lastHiddenState, logits } = model.forward(feed);
        const mlm = model.maskedLmLogits(feed);
        const mean = model.pooledEmbedding(feed, { pooling: "mean" });
        const cls = model.pooledEmbedding(feed, { pooling: "cls" });
        const diffs = {
          hidden: maxAbsDiff(lastHiddenState, want.last_hidden_state),
          logits: maxAbsDiff(logits, want.logits),
          mlm: maxAbsDiff(mlm, want.mlm_logits),
          pooledMean: maxAbsDiff(mean, want.pooled_mean),
          pooledCls: maxAbsDiff(cls, want.pooled_cls),
        };
        tf.dispose([lastHiddenState, logits, mlm, mean, cls]);
        console.log(`${fixture} ${backend} ${mode} max abs diff: ${JSON.stringify(diffs)}`);
        for (const [what, d] of Object.entries(diffs)) {
          assert.ok(d < TOLERANCE, `${what}: max abs diff ${d} >= ${TOLERANCE}`);
        }
      }
      model.dispose();
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
    });
  }
}
