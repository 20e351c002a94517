/**
 * esmkit's side of the side-by-side benchmark (`bench/run.ts`), one case per process so
 * a case that exhausts the wasm heap cannot take the others down with it.
 *
 *   node build/bench/esmkit-side.js KIND '<json params>'
 *
 * KIND is setup | train | infer | inferVar | memory | prepare | export. The answer is one line on stdout,
 * `@@BENCH {json}`; a failure inside the case is reported as `{"error": "..."}` there,
 * a crash of the process is recorded by the runner from the exit status and stderr.
 * `bench/reference_bench.py` is the PyTorch mirror of every case; both sides load the
 * same weights and token ids from the files `setup` and the runner write.
 *
 * train, infer and memory take `engine`: "onnx" (default; onnxruntime's native kernels
 * through `OnnxEsmEngine`, `threads` intra-op threads) or "tfjs" (the TensorFlow.js model
 * on `backend`, one thread with wasm). Either way the tfjs model owns the weights and the
 * optimizer step; the engine computes logits, losses and gradients.
 *
 * `ESMKIT_BENCH_SIMULATE_OOM=N` makes a plain (non-checkpointed) forward/backward over
 * more than N rows fail as the wasm heap does, to exercise the runner's fallbacks.
 */
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../src/backend";
import { lengthSortedBatches } from "../src/data/length-batches";
import { prepare } from "../src/data/prepare";
import type { MicroBatch, StepOptions, StepResult } from "../src/engine/engine";
import { lossAndGradients } from "../src/engine/tfjs-engine";
import { exportModel } from "../src/export/export";
import { saveAdapter } from "../src/lora/adapter-io";
import { applyLora, type LoraModel } from "../src/lora/lora";
import { type Esm2PresetName, esm2Config } from "../src/model/config";
import { Esm2Model } from "../src/model/esm2";
import { fromPretrained, savePretrained } from "../src/model/pretrained";
import { OnnxEsmEngine } from "../src/onnx/engine";
import { parseFasta } from "../src/serve/fasta";
import { loadEsmPredictor } from "../src/serve/model-predictor";
import { clipGradNorm } from "../src/train/clip";
import { AdamW } from "../src/train/optimizer";
import { median } from "./median";

export const RESULT_MARK = "@@BENCH ";

/** LoRA as the issue fixes it: r 8, alpha 16, no dropout, on query, key and value. */
export const BENCH_LORA = {
  rank: 8,
  alpha: 16,
  dropout: 0,
  targetModules: ["query", "key", "value"],
};

/** Optimizer settings used by both sides (values do not change the cost of a step). */
const LR = 5e-5;
const MAX_GRAD_NORM = 1.0;

export interface IdsFile {
  batch: number;
  length: number;
  /** `[batch][length]`: `<cls>`, residues, `<eos>`. */
  inputIds: number[][];
  labels: number[];
}

interface SetupParams {
  arch: Esm2PresetName;
  /** Fewer encoder layers than the architecture has (quick runs). */
  layers?: number;
  modelDir: string;
  adapterDir: string;
  seed: number;
}

export type BenchEngine = "onnx" | "tfjs";

interface EngineParams {
  /** Who computes logits and gradients (default "onnx"). */
  engine?: BenchEngine;
  /** onnxruntime intra-op threads (onnx only; default 1). */
  threads?: number;
  /** "int8": the frozen encoder Linears as int8 (onnx only; default "none"). */
  quantize?: "none" | "int8";
}

interface TrainParams extends EngineParams {
  modelDir: string;
  adapterDir: string;
  ids: string;
  /** Rows per forward/backward; the optimizer step still covers the whole batch. */
  microBatch?: number;
  checkpointing?: boolean;
  warmup: number;
  repeats: number;
}

interface InferParams extends EngineParams {
  modelDir: string;
  ids: string;
  warmup: number;
  repeats: number;
}

/** Variable-length proteins (see `ProteinsFile`), run in batches padded to their longest. */
interface InferVarParams extends EngineParams {
  modelDir: string;
  proteins: string;
  /** Batches run before timing. */
  warmup: number;
  /** Timed passes over all proteins. */
  repeats: number;
  /**
   * Sort by length (longest first) inside windows of this many proteins before cutting
   * batches (0 or 1: input order). Only the batching changes; results stay per protein.
   */
  sortWindow?: number;
}

