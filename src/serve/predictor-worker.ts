/**
 * Worker-thread side of `loadWorkerPredictor`: loads one ESM-2 predictor (its own
 * TensorFlow.js backend instance) and answers predict requests from the main thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { EsmPredictorOptions } from "./model-predictor";
import type { EmbeddingRequest } from "./predictor";

interface Request {
  id: number;
  sequences: string[];
  /** Embeddings instead of class probabilities. */
  embed?: EmbeddingRequest;
}

async function main(): Promise<void> {
  const port = parentPort!;
  const { dir, options } = workerData as { dir: string; options: EsmPredictorOptions };
  const { loadEsmPredictor } = await import("./model-predictor");
  const predictor = await loadEsmPredictor(dir, { ...options, onWarning: () => undefined });
  port.postMessage({
    type: "ready",
    labels: predictor.labels,
    maxLength: predictor.maxLength,
    engineName: predictor.engineName,
    numLayers: predictor.numLayers,
    problemType: predictor.problemType,
  });
  port.on("message", async (m: Request) => {
    try {
      const result = m.embed
        ? await predictor.embed(m.sequences, m.embed)
        : await predictor.predict(m.sequences);
      port.postMessage({ type: "result", id: m.id, result });
    } catch (e) {
      port.postMessage({ type: "error", id: m.id, message: (e as Error).message });
    }
  });
}

main().catch((e) => {
  parentPort?.postMessage({
    type: "fatal",
    message: (e as Error)?.message ?? String(e),
    name: (e as Error)?.name,
  });
});
