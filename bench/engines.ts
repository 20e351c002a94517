/**
 * The two engines side by side through the one interface (src/engine/engine.ts): one
 * LoRA training step and one inference batch on the 8M ESM-2 architecture, random
 * weights, every token real. The tfjs engine runs on the active TensorFlow.js backend
 * (wasm here unless @tensorflow/tfjs-node is installed) with gradient checkpointing, as
 * `fineTune` defaults to there; the onnx engine without it, its default. Median of
 * `repeats` timed runs after one warm-up. For docs/architecture.md; not part of `npm run bench`.
 *
 *   npm run build && node build/bench/engines.js [batch=8] [length=256] [repeats=3] [threads=1]
 */
import * as tf from "@tensorflow/tfjs-core";
import { describeBackend, selectBackend } from "../src/backend";
import type { EngineName } from "../src/engine/engine";
import { applyLora } from "../src/lora/lora";
import { esm2Config } from "../src/model/config";
import { Esm2Model } from "../src/model/esm2";
import { createEngine } from "../src/onnx/select";
import { median } from "./median";

function time(repeats: number, f: () => void): number {
  f(); // warm-up: graphs built, sessions and kernels initialised
  const runs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    f();
    runs.push((performance.now() - t0) / 1000);
  }
  return median(runs);
}

async function main(): Promise<void> {
  const [B, L, repeats, threads] = [8, 256, 3, 1].map((d, i) => Number(process.argv[2 + i] ?? d));
  const backend = await selectBackend();
  console.log(
    `backend ${describeBackend(backend)}; batch ${B} x ${L}, ${repeats} runs, onnx threads ${threads}`,
  );
  const model = Esm2Model.random(esm2Config("esm2_t6_8M_UR50D"), { seed: 1 });
  const lora = applyLora(model, { dropout: 0 });
  lora.training = true;
  const params = lora.trainableVariables();
  const ids = Array.from({ length: B * L }, (_, i) => 4 + ((i * 7) % 20));
  const mask = ids.map(() => 1);
  const labels = Array.from({ length: B }, (_, i) => i % 2);
  for (const name of ["onnx", "tfjs"] as EngineName[]) {
    const engine = createEngine(name, model, { lora, threads });
    const step = time(repeats, () => {
      const batch = {
        inputIds: tf.tensor2d(ids, [B, L], "int32"),
        attentionMask: tf.tensor2d(mask, [B, L], "int32"),
        labels: tf.tensor1d(labels, "int32"),
      };
      const r = engine.lossAndGradients(params, batch, { gradientCheckpointing: name === "tfjs" });
      tf.dispose([batch.inputIds, batch.attentionMask, batch.labels, ...r.grads.values()]);
    });
    const infer = time(repeats, () => {
      engine.logits({ inputIds: ids, attentionMask: mask, batchSize: B, seqLen: L });
    });
    console.log(
      JSON.stringify({
        engine: name,
        loraStepSeconds: Number(step.toFixed(3)),
        trainTokensPerSecond: Math.round((B * L) / step),
        inferenceSeconds: Number(infer.toFixed(3)),
        inferenceSequencesPerSecond: Number((B / infer).toFixed(2)),
      }),
    );
    engine.dispose();
  }
  lora.dispose();
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
