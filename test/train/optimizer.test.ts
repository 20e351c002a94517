import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { ConfigError, WeightsError } from "../../src/errors";
import { readCheckpoint, writeCheckpoint } from "../../src/train/checkpoint-io";
import { clipGradNorm, globalGradNorm } from "../../src/train/clip";
import {
  AdamW,
  adamWStateFromRecords,
  adamWStateToRecords,
  isDecayParameter,
} from "../../src/train/optimizer";
import { linearScheduleWithWarmup } from "../../src/train/schedule";
import { REPO_ROOT } from "../helpers/python";

interface Fixture {
  lr: number;
  weightDecay: number;
  warmupSteps: number;
  totalSteps: number;
  maxGradNorm: number;
  decay: Record<string, boolean>;
  initial: Record<string, { shape: number[]; data: number[] }>;
  steps: {
    grads: Record<string, number[]>;
    lr: number;
    totalNorm: number;
    params: Record<string, number[]>;
  }[];
}

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, "test", "fixtures", "train", name), "utf8"));
}

/** float32 parity: |a - e| <= 1e-6 + 1e-6 |e| for every element. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= 1e-6 + 1e-6 * Math.abs(e), `${what}[${i}]: got ${a}, want ${e}`);
  }
}

const fx = fixture<Fixture>("adamw.json");
const tmpRoot = mkdtempSync(path.join(tmpdir(), "esmkit-opt-"));

before(async () => {
  await selectBackend({ backend: "wasm" });
});
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

function makeParams(): Map<string, tf.Variable> {
  return new Map(
    Object.entries(fx.initial).map(([n, t]) => [n, tf.variable(tf.tensor(t.data, t.shape))]),
  );
}

function gradsFor(k: number): Map<string, tf.Tensor> {
  return new Map(
    Object.entries(fx.steps[k]!.grads).map(([n, g]) => [n, tf.tensor(g, fx.initial[n]!.shape)]),
  );
}

/** One HF-style optimizer step: clip -> AdamW.step at the scheduled lr. */
function trainStep(opt: AdamW, k: number) {
  const sched = linearScheduleWithWarmup(fx);
  const lr = sched.lrAt(opt.stepCount);
  const grads = gradsFor(k);
  const clipped = clipGradNorm(grads, fx.maxGradNorm);
  opt.step(clipped.grads, lr);
  tf.dispose([...grads.values(), ...clipped.grads.values()]);
  return { lr, totalNorm: clipped.totalNorm };
}

function disposeParams(params: Map<string, tf.Variable>): void {
  for (const v of params.values()) v.dispose();
}

test("the fixture exercises clipped and unclipped steps and a zero first lr", () => {
  const norms = fx.steps.map((s) => s.totalNorm);
  assert.ok(norms.some((n) => n > fx.maxGradNorm) && norms.some((n) => n < fx.maxGradNorm));
  assert.equal(fx.steps[0]!.lr, 0);
});

test("AdamW + linear warmup + clip_grad_norm_ reproduce torch for every parameter and step", () => {
  const params = makeParams();
  const opt = new AdamW(params, { lr: fx.lr, weightDecay: fx.weightDecay });
  assert.deepEqual(
    opt.decayedNames(),
    Object.keys(fx.decay).filter((n) => fx.decay[n]),
  );
  fx.steps.forEach((expected, k) => {
    const { lr, totalNorm } = trainStep(opt, k);
    assert.equal(lr, expected.lr, `step ${k} lr`);
    assertClose([totalNorm], [expected.totalNorm], `step ${k} total norm`);
    for (const [name, p] of params) {
      assertClose(p.dataSync(), expected.params[name]!, `step ${k} ${name}`);
    }
  });
  opt.dispose();
  disposeParams(params);
});

test("the parity check is sensitive to the weight-decay grouping", () => {
  // Decaying every parameter (biases and LayerNorm too) must move them off the fixture.
  const params = makeParams();
  const opt = new AdamW(params, { lr: fx.lr, weightDecay: fx.weightDecay, decay: () => true });
  for (let k = 0; k < fx.steps.length; k++) trainStep(opt, k);
  const name = "esm.encoder.layer.0.attention.self.query.bias";
  const got = params.get(name)!.dataSync();
  const want = fx.steps.at(-1)!.params[name]!;
  assert.ok(got.some((a, i) => Math.abs(a - want[i]!) > 1e-6));
  opt.dispose();
  disposeParams(params);
});

test("isDecayParameter follows the HF Trainer on real ESM and PEFT parameter names", () => {
  const { cases } = fixture<{ cases: { name: string; decay: boolean }[] }>("decay_names.json");
  assert.ok(cases.length > 20);
  for (const c of cases) assert.equal(isDecayParameter(c.name), c.decay, c.name);
});

