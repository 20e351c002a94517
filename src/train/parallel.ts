/**
 * Data parallelism over gradient-accumulation micro-batches: each micro-batch of an
 * optimizer step goes to a worker thread holding a replica (same base weights, same
 * LoRA adapters, the current trainable values), so two micro-batches run at once on two
 * cores (the wasm backend is single-threaded per instance). Gradients come back and are
 * summed in micro-batch order, and each job gets the dropout stream state the
 * sequential loop would have had, so a parallel run ends on the same weights as a
 * sequential one.
 */
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type * as tf from "@tensorflow/tfjs-core";
import type { StepOptions } from "../engine/engine";
import { ConfigError, EsmKitError } from "../errors";
import type { LoraConfig } from "../lora/lora";
import type { EsmConfig } from "../model/config";
import type { Batch } from "./batching";

/** How a worker rebuilds the exact base model the main thread trains. */
export interface ReplicaRecipe {
  model:
    | { kind: "pretrained"; path: string; seed?: number; id2label?: string[] }
    | { kind: "random"; config: EsmConfig; seed: number };
  lora: LoraConfig;
  loraSeed: number;
  backend: string;
}

export interface WorkerJob {
  id: number;
  params: Record<string, Float32Array>;
  rngState: number | null;
  batch: Pick<Batch, "inputIds" | "attentionMask" | "labels" | "targets" | "batchSize" | "seqLen">;
  options: Omit<StepOptions, "dropoutRng">;
}

type Reply =
  | { type: "ready"; names: string[] }
  | { type: "result"; id: number; loss: number; grads: Record<string, Float32Array> }
  | { type: "error"; id: number; message: string }
  | { type: "fatal"; message: string };

export interface JobResult {
  loss: number;
  grads: Record<string, Float32Array>;
}

export class GradientPool {
  private constructor(
    private readonly workers: Worker[],
    private readonly pending: Map<
      number,
      { resolve: (r: JobResult) => void; reject: (e: Error) => void }
    >,
  ) {}

  private nextId = 0;

  get size(): number {
    return this.workers.length;
  }

  static async start(recipe: ReplicaRecipe, workers: number): Promise<GradientPool> {
    if (!Number.isInteger(workers) || workers < 1) {
      throw new ConfigError(`workers must be an integer >= 1, got ${workers}`, { workers });
    }
    const pending = new Map<
      number,
      { resolve: (r: JobResult) => void; reject: (e: Error) => void }
    >();
    const list: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < workers; i++) {
      const w = new Worker(path.join(__dirname, "grad-worker.js"), { workerData: { recipe } });
      list.push(w);
      ready.push(
        new Promise((resolve, reject) => {
          w.on("message", (m: Reply) => {
            if (m.type === "ready") resolve();
            else if (m.type === "fatal")
              reject(new EsmKitError(`training worker failed to start: ${m.message}`, {}));
            else {
              const p = pending.get(m.id);
              if (!p) return;
              pending.delete(m.id);
              if (m.type === "result") p.resolve({ loss: m.loss, grads: m.grads });
              else p.reject(new EsmKitError(`training worker failed: ${m.message}`, {}));
            }
          });
          w.on("error", (e) => {
            reject(e);
            for (const p of pending.values()) p.reject(e);
            pending.clear();
          });
        }),
      );
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await Promise.all(list.map((w) => w.terminate()));
      throw e;
    }
    return new GradientPool(list, pending);
  }

  /** Run the jobs (one per micro-batch, in order) across the workers; results in order. */
  run(
    params: Map<string, tf.Variable>,
    jobs: { batch: Batch; rngState: number | null }[],
    options: Omit<StepOptions, "dropoutRng">,
  ): Promise<JobResult[]> {
    const values: Record<string, Float32Array> = {};
    for (const [name, v] of params) values[name] = v.dataSync() as Float32Array;
    return Promise.all(
      jobs.map((job, k) => {
        const id = this.nextId++;
        const worker = this.workers[k % this.workers.length]!;
        const b = job.batch;
        return new Promise<JobResult>((resolve, reject) => {
          this.pending.set(id, { resolve, reject });
          const message: WorkerJob = {
            id,
            params: values,
            rngState: job.rngState,
            batch: {
              inputIds: b.inputIds,
              attentionMask: b.attentionMask,
              labels: b.labels,
              ...(b.targets ? { targets: b.targets } : {}),
              batchSize: b.batchSize,
              seqLen: b.seqLen,
            },
            options,
          };
          worker.postMessage(message);
        });
      }),
    );
  }

  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
