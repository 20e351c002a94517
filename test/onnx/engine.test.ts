/**
 * The onnx engine (src/onnx) against the references esmkit already trusts: the
 * transformers forward fixtures (test/fixtures/model), the tfjs model and its
 * `lossAndGradients` (train/step.ts, itself tested against PEFT and torch), and the
 * PEFT two-step training fixture (test/fixtures/lora). Also the dropout-stream
 * contract, error messages and tensor hygiene.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { ConfigError } from "../../src/errors";
import { loadAdapter, saveAdapter } from "../../src/lora/adapter-io";
import { applyLora, type LoraModel } from "../../src/lora/lora";
import { esm2Config } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { headGroupsFor, lossWeights, OnnxEsmEngine, type TokenBatch } from "../../src/onnx";
import { EsmGraph, IN } from "../../src/onnx/esm-graph";
import { floatTensor, OrtSession } from "../../src/onnx/runtime";
import { clipGradNorm } from "../../src/train/clip";
import { AdamW } from "../../src/train/optimizer";
import { linearScheduleWithWarmup } from "../../src/train/schedule";
import { lossAndGradients, type MicroBatch, type StepResult } from "../../src/train/step";
import { SeededRandom } from "../../src/util/random";
import { REPO_ROOT } from "../helpers/python";

const MODEL_FIX = path.join(REPO_ROOT, "test", "fixtures", "model");
const LORA_FIX = path.join(REPO_ROOT, "test", "fixtures", "lora");
const TRAIN_FIX = path.join(REPO_ROOT, "test", "fixtures", "train");
/** The tfjs parity test's tolerance against transformers (max abs diff). */
const FORWARD_TOLERANCE = 1e-4;
/** Engine vs tfjs: max |diff| / max |reference| per tensor. */
const GRAD_TOLERANCE = 1e-4;
const MASK_ID = 32;
const EMBEDDING = "esm.embeddings.word_embeddings.weight";

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

// ---- helpers ----------------------------------------------------------------------------

interface Diff {
  /** max |got - want| (NaN if any element is NaN) */
  abs: number;
  /** max |want| */
  ref: number;
  rel: number;
}

function diff(got: ArrayLike<number>, want: ArrayLike<number>): Diff {
  assert.equal(got.length, want.length, "element count");
  let abs = 0;
  let ref = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (Number.isNaN(d) || d > abs) abs = d;
    ref = Math.max(ref, Math.abs(want[i]!));
  }
  return { abs, ref, rel: abs / ref };
}

interface Rows {
  ids: number[][];
  mask: number[][];
  labels: number[];
}

/**
 * Rows of `<cls> residues <eos>` padded to `L`; `lengths` count every real token. A
 * `<mask>` replaces the residue at each position listed in `masks[row]`.
 */
function makeRows(
  lengths: number[],
  L: number,
  labels: number[],
  seed: number,
  masks: number[][] = [],
): Rows {
  const rng = new SeededRandom(seed);
  const ids = lengths.map((n, r) =>
    Array.from({ length: L }, (_, l) => {
      if (l >= n) return 1;
      if (l === 0) return 0;
      if (l === n - 1) return 2;
      return masks[r]?.includes(l) ? MASK_ID : 4 + rng.int(20);
    }),
  );
  const mask = lengths.map((n) => Array.from({ length: L }, (_, l) => (l < n ? 1 : 0)));
  return { ids, mask, labels };
}

function tokenBatch(r: { ids: number[][]; mask: number[][] }): TokenBatch {
  return {
    inputIds: r.ids.flat(),
    attentionMask: r.mask.flat(),
    batchSize: r.ids.length,
    seqLen: r.ids[0]!.length,
  };
}

function microBatch(r: Rows): MicroBatch {
  return {
    inputIds: tf.tensor2d(r.ids, undefined, "int32"),
    attentionMask: tf.tensor2d(r.mask, undefined, "int32"),
    labels: tf.tensor1d(r.labels, "int32"),
  };
}

function disposeBatch(b: MicroBatch): void {
  tf.dispose([b.inputIds, b.attentionMask, b.labels]);
}

function disposeResult(r: StepResult): void {
  tf.dispose([...r.grads.values()]);
}

/**
 * Loss and every gradient of `got` against `want` (same key set, relative tolerance);
 * returns the worst relative difference and logs it with the worst tensor.
 */
