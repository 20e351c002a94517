import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { applyLora, type LoraConfig } from "../../src/lora/lora";
import { customEsmConfig } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { EsmTokenizer } from "../../src/tokenizer/esm-tokenizer";
import type { Example } from "../../src/train/batching";
import { GradientPool } from "../../src/train/parallel";
import { train } from "../../src/train/trainer";
import { SeededRandom } from "../../src/util/random";

before(async () => {
  await selectBackend({ backend: "wasm" });
});

const config = customEsmConfig({ hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4 });
const loraConfig: Partial<LoraConfig> = { rank: 4, alpha: 8, dropout: 0.1 };

function examples(n: number): Example[] {
  const tok = new EsmTokenizer();
  const rng = new SeededRandom(5);
  return Array.from({ length: n }, () => {
    const len = 5 + rng.int(20);
    const seq = Array.from({ length: len }, () => "LAGVSERTIDPKQNFYMHWC"[rng.int(20)]).join("");
    return { inputIds: tok.encode(seq), label: rng.int(2) };
  });
}

async function run(gradientCheckpointing: boolean, pool?: GradientPool) {
  const model = Esm2Model.random(config, { seed: 7 });
  const lora = applyLora(model, loraConfig, 3);
  await train({
    model,
    lora,
    pool,
    train: examples(40),
    outDir: await mkdtemp(path.join(tmpdir(), "esmkit-par-")),
    batchSize: 4,
    epochs: 1,
    gradientAccumulationSteps: 2,
    gradientCheckpointing,
    learningRate: 1e-2,
  });
  const weights = new Map(
    [...lora.trainableVariables()].map(([k, v]) => [k, v.dataSync().slice()]),
  );
  lora.dispose();
  model.dispose();
  return weights;
}

test("accumulation micro-batches in worker threads end on the same weights as one thread", async () => {
  const pool = await GradientPool.start(
    {
      model: { kind: "random", config, seed: 7 },
      lora: { ...applyLoraDefaults(), ...loraConfig } as LoraConfig,
      loraSeed: 3,
      backend: "wasm",
    },
    2,
  );
  try {
    for (const checkpointing of [false, true]) {
      const sequential = await run(checkpointing);
      const parallel = await run(checkpointing, pool);
      assert.equal(parallel.size, sequential.size);
      for (const [k, w] of sequential)
        assert.deepEqual(parallel.get(k), w, `${k} (checkpointing ${checkpointing})`);
    }
    assert.equal(tf.memory().numTensors > 0, true);
  } finally {
    await pool.dispose();
  }
});

function applyLoraDefaults(): LoraConfig {
  const m = Esm2Model.random(config, { seed: 1 });
  const l = applyLora(m, loraConfig);
  const c = l.config;
  l.dispose();
  m.dispose();
  return c;
}
