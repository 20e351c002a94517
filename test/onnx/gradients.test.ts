/**
 * Engine gradients against the tfjs `lossAndGradients` (train/step.ts, itself tested
 * against PEFT and torch), the PEFT two-step training fixture (test/fixtures/lora)
 * run on engine gradients, and the LoRA dropout-stream contract.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { lossAndGradients } from "../../src/engine/tfjs-engine";
import { loadAdapter, saveAdapter } from "../../src/lora/adapter-io";
import { applyLora, DEFAULT_LORA, LoraModel } from "../../src/lora/lora";
import type { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { headGroupsFor, OnnxEsmEngine } from "../../src/onnx";
import { clipGradNorm } from "../../src/train/clip";
import { AdamW } from "../../src/train/optimizer";
import { linearScheduleWithWarmup } from "../../src/train/schedule";
import { SeededRandom } from "../../src/util/random";
import {
  assertStepClose,
  CLASS_WEIGHTS,
  diff,
  disposeBatch,
  disposeResult,
  EMBEDDING,
  fullParams,
  GRAD_TOLERANCE,
  gradRows,
  LORA_FIX,
  loadTiny,
  makeRows,
  microBatch,
  randomiseLoraB,
  randomLora,
  readJson,
  tokenBatch,
} from "./helpers";

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

// ---- 2. gradients vs the tfjs step --------------------------------------------------------

/** Plain and checkpointed engine steps vs the tfjs step on `lora` (dropout 0); frees everything. */
function compareLoraStep(model: Esm2Model, lora: LoraModel, label: string): void {
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const opts = { classWeights: CLASS_WEIGHTS, lossScale: 0.5 };
  const ref = lossAndGradients(model, params, batch, opts);
  const engine = new OnnxEsmEngine(model, { lora });
  for (const gradientCheckpointing of [false, true]) {
    const got = engine.lossAndGradients(params, batch, { ...opts, gradientCheckpointing });
    assertStepClose(got, ref, GRAD_TOLERANCE, `${label}, checkpointing ${gradientCheckpointing}`);
    disposeResult(got);
  }
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  lora.dispose();
  model.dispose();
}

test("LoRA (q, k, v, output.dense; dropout 0) gradients match tfjs, plain and checkpointed", async () => {
  const model = await loadTiny();
  const lora = applyLora(model, {
    rank: 4,
    alpha: 8,
    dropout: 0,
    targetModules: ["query", "key", "value", "output.dense"],
  });
  // "output.dense" matches both attention.output.dense and the FFN output.dense.
  assert.equal(lora.adapters.size, 5 * model.config.numHiddenLayers);
  randomiseLoraB(lora, 1);
  compareLoraStep(model, lora, "LoRA");
});

test("full fine-tuning (embeddings frozen) gradients match tfjs: Linear, LayerNorm, classifier", async () => {
  const model = await loadTiny();
  const params = fullParams(model);
  assert.ok(!params.has(EMBEDDING));
  for (const k of ["esm.encoder.emb_layer_norm_after.weight", "esm.encoder.layer.1.LayerNorm.bias"])
    assert.ok(params.has(k), k);
  const batch = microBatch(gradRows());
  const opts = { classWeights: CLASS_WEIGHTS, lossScale: 0.5 };
  const ref = lossAndGradients(model, params, batch, opts);
  // Every encoder and head tensor gets a gradient (the LM head, off the path, gets none).
  for (const k of params.keys()) {
    if (!k.startsWith("lm_head.")) assert.ok(ref.grads.has(k), `tfjs has no gradient for ${k}`);
  }
  const engine = new OnnxEsmEngine(model);
  for (const gradientCheckpointing of [false, true]) {
    const got = engine.lossAndGradients(params, batch, { ...opts, gradientCheckpointing });
    assertStepClose(got, ref, GRAD_TOLERANCE, `full, checkpointing ${gradientCheckpointing}`);
    disposeResult(got);
  }
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  model.dispose();
});