/** Proteins as token ids (`<cls>` ... `<eos>`), in the order batches take them. */
export interface ProteinsFile {
  batch: number;
  sequences: number[][];
  padId: number;
}

interface MemoryParams extends TrainParams {}

interface ExportParams {
  modelDir: string;
  /** The export folder to write. */
  out: string;
  /** FASTA of the proteins every runtime classifies. */
  proteins: string;
  threads: number;
  batch: number;
  warmup: number;
  repeats: number;
}

interface PrepareParams {
  input: string;
  out: string;
  repeats: number;
}

function readIds(file: string): IdsFile {
  return JSON.parse(readFileSync(file, "utf8")) as IdsFile;
}

function errorLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0] ?? msg;
}

async function loadModel(dir: string): Promise<Esm2Model> {
  return fromPretrained(dir, { onWarning: () => undefined });
}

async function setup(p: SetupParams) {
  const model = Esm2Model.random(
    esm2Config(p.arch, p.layers ? { numHiddenLayers: p.layers } : {}),
    { seed: p.seed },
  );
  await savePretrained(model, p.modelDir);
  const lora = applyLora(model, BENCH_LORA, p.seed + 1);
  saveAdapter(lora, model, p.adapterDir, { baseModel: null });
  return {
    parameters: model.parameterCount(),
    trainable: lora.parameterReport().trainable,
  };
}

/** Rows `[from, to)` of the ids file as tensors. */
function slice(ids: IdsFile, from: number, to: number): MicroBatch {
  const rows = ids.inputIds.slice(from, to);
  const inputIds = tf.tensor2d(rows, [rows.length, ids.length], "int32");
  return {
    inputIds,
    attentionMask: tf.onesLike(inputIds) as tf.Tensor2D,
    labels: tf.tensor1d(ids.labels.slice(from, to), "int32"),
  };
}

interface Trainer {
  lora: LoraModel;
  /** One full optimizer step over the whole batch; returns the loss. */
  step(): number;
  /**
   * onnx: a 1 x 8 forward pass, which loads onnxruntime, starts its threads and makes
   * what the engine keeps of the frozen weights (int8 codes; on backends other than wasm,
   * float32 copies; done once per process), so that a memory measurement after it sees
   * the training step alone. tfjs: nothing.
   */
  settle(): void;
  dispose(): void;
}

/** onnx engine options, with the thread count checked. */
function engineOf(p: EngineParams, model: Esm2Model, lora?: LoraModel): OnnxEsmEngine | undefined {
  const engine = p.engine ?? "onnx";
  if (engine === "tfjs") {
    if ((p.quantize ?? "none") !== "none") throw new Error("quantize int8 needs the onnx engine");
    return undefined;
  }
  if (engine !== "onnx") throw new Error(`unknown engine "${engine}"; expected onnx or tfjs`);
  const threads = p.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1)
    throw new Error(`threads must be an integer >= 1, got ${threads}`);
  const quantize = p.quantize ?? "none";
  return new OnnxEsmEngine(model, { threads, quantize, ...(lora ? { lora } : {}) });
}

/**
 * The training step the Trainer runs: forward + backward per micro-batch (gradients
 * accumulated, loss scaled by 1 / micro-batches), global-norm clipping, AdamW. Forward
 * and backward run on the engine; clipping and AdamW on tfjs, as in the Trainer.
 */
