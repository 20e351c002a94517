import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { ConfigError } from "../../src/errors";
import { applyLora } from "../../src/lora/lora";
import { customEsmConfig } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { EsmTokenizer } from "../../src/tokenizer/esm-tokenizer";
import type { Example } from "../../src/train/batching";
import { readHistory } from "../../src/train/history";
import { type TrainEvent, train } from "../../src/train/trainer";
import { SeededRandom } from "../../src/util/random";

before(async () => {
  await selectBackend({ backend: "wasm" });
});

const tok = new EsmTokenizer();

/** A learnable signal: hydrophobic-only proteins are class 1, charged-only class 0. */
function synthetic(n: number, seed: number): Example[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => {
    const label = rng.int(2);
    const letters = label === 1 ? "LIVFAM" : "KRDEQN";
    const len = 8 + rng.int(12);
    const seq = Array.from({ length: len }, () => letters[rng.int(letters.length)]).join("");
    return { inputIds: tok.encode(seq), label };
  });
}

function tinyModel(seed = 3): Esm2Model {
  const config = customEsmConfig({ hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4 });
  return Esm2Model.random(config, { seed });
}

const tmp = () => mkdtemp(path.join(tmpdir(), "esmkit-train-"));

test("LoRA + head learn a synthetic task to >= 0.95 accuracy within 60 steps", async () => {
  const model = tinyModel();
  const lora = applyLora(model, { rank: 8, alpha: 16, dropout: 0.05 });
  const events: TrainEvent[] = [];
  const out = await tmp();
  const before = tf.memory().numTensors;
  const result = await train({
    model,
    lora,
    train: synthetic(240, 1),
    eval: synthetic(64, 2),
    outDir: out,
    learningRate: 5e-3,
    batchSize: 8,
    epochs: 2,
    gradientAccumulationSteps: 2,
    gradientCheckpointing: true,
    warmupRatio: 0.1,
    onEvent: (e) => events.push(e),
  });
  assert.equal(tf.memory().numTensors, before, "training leaves no tensors behind");
  const start = events.find((e) => e.type === "start");
  assert.ok(start && start.type === "start");
  assert.equal(start.totalSteps, 30, "240 examples / (8 x 2) = 15 steps per epoch, 2 epochs");
  assert.deepEqual(start.classWeights?.length, 2);
  const acc = result.lastEval!.metrics.accuracy;
  console.log(
    `synthetic task: accuracy ${acc.toFixed(3)} after ${result.step} steps, eval loss (class-weighted) ${result.lastEval!.metrics.weightedLoss!.toFixed(3)}`,
  );
  assert.ok(acc >= 0.95, `accuracy ${acc}`);
  const steps = events.filter((e) => e.type === "step");
  assert.equal(steps.length, 30);
  assert.ok(
    steps.every((e) => e.type === "step" && Number.isFinite(e.loss) && e.tokensPerSecond > 0),
  );
  const history = readHistory(path.join(out, "history.jsonl"));
  assert.equal(history.filter((e) => e.type === "eval").length, 2);
  assert.ok(existsSync(path.join(out, "checkpoints", "checkpoint-30")));
  lora.dispose();
  model.dispose();
});

async function runTo(out: string, options: { abortAt?: number; resume?: boolean }) {
  const model = tinyModel(5);
  const lora = applyLora(model, { rank: 4, alpha: 8, dropout: 0.1 }, 11);
  const controller = new AbortController();
  const result = await train({
    model,
    lora,
    train: synthetic(60, 3),
    outDir: out,
    learningRate: 1e-3,
    batchSize: 4,
    epochs: 2,
    gradientAccumulationSteps: 2,
    saveSteps: 2,
    resume: options.resume,
    signal: controller.signal,
    onEvent: (e) => {
      if (e.type === "step" && e.step === options.abortAt) controller.abort();
    },
  });
  const weights = new Map(
    [...lora.trainableVariables()].map(([k, v]) => [k, v.dataSync().slice()]),
  );
  lora.dispose();
  model.dispose();
  return { result, weights };
}

test("an interrupted run resumed from its checkpoint ends on the same weights", async () => {
  const straight = await runTo(await tmp(), {});
  const out = await tmp();
  const first = await runTo(out, { abortAt: 5 });
  assert.equal(first.result.interrupted, true);
  assert.equal(first.result.step, 5);
  assert.ok(
    existsSync(path.join(out, "checkpoints", "checkpoint-5")),
    "Ctrl-C path saves a checkpoint",
  );
  const resumed = await runTo(out, { resume: true });
  assert.equal(resumed.result.interrupted, false);
  assert.equal(resumed.result.step, straight.result.step);
  for (const [k, w] of straight.weights) assert.deepEqual(resumed.weights.get(k), w, k);
  const steps = readFileSync(path.join(out, "history.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === "step")
    .map((e) => e.step);
  assert.deepEqual(
    steps,
    Array.from({ length: straight.result.step }, (_, i) => i + 1),
    "history continues without gaps",
  );
});

test("bad options fail before training with the value and what is accepted", async () => {
  const model = tinyModel();
  const lora = applyLora(model);
  const base = { model, lora, train: synthetic(8, 1), outDir: await tmp() };
  await assert.rejects(train({ ...base, batchSize: 0 }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /Invalid batchSize: 0; expected an integer >= 1/);
    return true;
  });
  await assert.rejects(
    train({ ...base, classWeights: "auto" as never }),
    /expected "balanced", "none" or a list of numbers/,
  );
  lora.dispose();
  model.dispose();
});
