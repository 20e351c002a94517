/**
 * Side-by-side benchmark: esmkit against the Python reference (torch CPU + transformers +
 * peft) on identical work, in one run on one machine.
 *
 *   npm run build && node build/bench/run.js [--quick] [--only CASE,...] [--threads N,M]
 *        [--engine onnx|tfjs] [--repeats R] [--out DIR] [--python PATH] [--deeploc CSV]
 *        [--backend wasm] [--sort-window N] [--precision both|int8] [--timeout S] [--keep]
 *
 * Cases: train-8m, train-35m (LoRA r8 on query/key/value, full optimizer steps, batch
 * 8 x 256), infer-8m, infer-35m (forward only, batch 1 and 16 at length 400), memory-8m
 * (one training step with and without gradient checkpointing, batch 8 x 512) and prepare
 * (`esmkit prepare` on the full DeepLoc CSV against pandas + the HF tokenizer), export-8m
 * (`esmkit export --quantize int8`, then transformers.js in Node, float32 and int8, next to
 * esmkit's predictor on the same 50 DeepLoc proteins; no PyTorch column), and
 * deeploc-35m, deeploc-150m: inference on real protein lengths (the first 256 proteins of
 * 100..512 residues of data/deeploc-sample.csv, in file order, batches of 16 consecutive
 * ones for PyTorch; esmkit first sorts each window of 256 by length as its `predict` does,
 * `--sort-window N`, 0 for file order), with esm.cpp (PyPI esm-cpp) as a third side, fp32 and int8, when
 * `bash bench/setup-esmcpp.sh` has made .venv-esmcpp (`--esmcpp PATH` picks another
 * interpreter). `--only` takes names or prefixes (`--only train,prepare`). With the onnx
 * engine, deeploc-* also run esmkit `--quantize int8` (the int8 row: esmkit int8, esm.cpp
 * int8, PyTorch fp32) and train-35m a LoRA step on the int8 base (against PyTorch + PEFT
 * fp32). `--precision int8` runs only the int8 sides of the deeploc cases (esmkit int8
 * and esm.cpp int8; no fp32 side, no PyTorch): the int8 comparison at sizes where the
 * float32 sides would take hours.
 *
 * Both sides load the SAME random weights: esmkit draws them (seed 1), writes a Hugging
 * Face directory and a PEFT adapter, and both load those files; both read the same token
 * ids (the 20 standard residues between `<cls>` and `<eos>`) from a JSON file.
 *
 * `--engine` picks what computes esmkit's forward and backward passes: "onnx" (default,
 * onnxruntime-node with N intra-op threads) or "tfjs" (TensorFlow.js on `--backend`; wasm
 * in Node runs one thread, so it only fills the 1-thread columns). Both sides run at
 * every count in `--threads` (default 1 and the core count): PyTorch with
 * `torch.set_num_threads(N)`, esmkit's prepare with POLARS_MAX_THREADS=N. Every ratio is
 * esmkit / PyTorch at the same thread count.
 *
 * Each of our cases runs in its own `node` process (a step that exhausts the wasm heap is
 * recorded, not fatal); the Python side runs its cases in one process per thread count,
 * except the memory cases, which (like ours) each get a fresh process so that the max-RSS
 * rise of their first step is not hidden by an earlier case's peak. Output: a table on
 * stdout, `<out>/<date>-<case>.json` per case, `<out>/latest.json` and `<out>/latest.md`.
 *
 * `--quick` runs every case at tiny sizes (2-layer variants of both architectures, short
 * sequences, the 1,950-row sample CSV) as a smoke test; its ratios are not the figures
 * the acceptance targets talk about, and its JSON goes to bench/results/quick/.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { DEFAULT_SORT_WINDOW, lengthSortedBatches } from "../src/data/length-batches";
import { SeededRandom } from "../src/util/random";
import type { BenchEngine, IdsFile, ProteinsFile } from "./esmkit-side";
import { deeplocProteins } from "./proteins";

const ROOT = path.resolve(__dirname, "..", "..");
const MARK = "@@BENCH ";
const MiB = 2 ** 20;

type Arch = "esm2_t6_8M_UR50D" | "esm2_t12_35M_UR50D" | "esm2_t30_150M_UR50D";
const ARCH: Record<"8m" | "35m" | "150m", Arch> = {
  "8m": "esm2_t6_8M_UR50D",
  "35m": "esm2_t12_35M_UR50D",
  "150m": "esm2_t30_150M_UR50D",
};
const CASE_NAMES = [
  "train-8m",
  "train-35m",
  "infer-8m",
  "infer-35m",
  "memory-8m",
  "prepare",
  "export-8m",
  "deeploc-35m",
  "deeploc-150m",
] as const;
type CaseName = (typeof CASE_NAMES)[number];
const ENGINES: readonly BenchEngine[] = ["onnx", "tfjs"];

interface Sizes {
  /** Encoder layers (undefined: the architecture's own). */
  layers?: number;
  train: { batch: number; length: number; warmup: number; repeats: number };
  infer: { batches: number[]; length: number; warmup: number; repeats: number };
  memory: { batch: number; length: number; repeats: number };
  prepare: { repeats: number };
  /** The proteins every runtime classifies, in batches of `batch`. */
  export: { proteins: string; batch: number; warmup: number; repeats: number };
  /** Real protein lengths: how many proteins, rows per batch, warm-up batches, timed passes. */
  deeploc: { proteins: number; batch: number; warmup: number; repeats: number };
}

const EXPORT_PROTEINS = path.join(ROOT, "test", "fixtures", "export", "deeploc-50.fasta");

const FULL: Sizes = {
  train: { batch: 8, length: 256, warmup: 1, repeats: 3 },
  infer: { batches: [1, 16], length: 400, warmup: 1, repeats: 5 },
  memory: { batch: 8, length: 512, repeats: 3 },
  prepare: { repeats: 3 },
  export: { proteins: EXPORT_PROTEINS, batch: 8, warmup: 1, repeats: 3 },
  deeploc: { proteins: 256, batch: 16, warmup: 1, repeats: 2 },
};

const QUICK: Sizes = {
  layers: 2,
  train: { batch: 2, length: 32, warmup: 1, repeats: 2 },
  infer: { batches: [1, 4], length: 32, warmup: 1, repeats: 3 },
  memory: { batch: 2, length: 64, repeats: 1 },
  prepare: { repeats: 1 },
  export: { proteins: EXPORT_PROTEINS, batch: 8, warmup: 1, repeats: 1 },
  deeploc: { proteins: 16, batch: 8, warmup: 1, repeats: 1 },
};

