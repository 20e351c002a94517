/**
 * Engine errors and hygiene: refused parameters and bad batches, the loss head against
 * torch's CrossEntropyLoss, all-ignored labels, tensor counts and dispose, and the
 * attention head-group choice.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { lossAndGradients } from "../../src/engine/tfjs-engine";
import { ConfigError } from "../../src/errors";
import { applyLora } from "../../src/lora/lora";
import { esm2Config } from "../../src/model/config";
import { headGroupsFor, lossWeights, OnnxEsmEngine } from "../../src/onnx";
import { EsmGraph, IN } from "../../src/onnx/esm-graph";
import { floatTensor, OrtSession } from "../../src/onnx/runtime";
import {
  diff,
  disposeBatch,
  disposeResult,
  EMBEDDING,
  fullParams,
  gradRows,
  loadTiny,
  microBatch,
  readJson,
  TRAIN_FIX,
  tokenBatch,
} from "./helpers";

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

// ---- 5. errors and hygiene ----------------------------------------------------------------

test("trainable word embeddings are refused with a ConfigError naming them", async () => {
  const model = await loadTiny();
  const engine = new OnnxEsmEngine(model);
  const params = new Map(model.namedVariables());
  params.delete("esm.rotary_embeddings.inv_freq");
  const batch = microBatch(gradRows());
  assert.throws(
    () => engine.lossAndGradients(params, batch),
    (e: unknown) =>
      e instanceof ConfigError &&
      /word embeddings/.test(e.message) &&
      e.context.param === EMBEDDING,
  );
  disposeBatch(batch);
  engine.dispose();
  model.dispose();
});

test("logits() names an out-of-range token id and a batch whose sizes do not fit", async () => {
  const model = await loadTiny();
  const engine = new OnnxEsmEngine(model);
  const ids = [0, 5, 6, 2, 0, 33, 2, 1];
  const mask = [1, 1, 1, 1, 1, 1, 1, 0];
  assert.throws(
    () => engine.logits({ inputIds: ids, attentionMask: mask, batchSize: 2, seqLen: 4 }),
    (e: unknown) => e instanceof ConfigError && /Token id 33 at \[1, 1\]/.test(e.message),
  );
  ids[5] = -1;
  assert.throws(
    () => engine.logits({ inputIds: ids, attentionMask: mask, batchSize: 2, seqLen: 4 }),
    /Token id -1/,
  );
  assert.throws(
    () => engine.logits({ inputIds: ids, attentionMask: mask, batchSize: 3, seqLen: 4 }),
    (e: unknown) => e instanceof ConfigError && /3 x 4 needs 12/.test(e.message),
  );
  engine.dispose();
  model.dispose();
});

test("lossWeights and the loss graph reproduce torch's CrossEntropyLoss(weight, ignore_index)", () => {
  interface CeCase {
    name: string;
    shape: [number, number];
    logits: number[];
    labels: number[];
    weight: number[] | null;
    loss: number;
    grad: number[];
  }
  const cases = readJson<{ cases: CeCase[] }>(path.join(TRAIN_FIX, "cross_entropy.json")).cases;
  assert.ok(cases.some((c) => c.labels.includes(-100)) && cases.some((c) => c.weight));
  for (const c of cases) {
    const [n, k] = c.shape;
    // The engine's loss head on its own: logits fed, loss and dLogits out.
    const config = esm2Config("esm2_t6_8M_UR50D", { numHiddenLayers: 1, numLabels: k });
    const eg = new EsmGraph("loss", { config, modules: new Map(), trainableNorms: new Set() });
    const z = eg.g.input("z", "float", ["B", k]);
    const { loss, dLogits } = eg.loss(z);
    eg.g.output("loss_out", loss, "float", []);
    eg.g.output("dz", dLogits, "float", ["B", k]);
    const s = new OrtSession(eg.g.build());
    for (const scale of [1, 0.25]) {
      const lw = lossWeights(c.labels, k, c.weight ?? undefined, scale);
      assert.equal(lw.empty, false);
      c.labels.forEach((y, i) => {
        const row = lw.weights.subarray(i * k, (i + 1) * k);
        if (y === -100)
          assert.ok(
            row.every((v) => v === 0),
            `${c.name}: ignored row ${i}`,
          );
      });
      const out = s.run({
        z: floatTensor(Float32Array.from(c.logits), [n, k]),
        [IN.lossWeights]: floatTensor(lw.weights, [n, k]),
      });
      const l = out.loss_out!.data[0]!;
      assert.ok(
        Math.abs(l - scale * c.loss) <= 1e-5 * Math.abs(c.loss),
        `${c.name} x${scale}: loss ${l} vs torch ${scale * c.loss}`,
      );
      const d = diff(
        out.dz!.data,
        c.grad.map((v) => v * scale),
      );
      assert.ok(d.abs <= 1e-6, `${c.name} x${scale}: dLogits max |diff| ${d.abs}`);
    }
    s.dispose();
  }
  assert.throws(() => lossWeights([0, 3], 3, undefined, 1), /Label 3 at index 1 is invalid/);
  const none = lossWeights([-100, -100], 2, [1, 2], 1);
  assert.equal(none.empty, true);
  assert.ok(none.weights.every((v) => v === 0));
});

test("a micro-batch whose labels are all ignored gives a NaN loss, as tfjs does", async () => {
  const model = await loadTiny();
  const params = fullParams(model);
  const rows = { ...gradRows(), labels: [-100, -100, -100] };
  const batch = microBatch(rows);
  const engine = new OnnxEsmEngine(model);
  const ref = lossAndGradients(model, params, batch);
  assert.ok(Number.isNaN(ref.loss), "tfjs reference");
  for (const gradientCheckpointing of [false, true]) {
    const r = engine.lossAndGradients(params, batch, { gradientCheckpointing });
    assert.ok(Number.isNaN(r.loss), `checkpointing ${gradientCheckpointing}: loss ${r.loss}`);
    disposeResult(r);
  }
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  model.dispose();
});

test("lossAndGradients leaves only the returned gradients; dispose frees sessions, not the model", async () => {
  const model = await loadTiny();
  const lora = applyLora(model, { rank: 2, alpha: 4, dropout: 0.1, targetModules: ["value"] });
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const engine = new OnnxEsmEngine(model, { lora });
  for (const gradientCheckpointing of [false, true]) {
    const before = tf.memory().numTensors;
    const r = engine.lossAndGradients(params, batch, { gradientCheckpointing });
    assert.equal(r.grads.size, params.size, "one gradient per trainable tensor");
    assert.equal(
      tf.memory().numTensors,
      before + r.grads.size,
      `checkpointing ${gradientCheckpointing}`,
    );
    disposeResult(r);
    assert.equal(tf.memory().numTensors, before);
  }
  const tb = tokenBatch(gradRows());
  const first = Float32Array.from(engine.logits(tb));
  const tensors = tf.memory().numTensors;
  engine.dispose();
  engine.dispose();
  assert.equal(tf.memory().numTensors, tensors, "the model's variables stay");
  // A disposed engine rebuilds its sessions on demand and gives the same numbers.
  assert.deepEqual(Array.from(engine.logits(tb)), Array.from(first));
  engine.dispose();
  disposeBatch(batch);
  lora.dispose();
  model.dispose();
});

// ---- attention head groups --------------------------------------------------------------

test("headGroupsFor: a divisor of the head count that shrinks the score tensor as inputs grow", () => {
  let grew = false;
  for (const heads of [1, 4, 6, 20]) {
    for (const batch of [1, 8]) {
      let prev = 1;
      for (const length of [8, 64, 256, 512, 1024, 4096, 65536]) {
        const g = headGroupsFor(heads, batch, length);
        assert.ok(Number.isInteger(g) && g >= 1 && g <= heads && heads % g === 0, `${g}`);
        assert.ok(g >= prev, `groups fell from ${prev} to ${g} at length ${length}`);
        if (g > prev) grew = true;
        prev = g;
      }
      assert.equal(headGroupsFor(heads, batch, 8), 1, "short inputs: one group");
      assert.equal(headGroupsFor(heads, batch, 65536), heads, "huge inputs: one head per group");
    }
  }
  assert.ok(grew, "some shape splits into groups between the extremes");
  // A larger batch never needs fewer groups.
  for (const length of [128, 512, 1024]) {
    assert.ok(headGroupsFor(20, 8, length) >= headGroupsFor(20, 1, length));
  }
});
