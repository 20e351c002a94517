/**
 * Peak tensor memory and time of one LoRA training step on the 8M ESM-2 architecture,
 * with and without gradient checkpointing (random weights; batch and length from argv).
 * Peak memory is tfjs's `tf.profile().peakBytes` for the step: every tensor alive at
 * once, weights included, so the activation share is `peak - before`.
 *
 *   npm run build && node build/bench/step-memory.js [batch=8] [length=512] [backend=wasm]
 */
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../src/backend";
import { lossAndGradients } from "../src/engine/tfjs-engine";
import { applyLora } from "../src/lora/lora";
import { esm2Config } from "../src/model/config";
import { Esm2Model } from "../src/model/esm2";

async function main(): Promise<void> {
  const [B, L] = [Number(process.argv[2] ?? 8), Number(process.argv[3] ?? 512)];
  const backend = await selectBackend({ backend: (process.argv[4] as "wasm") ?? "wasm" });
  const model = Esm2Model.random(esm2Config("esm2_t6_8M_UR50D"), { seed: 1 });
  const lora = applyLora(model, { dropout: 0 });
  const params = lora.trainableVariables();
  const ids = tf.tensor2d(
    Array.from({ length: B * L }, (_, i) => 4 + ((i * 7) % 20)),
    [B, L],
    "int32",
  );
  const batch = {
    inputIds: ids,
    attentionMask: tf.onesLike(ids) as tf.Tensor2D,
    labels: tf.tensor1d(
      Array.from({ length: B }, (_, i) => i % 2),
      "int32",
    ),
  };
  const rows: {
    checkpointing: boolean;
    seconds?: number;
    peakMiB?: number;
    activationMiB?: number;
    error?: string;
  }[] = [];
  // Checkpointing first: without it the step may exhaust the wasm heap, which aborts
  // the backend for the rest of the process.
  const modes =
    process.argv[5] === "plain" ? [false] : process.argv[5] === "ckpt" ? [true] : [true, false];
  for (const checkpointing of modes) {
    const before = tf.memory().numBytes;
    const t0 = performance.now();
    try {
      const info = await tf.profile(() => {
        const r = lossAndGradients(model, params, batch, { gradientCheckpointing: checkpointing });
        tf.dispose([...r.grads.values()]);
      });
      const seconds = (performance.now() - t0) / 1000;
      rows.push({
        checkpointing,
        seconds: Math.round(seconds * 100) / 100,
        peakMiB: Math.round(info.peakBytes / 2 ** 20),
        activationMiB: Math.round((info.peakBytes - before) / 2 ** 20),
      });
    } catch (e) {
      rows.push({ checkpointing, error: (e as Error).message.split("\n")[0] });
    }
  }
  console.log(JSON.stringify({ backend: backend.name, batch: B, length: L, rows }, null, 1));
  const [ckpt, plain] = rows as [(typeof rows)[0], (typeof rows)[0]];
  if (plain.activationMiB && ckpt.activationMiB && plain.seconds && ckpt.seconds) {
    console.log(
      `activation memory -${(100 * (1 - ckpt.activationMiB / plain.activationMiB)).toFixed(0)} %, ` +
        `step time +${(100 * (ckpt.seconds / plain.seconds - 1)).toFixed(0)} % with checkpointing`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