test("checkpointed step with attention split into head groups matches tfjs", async () => {
  const model = await loadTiny();
  const heads = model.config.numAttentionHeads;
  const L = 520;
  const B = 2;
  const groups = headGroupsFor(heads, B, L);
  assert.ok(groups > 1, `the shape must split the ${heads} heads (got ${groups} group)`);
  const lora = randomLora(model);
  lora.training = true;
  const params = lora.trainableVariables();
  const rows = makeRows([L, 301], L, [0, 1], 8, [[7, 400], [20]]);
  const batch = microBatch(rows);
  const opts = { classWeights: CLASS_WEIGHTS, lossScale: 0.5 };
  const ref = lossAndGradients(model, params, batch, opts);
  const engine = new OnnxEsmEngine(model, { lora, threads: 2 });
  const got = engine.lossAndGradients(params, batch, { ...opts, gradientCheckpointing: true });
  assertStepClose(got, ref, GRAD_TOLERANCE, `LoRA ${B} x ${L}, ${groups} head groups`);
  disposeResult(got);
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  lora.dispose();
  model.dispose();
});

// ---- 3. the PEFT training fixture through the engine --------------------------------------

test("PEFT two-step fixture with engine gradients: losses, grad norms and weights match torch (1e-5)", async () => {
  const expected = readJson<{
    config: {
      lr: number;
      weight_decay: number;
      accumulation: number;
      warmup: number;
      total_steps: number;
      max_norm: number;
      class_weights: number[];
    };
    micro_batches: { input_ids: number[][]; attention_mask: number[][]; labels: number[] }[];
    steps: { lr: number; grad_norm: number; losses: number[] }[];
  }>(path.join(LORA_FIX, "expected.json"));
  const adapterConfig = readJson<{ lora_dropout: number }>(
    path.join(LORA_FIX, "adapter-initial", "adapter_config.json"),
  );
  // Dropout masks cannot be matched with torch's; the fixture was made without them.
  assert.equal(adapterConfig.lora_dropout, 0);
  const theirs = readSafetensors(path.join(LORA_FIX, "adapter-step2", "adapter_model.safetensors"));
  for (const gradientCheckpointing of [false, true]) {
    const model = await fromPretrained(path.join(LORA_FIX, "base"), { onWarning: () => undefined });
    const lora = loadAdapter(model, path.join(LORA_FIX, "adapter-initial"));
    lora.training = true;
    const engine = new OnnxEsmEngine(model, { lora });
    const params = lora.trainableVariables();
    const probeRows = makeRows([40, 25], 40, [0, 1], 4, [[3], []]);
    const probe = tokenBatch(probeRows);
    const initialLogits = Float32Array.from(engine.logits(probe));
    const c = expected.config;
    const opt = new AdamW(params, { lr: c.lr, weightDecay: c.weight_decay });
    const schedule = linearScheduleWithWarmup({
      lr: c.lr,
      totalSteps: c.total_steps,
      warmupSteps: c.warmup,
    });
    for (let s = 0; s < 2; s++) {
      const acc = new Map<string, tf.Tensor>();
      const losses: number[] = [];
      for (let k = 0; k < c.accumulation; k++) {
        const mb = expected.micro_batches[s * c.accumulation + k]!;
        const batch = microBatch({ ids: mb.input_ids, mask: mb.attention_mask, labels: mb.labels });
        const r = engine.lossAndGradients(params, batch, {
          classWeights: c.class_weights,
          lossScale: 1 / c.accumulation,
          gradientCheckpointing,
        });
        disposeBatch(batch);
        losses.push(r.loss);
        for (const [n, g] of r.grads) {
          const prev = acc.get(n);
          acc.set(n, prev ? tf.add(prev, g) : g);
          if (prev) tf.dispose([prev, g]);
        }
      }
      const want = expected.steps[s]!;
      const lr = schedule.lrAt(opt.stepCount);
      assert.ok(Math.abs(lr - want.lr) < 1e-12, `lr ${lr}`);
      const dl = diff(losses, want.losses).abs;
      assert.ok(dl < 1e-5, `step ${s} losses ${losses} vs ${want.losses} (max |diff| ${dl})`);
      const clipped = clipGradNorm(acc, c.max_norm);
      const dn = Math.abs(clipped.totalNorm - want.grad_norm);
      assert.ok(dn < 1e-5, `step ${s} grad norm ${clipped.totalNorm} vs ${want.grad_norm}`);
      console.log(
        `PEFT step ${s} (checkpointing ${gradientCheckpointing}): loss |diff| ${dl.toExponential(2)}, grad norm |diff| ${dn.toExponential(2)}`,
      );
      opt.step(clipped.grads, lr);
      tf.dispose([...acc.values(), ...clipped.grads.values()]);
    }
    const dir = await mkdtemp(path.join(tmpdir(), "esmkit-onnx-adapter-"));
    saveAdapter(lora, model, dir);
    const ours = readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors;
    assert.deepEqual([...ours.keys()].sort(), [...theirs.tensors.keys()].sort());
    let worst = 0;
    for (const [k, t] of theirs.tensors)
      worst = Math.max(worst, diff(ours.get(k)!.data, t.data).abs);
    console.log(
      `PEFT after 2 steps via engine (checkpointing ${gradientCheckpointing}): max |diff| ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 1e-5, `max weight diff ${worst}`);
    // Forward passes see the updated adapters and classifier (no stale cached weights).
    const after = engine.logits(probe);
    const ref = model.forward({ inputIds: probeRows.ids, attentionMask: probeRows.mask });
    const dAfter = diff(after, ref.logits.dataSync());
    const moved = diff(after, initialLogits);
    tf.dispose([ref.lastHiddenState, ref.logits]);
    assert.ok(
      dAfter.rel < GRAD_TOLERANCE && moved.abs > 100 * dAfter.abs,
      `logits after training vs tfjs: max |diff| ${dAfter.abs} (training moved them by ${moved.abs})`,
    );
    opt.dispose();
    engine.dispose();
    lora.dispose();
    model.dispose();
  }
});

// ---- 4. LoRA dropout ----------------------------------------------------------------------

test("LoRA dropout 0.1: plain and checkpointed engine steps agree and draw one seed per adapter", async () => {
  const model = await loadTiny();
  const lora = applyLora(model, {
    rank: 4,
    alpha: 8,
    dropout: 0.1,
    targetModules: ["query", "key", "value", "output.dense"],
  });
  randomiseLoraB(lora, 3);
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const engine = new OnnxEsmEngine(model, { lora });
  const draws = lora.adapters.size;
  const rng = new SeededRandom(1234);
  const start = rng.getState();
  const advanced = new SeededRandom(0);
  advanced.setState(start);
  for (let i = 0; i < draws; i++) advanced.int(2 ** 31);

  const plain = engine.lossAndGradients(params, batch, { dropoutRng: rng });
  assert.equal(rng.getState(), advanced.getState(), `plain: ${draws} draws per micro-batch`);
  rng.setState(start);
  const ckpt = engine.lossAndGradients(params, batch, {
    dropoutRng: rng,
    gradientCheckpointing: true,
  });
  assert.equal(rng.getState(), advanced.getState(), `checkpointed: ${draws} draws per micro-batch`);
  assertStepClose(ckpt, plain, 1e-5, "dropout 0.1, checkpointed vs plain");

  // The masks matter: no dropout (eval mode), or another stream, gives other gradients.
  lora.training = false;
  const noDropout = engine.lossAndGradients(params, batch);
  lora.training = true;
  const other = engine.lossAndGradients(params, batch, { dropoutRng: new SeededRandom(99) });
  const key = "esm.encoder.layer.0.attention.self.query.lora_A.weight";
  const g = plain.grads.get(key)!.dataSync();
  for (const [what, r] of [
    ["no dropout", noDropout],
    ["another stream", other],
  ] as const) {
    const d = diff(r.grads.get(key)!.dataSync(), g);
    assert.ok(d.rel > 1e-3, `${what}: ${key} differs by only ${d.rel}`);
  }
  // The dropout gradients are those of the loss the same masks give: tfjs cannot
  // replay these masks, so check a directional derivative (4th-order central
  // differences, masks fixed by resetting the stream) against <gradient, direction>.
  const dirRng = new SeededRandom(77);
  const direction = new Map<string, Float32Array>();
  const original = new Map<string, Float32Array>();
  for (const [k, v] of params) {
    original.set(k, Float32Array.from(v.dataSync()));
    direction.set(
      k,
      Float32Array.from({ length: v.size }, () => dirRng.normal()),
    );
  }
  const lossAt = (t: number) => {
    for (const [k, v] of params) {
      const o = original.get(k)!;
      const dv = direction.get(k)!;
      const moved = tf.tensor(
        o.map((x, i) => x + t * dv[i]!),
        v.shape,
      );
      v.assign(moved);
      moved.dispose();
    }
    rng.setState(start);
    const r = engine.lossAndGradients(params, batch, { dropoutRng: rng });
    disposeResult(r);
    return r.loss;
  };
  const h = 2e-3;
  const fd = (8 * (lossAt(h) - lossAt(-h)) - (lossAt(2 * h) - lossAt(-2 * h))) / (12 * h);
  lossAt(0);
  let analytic = 0;
  for (const [k, g] of plain.grads) {
    const gv = g.dataSync();
    const dv = direction.get(k)!;
    for (let i = 0; i < gv.length; i++) analytic += gv[i]! * dv[i]!;
  }
  const fdRel = Math.abs(fd - analytic) / Math.abs(analytic);
  console.log(
    `dropout 0.1: directional derivative ${analytic.toExponential(4)}, finite difference ${fd.toExponential(4)} (rel ${fdRel.toExponential(2)})`,
  );
  assert.ok(fdRel < 2e-3, `directional derivative ${analytic} vs finite difference ${fd}`);
  // Without dropoutRng the LoRA model's own stream is used, with the same count.
  const own = lora.dropoutRng.getState();
  const ownAdvanced = new SeededRandom(0);
  ownAdvanced.setState(own);
  for (let i = 0; i < draws; i++) ownAdvanced.int(2 ** 31);
  const byDefault = engine.lossAndGradients(params, batch);
  assert.equal(lora.dropoutRng.getState(), ownAdvanced.getState());
  for (const r of [plain, ckpt, noDropout, other, byDefault]) disposeResult(r);
  disposeBatch(batch);
  engine.dispose();
  lora.dispose();
  model.dispose();
});

/**
 * LoRA on every dense layer, classifier.dense included. PEFT never adapts the classifier
 * (it is in modules_to_save), so applyLora cannot make this; the engine supports it all
 * the same, built here directly.
 */
function everyDense(model: Esm2Model, dropout: number): LoraModel {
  const config = { ...DEFAULT_LORA, rank: 4, alpha: 8, dropout, targetModules: ["dense"] };
  return new LoraModel(model, { ...config, modulesToSave: [] });
}

test("LoRA on every dense layer (classifier.dense included; dropout 0) matches tfjs", async () => {
  const model = await loadTiny();
  const lora = everyDense(model, 0);
  assert.ok(lora.adapters.has("classifier.dense"));
  randomiseLoraB(lora, 4);
  compareLoraStep(model, lora, "LoRA dense");
});

test("LoRA dropout on classifier.dense: the mask has one row per sequence", async () => {
  const model = await loadTiny();
  const lora = everyDense(model, 0.1);
  assert.ok(lora.adapters.has("classifier.dense"));
  randomiseLoraB(lora, 5);
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const engine = new OnnxEsmEngine(model, { lora });
  // The LM head's adapter is not on the classification path: no draw for it (as tfjs).
  const used = [...lora.adapters.keys()].filter((k) => !k.startsWith("lm_head.")).length;
  const rng = new SeededRandom(5);
  const want = new SeededRandom(5);
  for (let i = 0; i < used; i++) want.int(2 ** 31);
  try {
    const plain = engine.lossAndGradients(params, batch, { dropoutRng: rng });
    assert.equal(rng.getState(), want.getState(), `${used} draws`);
    rng.setState(new SeededRandom(5).getState());
    const ckpt = engine.lossAndGradients(params, batch, {
      dropoutRng: rng,
      gradientCheckpointing: true,
    });
    assertStepClose(ckpt, plain, 1e-5, "classifier.dense dropout, checkpointed vs plain");
    disposeResult(plain);
    disposeResult(ckpt);
  } finally {
    disposeBatch(batch);
    engine.dispose();
    lora.dispose();
    model.dispose();
  }
});
