/**
 * Side-by-side benchmark: esmkit (TensorFlow.js) against the Python reference (torch CPU +
 * transformers + peft) on identical work, in one run on one machine.
 *
 *   npm run build && node build/bench/run.js [--quick] [--only CASE,...] [--threads N]
 *        [--also-threads M] [--repeats R] [--out DIR] [--python PATH] [--deeploc CSV]
 *        [--backend wasm] [--timeout S] [--keep]
 *
 * Cases: train-8m, train-35m (LoRA r8 on query/key/value, full optimizer steps, batch
 * 8 x 256), infer-8m, infer-35m (forward only, batch 1 and 16 at length 400), memory-8m
 * (one training step with and without gradient checkpointing, batch 8 x 512) and prepare
 * (`esmkit prepare` on the full DeepLoc CSV against pandas + the HF tokenizer). `--only`
 * takes names or prefixes (`--only train,prepare`).
 *
 * Both sides load the SAME random weights: esmkit draws them (seed 1), writes a Hugging
 * Face directory and a PEFT adapter, and both load those files; both read the same token
 * ids (the 20 standard residues between `<cls>` and `<eos>`) from a JSON file. Each of our
 * cases runs in its own `node` process (a step that exhausts the wasm heap is recorded,
 * not fatal); the Python side runs all its cases in one process per thread count, with
 * `torch.set_num_threads(N)`. Ratios are esmkit / PyTorch at the same thread count as our
 * backend (wasm in Node: 1 thread); `--also-threads` adds an informative PyTorch column.
 * Output: a table on stdout, `<out>/<date>-<case>.json` per case and `<out>/latest.json`.
 *
 * `--quick` runs every case at tiny sizes (2-layer variants of both architectures, short
 * sequences, the 1,950-row sample CSV) as a smoke test; its ratios are not the figures
 * the acceptance targets talk about, and its JSON goes to bench/results/quick/.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { SeededRandom } from "../src/util/random";
import type { IdsFile } from "./esmkit-side";

const ROOT = path.resolve(__dirname, "..", "..");
const MARK = "@@BENCH ";
const MiB = 2 ** 20;

type Arch = "esm2_t6_8M_UR50D" | "esm2_t12_35M_UR50D";
const ARCH: Record<"8m" | "35m", Arch> = {
  "8m": "esm2_t6_8M_UR50D",
  "35m": "esm2_t12_35M_UR50D",
};
const CASE_NAMES = [
  "train-8m",
  "train-35m",
  "infer-8m",
  "infer-35m",
  "memory-8m",
  "prepare",
] as const;
type CaseName = (typeof CASE_NAMES)[number];

interface Sizes {
  /** Encoder layers (undefined: the architecture's own). */
  layers?: number;
  train: { batch: number; length: number; warmup: number; repeats: number };
  infer: { batches: number[]; length: number; warmup: number; repeats: number };
  memory: { batch: number; length: number; repeats: number };
  prepare: { repeats: number };
}

const FULL: Sizes = {
  train: { batch: 8, length: 256, warmup: 1, repeats: 3 },
  infer: { batches: [1, 16], length: 400, warmup: 1, repeats: 5 },
  memory: { batch: 8, length: 512, repeats: 2 },
  prepare: { repeats: 3 },
};

const QUICK: Sizes = {
  layers: 2,
  train: { batch: 2, length: 32, warmup: 1, repeats: 2 },
  infer: { batches: [1, 4], length: 32, warmup: 1, repeats: 3 },
  memory: { batch: 2, length: 64, repeats: 1 },
  prepare: { repeats: 1 },
};

interface Options {
  quick: boolean;
  cases: CaseName[];
  /** PyTorch threads of the comparison that the ratios use. */
  threads: number;
  /** A second PyTorch thread count, for information (0: none). */
  alsoThreads: number;
  out: string;
  python: string;
  deeploc: string;
  backend: string;
  timeoutS: number;
  keep: boolean;
  /** Timed repeats of every case, overriding the size table. */
  repeats?: number;
}