function assertStepClose(got: StepResult, want: StepResult, tol: number, what: string): number {
  assert.deepEqual([...got.grads.keys()].sort(), [...want.grads.keys()].sort(), `${what}: keys`);
  assert.ok(want.grads.size > 0, `${what}: no gradients`);
  const lossRel = Math.abs(got.loss - want.loss) / Math.abs(want.loss);
  assert.ok(lossRel <= tol, `${what}: loss ${got.loss} vs ${want.loss} (rel ${lossRel})`);
  let worst = { key: "", d: { abs: 0, ref: 0, rel: -1 } as Diff };
  for (const [k, g] of want.grads) {
    const o = got.grads.get(k)!;
    assert.deepEqual(o.shape, g.shape, `${what}: ${k} shape`);
    const d = diff(o.dataSync(), g.dataSync());
    assert.ok(d.ref > 0, `${what}: reference gradient of ${k} is all zero (a vacuous check)`);
    assert.ok(
      d.rel <= tol,
      `${what}: ${k} max |diff| ${d.abs.toExponential(2)} / max |ref| ${d.ref.toExponential(2)} = ${d.rel.toExponential(2)} > ${tol}`,
    );
    if (!(d.rel <= worst.d.rel)) worst = { key: k, d };
  }
  console.log(
    `${what}: loss rel ${lossRel.toExponential(2)}; ${want.grads.size} gradients, worst ${worst.key} rel ${worst.d.rel.toExponential(2)} (abs ${worst.d.abs.toExponential(2)})`,
  );
  return Math.max(lossRel, worst.d.rel);
}

/** LoRA B starts at zero, which makes every A gradient zero: give B random values. */
function randomiseLoraB(lora: LoraModel, seed: number): void {
  const rng = new SeededRandom(seed);
  for (const a of lora.adapters.values()) {
    const data = Float32Array.from({ length: a.bT.size }, () => rng.normal() * 0.2);
    const t = tf.tensor(data, a.bT.shape);
    a.bT.assign(t);
    t.dispose();
  }
}

/** Full fine-tuning as the trainer does it with the onnx engine: embeddings frozen. */
function fullParams(model: Esm2Model): Map<string, tf.Variable> {
  const emb = model.namedVariables().get(EMBEDDING)!;
  (emb as { trainable: boolean }).trainable = false;
  const out = new Map<string, tf.Variable>();
  for (const [k, v] of model.namedVariables()) if (v.trainable) out.set(k, v);
  return out;
}

const loadTiny = () =>
  fromPretrained(path.join(MODEL_FIX, "tiny"), { onWarning: (m) => assert.fail(m) });

// ---- 1. forward parity -------------------------------------------------------------------

for (const fixture of ["tiny", "odd"]) {
  test(`${fixture} fixture: engine logits match transformers (${FORWARD_TOLERANCE}) and the tfjs model`, async () => {
    const dir = path.join(MODEL_FIX, fixture);
    const inputs = readJson<{ input_ids: number[][]; attention_mask: number[][] }>(
      path.join(dir, "inputs.json"),
    );
    const want = readJson<{ logits: number[][] }>(path.join(dir, "expected.json"));
    assert.ok(
      inputs.input_ids.some((row) => row.includes(MASK_ID)) &&
        inputs.attention_mask.some((row) => row.includes(0)),
      "the fixture exercises <mask> and padding",
    );
    const model = await fromPretrained(dir, { onWarning: (m) => assert.fail(m) });
    const engine = new OnnxEsmEngine(model);
    const logits = engine.logits(
      tokenBatch({ ids: inputs.input_ids, mask: inputs.attention_mask }),
    );
    const vsHf = diff(logits, want.logits.flat());
    const ours = model.forward({
      inputIds: inputs.input_ids,
      attentionMask: inputs.attention_mask,
    });
    const vsTfjs = diff(logits, ours.logits.dataSync());
    tf.dispose([ours.lastHiddenState, ours.logits]);
    console.log(
      `${fixture}: engine logits max |diff| vs transformers ${vsHf.abs.toExponential(2)}, vs tfjs ${vsTfjs.abs.toExponential(2)}`,
    );
    assert.ok(vsHf.abs < FORWARD_TOLERANCE, `vs transformers: ${vsHf.abs}`);
    assert.ok(vsTfjs.abs < FORWARD_TOLERANCE, `vs tfjs: ${vsTfjs.abs}`);
    engine.dispose();
    model.dispose();
  });
}

test("PEFT fixture: engine logits with unmerged LoRA adapters match PEFT's (1e-4)", async () => {
  const model = await fromPretrained(path.join(LORA_FIX, "base"), { onWarning: () => undefined });
  const lora = loadAdapter(model, path.join(LORA_FIX, "adapter-initial"));
  const expected = readJson<{
    micro_batches: { input_ids: number[][]; attention_mask: number[][] }[];
    lora_logits: number[][];
  }>(path.join(LORA_FIX, "expected.json"));
  const mb = expected.micro_batches[0]!;
  const engine = new OnnxEsmEngine(model, { lora });
  const got = engine.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask }));
  const d = diff(got, expected.lora_logits.flat());
  // Without the adapters the logits must differ, or the check above proves nothing.
  const plain = new OnnxEsmEngine(model);
  const base = diff(plain.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask })), got);
  console.log(
    `PEFT LoRA logits: max |diff| ${d.abs.toExponential(2)} (adapters move them by ${base.abs.toExponential(2)})`,
  );
  assert.ok(d.abs < FORWARD_TOLERANCE, `max |diff| ${d.abs}`);
  assert.ok(base.abs > 100 * FORWARD_TOLERANCE, `adapters change logits by only ${base.abs}`);
  // Merged into the base weights (new values, no side path), then unmerged: same logits.
  for (const step of ["merge", "unmerge"] as const) {
    lora[step]();
    const again = engine.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask }));
    const dm = diff(again, expected.lora_logits.flat()).abs;
    assert.ok(dm < FORWARD_TOLERANCE, `after ${step}: max |diff| ${dm}`);
  }
  engine.dispose();
  plain.dispose();
  lora.dispose();
  model.dispose();
});