async function trainer(p: TrainParams): Promise<Trainer> {
  const model = await loadModel(p.modelDir);
  const { loadAdapter } = await import("../src/lora/adapter-io");
  const lora = loadAdapter(model, p.adapterDir);
  lora.training = true;
  const params = lora.trainableVariables();
  const optimizer = new AdamW(params, { lr: LR, weightDecay: 0.01 });
  const onnx = engineOf(p, model, lora);
  const grads = (b: MicroBatch, o: StepOptions): StepResult =>
    onnx ? onnx.lossAndGradients(params, b, o) : lossAndGradients(model, params, b, o);
  const ids = readIds(p.ids);
  const micro = Math.min(p.microBatch ?? ids.batch, ids.batch);
  const batches: MicroBatch[] = [];
  for (let i = 0; i < ids.batch; i += micro)
    batches.push(slice(ids, i, Math.min(i + micro, ids.batch)));
  const oomAbove = Number(process.env.ESMKIT_BENCH_SIMULATE_OOM ?? Number.POSITIVE_INFINITY);
  const step = () => {
    let acc: Map<string, tf.Tensor> | undefined;
    let loss = 0;
    for (const b of batches) {
      if (!p.checkpointing && b.inputIds.shape[0] > oomAbove)
        throw new Error("Aborted() (simulated by ESMKIT_BENCH_SIMULATE_OOM)");
      const r = grads(b, {
        gradientCheckpointing: p.checkpointing ?? false,
        lossScale: 1 / batches.length,
        dropoutRng: lora.dropoutRng,
      });
      loss += r.loss / batches.length;
      if (!acc) acc = r.grads;
      else {
        for (const [n, g] of r.grads) {
          const prev = acc.get(n);
          if (prev) {
            acc.set(n, tf.add(prev, g));
            prev.dispose();
            g.dispose();
          } else acc.set(n, g);
        }
      }
    }
    const clipped = clipGradNorm(acc!, MAX_GRAD_NORM);
    optimizer.step(clipped.grads);
    tf.dispose([...acc!.values(), ...clipped.grads.values()]);
    return loss;
  };
  const settle = () => {
    const n = Math.min(8, ids.length);
    onnx?.logits({
      inputIds: ids.inputIds[0]!.slice(0, n),
      attentionMask: new Array<number>(n).fill(1),
      batchSize: 1,
      seqLen: n,
    });
  };
  return {
    lora,
    step,
    settle,
    dispose: () => {
      onnx?.dispose();
      for (const b of batches) tf.dispose([b.inputIds, b.attentionMask, b.labels]);
      optimizer.dispose();
      lora.dispose();
      model.dispose();
    },
  };
}

/** Busy CPU seconds of the whole machine so far (all cores, /proc/stat), or null. */
function machineBusySeconds(): number | null {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1);
    const [user, nice, system, , , irq, softirq, steal] = f.map(Number) as number[];
    // USER_HZ is 100 on Linux.
    return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / 100;
  } catch {
    return null;
  }
}

interface Mark {
  busy: number | null;
  cpu: NodeJS.CpuUsage;
  wall: number;
}

const mark = (): Mark => ({
  busy: machineBusySeconds(),
  cpu: process.cpuUsage(),
  wall: performance.now(),
});

/**
 * The CPU other processes took since `m` (the machine's busy time minus ours, per wall
 * second: 0.5 = half a core), which tells a noisy measurement from a slow one.
 */
function otherCoresSince(m: Mark): number | null {
  const busy = machineBusySeconds();
  const cpu = process.cpuUsage(m.cpu);
  const wall = (performance.now() - m.wall) / 1000;
  if (m.busy === null || busy === null || wall <= 0) return null;
  const other = busy - m.busy - (cpu.user + cpu.system) / 1e6;
  return Math.round(Math.max(0, other / wall) * 100) / 100;
}

/** Runs `f` `n` times, timing each run, and what other processes took meanwhile. */
function timed(n: number, f: () => void): { seconds: number[]; otherCores: number | null } {
  const m = mark();
  const seconds: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    f();
    seconds.push((performance.now() - t0) / 1000);
  }
  return { seconds, otherCores: otherCoresSince(m) };
}

async function train(p: TrainParams) {
  const t = await trainer(p);
  const ids = readIds(p.ids);
  for (let i = 0; i < p.warmup; i++) t.step();
  let loss = Number.NaN;
  const { seconds, otherCores } = timed(p.repeats, () => {
    loss = t.step();
  });
  t.dispose();
  const s = median(seconds);
  return {
    ...engineInfo(p),
    batch: ids.batch,
    length: ids.length,
    microBatch: Math.min(p.microBatch ?? ids.batch, ids.batch),
    checkpointing: p.checkpointing ?? false,
    stepSeconds: seconds,
    medianStepSeconds: s,
    tokensPerSecond: (ids.batch * ids.length) / s,
    loss,
    otherCores,
  };
}