interface Options {
  quick: boolean;
  cases: CaseName[];
  /** Thread counts; both sides run at each, and each ratio compares equal counts. */
  threads: number[];
  engine: BenchEngine;
  out: string;
  python: string;
  deeploc: string;
  /** The tfjs backend (with engine onnx it only holds the weights and runs AdamW). */
  backend: string;
  timeoutS: number;
  keep: boolean;
  /** Timed repeats of every case, overriding the size table. */
  repeats?: number;
  /** Proteins of the deeploc cases, overriding the size table. */
  proteins?: number;
  /** Python of the esm.cpp virtualenv. */
  esmcpp: string;
  /** deeploc-*: esmkit sorts each window of this many proteins by length (0: file order). */
  sortWindow: number;
  /** deeploc-*: "both" (fp32 and int8 rows) or "int8" (only esmkit int8 and esm.cpp int8). */
  precision: "both" | "int8";
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      threads: { type: "string" },
      engine: { type: "string", default: "onnx" },
      out: { type: "string" },
      python: { type: "string" },
      deeploc: { type: "string" },
      backend: { type: "string", default: "wasm" },
      timeout: { type: "string" },
      keep: { type: "boolean", default: false },
      repeats: { type: "string" },
      proteins: { type: "string" },
      esmcpp: { type: "string" },
      "sort-window": { type: "string" },
      precision: { type: "string", default: "both" },
      help: { type: "boolean", default: false },
    },
  });
  if (v.help) {
    process.stdout.write(
      "node build/bench/run.js [--quick] [--only CASE,...] [--threads N,M] [--engine onnx|tfjs]\n" +
        "                        [--out DIR] [--python PATH] [--deeploc CSV] [--backend wasm]\n" +
        "                        [--repeats R] [--proteins N] [--esmcpp PATH] [--sort-window N]\n" +
        "                        [--precision both|int8]\n" +
        "                        [--timeout S] [--keep]\n" +
        `cases: ${CASE_NAMES.join(", ")}\n`,
    );
    process.exit(0);
  }
  const int = (name: string, s: string, min: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} expects an integer >= ${min}, got "${s}"`);
    return n;
  };
  let cases: CaseName[] = [...CASE_NAMES];
  if (v.only) {
    const wanted = v.only.split(",").map((s) => s.trim().toLowerCase());
    for (const w of wanted) {
      if (!CASE_NAMES.some((c) => c === w || c.startsWith(`${w}-`)))
        throw new Error(`--only: unknown case "${w}"; cases: ${CASE_NAMES.join(", ")}`);
    }
    cases = CASE_NAMES.filter((c) => wanted.some((w) => c === w || c.startsWith(`${w}-`)));
  }
  const engine = v.engine as BenchEngine;
  if (!ENGINES.includes(engine))
    throw new Error(`--engine expects one of ${ENGINES.join(", ")}, got "${v.engine}"`);
  const quick = v.quick!;
  const cores = os.cpus().length;
  const threads = v.threads
    ? v.threads.split(",").map((t) => int("threads", t.trim(), 1))
    : [1, cores];
  return {
    quick,
    cases,
    threads: [...new Set(threads)].sort((a, b) => a - b),
    engine,
    out: path.resolve(v.out ?? path.join(ROOT, "bench", "results", quick ? "quick" : "")),
    python:
      v.python ?? process.env.ESMKIT_BENCH_PYTHON ?? path.join(ROOT, ".venv", "bin", "python"),
    deeploc: path.resolve(
      v.deeploc ??
        (quick
          ? path.join(ROOT, "data", "deeploc-sample.csv")
          : path.join(
              ROOT,
              "..",
              "shared",
              "data",
              "deeploc",
              "Swissprot_Train_Validation_dataset.csv",
            )),
    ),
    backend: v.backend!,
    timeoutS: v.timeout ? int("timeout", v.timeout, 1) : quick ? 300 : 3600,
    keep: v.keep!,
    ...(v.repeats ? { repeats: int("repeats", v.repeats, 1) } : {}),
    ...(v.proteins ? { proteins: int("proteins", v.proteins, 1) } : {}),
    esmcpp:
      v.esmcpp ??
      process.env.ESMKIT_BENCH_ESMCPP ??
      path.join(ROOT, ".venv-esmcpp", "bin", "python"),
    sortWindow: v["sort-window"] ? int("sort-window", v["sort-window"], 0) : DEFAULT_SORT_WINDOW,
    precision: ((p: string) => {
      if (p !== "both" && p !== "int8")
        throw new Error(`--precision expects both or int8, got "${p}"`);
      return p;
    })(v.precision!),
  };
}

// ---- child processes ----

interface ChildResult {
  /** Parsed `@@BENCH` lines, in order. */
  results: Record<string, unknown>[];
  code: number | null;
  signal: string | null;
  stderrTail: string;
  seconds: number;
}

function runChild(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutS: number; log: string },
): Promise<ChildResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutS * 1000);
    let done = false;
    const finish = (code: number | null, signal: string | null, extra = "") => {
      if (done) return; // "error" may be followed by "close"
      done = true;
      clearTimeout(timer);
      writeFileSync(
        opts.log,
        `$ ${cmd} ${args.join(" ")}\n${out}\n--- stderr ---\n${err}${extra}`,
        {
          flag: "a",
        },
      );
      const results = out
        .split("\n")
        .filter((l) => l.startsWith(MARK))
        .map((l) => JSON.parse(l.slice(MARK.length)) as Record<string, unknown>);
      const tail = (err + extra)
        .split("\n")
        .filter((l) => l.trim() && !l.includes("USDT:"))
        .slice(-3)
        .join(" | ");
      resolve({
        results,
        code,
        signal,
        stderrTail: tail.slice(-400),
        seconds: (performance.now() - t0) / 1000,
      });
    };
    child.on("error", (e) => finish(null, null, `\n${e.message}`));
    child.on("close", (code, signal) => finish(code, signal));
  });
}

/** One of our cases in a fresh node process; a crash becomes `{error}`. */
async function esmkit(
  kind: string,
  params: Record<string, unknown>,
  o: Options,
  log: string,
  env?: NodeJS.ProcessEnv,
): Promise<Record<string, unknown>> {
  const side = path.join(ROOT, "build", "bench", "esmkit-side.js");
  const r = await runChild(
    process.execPath,
    [side, kind, JSON.stringify({ backend: o.backend, engine: o.engine, ...params })],
    { timeoutS: o.timeoutS, log, ...(env ? { env } : {}) },
  );
  const last = r.results.at(-1);
  if (last) return { ...last, processSeconds: r.seconds };
  const why =
    r.signal === "SIGKILL" ? `timed out after ${o.timeoutS} s` : `exit ${r.code ?? r.signal}`;
  return { error: `${why}${r.stderrTail ? `: ${r.stderrTail}` : ""}` };
}

interface PyCase {
  id: string;
  kind: string;
  params: Record<string, unknown>;
  /** Run in a process of its own (memory: a fresh max-RSS high-water mark). */
  own?: boolean;
}

/**
 * The Python cases at `threads`: the shared ones in one process, each `own` case in a
 * process of its own; results by case id.
 */
async function python(
  cases: PyCase[],
  threads: number,
  o: Options,
  work: string,
  log: string,
): Promise<Map<string, Record<string, unknown>>> {
  const t = String(threads);
  const byId = new Map<string, Record<string, unknown>>();
  const groups = [cases.filter((c) => !c.own), ...cases.filter((c) => c.own).map((c) => [c])];
  for (const [i, group] of groups.entries()) {
    if (i > 0 && group.length === 0) continue;
    const spec = path.join(work, `py-spec-${threads}-${i}.json`);
    // "versions" first in the shared process only (also when it has no other case).
    const withVersions = i === 0 ? [{ id: "versions", kind: "versions", params: {} }] : [];
    writeFileSync(spec, JSON.stringify({ cases: [...withVersions, ...group] }));
    const r = await runChild(
      o.python,
      [
        path.join(ROOT, "bench", "reference_bench.py"),
        "batch",
        "--json",
        `@${spec}`,
        "--threads",
        t,
      ],
      {
        env: {
          OMP_NUM_THREADS: t,
          MKL_NUM_THREADS: t,
          OPENBLAS_NUM_THREADS: t,
          TOKENIZERS_PARALLELISM: "false",
          HF_HUB_OFFLINE: "1",
          TRANSFORMERS_VERBOSITY: "error",
          PYTHONWARNINGS: "ignore",
        },
        timeoutS: o.timeoutS * Math.max(1, group.length),
        log,
      },
    );
    for (const res of r.results) byId.set(String(res.id), res);
    const why =
      r.signal === "SIGKILL" ? "timed out" : `python exited ${r.code ?? r.signal} before this case`;
    for (const c of [...withVersions, ...group]) {
      if (!byId.has(c.id))
        byId.set(c.id, { error: `${why}${r.stderrTail ? `: ${r.stderrTail}` : ""}` });
    }
  }
  return byId;
}

// ---- inputs ----

class Work {
  readonly dir: string;
  private readonly idsFiles = new Map<string, string>();
  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "esmkit-bench-"));
  }
  /** Token ids `[batch, length]`: `<cls>`, random standard residues, `<eos>`. */
  ids(batch: number, length: number): string {
    const key = `${batch}x${length}`;
    let file = this.idsFiles.get(key);
    if (file) return file;
    const rng = new SeededRandom(1000 + batch * 7919 + length);
    const inputIds = Array.from({ length: batch }, () => [
      0,
      ...Array.from({ length: length - 2 }, () => 4 + rng.int(20)),
      2,
    ]);
    const ids: IdsFile = {
      batch,
      length,
      inputIds,
      labels: Array.from({ length: batch }, (_, i) => i % 2),
    };
    file = path.join(this.dir, `ids-${key}.json`);
    writeFileSync(file, JSON.stringify(ids));
    this.idsFiles.set(key, file);
    return file;
  }

  /**
   * The first `count` proteins of 100..512 residues of the bundled DeepLoc sample, in file
   * order, as token ids (a ProteinsFile for batches of `batch`).
   */
  async proteins(count: number, batch: number): Promise<{ file: string; lengths: number[] }> {
    const { sequences, padId } = await deeplocProteins(count);
    const file = path.join(this.dir, `proteins-${count}-${batch}.json`);
    const spec: ProteinsFile = { batch, sequences, padId };
    writeFileSync(file, JSON.stringify(spec));
    return { file, lengths: sequences.map((s) => s.length) };
  }
}

// ---- results ----

/** One thread count of a row. */
interface Cell {
  threads: number;
  esmkit: number | null;
  torch: number | null;
  /** esmkit / PyTorch; null for percentages, missing values and unlike methods. */
  ratio: number | null;
  /** A third side (esm.cpp) where the case has one, and esmkit / it. */
  peer?: number | null;
  peerRatio?: number | null;
  reached?: boolean | null;
}

interface Row {
  case: string;
  metric: string;
  unit: string;
  cells: Cell[];
  target?: string;
  note?: string;
}

interface CaseReport {
  case: CaseName;
  description: string;
  /** Our results by thread count (`"1"`, `"2"`, ...). */
  esmkit: Record<string, unknown>;
  /** PyTorch's results by thread count. */
  torch: Record<string, unknown>;
  rows: Row[];
  /** Training cases: whether both sides ended on the same loss (same work done), by threads. */
  lossesAgree?: Record<string, boolean | null>;
  /** deeploc cases: esm.cpp's results by thread count, and the padding of the padded sides. */
  esmcpp?: Record<string, unknown>;
  paddingShare?: number;
  computedTokens?: number;
  realTokens?: number;
}

type Result = Record<string, unknown>;
/** PyTorch results by thread count, then by case id. */
type TorchRuns = Map<number, Map<string, Result>>;

const num = (x: unknown): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);
const div = (a: number | null, b: number | null) =>
  a !== null && b !== null && b !== 0 ? a / b : null;
const err = (x: unknown): string | undefined =>
  x && typeof x === "object" && "error" in x ? String((x as { error: unknown }).error) : undefined;

interface Check {
  min?: number;
  max?: number;
  /** What the target is about (default: the ratio; peer: esmkit / the third side). */
  on?: "ratio" | "esmkit" | "peer";
  /** A second bound that must hold too: the ratio to PyTorch at least this. */
  andRatioMin?: number;
}

function row(
  base: Omit<Row, "cells">,
  values: { threads: number; esmkit: number | null; torch: number | null; peer?: number | null }[],
  check?: Check,
  opts: { ratio?: boolean } = {},
): Row {
  const cells = values.map((v) => {
    const c: Cell = {
      ...v,
      ratio: base.unit === "%" || opts.ratio === false ? null : div(v.esmkit, v.torch),
      ...(v.peer !== undefined ? { peerRatio: div(v.esmkit, v.peer) } : {}),
    };
    if (check) {
      const x =
        check.on === "esmkit" ? c.esmkit : check.on === "peer" ? (c.peerRatio ?? null) : c.ratio;
      c.reached =
        x === null
          ? null
          : (check.min === undefined || x >= check.min) &&
            (check.max === undefined || x <= check.max) &&
            (check.andRatioMin === undefined || (c.ratio !== null && c.ratio >= check.andRatioMin));
    }
    return c;
  });
  return { ...base, cells };
}

/** Other processes' CPU (in cores) above which a timing is flagged as noisy. */
const NOISY_CORES = 0.25;

/**
 * Errors of some results, labelled (`esmkit 2 thr: ...`), and where other processes took
 * CPU during the timed runs (`otherCores`); joined, or undefined if none.
 */
function notesOf(...parts: [string, unknown][]): string | undefined {
  const out: string[] = [];
  const busy: string[] = [];
  for (const [label, x] of parts) {
    const e = err(x);
    if (e && !out.includes(`${label}: ${e}`)) out.push(`${label}: ${e}`);
    const other = num((x as Result | undefined)?.otherCores);
    if (other !== null && other >= NOISY_CORES) busy.push(`${other.toFixed(2)} during ${label}`);
  }
  if (busy.length) out.push(`busy machine, other processes took cores: ${busy.join(", ")}`);
  return out.length ? out.join("; ") : undefined;
}

// ---- cases ----

interface Ctx {
  o: Options;
  sizes: Sizes;
  work: Work;
  log: string;
  /** The thread counts our engine runs at (tfjs on wasm: 1 only). */
  ourThreads: number[];
  models: Map<Arch, { modelDir: string; adapterDir: string }>;
  /** Python cases to run at every thread count, and how to turn results into rows. */
  py: (PyCase & { once?: boolean })[];
  finish: ((torch: TorchRuns) => CaseReport)[];
}

function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

async function model(ctx: Ctx, arch: Arch) {
  let m = ctx.models.get(arch);
  if (m) return m;
  const dir = path.join(ctx.work.dir, arch);
  m = { modelDir: path.join(dir, "model"), adapterDir: path.join(dir, "adapter") };
  progress(
    `writing random weights for ${arch}${ctx.sizes.layers ? ` (${ctx.sizes.layers} layers)` : ""}`,
  );
  const r = await esmkit(
    "setup",
    { arch, layers: ctx.sizes.layers, seed: 1, ...m },
    ctx.o,
    ctx.log,
  );
  if (err(r)) throw new Error(`could not write the benchmark weights for ${arch}: ${err(r)}`);
  ctx.models.set(arch, m);
  return m;
}

/** Our result where the engine does not run at `threads` (tfjs on wasm: one thread). */
const notRun = (o: Options, threads: number): Result => ({
  error: `not run: engine ${o.engine} on ${o.backend} does not run ${threads} threads`,
});

/** The failures a smaller step can cure (wasm heap exhausted), not timeouts or bugs. */
const outOfMemory = (x: unknown) => /abort|memory|heap|allocat|OOM/i.test(err(x) ?? "");

const fmtShape = (b: number, l: number) => `${b}x${l}`;
const byThreads = <T>(m: Map<number, T>) =>
  Object.fromEntries([...m].map(([t, v]) => [String(t), v]));

async function trainCase(ctx: Ctx, name: "train-8m" | "train-35m") {
  const arch = ARCH[name === "train-8m" ? "8m" : "35m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.train;
  const ids = ctx.work.ids(s.batch, s.length);
  const base = { ...m, ids, warmup: s.warmup, repeats: s.repeats };
  // Full batch first; if the wasm heap cannot hold it, gradient accumulation over
  // smaller micro-batches (same tokens per optimizer step), then checkpointing.
  const tries: { microBatch: number; checkpointing: boolean }[] = [];
  for (let mb = s.batch; mb >= Math.max(1, s.batch / 4); mb = Math.floor(mb / 2))
    tries.push({ microBatch: mb, checkpointing: false });
  tries.push({ microBatch: s.batch, checkpointing: true });
  const ours = new Map<number, { result: Result; attempts: Result[] }>();
  const withInt8 = name === "train-35m";
  const int8 = new Map<number, Result>();
  for (const threads of ctx.o.threads) {
    if (!ctx.ourThreads.includes(threads)) {
      ours.set(threads, { result: notRun(ctx.o, threads), attempts: [] });
      int8.set(threads, notRun(ctx.o, threads));
      continue;
    }
    const attempts: Result[] = [];
    let result: Result = {};
    for (const t of tries) {
      progress(
        `esmkit ${name} ${fmtShape(s.batch, s.length)} ${threads} thr micro-batch ${t.microBatch}${t.checkpointing ? " + checkpointing" : ""}`,
      );
      result = await esmkit("train", { ...base, ...t, threads }, ctx.o, ctx.log);
      attempts.push({ ...t, ...(err(result) ? { error: err(result) } : {}) });
      if (!outOfMemory(result)) break;
    }
    ours.set(threads, { result, attempts });
    // The int8 base (issue 13), in the step shape the float32 run settled on.
    if (withInt8 && ctx.o.engine === "onnx") {
      const t = {
        microBatch: num(result.microBatch) ?? s.batch,
        checkpointing: !!result.checkpointing,
      };
      progress(`esmkit ${name} ${fmtShape(s.batch, s.length)} ${threads} thr int8 base`);
      int8.set(
        threads,
        await esmkit("train", { ...base, ...t, threads, quantize: "int8" }, ctx.o, ctx.log),
      );
    }
  }
  ctx.py.push({ id: name, kind: "train", params: base });
  ctx.finish.push((torch) => {
    const lossesAgree: Record<string, boolean | null> = {};
    const notes: string[] = [];
    const parts: [string, unknown][] = [];
    const cells = ctx.o.threads.map((threads) => {
      const { result: r, attempts } = ours.get(threads)!;
      const pt = torch.get(threads)!.get(name)!;
      const mb = num(r.microBatch) ?? s.batch;
      const how = r.checkpointing
        ? "with gradient checkpointing"
        : `as ${s.batch / mb} accumulated micro-batches of ${mb}`;
      if (attempts.length > 1 && !err(r))
        notes.push(`esmkit ${threads} thr ran the step ${how} (plain: ${attempts[0]!.error})`);
      // Same weights, ids and optimizer: the losses after the same steps must agree.
      const [la, lb] = [num(r.loss), num(pt.loss)];
      const agree =
        la !== null && lb !== null ? Math.abs(la - lb) <= 1e-3 * Math.max(1, Math.abs(lb)) : null;
      lossesAgree[String(threads)] = agree;
      if (agree === false) notes.push(`${threads} thr: losses differ: esmkit ${la}, PyTorch ${lb}`);
      parts.push([`esmkit ${threads} thr`, r], [`PyTorch ${threads} thr`, pt]);
      return { threads, esmkit: num(r.tokensPerSecond), torch: num(pt.tokensPerSecond) };
    });
    const errors = notesOf(...parts);
    if (errors) notes.push(errors);
    return {
      case: name,
      description: `LoRA r8 (query, key, value) training, ${arch}, batch ${fmtShape(s.batch, s.length)}, full AdamW steps (forward + backward on the engine, clip, AdamW); tokens/s = batch tokens / median step time`,
      esmkit: byThreads(
        new Map([...ours].map(([t, v]) => [t, { ...v.result, attempts: v.attempts }])),
      ),
      torch: byThreads(new Map(ctx.o.threads.map((t) => [t, torch.get(t)!.get(name)]))),
      ...(withInt8 ? { esmkitInt8: byThreads(int8) } : {}),
      lossesAgree,
      rows: [
        row(
          {
            case: name,
            metric: `LoRA train ${fmtShape(s.batch, s.length)}`,
            unit: "tokens/s",
            target: ">= 0.5x",
            ...(notes.length ? { note: notes.join("; ") } : {}),
          },
          cells,
          { min: 0.5 },
        ),
        ...(withInt8
          ? [
              row(
                {
                  case: name,
                  metric: `LoRA train ${fmtShape(s.batch, s.length)} int8 base (PyTorch: fp32)`,
                  unit: "tokens/s",
                  target: ">= 1.5x",
                  note: [
                    "esmkit --quantize int8 (frozen encoder Linears as int8, forward and backward; LoRA and the rest float32), same step shape as the float32 row; PyTorch + PEFT: float32",
                    notesOf(
                      ...ctx.o.threads.map((t): [string, unknown] => [
                        `esmkit int8 ${t} thr`,
                        int8.get(t),
                      ]),
                    ),
                  ]
                    .filter(Boolean)
                    .join("; "),
                },
                ctx.o.threads.map((threads) => ({
                  threads,
                  esmkit: num(int8.get(threads)?.tokensPerSecond),
                  torch: num(torch.get(threads)!.get(name)!.tokensPerSecond),
                })),
                { min: 1.5 },
              ),
            ]
          : []),
      ],
    };
  });
}

async function inferCase(ctx: Ctx, name: "infer-8m" | "infer-35m") {
  const arch = ARCH[name === "infer-8m" ? "8m" : "35m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.infer;
  const results: { batch: number; id: string; ours: Map<number, Result> }[] = [];
  for (const b of s.batches) {
    const ids = ctx.work.ids(b, s.length);
    const params = { modelDir: m.modelDir, ids, warmup: s.warmup, repeats: s.repeats };
    const ours = new Map<number, Result>();
    for (const threads of ctx.o.threads) {
      if (!ctx.ourThreads.includes(threads)) {
        ours.set(threads, notRun(ctx.o, threads));
        continue;
      }
      progress(`esmkit ${name} ${fmtShape(b, s.length)} ${threads} thr`);
      ours.set(threads, await esmkit("infer", { ...params, threads }, ctx.o, ctx.log));
    }
    const id = `${name}-b${b}`;
    ctx.py.push({ id, kind: "infer", params });
    results.push({ batch: b, id, ours });
  }
  ctx.finish.push((torch) => {
    const rows: Row[] = [];
    for (const { batch, id, ours } of results) {
      const pts = ctx.o.threads.map((t) => [t, ours.get(t)!, torch.get(t)!.get(id)!] as const);
      const note = notesOf(
        ...pts.flatMap(([t, r, pt]): [string, unknown][] => [
          [`esmkit ${t} thr`, r],
          [`PyTorch ${t} thr`, pt],
        ]),
      );
      const shape = fmtShape(batch, s.length);
      const base = { case: `${name}-b${batch}`, ...(note ? { note } : {}) };
      rows.push(
        row(
          { ...base, metric: `inference ${shape} throughput`, unit: "seq/s", target: ">= 0.5x" },
          pts.map(([threads, r, pt]) => ({
            threads,
            esmkit: num(r.sequencesPerSecond),
            torch: num(pt.sequencesPerSecond),
          })),
          { min: 0.5 },
        ),
        row(
          { ...base, metric: `inference ${shape} latency`, unit: "ms" },
          pts.map(([threads, r, pt]) => ({
            threads,
            esmkit: num(r.latencyMs),
            torch: num(pt.latencyMs),
          })),
        ),
      );
    }
    return {
      case: name,
      description: `forward only (no gradients), ${arch}, batches ${s.batches.join(" and ")} at length ${s.length}; latency = median per batch`,
      esmkit: Object.fromEntries(results.map((r) => [r.id, byThreads(r.ours)])),
      torch: Object.fromEntries(
        results.map((r) => [
          r.id,
          byThreads(new Map(ctx.o.threads.map((t) => [t, torch.get(t)!.get(r.id)]))),
        ]),
      ),
      rows,
    };
  });
}

/** esm.cpp's side of a deeploc case at `threads`, in its own virtualenv and process. */
async function esmcpp(ctx: Ctx, threads: number, params: Record<string, unknown>): Promise<Result> {
  if (!existsSync(ctx.o.esmcpp))
    return { error: `not run: no ${ctx.o.esmcpp} (bash bench/setup-esmcpp.sh makes it)` };
  const spec = path.join(ctx.work.dir, `esmcpp-spec-${threads}.json`);
  writeFileSync(spec, JSON.stringify(params));
  const r = await runChild(
    ctx.o.esmcpp,
    [path.join(ROOT, "bench", "esmcpp_bench.py"), "--json", `@${spec}`],
    {
      // esm.cpp sizes its pool from ESM_NUM_THREADS; OMP_NUM_THREADS for anything else.
      env: { ESM_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
      timeoutS: ctx.o.timeoutS,
      log: ctx.log,
    },
  );
  const last = r.results.at(-1);
  if (last) return last;
  const why =
    r.signal === "SIGKILL" ? `timed out after ${ctx.o.timeoutS} s` : `exit ${r.code ?? r.signal}`;
  return { error: `${why}${r.stderrTail ? `: ${r.stderrTail}` : ""}` };
}

/**
 * Inference on real DeepLoc lengths: esmkit and PyTorch pad each batch of consecutive
 * proteins to its longest member (what `predict` does today); esm.cpp packs each batch
 * (`forward_scheduled`). fp32 on all three sides, then esm.cpp's int8 (W8A8) in its own
 * row against PyTorch fp32. esm.cpp's last hidden states of the first proteins are checked
 * against PyTorch's on the same weights.
 */
async function deeplocCase(ctx: Ctx, name: "deeploc-35m" | "deeploc-150m") {
  const arch = ARCH[name === "deeploc-35m" ? "35m" : "150m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.deeploc;
  const { file: proteins, lengths } = await ctx.work.proteins(s.proteins, s.batch);
  let real = 0;
  let computed = 0;
  for (let i = 0; i < lengths.length; i += s.batch) {
    const part = lengths.slice(i, i + s.batch);
    real += part.reduce((a, b) => a + b, 0);
    computed += part.length * Math.max(...part);
  }
  const paddingShare = (computed - real) / computed;
  // esmkit's batches: each window of sortWindow proteins sorted by length, as predict does.
  const sortWindow = ctx.o.sortWindow;
  const oursComputed = lengthSortedBatches(lengths, {
    batchSize: s.batch,
    window: Math.max(1, sortWindow),
  }).reduce((sum, idx) => sum + idx.length * Math.max(...idx.map((i) => lengths[i]!)), 0);
  const oursPadding = (oursComputed - real) / oursComputed;
  const params = { modelDir: m.modelDir, proteins, warmup: s.warmup, repeats: s.repeats };
  const oursParams = { ...params, sortWindow };
  const hiddenOut = path.join(ctx.work.dir, `esmcpp-hidden-${arch}`);
  const int8Only = ctx.o.precision === "int8";
  const ours = new Map<number, Result>();
  const ours8 = new Map<number, Result>();
  const peers = new Map<number, Result>();
  for (const threads of ctx.o.threads) {
    if (!ctx.ourThreads.includes(threads)) {
      ours.set(threads, notRun(ctx.o, threads));
      ours8.set(threads, notRun(ctx.o, threads));
    } else {
      if (int8Only) ours.set(threads, { error: "not run: --precision int8" });
      else {
        progress(`esmkit ${name} ${s.proteins} proteins ${threads} thr`);
        ours.set(threads, await esmkit("inferVar", { ...oursParams, threads }, ctx.o, ctx.log));
      }
      if (ctx.o.engine === "onnx") {
        progress(`esmkit ${name} ${s.proteins} proteins ${threads} thr int8`);
        ours8.set(
          threads,
          await esmkit("inferVar", { ...oursParams, threads, quantize: "int8" }, ctx.o, ctx.log),
        );
      } else ours8.set(threads, { error: "not run: int8 needs the onnx engine" });
    }
    progress(
      `esm.cpp ${name} ${s.proteins} proteins ${threads} thr (${int8Only ? "int8" : "fp32, then int8"})`,
    );
    peers.set(
      threads,
      await esmcpp(ctx, threads, {
        ...params,
        modes: int8Only ? ["int8"] : ["fp32", "int8"],
        work: path.join(ctx.work.dir, `esmcpp-${arch}`),
        // Hidden states once (the first thread count): they do not depend on threads.
        ...(threads === ctx.o.threads[0] ? { parity: 4, hiddenOut } : {}),
      }),
    );
  }
  if (!int8Only) {
    ctx.py.push({
      id: name,
      kind: "infer_var",
      params: {
        ...params,
        hidden: { fp32: `${hiddenOut}-fp32.npz`, int8: `${hiddenOut}-int8.npz` },
      },
    });
  }
  ctx.finish.push((results) => {
    const torch = new Map(
      ctx.o.threads.map((t): [number, Map<string, Result>] => [
        t,
        int8Only ? new Map([[name, { error: "not run: --precision int8" }]]) : results.get(t)!,
      ]),
    );
    const first = torch.get(ctx.o.threads[0]!)!.get(name)!;
    const parity = ["fp32", "int8"]
      .map((mode) => {
        const d = num(first[`${mode}HiddenMaxAbsDiff`]);
        const ref = num(first[`${mode}HiddenMaxAbs`]);
        return d === null
          ? null
          : `esm.cpp ${mode} last hidden state vs PyTorch, ${first[`${mode}HiddenProteins`]} proteins: max |diff| ${d.toPrecision(2)} (max |value| ${ref?.toPrecision(3)})`;
      })
      .filter((x) => x !== null);
    const cpu = ctx.o.threads
      .map((t) => {
        const p = peers.get(t)!;
        const f = p.fp32 as Result | undefined;
        const q = p.int8 as Result | undefined;
        return f
          ? `${t} thr: fp32 ${JSON.stringify(f.cpuPerWall)}, int8 ${JSON.stringify(q?.cpuPerWall)}`
          : null;
      })
      .filter((x) => x !== null);
    const peerMode = (t: number, mode: "fp32" | "int8") =>
      num((peers.get(t)![mode] as Result | undefined)?.sequencesPerSecond);
    const errors = notesOf(
      ...ctx.o.threads.flatMap((t): [string, unknown][] => [
        [`esmkit ${t} thr`, ours.get(t)],
        [`esmkit int8 ${t} thr`, ours8.get(t)],
        [`PyTorch ${t} thr`, torch.get(t)!.get(name)],
        [`esm.cpp ${t} thr`, peers.get(t)],
        [`esm.cpp fp32 ${t} thr`, peers.get(t)!.fp32],
        [`esm.cpp int8 ${t} thr`, peers.get(t)!.int8],
      ]),
    );
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    const common = [
      sortWindow > 1
        ? `batches of ${s.batch}: PyTorch in file order, padding ${pct(paddingShare)} of the tokens it computes (${computed} computed, ${real} real); esmkit sorts each window of ${sortWindow} proteins by length first, as its predict does (--sort-window ${sortWindow}), padding ${pct(oursPadding)} (${oursComputed} computed); esm.cpp packs`
        : `batches of ${s.batch} in file order (--sort-window 0), padding ${pct(paddingShare)} of the tokens esmkit and PyTorch compute (${computed} computed, ${real} real); esm.cpp packs`,
      ...parity,
      ...(cpu.length ? [`esm.cpp cores busy per wall second: ${cpu.join("; ")}`] : []),
      ...(errors ? [errors] : []),
    ];
    const shape = `${s.proteins} DeepLoc proteins`;
    return {
      case: name,
      description:
        `forward only, ${arch}, the first ${s.proteins} proteins of 100..512 residues of data/deeploc-sample.csv in file order, ` +
        `batches of ${s.batch}; esmkit (engine ${ctx.o.engine}; ${sortWindow > 1 ? `each window of ${sortWindow} sorted by length first, as predict does` : "file order"}) and PyTorch (file order) pad each batch to its longest member, esm.cpp ${String(peers.get(ctx.o.threads[0]!)?.version ?? "")} packs it (forward_scheduled); ` +
        "throughput = proteins / median pass over all of them; the int8 row: esmkit --quantize int8 (DynamicQuantizeMatMul, per-channel int8 weights) and esm.cpp's W8A8 (quantize_weights), against PyTorch fp32",
      paddingShare,
      computedTokens: computed,
      realTokens: real,
      sortWindow,
      esmkitPaddingShare: oursPadding,
      esmkitComputedTokens: oursComputed,
      esmkit: byThreads(ours),
      esmkitInt8: byThreads(ours8),
      torch: byThreads(new Map(ctx.o.threads.map((t) => [t, torch.get(t)!.get(name)]))),
      esmcpp: byThreads(peers),
      rows: [
        row(
          {
            case: name,
            metric: `inference ${shape} fp32`,
            unit: "seq/s",
            target: ">= 1.2x esm.cpp",
            note: common.join("; "),
          },
          ctx.o.threads.map((t) => ({
            threads: t,
            esmkit: num(ours.get(t)!.sequencesPerSecond),
            torch: num(torch.get(t)!.get(name)!.sequencesPerSecond),
            peer: peerMode(t, "fp32"),
          })),
          { min: 1.2, on: "peer" },
        ),
        row(
          {
            case: name,
            metric: `inference ${shape} int8 (PyTorch: fp32)`,
            unit: "seq/s",
            target: int8Only
              ? ">= 1.2x esm.cpp (no PyTorch side)"
              : ">= 2x PyTorch, >= 1.2x esm.cpp",
            note: "esmkit column: --quantize int8 (same batches as fp32); PyTorch column: fp32; esm.cpp column: int8 W8A8",
          },
          ctx.o.threads.map((t) => ({
            threads: t,
            esmkit: num(ours8.get(t)!.sequencesPerSecond),
            torch: num(torch.get(t)!.get(name)!.sequencesPerSecond),
            peer: peerMode(t, "int8"),
          })),
          int8Only ? { min: 1.2, on: "peer" } : { min: 1.2, on: "peer", andRatioMin: 2 },
        ),
      ],
    };
  });
}

async function memoryCase(ctx: Ctx) {
  const name = "memory-8m";
  const arch = ARCH["8m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.memory;
  type Pair = { ckpt: Result; plain: Result };
  const runPair = async (batch: number, threads: number): Promise<Pair> => {
    const params = { ...m, ids: ctx.work.ids(batch, s.length), warmup: 0, repeats: s.repeats };
    const shape = fmtShape(batch, s.length);
    // Checkpointing first; the plain step is the one that may not fit.
    progress(`esmkit ${name} ${shape} ${threads} thr checkpointing`);
    const ckpt = await esmkit(
      "memory",
      { ...params, threads, checkpointing: true },
      ctx.o,
      ctx.log,
    );
    progress(`esmkit ${name} ${shape} ${threads} thr plain`);
    const plain = await esmkit(
      "memory",
      { ...params, threads, checkpointing: false },
      ctx.o,
      ctx.log,
    );
    return { ckpt, plain };
  };
  // By thread count, then batch. The first thread count finds the batches: if the plain
  // step runs out of memory, the largest batch where both fit, for the reduction.
  const ours = new Map<number, Map<number, Pair>>();
  const [first, ...rest] = ctx.o.threads.filter((t) => ctx.ourThreads.includes(t));
  const tried: number[] = [];
  if (first !== undefined) {
    const pairs = new Map<number, Pair>();
    ours.set(first, pairs);
    for (let b = s.batch; b >= 1; b = Math.floor(b / 2)) {
      tried.push(b);
      pairs.set(b, await runPair(b, first));
      if (!outOfMemory(pairs.get(b)!.plain) || b === 1) break;
    }
  } else tried.push(s.batch);
  const last = tried.at(-1)!;
  const lastOk = first !== undefined && !err(ours.get(first)!.get(last)!.plain);
  const compared = [s.batch, ...(tried.length > 1 && lastOk ? [last] : [])];
  for (const t of rest) {
    const pairs = new Map<number, Pair>();
    ours.set(t, pairs);
    for (const b of compared) pairs.set(b, await runPair(b, t));
  }
  const ourPair = (t: number, b: number): Pair =>
    ours.get(t)?.get(b) ?? { ckpt: notRun(ctx.o, t), plain: notRun(ctx.o, t) };
  const pyId = (b: number, mode: "ckpt" | "plain") => `${name}-${b}-${mode}`;
  for (const b of compared) {
    for (const mode of ["ckpt", "plain"] as const) {
      ctx.py.push({
        id: pyId(b, mode),
        kind: "memory",
        params: {
          ...m,
          ids: ctx.work.ids(b, s.length),
          warmup: 0,
          repeats: s.repeats,
          checkpointing: mode === "ckpt",
        },
        own: !ctx.o.quick,
      });
    }
  }
  ctx.finish.push((torch) => {
    const rows: Row[] = [];
    const mib = (x: unknown) => {
      const v = num(x);
      return v === null ? null : v / MiB;
    };
    const activation = (x: Result | undefined) => mib(x?.activationBytes);
    const rssRise = (x: Result | undefined) => {
      const a = num(x?.maxRssAfterBytes);
      const b = num(x?.maxRssBeforeBytes);
      return a === null || b === null ? null : (a - b) / MiB;
    };
    const sec = (x: Result | undefined) => num(x?.medianStepSeconds);
    const cut = (plain: number | null, ckpt: number | null) =>
      plain !== null && ckpt !== null && plain > 0 ? 100 * (1 - ckpt / plain) : null;
    const extra = (plain: number | null, ckpt: number | null) =>
      plain !== null && ckpt !== null && plain > 0 ? 100 * (ckpt / plain - 1) : null;
    // Unlike methods (max RSS against allocator events): no ratio on that row.
    const likeMethods = ctx.o.engine === "tfjs";
    for (const b of compared) {
      const shape = fmtShape(b, s.length);
      const per = ctx.o.threads.map((t) => ({
        t,
        ours: ourPair(t, b),
        pt: {
          ckpt: torch.get(t)!.get(pyId(b, "ckpt"))!,
          plain: torch.get(t)!.get(pyId(b, "plain"))!,
        },
      }));
      const fallbackNote =
        b !== s.batch
          ? `plain step at ${fmtShape(s.batch, s.length)} failed: ${err(ourPair(first ?? 1, s.batch).plain)}`
          : undefined;
      for (const [mode, key] of [
        ["plain", "plain"],
        ["checkpointing", "ckpt"],
      ] as const) {
        const note = notesOf(
          ...per.flatMap(({ t, ours, pt }): [string, unknown][] => [
            [`esmkit ${t} thr`, ours[key]],
            [`PyTorch ${t} thr`, pt[key]],
          ]),
        );
        const base = { case: name, ...(note ? { note } : {}) };
        const cells = (f: (x: Result | undefined) => number | null) =>
          per.map(({ t, ours, pt }) => ({ threads: t, esmkit: f(ours[key]), torch: f(pt[key]) }));
        rows.push(
          row(
            { ...base, metric: `step ${shape} ${mode}: peak activations`, unit: "MiB" },
            cells(activation),
            undefined,
            { ratio: likeMethods },
          ),
          row(
            { ...base, metric: `step ${shape} ${mode}: max RSS rise`, unit: "MiB" },
            cells(rssRise),
          ),
          row({ ...base, metric: `step ${shape} ${mode}: time`, unit: "s" }, cells(sec)),
        );
      }
      const failed = notesOf(
        ...per.flatMap(({ t, ours }): [string, unknown][] => [
          [`esmkit ${t} thr`, ours.plain],
          [`esmkit ${t} thr`, ours.ckpt],
        ]),
      );
      const note = failed ?? fallbackNote;
      const pctCells = (
        f: (plain: number | null, ckpt: number | null) => number | null,
        g: (x: Result | undefined) => number | null,
      ) =>
        per.map(({ t, ours, pt }) => ({
          threads: t,
          esmkit: f(g(ours.plain), g(ours.ckpt)),
          torch: f(g(pt.plain), g(pt.ckpt)),
        }));
      const base = { case: name, ...(note ? { note } : {}) };
      rows.push(
        row(
          {
            ...base,
            metric: `checkpointing ${shape}: activation cut`,
            unit: "%",
            target: ">= 60 %",
          },
          pctCells(cut, activation),
          { min: 60, on: "esmkit" },
        ),
        row(
          { ...base, metric: `checkpointing ${shape}: cut in max RSS rise`, unit: "%" },
          pctCells(cut, rssRise),
        ),
        row(
          {
            ...base,
            metric: `checkpointing ${shape}: extra step time`,
            unit: "%",
            target: "<= 40 %",
          },
          pctCells(extra, sec),
          { max: 40, on: "esmkit" },
        ),
      );
    }
    const ourMethod =
      ctx.o.engine === "onnx"
        ? "esmkit (onnx): the max-RSS rise over the first training step in a fresh process, with the model, adapter, optimizer, batch and the engine's weights built before"
        : "esmkit (tfjs): tf.profile peakBytes minus the tensor bytes alive before the step";
    return {
      case: name,
      description:
        `one LoRA training step (forward, backward, clip, AdamW), ${arch}, batch ${fmtShape(s.batch, s.length)}, ` +
        `with and without gradient checkpointing, each in a fresh process. Peak activations: ${ourMethod}; ` +
        "PyTorch: peak of the running sum of CPU allocator events (torch.profiler profile_memory) over the first step. " +
        "Max RSS rise: the process's max RSS after the first step minus before it, on both sides (PyTorch's includes the profiler's own memory). " +
        "Time: median of the later steps",
      esmkit: byThreads(
        new Map(
          ctx.o.threads.map((t) => [
            t,
            Object.fromEntries(
              tried.flatMap((b) => [
                [`${b}-ckpt`, ourPair(t, b).ckpt],
                [`${b}-plain`, ourPair(t, b).plain],
              ]),
            ),
          ]),
        ),
      ),
      torch: byThreads(
        new Map(
          ctx.o.threads.map((t) => [
            t,
            Object.fromEntries(
              compared.flatMap((b) =>
                (["ckpt", "plain"] as const).map((k) => [
                  `${b}-${k}`,
                  torch.get(t)!.get(pyId(b, k)),
                ]),
              ),
            ),
          ]),
        ),
      ),
      rows,
    };
  });
}

async function prepareCase(ctx: Ctx) {
  const name = "prepare";
  const s = ctx.sizes.prepare;
  const ours = new Map<number, Result>();
  for (const threads of ctx.o.threads) {
    progress(`esmkit prepare ${path.basename(ctx.o.deeploc)} ${threads} thr`);
    ours.set(
      threads,
      await esmkit(
        "prepare",
        {
          input: ctx.o.deeploc,
          out: path.join(ctx.work.dir, `prepare-esmkit-${threads}`),
          repeats: s.repeats,
        },
        ctx.o,
        ctx.log,
        { POLARS_MAX_THREADS: String(threads) },
      ),
    );
  }
  // pandas and the tokenizer run one thread: one run, compared at every thread count.
  ctx.py.push({
    id: name,
    kind: "prepare",
    once: true,
    params: {
      input: ctx.o.deeploc,
      out: path.join(ctx.work.dir, "prepare-pandas"),
      tokenizer: path.join(ROOT, "test", "fixtures", "tokenizer", "saved"),
      repeats: s.repeats,
    },
  });
  ctx.finish.push((torch) => {
    const pt = torch.get(ctx.o.threads[0]!)!.get(name)!;
    const rowsRead = num(ours.get(ctx.o.threads[0]!)?.rowsRead) ?? num(pt.rowsRead) ?? "?";
    const note = notesOf(
      ...ctx.o.threads.map((t): [string, unknown] => [`esmkit ${t} thr`, ours.get(t)]),
      ["pandas", pt],
    );
    return {
      case: name,
      description:
        `${path.basename(ctx.o.deeploc)}: esmkit prepare (validate, filter 100..512, split 80/20, tokenize, Parquet + stats.json; POLARS_MAX_THREADS = threads) ` +
        "against pandas read_csv + filter + sample(frac=0.8) + HF EsmTokenizer(truncation, max_length 512) + to_parquet " +
        "(single-threaded: one run, in every column); end to end in-process, file read included; median of repeats",
      esmkit: byThreads(ours),
      torch: { pandas: pt },
      rows: [
        row(
          {
            case: name,
            metric: `prepare ${ctx.o.quick ? "sample" : "full DeepLoc"} (${rowsRead} rows)`,
            unit: "s",
            target: "<= 1.0x",
            note: note ?? "PyTorch columns: pandas (single-threaded), the same run in each",
          },
          ctx.o.threads.map((threads) => ({
            threads,
            esmkit: num(ours.get(threads)!.medianSeconds),
            torch: num(pt.medianSeconds),
          })),
          { max: 1.0 },
        ),
      ],
    };
  });
}

/**
 * transformers.js (Node) on the folder `esmkit export --quantize int8` wrote, float32 and
 * int8, next to esmkit's own predictor, on the same proteins at each thread count. Not a
 * PyTorch comparison: those columns stay empty; the notes give transformers.js / esmkit.
 */
async function exportCase(ctx: Ctx) {
  const name = "export-8m";
  const arch = ARCH["8m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.export;
  const ours = new Map<number, Result>();
  for (const threads of ctx.o.threads) {
    progress(`esmkit ${name} (export, esmkit predict, transformers.js fp32 + int8) ${threads} thr`);
    ours.set(
      threads,
      await esmkit(
        "export",
        {
          modelDir: m.modelDir,
          out: path.join(ctx.work.dir, `export-${threads}`),
          proteins: s.proteins,
          threads,
          batch: s.batch,
          warmup: s.warmup,
          repeats: s.repeats,
        },
        ctx.o,
        ctx.log,
      ),
    );
  }
  ctx.finish.push(() => {
    const first = ours.get(ctx.o.threads[0]!)!;
    const n = num(first.proteins) ?? "?";
    const sps = (r: Result, k: string) =>
      num((r.sequencesPerSecond as Record<string, unknown> | undefined)?.[k]);
    const ratios = ctx.o.threads
      .map((t) => {
        const r = ours.get(t)!;
        const e = sps(r, "esmkit");
        const f = div(sps(r, "fp32"), e);
        const q = div(sps(r, "int8"), e);
        return `${t} thr: fp32 ${f?.toFixed(2) ?? "—"}x, int8 ${q?.toFixed(2) ?? "—"}x`;
      })
      .join("; ");
    const errors = notesOf(
      ...ctx.o.threads.map((t): [string, unknown] => [`esmkit ${t} thr`, ours.get(t)]),
    );
    const note = [
      `no PyTorch column: transformers.js / esmkit predict = ${ratios}`,
      "random weights (labels near ties)",
      ...(errors ? [errors] : []),
    ].join("; ");
    const base = { case: name, note };
    const cells = (f: (r: Result) => number | null) =>
      ctx.o.threads.map((threads) => ({ threads, esmkit: f(ours.get(threads)!), torch: null }));
    const stat = (r: Result, dtype: string, k: string) =>
      num((r[dtype] as Record<string, unknown> | undefined)?.[k]);
    return {
      case: name,
      description: `${arch} (random weights) exported with int8; ${n} DeepLoc proteins (${path.basename(s.proteins)}, 61-1,040 residues, cut to 1,022) in batches of ${s.batch} in input order: esmkit's predictor (onnx engine) and transformers.js' text-classification pipeline (onnxruntime-node) on the exported folder, float32 and int8 (dtype q8), each with N intra-op threads; seq/s = proteins / median seconds for all of them`,
      esmkit: byThreads(ours),
      torch: {},
      rows: [
        row(
          { ...base, metric: `esmkit predict, ${n} proteins`, unit: "seq/s" },
          cells((r) => sps(r, "esmkit")),
        ),
        row(
          { ...base, metric: "transformers.js fp32 (Node)", unit: "seq/s" },
          cells((r) => sps(r, "fp32")),
        ),
        row(
          { ...base, metric: "transformers.js int8 (Node)", unit: "seq/s" },
          cells((r) => sps(r, "int8")),
        ),
        row(
          { ...base, metric: "fp32: max abs delta P vs esmkit", unit: "" },
          cells((r) => stat(r, "fp32", "maxDp")),
        ),
        row(
          { ...base, metric: "int8: labels as esmkit's", unit: "%" },
          cells((r) => stat(r, "int8", "agreePercent")),
        ),
        row(
          { ...base, metric: "int8: max abs delta P vs esmkit", unit: "" },
          cells((r) => stat(r, "int8", "maxDp")),
        ),
      ],
    };
  });
}

// ---- output ----

function fmt(x: number | null | undefined, unit = ""): string {
  if (x === null || x === undefined) return "—";
  const a = Math.abs(x);
  if (unit === "%") return `${x.toFixed(0)} %`;
  return a >= 1000
    ? x.toFixed(0)
    : a >= 100
      ? x.toFixed(1)
      : a >= 1
        ? x.toFixed(2)
        : x.toPrecision(2);
}

function table(rows: Row[], threads: number[]): string {
  // esm.cpp columns only where some row has that third side (the deeploc cases).
  const peer = rows.some((r) => r.cells.some((c) => c.peer !== undefined));
  const header = [
    "case",
    "metric",
    "unit",
    ...threads.flatMap((t) => [
      `esmkit (${t} thr)`,
      `PyTorch (${t} thr)`,
      "ratio",
      ...(peer ? [`esm.cpp (${t} thr)`, "vs esm.cpp"] : []),
    ]),
    "target",
    `reached (${threads.join(" / ")} thr)`,
  ];
  const x = (v: number | null | undefined) => (v == null ? "—" : `${v.toFixed(2)}x`);
  const body = rows.map((r) => {
    const cells = threads.map((t) => r.cells.find((c) => c.threads === t));
    return [
      r.case,
      r.metric,
      r.unit,
      ...cells.flatMap((c) => [
        fmt(c?.esmkit, r.unit),
        fmt(c?.torch, r.unit),
        r.unit === "%" ? "" : x(c?.ratio),
        ...(peer
          ? [
              c?.peer === undefined ? "" : fmt(c.peer, r.unit),
              c?.peer === undefined ? "" : x(c.peerRatio),
            ]
          : []),
      ]),
      r.target ?? "",
      cells.some((c) => c?.reached !== undefined)
        ? cells
            .map((c) =>
              c?.reached === undefined || c.reached === null ? "n/a" : c.reached ? "yes" : "NO",
            )
            .join(" / ")
        : "",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i >= 3 && i < cells.length - 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  const seen = new Set<string>();
  const notes: string[] = [];
  for (const r of rows) {
    const key = `${r.case}\n${r.note}`;
    if (!r.note || seen.has(key)) continue;
    seen.add(key);
    notes.push(`  ${r.case} / ${r.metric}: ${r.note}`);
  }
  return [
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...body.map(line),
    ...(notes.length ? ["notes:", ...notes] : []),
  ].join("\n");
}

function pkgVersion(name: string): string | null {
  try {
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
  } catch {
    return null;
  }
}

function versionsOf(torch: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, threads: _t, torchThreads: _tt, ...py } = torch;
  return {
    esmkit: JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version,
    node: process.version,
    onnxruntimeNode: pkgVersion("onnxruntime-node"),
    tfjsCore: tf.version_core,
    tfjsBackendWasm: pkgVersion("@tensorflow/tfjs-backend-wasm"),
    nodejsPolars: pkgVersion("nodejs-polars"),
    ...py,
  };
}

/** The wasm backend's thread count (XNNPACK runs one thread in Node) and features. */
async function wasmInfo(): Promise<Record<string, unknown>> {
  try {
    const wasm = require("@tensorflow/tfjs-backend-wasm") as {
      getThreadsCount?: () => number;
    };
    await tf.setBackend("wasm");
    await tf.ready();
    return {
      threads: wasm.getThreadsCount?.() ?? 1,
      simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
      multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
    };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const wasm = o.backend === "wasm" ? await wasmInfo() : {};
  // tfjs runs where its backend does (wasm in Node: 1 thread); onnx at every count.
  const tfjsThreads = num(wasm.threads) ?? 1;
  const ourThreads = o.engine === "onnx" ? o.threads : o.threads.filter((t) => t === tfjsThreads);
  const base = o.quick ? QUICK : FULL;
  const r = o.repeats;
  const sizes: Sizes = {
    ...base,
    ...(r
      ? {
          train: { ...base.train, repeats: r },
          infer: { ...base.infer, repeats: r },
          memory: { ...base.memory, repeats: r },
          prepare: { repeats: r },
          export: { ...base.export, repeats: r },
        }
      : {}),
    deeploc: {
      ...base.deeploc,
      ...(r ? { repeats: r } : {}),
      ...(o.proteins ? { proteins: o.proteins } : {}),
    },
  };
  const started = new Date();
  const load0 = os.loadavg();
  const work = new Work();
  const log = path.join(work.dir, "bench.log");
  progress(`work dir ${work.dir} (log: ${log})`);
  const ctx: Ctx = {
    o,
    sizes,
    work,
    log,
    ourThreads,
    models: new Map(),
    py: [],
    finish: [],
  };
  const t0 = performance.now();
  try {
    for (const c of o.cases) {
      if (c === "train-8m" || c === "train-35m") await trainCase(ctx, c);
      else if (c === "infer-8m" || c === "infer-35m") await inferCase(ctx, c);
      else if (c === "deeploc-35m" || c === "deeploc-150m") await deeplocCase(ctx, c);
      else if (c === "memory-8m") await memoryCase(ctx);
      else if (c === "export-8m") await exportCase(ctx);
      else await prepareCase(ctx);
    }
    const torch: TorchRuns = new Map();
    for (const [i, t] of o.threads.entries()) {
      const cases = i === 0 ? ctx.py : ctx.py.filter((c) => !c.once);
      progress(`PyTorch, ${t} thread(s): ${cases.length} case(s)`);
      torch.set(t, await python(cases, t, o, work.dir, log));
    }
    const reports = ctx.finish.map((f) => f(torch));
    const rows = reports.flatMap((r) => r.rows);
    const cpus = os.cpus();
    const versionsRun = torch.get(o.threads[0]!)!.get("versions")!;
    const meta = {
      date: started.toISOString(),
      quick: o.quick,
      wallSeconds: Math.round((performance.now() - t0) / 100) / 10,
      machine: {
        cpu: cpus[0]?.model ?? "unknown",
        cores: cpus.length,
        memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
        os: `${os.type()} ${os.release()} ${os.arch()}`,
        loadAverageStart: load0.map((x) => Math.round(x * 100) / 100),
        loadAverageEnd: os.loadavg().map((x) => Math.round(x * 100) / 100),
      },
      engine: o.engine,
      threads: { both: o.threads, esmkit: ourThreads },
      esmkitBackend: { name: o.backend, ...wasm },
      versions: versionsOf(versionsRun),
      torchVersionsError: err(versionsRun),
      // Paths relative to the repository: results name no machine paths.
      sizes: {
        ...sizes,
        export: { ...sizes.export, proteins: path.relative(ROOT, sizes.export.proteins) },
      },
      ratio:
        "esmkit / PyTorch at the same thread count (throughput: higher is better; times and memory: lower is better)",
    };
    const engineText =
      o.engine === "onnx"
        ? `engine onnx (onnxruntime-node ${meta.versions.onnxruntimeNode ?? "?"}; weights and AdamW on tfjs ${tf.version_core} ${o.backend})`
        : `engine tfjs ${tf.version_core} (${o.backend}, ${tfjsThreads} thread${tfjsThreads > 1 ? "s" : ""})`;
    const title =
      `esmkit vs PyTorch — ${meta.machine.cpu}, ${meta.machine.cores} cores, ${meta.date.slice(0, 10)}; ` +
      `node ${process.version}, ${engineText}; ` +
      `torch ${meta.versions.torch ?? "?"}, transformers ${meta.versions.transformers ?? "?"}, peft ${meta.versions.peft ?? "?"}`;
    const text = table(rows, o.threads);
    process.stdout.write(`\n${title}\n`);
    if (o.quick)
      process.stdout.write("QUICK sizes (smoke test): ratios are NOT the acceptance figures\n");
    process.stdout.write(`${text}\n`);
    mkdirSync(o.out, { recursive: true });
    const day = meta.date.slice(0, 10);
    for (const r of reports)
      writeFileSync(
        path.join(o.out, `${day}-${r.case}.json`),
        `${JSON.stringify({ ...meta, ...r }, null, 2)}\n`,
      );
    writeFileSync(
      path.join(o.out, "latest.json"),
      `${JSON.stringify({ ...meta, rows, cases: reports, table: text }, null, 2)}\n`,
    );
    // The same table as Markdown, with machine, versions and date, for the README.
    writeFileSync(
      path.join(o.out, "latest.md"),
      `${title}\n\n${o.quick ? "QUICK sizes (smoke test): ratios are NOT the acceptance figures\n\n" : ""}` +
        `${text.replace("\nnotes:", "\n\nNotes:\n").replace(/\n {2}/g, "\n- ")}\n`,
    );
    process.stdout.write(
      `\nwrote ${path.relative(process.cwd(), o.out) || "."}/{${day}-<case>,latest}.json and latest.md in ${meta.wallSeconds} s\n`,
    );
  } finally {
    if (o.keep) progress(`kept ${work.dir}`);
    else rmSync(work.dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  if (e instanceof Error && /^--|^could not write/.test(e.message)) console.error(e.message);
  else console.error(e);
  process.exit(1);
});