test("8M architecture (2 layers): engine logits match tfjs with padding and <mask> (token dropout)", () => {
  const config = esm2Config("esm2_t6_8M_UR50D", { numHiddenLayers: 2, numLabels: 3 });
  const model = Esm2Model.random(config, { seed: 5 });
  // The classifier starts at std 0.02; larger weights make the logits worth comparing.
  const rng = new SeededRandom(9);
  for (const k of ["classifier.dense.weight", "classifier.out_proj.weight"]) {
    const v = model.namedVariables().get(k)!;
    const t = tf.tensor(
      Float32Array.from({ length: v.size }, () => rng.normal() * 0.3),
      v.shape,
    );
    v.assign(t);
    t.dispose();
  }
  const rows = makeRows([12, 7, 4], 12, [0, 1, 2], 3, [[3, 5], [2], []]);
  const engine = new OnnxEsmEngine(model, { threads: 2 });
  const got = engine.logits(tokenBatch(rows));
  const ref = model.forward({ inputIds: rows.ids, attentionMask: rows.mask });
  const d = diff(got, ref.logits.dataSync());
  // The same rows with residues where the <mask> tokens were: token dropout must matter.
  const unmasked = rows.ids.map((r) => r.map((id) => (id === MASK_ID ? 10 : id)));
  const other = engine.logits(tokenBatch({ ids: unmasked, mask: rows.mask }));
  const effect = diff(other, got);
  console.log(
    `8M x2 logits vs tfjs: max |diff| ${d.abs.toExponential(2)}, rel ${d.rel.toExponential(2)} (<mask> moves them by ${effect.abs.toExponential(2)})`,
  );
  assert.ok(
    d.rel < GRAD_TOLERANCE && d.abs < FORWARD_TOLERANCE,
    `max |diff| ${d.abs}, rel ${d.rel}`,
  );
  assert.ok(effect.abs > 100 * d.abs, `<mask> changes logits by only ${effect.abs}`);
  tf.dispose([ref.lastHiddenState, ref.logits]);
  engine.dispose();
  model.dispose();
});

// ---- 2. gradients vs the tfjs step --------------------------------------------------------

const CLASS_WEIGHTS = [0.7, 1.8];
/** Different lengths, padding, <mask> tokens; labels of both classes. */
const gradRows = () => makeRows([11, 6, 9], 11, [1, 0, 1], 21, [[4], [], [2, 6]]);

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
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const opts = { classWeights: CLASS_WEIGHTS, lossScale: 0.5 };
  const ref = lossAndGradients(model, params, batch, opts);
  const engine = new OnnxEsmEngine(model, { lora });
  for (const gradientCheckpointing of [false, true]) {
    const got = engine.lossAndGradients(params, batch, { ...opts, gradientCheckpointing });
    assertStepClose(got, ref, GRAD_TOLERANCE, `LoRA, checkpointing ${gradientCheckpointing}`);
    disposeResult(got);
  }
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  lora.dispose();
  model.dispose();
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

test("checkpointed step with attention split into head groups matches tfjs", async () => {
  const model = await loadTiny();
  const heads = model.config.numAttentionHeads;
  const L = 520;
  const B = 2;
  const groups = headGroupsFor(heads, B, L);
  assert.ok(groups > 1, `the shape must split the ${heads} heads (got ${groups} group)`);
  const lora = applyLora(model, {
    rank: 4,
    alpha: 8,
    dropout: 0,
    targetModules: ["query", "value"],
  });
  randomiseLoraB(lora, 2);
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

test("LoRA on every dense layer (classifier.dense included; dropout 0) matches tfjs", async () => {
  const model = await loadTiny();
  const lora = applyLora(model, { rank: 4, alpha: 8, dropout: 0, targetModules: ["dense"] });
  assert.ok(lora.adapters.has("classifier.dense"));
  randomiseLoraB(lora, 4);
  lora.training = true;
  const params = lora.trainableVariables();
  const batch = microBatch(gradRows());
  const opts = { classWeights: CLASS_WEIGHTS, lossScale: 0.5 };
  const ref = lossAndGradients(model, params, batch, opts);
  const engine = new OnnxEsmEngine(model, { lora });
  for (const gradientCheckpointing of [false, true]) {
    const got = engine.lossAndGradients(params, batch, { ...opts, gradientCheckpointing });
    assertStepClose(got, ref, GRAD_TOLERANCE, `LoRA dense, checkpointing ${gradientCheckpointing}`);
    disposeResult(got);
  }
  disposeResult(ref);
  disposeBatch(batch);
  engine.dispose();
  lora.dispose();
  model.dispose();
});

test("LoRA dropout on classifier.dense: the mask has one row per sequence", async () => {
  const model = await loadTiny();
  const lora = applyLora(model, { rank: 4, alpha: 8, dropout: 0.1, targetModules: ["dense"] });
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