test("a run resumed from a checkpoint continues bit-for-bit", () => {
  const straight = makeParams();
  const optA = new AdamW(straight, { lr: fx.lr, weightDecay: fx.weightDecay });
  for (let k = 0; k < fx.steps.length; k++) trainStep(optA, k);

  const first = makeParams();
  const optB = new AdamW(first, { lr: fx.lr, weightDecay: fx.weightDecay });
  for (let k = 0; k < 3; k++) trainStep(optB, k);
  const { tensors, meta } = adamWStateToRecords(optB.exportState());
  for (const [n, v] of first) {
    tensors[`model/${n}`] = { shape: v.shape, data: new Float32Array(v.dataSync()) };
  }
  const dir = path.join(tmpRoot, "checkpoint-3");
  writeCheckpoint(dir, { tensors, state: { optimizer: meta } });
  optB.dispose();
  disposeParams(first);

  const loaded = readCheckpoint(dir);
  const resumed = new Map(
    Object.keys(fx.initial).map((n) => {
      const t = loaded.tensors[`model/${n}`]!;
      return [n, tf.variable(tf.tensor(t.data, t.shape))];
    }),
  );
  const optC = new AdamW(resumed, { lr: fx.lr, weightDecay: fx.weightDecay });
  const meta2 = (loaded.state as { optimizer: typeof meta }).optimizer;
  optC.importState(adamWStateFromRecords(loaded.tensors, meta2));
  assert.equal(optC.stepCount, 3);
  for (let k = 3; k < fx.steps.length; k++) trainStep(optC, k);

  for (const [n, p] of straight) {
    const a = Buffer.from(new Float32Array(p.dataSync()).buffer);
    const b = Buffer.from(new Float32Array(resumed.get(n)!.dataSync()).buffer);
    assert.ok(a.equals(b), `${n} differs after resume`);
  }
  const sa = optA.exportState();
  const sc = optC.exportState();
  for (const n of Object.keys(sa.params)) {
    assert.deepEqual(sc.params[n]!.expAvgSq, sa.params[n]!.expAvgSq);
    assert.equal(sc.params[n]!.step, sa.params[n]!.step);
  }
  optA.dispose();
  optC.dispose();
  disposeParams(straight);
  disposeParams(resumed);
});

test("optimizer steps and clipping leak no tensors", () => {
  const params = makeParams();
  const base = tf.memory().numTensors;
  const opt = new AdamW(params, { lr: fx.lr });
  trainStep(opt, 0);
  // The first step creates exp_avg and exp_avg_sq per parameter, and nothing else.
  assert.equal(tf.memory().numTensors, base + 2 * params.size);
  for (let k = 1; k < fx.steps.length; k++) trainStep(opt, k);
  const grads = gradsFor(0);
  globalGradNorm(grads);
  tf.dispose([...grads.values()]);
  opt.importState(opt.exportState());
  assert.equal(tf.memory().numTensors, base + 2 * params.size);
  opt.dispose();
  assert.equal(tf.memory().numTensors, base);
  disposeParams(params);
});

test("parameters without a gradient are skipped, as torch skips grad None", () => {
  const params = makeParams();
  const opt = new AdamW(params, { lr: 0.1 });
  const name = "classifier.out_proj.weight";
  const before = Float32Array.from(params.get(name)!.dataSync());
  const g = tf.onesLike(params.get("esm.encoder.layer.0.attention.self.query.bias")!);
  opt.step(new Map([["esm.encoder.layer.0.attention.self.query.bias", g]]));
  g.dispose();
  assert.deepEqual(params.get(name)!.dataSync(), before);
  assert.deepEqual(Object.keys(opt.exportState().params), [
    "esm.encoder.layer.0.attention.self.query.bias",
  ]);
  opt.dispose();
  disposeParams(params);
});

test("clipping leaves small gradients unchanged and scales large ones to maxNorm", () => {
  const small = new Map([["a", tf.tensor([0.3, 0.4])]]);
  const r1 = clipGradNorm(small, 1);
  assertClose([r1.totalNorm, r1.clipCoef], [0.5, 1], "small");
  assertClose(r1.grads.get("a")!.dataSync(), [0.3, 0.4], "small grads");
  const big = new Map([
    ["a", tf.tensor([3, 0])],
    ["b", tf.tensor([[0, 4]])],
  ]);
  const r2 = clipGradNorm(big, 1);
  assertClose([r2.totalNorm], [5], "big norm");
  assertClose(r2.grads.get("b")!.dataSync(), [0, 4 / (5 + 1e-6)], "big grads");
  tf.dispose([...small.values(), ...big.values(), ...r1.grads.values(), ...r2.grads.values()]);
  assert.throws(() => clipGradNorm(new Map(), 0), /maxGradNorm 0 is invalid; expected a finite/);
});

test("bad options, gradients and states are rejected with the offending value", () => {
  const params = makeParams();
  assert.throws(
    () => new AdamW(params, { lr: -1 }),
    (e: unknown) =>
      e instanceof ConfigError && /AdamW lr -1 is invalid; expected a number >= 0/.test(e.message),
  );
  assert.throws(() => new AdamW(params, { lr: 1e-3, betas: [0.9, 1] }), /beta2 1 is invalid/);
  const opt = new AdamW(params, { lr: 1e-3 });
  const g = tf.zeros([2]);
  assert.throws(
    () => opt.step(new Map([["esm.typo.weight", g]])),
    (e: unknown) =>
      e instanceof ConfigError &&
      /unknown parameter "esm.typo.weight"; known parameters: esm/.test(e.message),
  );
  assert.throws(
    () => opt.step(new Map([["classifier.out_proj.weight", g]])),
    /has shape \[2\] but the parameter is \[2,3\]/,
  );
  g.dispose();
  assert.throws(
    () =>
      opt.importState({
        step: 1,
        params: {
          "classifier.out_proj.weight": {
            step: 1,
            shape: [3, 2],
            expAvg: new Float32Array(6),
            expAvgSq: new Float32Array(6),
          },
        },
      }),
    (e: unknown) => e instanceof WeightsError && /does not fit: shape \[3,2\]/.test(e.message),
  );
  opt.dispose();
  disposeParams(params);
});
