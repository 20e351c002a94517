/**
 * Worker-thread side of `GradientPool`: a model replica with the same LoRA adapters,
 * computing the loss and gradients of the micro-batches it is sent.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import type { ReplicaRecipe, WorkerJob } from "./parallel";

async function main(): Promise<void> {
  const port = parentPort!;
  const { recipe } = workerData as { recipe: ReplicaRecipe };
  const { selectBackend } = await import("../backend");
  const { applyLora } = await import("../lora/lora");
  const { Esm2Model } = await import("../model/esm2");
  const { fromPretrained } = await import("../model/pretrained");
  const { lossAndGradients } = await import("../engine/tfjs-engine");
  await selectBackend({ backend: recipe.backend as never });
  const model =
    recipe.model.kind === "random"
      ? Esm2Model.random(recipe.model.config, { seed: recipe.model.seed })
      : await fromPretrained(recipe.model.path, {
          onWarning: () => undefined,
          seed: recipe.model.seed,
          ...(recipe.model.id2label ? { id2label: recipe.model.id2label } : {}),
        });
  const lora = applyLora(model, recipe.lora, recipe.loraSeed);
  lora.training = true;
  const params = lora.trainableVariables();
  port.postMessage({ type: "ready", names: [...params.keys()] });
  port.on("message", (job: WorkerJob) => {
    try {
      for (const [name, data] of Object.entries(job.params)) {
        const v = params.get(name)!;
        v.assign(tf.tensor(data, v.shape));
      }
      if (job.rngState !== null) lora.dropoutRng.setState(job.rngState);
      const b = job.batch;
      const batch = {
        inputIds: tf.tensor2d(b.inputIds, [b.batchSize, b.seqLen], "int32"),
        attentionMask: tf.tensor2d(b.attentionMask, [b.batchSize, b.seqLen], "int32"),
        labels: tf.tensor1d(b.labels, "int32"),
        ...(b.targets
          ? { targets: tf.tensor2d(b.targets, [b.batchSize, b.targets.length / b.batchSize]) }
          : {}),
      };
      const r = lossAndGradients(model, params, batch, {
        ...job.options,
        dropoutRng: lora.dropoutRng,
      });
      tf.dispose([
        batch.inputIds,
        batch.attentionMask,
        batch.labels,
        ...(batch.targets ? [batch.targets] : []),
      ]);
      const grads: Record<string, Float32Array> = {};
      for (const [name, g] of r.grads) {
        grads[name] = g.dataSync() as Float32Array;
        g.dispose();
      }
      port.postMessage(
        { type: "result", id: job.id, loss: r.loss, grads },
        Object.values(grads).map((g) => g.buffer as ArrayBuffer),
      );
    } catch (e) {
      port.postMessage({ type: "error", id: job.id, message: (e as Error).message });
    }
  });
}

main().catch((e) =>
  parentPort?.postMessage({ type: "fatal", message: (e as Error)?.message ?? String(e) }),
);
