/**
 * The model's API: pieces compose to the convenience forward, named Linears and
 * variables for LoRA and trainers, the adapter hook, input checks, no tensor leaks
 * (including a forward over 8 x 512 at the 8M architecture), dispose.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { ConfigError, DataError } from "../../src/errors";
import { customEsmConfig, Esm2Model, esm2Config, fromPretrained } from "../../src/model";
import { REPO_ROOT } from "../helpers/python";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
const inputs = JSON.parse(readFileSync(path.join(TINY, "inputs.json"), "utf8")) as {
  input_ids: number[][];
  attention_mask: number[][];
};

before(async () => {
  await selectBackend({ backend: "wasm" });
});

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

test("the pieces compose to forward, on tensor inputs too", async () => {
  const model = await fromPretrained(TINY);
  const ids = tf.tensor2d(inputs.input_ids, undefined, "int32");
  const mask = tf.tensor2d(inputs.attention_mask, undefined, "int32");
  const before = tf.memory().numTensors;
  const manual = tf.tidy(() => {
    let h = model.embed(ids, mask);
    const add = model.additiveMask(mask);
    for (let i = 0; i < model.config.numHiddenLayers; i++) h = model.layer(i, h, add);
    const last = model.finalNorm(h);
    return { last, logits: model.classify(last), mlm: model.lmHead(last) };
  });
  const auto = model.forward({ inputIds: ids, attentionMask: mask });
  const mlm = model.maskedLmLogits({
    inputIds: inputs.input_ids,
    attentionMask: inputs.attention_mask,
  });
  assert.equal(maxDiff(manual.last, auto.lastHiddenState), 0);
  assert.equal(maxDiff(manual.logits, auto.logits), 0);
  assert.equal(maxDiff(manual.mlm, mlm), 0);
  assert.deepEqual(auto.lastHiddenState.shape, [4, 35, 32]);
  assert.deepEqual(auto.logits.shape, [4, 2]);
  assert.deepEqual(mlm.shape, [4, 35, 33]);
  tf.dispose([manual.last, manual.logits, manual.mlm, auto.lastHiddenState, auto.logits, mlm]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([ids, mask]);
  model.dispose();
});

test("padding does not change a sequence's outputs; mean pooling covers real tokens", async () => {
  const model = await fromPretrained(TINY);
  const short = [0, 20, 15, 11, 5, 2];
  const alone = model.forward({ inputIds: [short] });
  const padded = model.forward({
    inputIds: [[...short, 1, 1, 1]],
    attentionMask: [[1, 1, 1, 1, 1, 1, 0, 0, 0]],
  });
  const realPart = tf.slice(padded.lastHiddenState, [0, 0, 0], [1, 6, 32]);
  assert.ok(maxDiff(alone.lastHiddenState, realPart) < 1e-5);
  assert.ok(maxDiff(alone.logits, padded.logits) < 1e-5);
  const meanAlone = model.pooledEmbedding({ inputIds: [short] });
  const meanPadded = model.pooledEmbedding({
    inputIds: [[...short, 1, 1, 1]],
    attentionMask: [[1, 1, 1, 1, 1, 1, 0, 0, 0]],
  });
  assert.ok(maxDiff(meanAlone, meanPadded) < 1e-5);
  const residues = model.pooledEmbedding({ inputIds: [short] }, { pooling: "mean-residues" });
  const expected = tf.mean(tf.slice(alone.lastHiddenState, [0, 1, 0], [1, 4, 32]), 1);
  assert.ok(maxDiff(residues, expected) < 1e-6);
  tf.dispose([alone.lastHiddenState, alone.logits, padded.lastHiddenState, padded.logits]);
  tf.dispose([realPart, meanAlone, meanPadded, residues, expected]);
  assert.throws(
    () => model.pooledEmbedding({ inputIds: [short] }, { pooling: "max" as never }),
    /Unknown pooling "max"; expected one of: mean, mean-residues, cls/,
  );
  model.dispose();
});

test("named Linears and variables use Hugging Face names; inv_freq is not trainable", () => {
  const config = customEsmConfig({ numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 4 });
  const model = Esm2Model.random(config, { seed: 1, lmHead: true });
  const linears = model.namedLinears();
  assert.equal(linears.size, 2 * 6 + 2 + 1);
  const q = linears.get("esm.encoder.layer.0.attention.self.query")!;
  assert.equal(q.name, "esm.encoder.layer.0.attention.self.query");
  assert.deepEqual(q.weight.shape, [32, 32]);
  const ffnIn = linears.get("esm.encoder.layer.1.intermediate.dense")!;
  assert.deepEqual([ffnIn.inFeatures, ffnIn.outFeatures], [32, 128]); // stored [in, out]
  assert.ok(linears.has("classifier.out_proj"));
  assert.ok(linears.has("lm_head.dense"));
  const vars = model.namedVariables();
  assert.equal(vars.size, model.parameterSpecs().length);
  assert.equal(vars.get("esm.rotary_embeddings.inv_freq")!.trainable, false);
  assert.equal(vars.get("esm.embeddings.word_embeddings.weight")!.trainable, true);
  assert.equal(vars.get("esm.encoder.layer.0.attention.self.query.weight"), q.weight);
  const pad = tf.tidy(() => tf.slice(model.wordEmbeddings, [1, 0], [1, 32]).dataSync());
  assert.ok(
    pad.every((x) => x === 0),
    "the <pad> embedding row starts at zero",
  );
  model.dispose();
});

test("an adapter on a Linear adds its output", () => {
  const config = customEsmConfig({ numHiddenLayers: 1, hiddenSize: 16, numAttentionHeads: 2 });
  const model = Esm2Model.random(config, { seed: 2 });
  const feed = { inputIds: [[0, 5, 6, 7, 2]] };
  const base = model.forward(feed);
  const dense = model.namedLinears().get("classifier.out_proj")!;
  dense.adapter = {
    apply: (x) => tf.tidy(() => tf.add(tf.zeros([x.shape[0], 2]), tf.tensor1d([1, -2]))),
  };
  const adapted = model.forward(feed);
  const delta = tf.sub(adapted.logits, base.logits);
  assert.deepEqual(
    Array.from(delta.dataSync()).map((x) => Math.round(x * 1e5) / 1e5),
    [1, -2],
  );
  dense.adapter = undefined;
  tf.dispose([base.lastHiddenState, base.logits, adapted.lastHiddenState, adapted.logits, delta]);
  model.dispose();
});

test("bad inputs are refused with what is wrong", () => {
  const config = customEsmConfig({ numHiddenLayers: 1, hiddenSize: 16, numAttentionHeads: 2 });
  const model = Esm2Model.random(config);
  const before = tf.memory().numTensors;
  assert.throws(
    () =>
      model.forward({
        inputIds: [
          [0, 5, 2],
          [0, 2],
        ],
      }),
    (e: unknown) => {
      assert.ok(e instanceof DataError);
      assert.match(e.message, /inputIds row 1 has 2 entries, row 0 has 3: pad rows to one length/);
      return true;
    },
  );
  assert.throws(
    () => model.forward({ inputIds: [[0, 5, 40]] }),
    /inputIds\[0\]\[2\] = 40 is not a token id; expected an integer in \[0, 33\)/,
  );
  assert.throws(
    () => model.forward({ inputIds: [[0, 5, 2]], attentionMask: [[1, 1]] }),
    /attentionMask row 0|attentionMask shape \[1,2\] differs from inputIds shape \[1,3\]/,
  );
  assert.throws(
    () => model.maskedLmLogits({ inputIds: [[0, 2]] }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /no masked-LM head/);
      return true;
    },
  );
  assert.equal(tf.memory().numTensors, before, "failed calls leaked tensors");
  model.dispose();
  assert.throws(() => model.forward({ inputIds: [[0, 2]] }), /has been disposed/);
});

test("8M architecture: a forward over 8 x 512 leaves tf.memory().numTensors unchanged; dispose frees all", async () => {
  const start = tf.memory().numTensors;
  const t0 = performance.now();
  const model = Esm2Model.random(esm2Config("esm2_t6_8M_UR50D"), { seed: 0 });
  const initMs = performance.now() - t0;
  assert.equal(tf.memory().numTensors - start, model.parameterSpecs().length);
  const ids = Array.from({ length: 8 }, (_, b) =>
    Array.from({ length: 512 }, (_, i) =>
      i === 0 ? 0 : i === 511 - b * 7 ? 2 : i > 511 - b * 7 ? 1 : 4 + ((i * 7 + b) % 20),
    ),
  );
  const mask = ids.map((row) => row.map((id) => (id === 1 ? 0 : 1)));
  const before = tf.memory().numTensors;
  const t1 = performance.now();
  const { lastHiddenState, logits } = model.forward({ inputIds: ids, attentionMask: mask });
  await logits.data();
  const forwardMs = performance.now() - t1;
  assert.deepEqual(lastHiddenState.shape, [8, 512, 320]);
  assert.equal(tf.memory().numTensors, before + 2);
  const finite = tf.tidy(() => tf.all(tf.isFinite(lastHiddenState)).dataSync()[0]);
  assert.equal(finite, 1);
  tf.dispose([lastHiddenState, logits]);
  assert.equal(tf.memory().numTensors, before);
  console.log(
    `8M random init ${initMs.toFixed(0)} ms; forward 8 x 512 on ${tf.getBackend()} (attention "${model.attention}") ${forwardMs.toFixed(0)} ms`,
  );
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
});
