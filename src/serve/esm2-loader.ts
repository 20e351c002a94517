/**
 * The default PredictorLoader: ESM-2 in worker threads (one with the onnx engine, which
 * holds the weights once and uses every core; `ESMKIT_WORKERS`, default min(2, cores),
 * with the tfjs engine; see worker-predictor.ts; `ESMKIT_WORKERS=0` runs it on the main
 * thread). src/register-defaults.ts registers it,
 * loading this file (and TensorFlow.js) only when a predictor is first loaded: the HTTP
 * layer does not need them.
 */
import { loadEsmPredictor } from "./model-predictor";
import type { PredictorLoader } from "./predictor";
import { loadWorkerPredictor } from "./worker-predictor";

export const esm2PredictorLoader: PredictorLoader = async (dir, options = {}) => {
  const raw = process.env.ESMKIT_WORKERS;
  const workers = raw === undefined || raw === "" ? undefined : Number(raw);
  if (workers === 0) return loadEsmPredictor(dir, options);
  return loadWorkerPredictor(dir, { ...options, workers });
};
