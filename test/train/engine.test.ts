import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import { ConfigError } from "../../src/errors";
import { applyLora } from "../../src/lora/lora";
import { customEsmConfig } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { OnnxEsmEngine } from "../../src/onnx/engine";
import { parseEngineChoice, resolveEngine } from "../../src/onnx/select";
import { EsmTokenizer } from "../../src/tokenizer/esm-tokenizer";
import type { Example } from "../../src/train/batching";
import { train } from "../../src/train/trainer";
import { SeededRandom } from "../../src/util/random";

before(async () => {
  await selectBackend({ backend: "wasm" });
});

const tok = new EsmTokenizer();

function examples(n: number, seed: number): Example[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => {
    const label = rng.int(2);
    const letters = label === 1 ? "LIVFAMW" : "KRDEQNS";
    const len = 6 + rng.int(30);
    const seq = Array.from({ length: len }, () => letters[rng.int(letters.length)]).join("");
    return { inputIds: tok.encode(seq), label };
  });
}

function model(): Esm2Model {
  const config = customEsmConfig({ hiddenSize: 48, numHiddenLayers: 2, numAttentionHeads: 4 });
  return Esm2Model.random(config, { seed: 11 });
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return diff / (scale || 1);
}

test("resolveEngine: asked engines are kept, auto takes onnx on wasm/cpu and tfjs on native backends", () => {
  assert.equal(resolveEngine("tfjs", "wasm").name, "tfjs");
  assert.equal(resolveEngine("onnx", "tensorflow").name, "onnx");
  assert.equal(resolveEngine("auto", "wasm").name, "onnx");
  assert.equal(resolveEngine(undefined, "cpu").name, "onnx");
  const native = resolveEngine("auto", "tensorflow-gpu");
  assert.equal(native.name, "tfjs");
  assert.match(native.reason, /natively on the tensorflow-gpu backend/);
  assert.throws(
    () => parseEngineChoice("fast", "--engine"),
    (e: unknown) =>
      e instanceof ConfigError && /"fast".*--engine.*auto, onnx, tfjs/.test(e.message),
  );
});

for (const checkpointing of [false, true]) {
  test(`training with the onnx engine ends on the tfjs engine's weights and metrics (checkpointing ${checkpointing})`, async (t) => {
    const data = examples(48, 1);
    const evalSet = examples(24, 2);
    const runs = [];
    for (const useOnnx of [false, true]) {
      const m = model();
      const lora = applyLora(
        m,
        { rank: 4, alpha: 8, dropout: 0, targetModules: ["query", "value", "output.dense"] },
        5,
      );
      const engine = useOnnx ? new OnnxEsmEngine(m, { lora, threads: 1 }) : undefined;
      const result = await train({
        model: m,
        lora,
        engine,
        train: data,
        eval: evalSet,
        outDir: await mkdtemp(path.join(tmpdir(), "esmkit-engine-")),
        learningRate: 3e-3,
        batchSize: 8,
        gradientAccumulationSteps: 2,
        gradientCheckpointing: checkpointing,
        maxGradNorm: 1,
        warmupSteps: 1,
      });
      const weights = new Map(
        [...lora.trainableVariables()].map(([k, v]) => [k, Float32Array.from(v.dataSync())]),
      );
      runs.push({ result, weights });
      engine?.dispose();
      lora.dispose();
      m.dispose();
    }
    const [tfjsRun, onnxRun] = runs as [(typeof runs)[0], (typeof runs)[0]];
    assert.equal(onnxRun.result.step, tfjsRun.result.step);
    let worst = 0;
    let worstName = "";
    let moved = 0;
    for (const [name, w] of tfjsRun.weights) {
      const other = onnxRun.weights.get(name);
      assert.ok(other, `the onnx run lacks ${name}`);
      const d = relDiff(w, other);
      if (d > worst) [worst, worstName] = [d, name];
      if (name.endsWith("lora_B.weight")) moved = Math.max(moved, ...Array.from(w, Math.abs));
    }
    assert.ok(moved > 1e-4, `LoRA B should have moved from zero (max |B| ${moved})`);
    t.diagnostic(`max relative weight difference ${worst.toExponential(2)} (${worstName})`);
    assert.ok(worst < 1e-4, `max relative weight difference ${worst} (${worstName})`);
    const a = tfjsRun.result.lastEval!.metrics;
    const b = onnxRun.result.lastEval!.metrics;
    const [la, lb] = [a.weightedLoss!, b.weightedLoss!];
    assert.ok(Math.abs(la - lb) < 1e-5, `eval loss ${la} vs ${lb}`);
    assert.deepEqual(b.confusionMatrix, a.confusionMatrix);
  });
}

test("the trainer refuses a worker pool together with an engine", async () => {
  const m = model();
  const lora = applyLora(m, { dropout: 0 });
  const engine = new OnnxEsmEngine(m, { lora });
  try {
    await assert.rejects(
      train({
        model: m,
        lora,
        engine,
        pool: {} as never,
        train: examples(8, 3),
        outDir: await mkdtemp(path.join(tmpdir(), "esmkit-engine-")),
      }),
      /onnx engine uses its own threads/,
    );
  } finally {
    engine.dispose();
    lora.dispose();
    m.dispose();
  }
});
