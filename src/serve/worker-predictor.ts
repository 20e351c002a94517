/**
 * A Predictor that runs ESM-2 in worker threads: the HTTP thread never blocks on a
 * forward pass (so /ping answers within SageMaker's 2 s while the model works), and
 * with the tfjs engine (one thread per wasm instance) N workers run N batches at once
 * on N cores, each with its own copy of the weights.
 *
 * The first worker starts with every core for its onnxruntime threads. If it runs the
 * onnx engine it stays the only one, whatever the worker count asked for: onnxruntime
 * already spreads each batch over every core, and onnxruntime-node cannot share a
 * session or its weights between threads, so more workers would only add copies of the
 * weights. With the tfjs engine the others start then: the count asked for, else
 * min(2, cores).
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { ConfigError, EsmKitError } from "../errors";
import { adapterBase, isAdapterDir } from "../lora/merged";
import { isRepoId } from "../model/hub";
import { resolveCheckpoint } from "../model/pretrained";
import type { ProblemType } from "../util/task";
import type { EsmPredictorOptions } from "./model-predictor";
import type { ClassProbabilities, EmbeddingRequest, Predictor } from "./predictor";

export interface WorkerPredictorOptions extends EsmPredictorOptions {
  /**
   * Worker threads for the tfjs engine, each with a copy of the weights (default
   * min(2, cores)). The onnx engine always runs one worker (see the file comment).
   */
  workers?: number;
}

export interface WorkerPredictor extends Predictor {
  readonly concurrency: number;
  embed(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}

type Reply =
  | {
      type: "ready";
      labels: string[];
      maxLength: number;
      engineName: string;
      problemType: ProblemType;
      numLayers?: number;
    }
  | { type: "result"; id: number; result: ClassProbabilities[] | Float32Array[] }
  | { type: "error"; id: number; message: string }
  | { type: "fatal"; message: string; name?: string };

interface Slot {
  worker: Worker;
  busy: number;
  pending: Map<
    number,
    // biome-ignore lint/suspicious/noExplicitAny: probabilities or embeddings, by request
    { resolve: (r: any) => void; reject: (e: Error) => void }
  >;
}

/**
 * Download the Hub model behind `dir` (a Hub id, or an adapter whose base is one) here,
 * once, so the workers only read the cache instead of each downloading it.
 */
async function prefetchHubModel(dir: string, base: string | undefined): Promise<void> {
  let id = dir;
  if (isAdapterDir(dir)) {
    try {
      id = adapterBase(dir, base);
    } catch {
      return; // a broken or base-less adapter_config.json: the worker reports it
    }
  }
  if (!existsSync(id) && isRepoId(id)) await resolveCheckpoint(id);
}

export async function loadWorkerPredictor(
  dir: string,
  options: WorkerPredictorOptions = {},
): Promise<WorkerPredictor> {
  const explicit = options.workers;
  const most = explicit ?? Math.min(2, availableParallelism());
  if (!Number.isInteger(most) || most < 1) {
    throw new ConfigError(`workers must be an integer >= 1, got ${most}`, { workers: most });
  }
  // onWarning stays here: functions cannot reach a worker (workerData is cloned).
  const { workers: _, onWarning, ...rest } = options;
  const warn = onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  // The cores are shared out: each worker's onnxruntime gets its part (ESMKIT_THREADS overrides).
  const optionsFor = (n: number): EsmPredictorOptions => ({
    ...rest,
    threads:
      rest.threads ??
      (process.env.ESMKIT_THREADS
        ? undefined
        : Math.max(1, Math.floor(availableParallelism() / n))),
  });
  await prefetchHubModel(dir, options.base);
  const script = path.join(__dirname, "predictor-worker.js");
  const slots: Slot[] = [];
  let nextId = 0;
  type Ready = {
    labels: string[];
    maxLength: number;
    engineName: string;
    problemType: ProblemType;
    numLayers?: number;
  };
  const start = (predictorOptions: EsmPredictorOptions): Promise<Ready> => {
    const worker = new Worker(script, { workerData: { dir, options: predictorOptions } });
    const slot: Slot = { worker, busy: 0, pending: new Map() };
    slots.push(slot);
    return new Promise((resolve, reject) => {
      worker.on("message", (m: Reply) => {
        if (m.type === "ready") resolve(m);
        else if (m.type === "fatal") reject(new EsmKitError(m.message, { dir }));
        else {
          const p = slot.pending.get(m.id);
          if (!p) return;
          slot.pending.delete(m.id);
          slot.busy--;
          if (m.type === "result") p.resolve(m.result);
          else p.reject(new EsmKitError(`prediction failed in a worker: ${m.message}`, {}));
        }
      });
      worker.on("error", (e) => {
        reject(e);
        for (const p of slot.pending.values()) p.reject(e);
        slot.pending.clear();
      });
    });
  };
  let info: Ready;
  try {
    // One worker with every core first; more only when its engine is not onnx.
    info = await start(optionsFor(1));
    if (info.engineName === "onnx") {
      if (explicit !== undefined && explicit > 1) {
        warn(
          `workers=${explicit} on the onnx engine: one worker runs the model and holds the weights once, its onnxruntime spreading each batch over the cores (each further worker would hold another copy); the worker count applies to the tfjs engine`,
        );
      }
    } else if (most > 1) {
      await Promise.all(Array.from({ length: most - 1 }, () => start(optionsFor(most))));
    }
  } catch (e) {
    await Promise.all(slots.map((s) => s.worker.terminate()));
    throw e;
  }
  const n = slots.length;
  /** Send a request to the least busy worker. */
  const send = <R>(message: { sequences: string[]; embed?: EmbeddingRequest }): Promise<R> => {
    const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = nextId++;
    slot.busy++;
    return new Promise<R>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ id, ...message });
    });
  };
  return {
    labels: info.labels,
    problemType: info.problemType,
    maxLength: info.maxLength,
    numLayers: info.numLayers,
    concurrency: n,
    predict(sequences: string[]): Promise<ClassProbabilities[]> {
      return send({ sequences });
    },
    embed(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]> {
      return send({ sequences, embed: request });
    },
    async dispose() {
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