async function infer(p: InferParams) {
  const model = await loadModel(p.modelDir);
  const ids = readIds(p.ids);
  const onnx = engineOf(p, model);
  const inputIds = tf.tensor2d(ids.inputIds, [ids.batch, ids.length], "int32");
  const attentionMask = tf.onesLike(inputIds) as tf.Tensor2D;
  const flatIds = Int32Array.from(ids.inputIds.flat());
  const flatMask = new Int32Array(flatIds.length).fill(1);
  const once = onnx
    ? () => {
        onnx.logits({
          inputIds: flatIds,
          attentionMask: flatMask,
          batchSize: ids.batch,
          seqLen: ids.length,
        });
      }
    : () => {
        const out = model.forward({ inputIds, attentionMask });
        out.logits.dataSync();
        tf.dispose([out.logits, out.lastHiddenState]);
      };
  for (let i = 0; i < p.warmup; i++) once();
  const { seconds, otherCores } = timed(p.repeats, once);
  onnx?.dispose();
  tf.dispose([inputIds, attentionMask]);
  model.dispose();
  const s = median(seconds);
  return {
    ...engineInfo(p),
    batch: ids.batch,
    length: ids.length,
    batchSeconds: seconds,
    latencyMs: s * 1000,
    sequencesPerSecond: ids.batch / s,
    tokensPerSecond: (ids.batch * ids.length) / s,
    otherCores,
  };
}

/**
 * Batches of `batch` proteins: in input order (sortWindow <= 1), or sorted by length in
 * windows of `sortWindow`, as esmkit's predict does (src/data/length-batches.ts).
 */
export function proteinBatches(lengths: number[], batch: number, sortWindow = 0): number[][] {
  return lengthSortedBatches(lengths, { batchSize: batch, window: Math.max(1, sortWindow) });
}

async function inferVar(p: InferVarParams) {
  const model = await loadModel(p.modelDir);
  const file = JSON.parse(readFileSync(p.proteins, "utf8")) as ProteinsFile;
  const seqs = file.sequences;
  const onnx = engineOf(p, model);
  const batches = proteinBatches(
    seqs.map((s) => s.length),
    file.batch,
    p.sortWindow ?? 0,
  ).map((idx) => {
    // [B, L] right-padded to the longest member, mask 0 on padding.
    const L = Math.max(...idx.map((i) => seqs[i]!.length));
    const ids = new Int32Array(idx.length * L).fill(file.padId);
    const mask = new Int32Array(idx.length * L);
    idx.forEach((i, r) => {
      ids.set(seqs[i]!, r * L);
      mask.fill(1, r * L, r * L + seqs[i]!.length);
    });
    return { B: idx.length, L, ids, mask };
  });
  const run = (b: (typeof batches)[number]) => {
    if (onnx) {
      onnx.logits({ inputIds: b.ids, attentionMask: b.mask, batchSize: b.B, seqLen: b.L });
      return;
    }
    const inputIds = tf.tensor2d(b.ids, [b.B, b.L], "int32");
    const attentionMask = tf.tensor2d(b.mask, [b.B, b.L], "int32");
    const out = model.forward({ inputIds, attentionMask });
    out.logits.dataSync();
    tf.dispose([out.logits, out.lastHiddenState, inputIds, attentionMask]);
  };
  for (const b of batches.slice(0, p.warmup)) run(b);
  const { seconds, otherCores } = timed(p.repeats, () => {
    for (const b of batches) run(b);
  });
  onnx?.dispose();
  model.dispose();
  const s = median(seconds);
  const real = seqs.reduce((a, x) => a + x.length, 0);
  const computed = batches.reduce((a, b) => a + b.B * b.L, 0);
  return {
    ...engineInfo(p),
    proteins: seqs.length,
    batch: file.batch,
    sortWindow: p.sortWindow ?? 0,
    realTokens: real,
    computedTokens: computed,
    paddingShare: (computed - real) / computed,
    passSeconds: seconds,
    medianPassSeconds: s,
    sequencesPerSecond: seqs.length / s,
    tokensPerSecond: real / s,
    otherCores,
  };
}