function parseOptions(argv: string[], ourThreads: number): Options {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      threads: { type: "string" },
      "also-threads": { type: "string" },
      out: { type: "string" },
      python: { type: "string" },
      deeploc: { type: "string" },
      backend: { type: "string", default: "wasm" },
      timeout: { type: "string" },
      keep: { type: "boolean", default: false },
      repeats: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (v.help) {
    process.stdout.write(
      "node build/bench/run.js [--quick] [--only CASE,...] [--threads N] [--also-threads M]\n" +
        "                        [--out DIR] [--python PATH] [--deeploc CSV] [--backend wasm]\n" +
        "                        [--repeats R] [--timeout S] [--keep]\n" +
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
  const quick = v.quick!;
  const threads = v.threads ? int("threads", v.threads, 1) : ourThreads;
  const cores = os.cpus().length;
  // Quick keeps one Python process: the second one would double its run time.
  const alsoDefault = quick || cores === threads ? 0 : cores;
  const alsoThreads = v["also-threads"] ? int("also-threads", v["also-threads"], 0) : alsoDefault;
  return {
    quick,
    cases,
    threads,
    alsoThreads: alsoThreads === threads ? 0 : alsoThreads,
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
): Promise<Record<string, unknown>> {
  const side = path.join(ROOT, "build", "bench", "esmkit-side.js");
  const r = await runChild(
    process.execPath,
    [side, kind, JSON.stringify({ backend: o.backend, ...params })],
    {
      timeoutS: o.timeoutS,
      log,
    },
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
}

/** All Python cases in one process at `threads`; results by case id. */
async function python(
  cases: PyCase[],
  threads: number,
  o: Options,
  work: string,
  log: string,
): Promise<Map<string, Record<string, unknown>>> {
  const spec = path.join(work, `py-spec-${threads}.json`);
  writeFileSync(
    spec,
    JSON.stringify({ cases: [{ id: "versions", kind: "versions", params: {} }, ...cases] }),
  );
  const t = String(threads);
  const r = await runChild(
    o.python,
    [path.join(ROOT, "bench", "reference_bench.py"), "batch", "--json", `@${spec}`, "--threads", t],
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
      timeoutS: o.timeoutS * Math.max(1, cases.length),
      log,
    },
  );
  const byId = new Map<string, Record<string, unknown>>();
  for (const res of r.results) byId.set(String(res.id), res);
  const why =
    r.signal === "SIGKILL" ? "timed out" : `python exited ${r.code ?? r.signal} before this case`;
  for (const c of [{ id: "versions" }, ...cases]) {
    if (!byId.has(c.id))
      byId.set(c.id, { error: `${why}${r.stderrTail ? `: ${r.stderrTail}` : ""}` });
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
}

// ---- results ----

interface Row {
  case: string;
  metric: string;
  unit: string;
  esmkit: number | null;
  torch: number | null;
  /** esmkit / PyTorch at the same thread count. */
  ratio: number | null;
  torchAlt?: number | null;
  ratioAlt?: number | null;
  target?: string;
  reached?: boolean | null;
  note?: string;
}

interface CaseReport {
  case: CaseName;
  description: string;
  esmkit: Record<string, unknown>;
  torch: Record<string, unknown>;
  torchAlt?: Record<string, unknown>;
  rows: Row[];
  /** Training cases: whether both sides ended on the same loss (same work done). */
  lossesAgree?: boolean | null;
}

const num = (x: unknown): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);
const div = (a: number | null, b: number | null) =>
  a !== null && b !== null && b !== 0 ? a / b : null;
const err = (x: unknown): string | undefined =>
  x && typeof x === "object" && "error" in x ? String((x as { error: unknown }).error) : undefined;

function row(
  base: Omit<Row, "ratio" | "ratioAlt">,
  check?: { min?: number; max?: number; on?: "ratio" | "esmkit" },
): Row {
  const r: Row = { ...base, ratio: div(base.esmkit, base.torch) };
  if (base.torchAlt !== undefined) r.ratioAlt = div(base.esmkit, base.torchAlt ?? null);
  if (check) {
    const v = check.on === "esmkit" ? r.esmkit : r.ratio;
    r.reached =
      v === null
        ? null
        : (check.min === undefined || v >= check.min) &&
          (check.max === undefined || v <= check.max);
  }
  return r;
}

// ---- cases ----

interface Ctx {
  o: Options;
  sizes: Sizes;
  work: Work;
  log: string;
  models: Map<Arch, { modelDir: string; adapterDir: string }>;
  /** Python cases to run, and how to turn their results into rows afterwards. */
  py: PyCase[];
  finish: ((
    torch: Map<string, Record<string, unknown>>,
    alt?: Map<string, Record<string, unknown>>,
  ) => CaseReport)[];
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

/** The failures a smaller step can cure (wasm heap exhausted), not timeouts or bugs. */
const outOfMemory = (x: unknown) => /abort|memory|heap|allocat|OOM/i.test(err(x) ?? "");

const fmtShape = (b: number, l: number) => `${b}x${l}`;

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
  const attempts: Record<string, unknown>[] = [];
  let ours: Record<string, unknown> = {};
  for (const t of tries) {
    progress(
      `esmkit ${name} ${fmtShape(s.batch, s.length)} micro-batch ${t.microBatch}${t.checkpointing ? " + checkpointing" : ""}`,
    );
    ours = await esmkit("train", { ...base, ...t }, ctx.o, ctx.log);
    attempts.push({ ...t, ...(err(ours) ? { error: err(ours) } : {}) });
    if (!outOfMemory(ours)) break;
  }
  const id = name;
  ctx.py.push({ id, kind: "train", params: base });
  ctx.finish.push((torch, alt) => {
    const pt = torch.get(id)!;
    const pa = alt?.get(id);
    const mb = num(ours.microBatch) ?? s.batch;
    const how = ours.checkpointing
      ? "with gradient checkpointing"
      : `as ${s.batch / mb} accumulated micro-batches of ${mb}`;
    const fallback =
      attempts.length > 1 && !err(ours)
        ? `esmkit ran the step ${how} (plain full batch: ${attempts[0]!.error})`
        : undefined;
    // Same weights, ids and optimizer: the losses after the same steps must agree.
    const [la, lb] = [num(ours.loss), num(pt.loss)];
    const agree =
      la !== null && lb !== null ? Math.abs(la - lb) <= 1e-3 * Math.max(1, Math.abs(lb)) : null;
    const lossNote = agree === false ? `losses differ: esmkit ${la}, PyTorch ${lb}` : undefined;
    return {
      case: name,
      description: `LoRA r8 (query, key, value) training, ${arch}, batch ${fmtShape(s.batch, s.length)}, full AdamW steps`,
      esmkit: { ...ours, attempts },
      torch: pt,
      lossesAgree: agree,
      ...(pa ? { torchAlt: pa } : {}),
      rows: [
        row(
          {
            case: name,
            metric: `LoRA train ${fmtShape(s.batch, s.length)}`,
            unit: "tokens/s",
            esmkit: num(ours.tokensPerSecond),
            torch: num(pt.tokensPerSecond),
            ...(pa ? { torchAlt: num(pa.tokensPerSecond) } : {}),
            target: ">= 0.5x",
            note:
              err(ours) ??
              err(pt) ??
              ([fallback, lossNote].filter(Boolean).join("; ") || undefined),
          },
          { min: 0.5 },
        ),
      ],
    };
  });
}

async function inferCase(ctx: Ctx, name: "infer-8m" | "infer-35m") {
  const arch = ARCH[name === "infer-8m" ? "8m" : "35m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.infer;
  const results: { batch: number; id: string; ours: Record<string, unknown> }[] = [];
  for (const b of s.batches) {
    const ids = ctx.work.ids(b, s.length);
    const params = { modelDir: m.modelDir, ids, warmup: s.warmup, repeats: s.repeats };
    progress(`esmkit ${name} ${fmtShape(b, s.length)}`);
    const ours = await esmkit("infer", params, ctx.o, ctx.log);
    const id = `${name}-b${b}`;
    ctx.py.push({ id, kind: "infer", params });
    results.push({ batch: b, id, ours });
  }
  ctx.finish.push((torch, alt) => {
    const rows: Row[] = [];
    for (const { batch, id, ours } of results) {
      const pt = torch.get(id)!;
      const pa = alt?.get(id);
      const note = err(ours) ?? err(pt);
      const shape = fmtShape(batch, s.length);
      rows.push(
        row(
          {
            case: `${name}-b${batch}`,
            metric: `inference ${shape} throughput`,
            unit: "seq/s",
            esmkit: num(ours.sequencesPerSecond),
            torch: num(pt.sequencesPerSecond),
            ...(pa ? { torchAlt: num(pa.sequencesPerSecond) } : {}),
            target: ">= 0.5x",
            note,
          },
          { min: 0.5 },
        ),
        row({
          case: `${name}-b${batch}`,
          metric: `inference ${shape} latency`,
          unit: "ms",
          esmkit: num(ours.latencyMs),
          torch: num(pt.latencyMs),
          ...(pa ? { torchAlt: num(pa.latencyMs) } : {}),
        }),
      );
    }
    return {
      case: name,
      description: `forward only (no gradients), ${arch}, batches ${s.batches.join(" and ")} at length ${s.length}; latency = median per batch`,
      esmkit: Object.fromEntries(results.map((r) => [r.id, r.ours])),
      torch: Object.fromEntries(results.map((r) => [r.id, torch.get(r.id)])),
      ...(alt ? { torchAlt: Object.fromEntries(results.map((r) => [r.id, alt.get(r.id)])) } : {}),
      rows,
    };
  });
}

async function memoryCase(ctx: Ctx) {
  const name = "memory-8m";
  const arch = ARCH["8m"];
  const m = await model(ctx, arch);
  const s = ctx.sizes.memory;
  const runPair = async (batch: number) => {
    const params = { ...m, ids: ctx.work.ids(batch, s.length), warmup: 0, repeats: s.repeats };
    // Checkpointing first; the plain step is the one that may not fit.
    progress(`esmkit ${name} ${fmtShape(batch, s.length)} checkpointing`);
    const ckpt = await esmkit("memory", { ...params, checkpointing: true }, ctx.o, ctx.log);
    progress(`esmkit ${name} ${fmtShape(batch, s.length)} plain`);
    const plain = await esmkit("memory", { ...params, checkpointing: false }, ctx.o, ctx.log);
    return { batch, params, ckpt, plain };
  };
  const pairs = [await runPair(s.batch)];
  // Plain step out of memory: find the largest batch where both fit, for the reduction.
  for (
    let b = Math.floor(s.batch / 2);
    b >= 1 && outOfMemory(pairs.at(-1)!.plain);
    b = Math.floor(b / 2)
  )
    pairs.push(await runPair(b));
  const compared = [
    pairs[0]!,
    ...(pairs.length > 1 && !err(pairs.at(-1)!.plain) ? [pairs.at(-1)!] : []),
  ];
  for (const p of compared) {
    ctx.py.push({
      id: `${name}-${p.batch}-ckpt`,
      kind: "memory",
      params: { ...p.params, checkpointing: true },
    });
    ctx.py.push({
      id: `${name}-${p.batch}-plain`,
      kind: "memory",
      params: { ...p.params, checkpointing: false },
    });
  }
  ctx.finish.push((torch, alt) => {
    const rows: Row[] = [];
    const mib = (x: Record<string, unknown> | undefined) => {
      const v = num(x?.activationBytes);
      return v === null ? null : v / MiB;
    };
    for (const p of compared) {
      const shape = fmtShape(p.batch, s.length);
      const tc = torch.get(`${name}-${p.batch}-ckpt`)!;
      const tp = torch.get(`${name}-${p.batch}-plain`)!;
      const ac = alt?.get(`${name}-${p.batch}-ckpt`);
      const ap = alt?.get(`${name}-${p.batch}-plain`);
      const c = name;
      const fallbackNote =
        p !== pairs[0]
          ? `plain step at ${fmtShape(s.batch, s.length)} failed: ${err(pairs[0]!.plain)}`
          : undefined;
      for (const [mode, ours, pt, pa] of [
        ["plain", p.plain, tp, ap],
        ["checkpointing", p.ckpt, tc, ac],
      ] as const) {
        rows.push(
          row({
            case: c,
            metric: `step ${shape} ${mode}: peak activations`,
            unit: "MiB",
            esmkit: mib(ours),
            torch: mib(pt),
            ...(pa ? { torchAlt: mib(pa) } : {}),
            note: err(ours) ?? err(pt),
          }),
          row({
            case: c,
            metric: `step ${shape} ${mode}: time`,
            unit: "s",
            esmkit: num(ours.medianStepSeconds),
            torch: num(pt.medianStepSeconds),
            ...(pa ? { torchAlt: num(pa.medianStepSeconds) } : {}),
            note: err(ours) ?? err(pt),
          }),
        );
      }
      const cut = (plain: number | null, ckpt: number | null) =>
        plain !== null && ckpt !== null && plain > 0 ? 100 * (1 - ckpt / plain) : null;
      const extra = (plain: number | null, ckpt: number | null) =>
        plain !== null && ckpt !== null && plain > 0 ? 100 * (ckpt / plain - 1) : null;
      const sec = (x: Record<string, unknown> | undefined) => num(x?.medianStepSeconds);
      const failed = err(p.plain) ?? err(p.ckpt);
      rows.push(
        row(
          {
            case: c,
            metric: `checkpointing ${shape}: activation cut`,
            unit: "%",
            esmkit: cut(mib(p.plain), mib(p.ckpt)),
            torch: cut(mib(tp), mib(tc)),
            ...(ap ? { torchAlt: cut(mib(ap), mib(ac)) } : {}),
            target: ">= 60 %",
            note: failed ? `esmkit: ${failed}` : fallbackNote,
          },
          { min: 60, on: "esmkit" },
        ),
        row(
          {
            case: c,
            metric: `checkpointing ${shape}: extra step time`,
            unit: "%",
            esmkit: extra(sec(p.plain), sec(p.ckpt)),
            torch: extra(sec(tp), sec(tc)),
            ...(ap ? { torchAlt: extra(sec(ap), sec(ac)) } : {}),
            target: "<= 40 %",
            note: failed ? `esmkit: ${failed}` : fallbackNote,
          },
          { max: 40, on: "esmkit" },
        ),
      );
    }
    const pick = (src: Map<string, Record<string, unknown>> | undefined) =>
      src
        ? Object.fromEntries(
            compared.flatMap((p) =>
              ["ckpt", "plain"].map((k) => [`${p.batch}-${k}`, src.get(`${name}-${p.batch}-${k}`)]),
            ),
          )
        : undefined;
    const torchAlt = pick(alt);
    return {
      case: name,
      description:
        `one LoRA training step (forward, backward, clip, AdamW), ${arch}, batch ${fmtShape(s.batch, s.length)}, ` +
        "with and without gradient checkpointing; peak activations = peak tensor bytes during the step above those alive before it " +
        "(esmkit: tf.profile peakBytes; PyTorch: torch.profiler CPU allocator events); time = median of unprofiled steps",
      esmkit: Object.fromEntries(
        pairs.flatMap((p) => [
          [`${p.batch}-ckpt`, p.ckpt],
          [`${p.batch}-plain`, p.plain],
        ]),
      ),
      torch: pick(torch)!,
      ...(torchAlt ? { torchAlt } : {}),
      rows,
    };
  });
}

async function prepareCase(ctx: Ctx) {
  const name = "prepare";
  const s = ctx.sizes.prepare;
  progress(`esmkit prepare ${path.basename(ctx.o.deeploc)}`);
  const ours = await esmkit(
    "prepare",
    { input: ctx.o.deeploc, out: path.join(ctx.work.dir, "prepare-esmkit"), repeats: s.repeats },
    ctx.o,
    ctx.log,
  );
  ctx.py.push({
    id: name,
    kind: "prepare",
    params: {
      input: ctx.o.deeploc,
      out: path.join(ctx.work.dir, "prepare-pandas"),
      tokenizer: path.join(ROOT, "test", "fixtures", "tokenizer", "saved"),
      repeats: s.repeats,
    },
  });
  ctx.finish.push((torch) => {
    const pt = torch.get(name)!;
    return {
      case: name,
      description:
        `${path.basename(ctx.o.deeploc)}: esmkit prepare (validate, filter 100..512, split 80/20, tokenize, Parquet + stats.json) ` +
        "against pandas read_csv + filter + sample(frac=0.8) + HF EsmTokenizer(truncation, max_length 512) + to_parquet; " +
        "end to end in-process, file read included; median of repeats",
      esmkit: ours,
      torch: pt,
      rows: [
        row(
          {
            case: name,
            metric: `prepare ${ctx.o.quick ? "sample" : "full DeepLoc"} (${num(ours.rowsRead) ?? num(pt.rowsRead) ?? "?"} rows)`,
            unit: "s",
            esmkit: num(ours.medianSeconds),
            torch: num(pt.medianSeconds),
            target: "<= 1.0x",
            note: err(ours) ?? err(pt),
          },
          { max: 1.0 },
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

function table(rows: Row[], o: Options, ourThreads: number): string {
  const header = [
    "case",
    "metric",
    "unit",
    `esmkit (${ourThreads} thr)`,
    `PyTorch (${o.threads} thr)`,
    "ratio",
    ...(o.alsoThreads ? [`PyTorch (${o.alsoThreads} thr)`, "ratio"] : []),
    "target",
    "reached",
  ];
  const body = rows.map((r) => [
    r.case,
    r.metric,
    r.unit,
    fmt(r.esmkit, r.unit),
    fmt(r.torch, r.unit),
    r.unit === "%" ? "" : r.ratio === null ? "—" : `${r.ratio.toFixed(2)}x`,
    ...(o.alsoThreads
      ? [
          fmt(r.torchAlt, r.unit),
          r.unit === "%"
            ? ""
            : r.ratioAlt === null || r.ratioAlt === undefined
              ? "—"
              : `${r.ratioAlt.toFixed(2)}x`,
        ]
      : []),
    r.target ?? "",
    r.reached === undefined ? "" : r.reached === null ? "n/a" : r.reached ? "yes" : "NO",
  ]);
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

function versionsOf(torch: Record<string, unknown>): Record<string, unknown> {
  const pkg = (name: string) => {
    try {
      return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
    } catch {
      return null;
    }
  };
  const { id: _id, threads: _t, torchThreads: _tt, ...py } = torch;
  return {
    esmkit: JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version,
    node: process.version,
    tfjsCore: tf.version_core,
    tfjsBackendWasm: pkg("@tensorflow/tfjs-backend-wasm"),
    nodejsPolars: pkg("nodejs-polars"),
    ...py,
  };
}

async function main(): Promise<void> {
  // Our thread count: the wasm backend in Node runs XNNPACK on one thread.
  let ourThreads = 1;
  let wasmInfo: Record<string, unknown> = {};
  try {
    const wasm = require("@tensorflow/tfjs-backend-wasm") as {
      getThreadsCount?: () => number;
    };
    await tf.setBackend("wasm");
    await tf.ready();
    ourThreads = wasm.getThreadsCount?.() ?? 1;
    wasmInfo = {
      threads: ourThreads,
      simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
      multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
    };
  } catch (e) {
    wasmInfo = { error: (e as Error).message };
  }
  const o = parseOptions(process.argv.slice(2), ourThreads);
  const base = o.quick ? QUICK : FULL;
  const r = o.repeats;
  const sizes: Sizes = r
    ? {
        ...base,
        train: { ...base.train, repeats: r },
        infer: { ...base.infer, repeats: r },
        memory: { ...base.memory, repeats: r },
        prepare: { repeats: r },
      }
    : base;
  const started = new Date();
  const load0 = os.loadavg();
  const work = new Work();
  const log = path.join(work.dir, "bench.log");
  progress(`work dir ${work.dir} (log: ${log})`);
  const ctx: Ctx = { o, sizes, work, log, models: new Map(), py: [], finish: [] };
  const t0 = performance.now();
  try {
    for (const c of o.cases) {
      if (c === "train-8m" || c === "train-35m") await trainCase(ctx, c);
      else if (c === "infer-8m" || c === "infer-35m") await inferCase(ctx, c);
      else if (c === "memory-8m") await memoryCase(ctx);
      else await prepareCase(ctx);
    }
    progress(`PyTorch, ${o.threads} thread(s): ${ctx.py.length} case(s)`);
    const torch = await python(ctx.py, o.threads, o, work.dir, log);
    let alt: Map<string, Record<string, unknown>> | undefined;
    if (o.alsoThreads) {
      progress(`PyTorch, ${o.alsoThreads} thread(s): ${ctx.py.length} case(s)`);
      // prepare does not use torch: one run of it is enough.
      const threaded = ctx.py.filter((c) => c.kind !== "prepare");
      alt = await python(threaded, o.alsoThreads, o, work.dir, log);
    }
    const reports = ctx.finish.map((f) => f(torch, alt));
    const rows = reports.flatMap((r) => r.rows);
    const cpus = os.cpus();
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
      threads: { esmkit: ourThreads, torch: o.threads, torchAlt: o.alsoThreads || null },
      esmkitBackend: { name: o.backend, ...wasmInfo },
      versions: versionsOf(torch.get("versions")!),
      torchVersionsError: err(torch.get("versions")),
      sizes,
      ratio:
        "esmkit / PyTorch at the same thread count (throughput: higher is better; times and memory: lower is better)",
    };
    const title =
      `esmkit vs PyTorch — ${meta.machine.cpu}, ${meta.machine.cores} cores, ${meta.date.slice(0, 10)}; ` +
      `node ${process.version}, tfjs ${tf.version_core} (${o.backend}, ${ourThreads} thread${ourThreads > 1 ? "s" : ""}), ` +
      `torch ${meta.versions.torch ?? "?"}, transformers ${meta.versions.transformers ?? "?"}, peft ${meta.versions.peft ?? "?"}`;
    process.stdout.write(`\n${title}\n`);
    if (o.quick)
      process.stdout.write("QUICK sizes (smoke test): ratios are NOT the acceptance figures\n");
    if (o.threads !== ourThreads)
      process.stdout.write(
        `note: PyTorch runs ${o.threads} threads, esmkit ${ourThreads}: not a same-threads comparison\n`,
      );
    process.stdout.write(`${table(rows, o, ourThreads)}\n`);
    mkdirSync(o.out, { recursive: true });
    const day = meta.date.slice(0, 10);
    for (const r of reports)
      writeFileSync(
        path.join(o.out, `${day}-${r.case}.json`),
        `${JSON.stringify({ ...meta, ...r }, null, 2)}\n`,
      );
    writeFileSync(
      path.join(o.out, "latest.json"),
      `${JSON.stringify({ ...meta, rows, cases: reports, table: table(rows, o, ourThreads) }, null, 2)}\n`,
    );
    // The same table as Markdown, with machine, versions and date, for the README.
    writeFileSync(
      path.join(o.out, "latest.md"),
      `${title}\n\n${o.quick ? "QUICK sizes (smoke test): ratios are NOT the acceptance figures\n\n" : ""}` +
        `${table(rows, o, ourThreads)
          .replace("\nnotes:", "\n\nNotes:\n")
          .replace(/\n {2}/g, "\n- ")}\n`,
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