/** The process's peak resident set so far, in bytes (Linux reports KiB). */
const maxRss = () => process.resourceUsage().maxRSS * 1024;

/**
 * Peak activation memory and time of one full training step, in a fresh process.
 *
 * onnx: the max-RSS rise over the first step (onnxruntime allocates outside any tensor
 * count we could read), with the model, adapter, optimizer, batch and the engine's weights
 * already in place (`settle`). tfjs: tf.profile's peakBytes (every tensor alive at
 * once) minus the bytes alive before the step; the max-RSS rise is reported beside it.
 * The measured step doubles as the warm-up; the time is the median of `repeats` further
 * steps.
 */
async function memory(p: MemoryParams) {
  const t = await trainer(p);
  const ids = readIds(p.ids);
  t.settle();
  const rssBefore = process.memoryUsage().rss;
  const maxRssBefore = maxRss();
  const tensorBytesBefore = tf.memory().numBytes;
  const t0 = performance.now();
  let peakBytes: number | null = null;
  if ((p.engine ?? "onnx") === "onnx") t.step();
  else peakBytes = (await tf.profile(() => void t.step())).peakBytes;
  const firstStepSeconds = (performance.now() - t0) / 1000;
  const maxRssAfter = maxRss();
  const { seconds, otherCores } = timed(p.repeats, () => t.step());
  t.dispose();
  const rssRise = maxRssAfter - maxRssBefore;
  return {
    ...engineInfo(p),
    batch: ids.batch,
    length: ids.length,
    checkpointing: p.checkpointing ?? false,
    method:
      peakBytes === null
        ? "max RSS increase over the first training step in a fresh process (process.resourceUsage().maxRSS after minus before; model, adapter, optimizer, batch and the engine's weights built before)"
        : "tf.profile peakBytes minus tf.memory().numBytes before the step",
    activationBytes: peakBytes === null ? rssRise : peakBytes - tensorBytesBefore,
    ...(peakBytes === null ? {} : { peakBytes, baselineBytes: tensorBytesBefore }),
    rssBeforeBytes: rssBefore,
    maxRssBeforeBytes: maxRssBefore,
    maxRssAfterBytes: maxRssAfter,
    maxRssRiseBytes: rssRise,
    firstStepSeconds,
    stepSeconds: seconds,
    medianStepSeconds: seconds.length > 0 ? median(seconds) : firstStepSeconds,
    otherCores,
  };
}

/** What ran a case, for its JSON. */
function engineInfo(p: EngineParams) {
  const engine = p.engine ?? "onnx";
  return engine === "onnx"
    ? { engine, threads: p.threads ?? 1, quantize: p.quantize ?? "none" }
    : { engine, threads: 1 };
}

async function prepareCase(p: PrepareParams) {
  const seconds: number[] = [];
  let last: Awaited<ReturnType<typeof prepare>> | undefined;
  const m = mark();
  for (let i = 0; i < p.repeats; i++) {
    await rm(p.out, { recursive: true, force: true });
    const t0 = performance.now();
    last = await prepare({ input: p.input, out: p.out, overwrite: true });
    seconds.push((performance.now() - t0) / 1000);
  }
  return {
    seconds,
    medianSeconds: median(seconds),
    rowsRead: last!.stats.rowsRead,
    rowsKept: last!.stats.rowsKept,
    trainRows: last!.stats.splits.train.rows,
    testRows: last!.stats.splits.test.rows,
    otherCores: otherCoresSince(m),
  };
}

/** Runs `f` `n` times (awaited), timing each run, and what other processes took meanwhile. */
async function timedAsync(
  n: number,
  f: () => Promise<void>,
): Promise<{ seconds: number[]; otherCores: number | null }> {
  const m = mark();
  const seconds: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    seconds.push((performance.now() - t0) / 1000);
  }
  return { seconds, otherCores: otherCoresSince(m) };
}

/**
 * `esmkit export --quantize int8`, then the same proteins (batches in input order, as
 * `esmkit predict` sends them) through esmkit's predictor and through transformers.js'
 * text-classification pipeline on the exported folder, float32 and int8, each with
 * `threads` onnxruntime threads. Also how far the int8 answers are from esmkit's.
 */
async function exportCase(p: ExportParams) {
  const t0 = performance.now();
  const { manifest } = await exportModel({
    model: p.modelDir,
    out: p.out,
    quantize: "int8",
    overwrite: true,
  });
  const exportSeconds = (performance.now() - t0) / 1000;
  const limit = manifest.maxLength - 2;
  const sequences = parseFasta(readFileSync(p.proteins, "utf8")).map((r) =>
    r.sequence.slice(0, limit),
  );
  const batches: string[][] = [];
  for (let i = 0; i < sequences.length; i += p.batch) batches.push(sequences.slice(i, i + p.batch));
  const runs: Record<string, { probs: number[][]; seconds: number[]; otherCores: number | null }> =
    {};
  const measure = async (name: string, predict: (b: string[]) => Promise<number[][]>) => {
    for (let i = 0; i < p.warmup; i++) await predict(batches[0]!);
    let probs: number[][] = [];
    const t = await timedAsync(p.repeats, async () => {
      probs = [];
      for (const b of batches) probs.push(...(await predict(b)));
    });
    runs[name] = { probs, ...t };
  };
  const predictor = await loadEsmPredictor(p.modelDir, { threads: p.threads, engine: "onnx" });
  await measure("esmkit", async (b) => (await predictor.predict(b)).map((r) => r.probabilities));
  predictor.dispose();
  const { pipeline, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  for (const dtype of ["fp32", "q8"] as const) {
    const clf = await pipeline("text-classification", p.out, {
      dtype,
      session_options: { intraOpNumThreads: p.threads, interOpNumThreads: 1 },
    });
    await measure(dtype, async (b) => {
      const out = (await clf(b, { top_k: null })) as { label: string; score: number }[][];
      return out.map((row) => manifest.labels.map((l) => row.find((s) => s.label === l)!.score));
    });
    await clf.dispose();
  }
  const compare = (name: string) => {
    let maxDp = 0;
    let agree = 0;
    const argmax = (r: number[]) => r.indexOf(Math.max(...r));
    runs[name]!.probs.forEach((row, i) => {
      const want = runs.esmkit!.probs[i]!;
      if (argmax(row) === argmax(want)) agree++;
      for (let c = 0; c < row.length; c++) maxDp = Math.max(maxDp, Math.abs(row[c]! - want[c]!));
    });
    return { maxDp, agreePercent: (100 * agree) / sequences.length };
  };
  const seqPerS = (name: string) => sequences.length / median(runs[name]!.seconds);
  const mb = (f: string) => manifest.files[f]! / 2 ** 20;
  return {
    threads: p.threads,
    proteins: sequences.length,
    batch: p.batch,
    exportSeconds,
    fileMB: { fp32: mb("onnx/model.onnx"), int8: mb("onnx/model_quantized.onnx") },
    seconds: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.seconds])),
    sequencesPerSecond: {
      esmkit: seqPerS("esmkit"),
      fp32: seqPerS("fp32"),
      int8: seqPerS("q8"),
    },
    fp32: compare("fp32"),
    int8: compare("q8"),
    otherCores: Math.max(...Object.values(runs).map((r) => r.otherCores ?? 0)),
  };
}

async function main(): Promise<void> {
  const kind = process.argv[2];
  const params = JSON.parse(process.argv[3] ?? "{}");
  const backend = await selectBackend({ backend: params.backend ?? "wasm" });
  const cases: Record<string, (p: never) => Promise<object>> = {
    setup,
    train,
    infer,
    inferVar,
    memory,
    prepare: prepareCase,
    export: exportCase,
  };
  const run = kind ? cases[kind] : undefined;
  if (!run) throw new Error(`unknown case kind "${kind}"; expected ${Object.keys(cases)}`);
  let result: object;
  try {
    result = await run(params as never);
  } catch (e) {
    result = { error: errorLine(e) };
  }
  process.stdout.write(`${RESULT_MARK}${JSON.stringify({ backend: backend.name, ...result })}\n`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
