/**
 * Fidelity of the int8 base (issue 13, item 4): fine-tune ESM-2 with `fineTune` (what
 * `esmkit train` runs) twice on the same data and seed, once on the float32 base and once
 * on the int8 base, then predict the whole test split of `prepare` (on the bundled DeepLoc
 * sample, or `--input`, e.g. the full DeepLoc-2.0 CSV) with the float32-trained model on
 * both engines (`quantize` none and int8).
 *
 * Reported per architecture: label agreement and the distribution of |delta P| (the
 * membrane probability, int8 minus float32; targets: >= 99.5 % of labels the same, 99th
 * percentile <= 0.02), both accuracies, and the two training loss curves side by side.
 *
 *   node build/bench/int8-fidelity.js [--archs 8m,35m] [--limit-train 8m:1024,35m:512]
 *        [--max-length 512] [--threads 2] [--input CSV] [--json FILE] [--md FILE]
 *        [--trained 35m=RUN_DIR,...]
 *
 * `--trained ARCH=RUN_DIR` takes the float32 run of an earlier `esmkit train` (its
 * `model/`, `history.jsonl`, `metrics.json`) instead of training: both engines predict
 * the test split with it and only its loss curve is reported (no int8 training run).
 *
 * Offline, the Hub models are not reachable and both architectures start from random
 * weights (seed 42), as `esmkit train --random-if-unavailable` does. Random-init models
 * have no activation outlier channels, which trained ESM-2 has: int8 error on a real
 * checkpoint may be larger. Timings are the machine's, busy or not (`loadAverage`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { selectBackend } from "../src/backend";
import { loadPrepared } from "../src/data/frame";
import { prepare } from "../src/data/prepare";
import { fromPretrained } from "../src/model/pretrained";
import { OnnxEsmEngine } from "../src/onnx/engine";
import { evaluate } from "../src/train/evaluate";
import { examplesFrom, fineTune } from "../src/train/run";

const ROOT = path.resolve(__dirname, "..", "..");
const HUB: Record<string, string> = {
  "8m": "facebook/esm2_t6_8M_UR50D",
  "35m": "facebook/esm2_t12_35M_UR50D",
  "150m": "facebook/esm2_t30_150M_UR50D",
};

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (i - lo);
}

function stepLosses(runDir: string): { step: number; loss: number }[] {
  return readFileSync(path.join(runDir, "history.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === "step")
    .map((e) => ({ step: e.step as number, loss: e.loss as number }));
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      archs: { type: "string", default: "8m,35m" },
      "limit-train": { type: "string", default: "8m:1024,35m:512,150m:128" },
      "max-length": { type: "string", default: "512" },
      "batch-size": { type: "string", default: "8" },
      "learning-rate": { type: "string", default: "5e-4" },
      threads: { type: "string", default: String(Math.min(2, os.availableParallelism())) },
      json: { type: "string" },
      md: { type: "string" },
      input: { type: "string", default: path.join(ROOT, "data", "deeploc-sample.csv") },
      trained: { type: "string", default: "" },
    },
  });
  const trainedRuns = Object.fromEntries(
    v
      .trained!.split(",")
      .filter((p) => p !== "")
      .map((p) => {
        const at = p.indexOf("=");
        if (at < 1) throw new Error(`--trained: expected ARCH=RUN_DIR, got "${p}"`);
        return [p.slice(0, at), path.resolve(p.slice(at + 1))];
      }),
  );
  await selectBackend({ backend: "wasm" });
  const threads = Number(v.threads);
  const maxLength = Number(v["max-length"]);
  const batchSize = Number(v["batch-size"]);
  const learningRate = Number(v["learning-rate"]);
  const limits = Object.fromEntries(
    v["limit-train"]!.split(",").map((p) => {
      const [a, n] = p.split(":");
      return [a!, Number(n)];
    }),
  );
  const work = await mkdtemp(path.join(os.tmpdir(), "esmkit-int8-fidelity-"));
  const results: Record<string, unknown>[] = [];
  try {
    const data = path.join(work, "data");
    await prepare({ input: path.resolve(v.input!), out: data });
    const { test } = await loadPrepared(data);
    const examples = examplesFrom(test, { maxLength, where: "test.parquet" });
    for (const arch of v.archs!.split(",")) {
      const hub = HUB[arch];
      if (!hub) throw new Error(`--archs: unknown ${arch}; expected ${Object.keys(HUB)}`);
      const limitTrain = limits[arch] ?? 256;
      const runs: Record<string, { dir: string; seconds: number; random: boolean }> = {};
      const trained = trainedRuns[arch];
      if (trained) {
        const metrics = JSON.parse(readFileSync(path.join(trained, "metrics.json"), "utf8"));
        runs.none = { dir: trained, seconds: Number.NaN, random: metrics.randomWeights === true };
      }
      for (const quantize of trained ? [] : (["none", "int8"] as const)) {
        const dir = path.join(work, `${arch}-${quantize}`);
        process.stderr.write(
          `${arch}: training on the ${quantize} base (${limitTrain} proteins)\n`,
        );
        const t0 = performance.now();
        const r = await fineTune({
          data,
          out: dir,
          model: hub,
          randomIfUnavailable: true,
          engine: "onnx",
          quantize,
          threads,
          maxLength,
          batchSize,
          learningRate,
          warmupRatio: 0.1,
          epochs: 1,
          limitTrain,
          limitEval: 16,
          seed: 42,
        });
        runs[quantize] = {
          dir,
          seconds: (performance.now() - t0) / 1000,
          random: r.randomWeights,
        };
      }
      // Both engines on the float32-trained model, the whole test split.
      const model = await fromPretrained(path.join(runs.none!.dir, "model"), {
        onWarning: () => undefined,
      });
      const probs: Record<string, number[][]> = {};
      const evalSeconds: Record<string, number> = {};
      for (const quantize of ["none", "int8"] as const) {
        process.stderr.write(`${arch}: predicting ${examples.length} test proteins, ${quantize}\n`);
        const engine = new OnnxEsmEngine(model, { threads, quantize });
        const t0 = performance.now();
        probs[quantize] = evaluate(engine, examples, { batchSize: 16 }).probabilities;
        evalSeconds[quantize] = (performance.now() - t0) / 1000;
        engine.dispose();
      }
      model.dispose();
      const p32 = probs.none!;
      const p8 = probs.int8!;
      const label = (p: number[]) => p.indexOf(Math.max(...p));
      let same = 0;
      let right32 = 0;
      let right8 = 0;
      const deltas: number[] = [];
      const flips: { index: number; p32: number; p8: number }[] = [];
      examples.forEach((ex, i) => {
        const a = label(p32[i]!);
        const b = label(p8[i]!);
        if (a === b) same++;
        else flips.push({ index: i, p32: p32[i]![1]!, p8: p8[i]![1]! });
        if (a === ex.label) right32++;
        if (b === ex.label) right8++;
        deltas.push(Math.abs(p8[i]![1]! - p32[i]![1]!));
      });
      const sorted = [...deltas].sort((x, y) => x - y);
      const c32 = stepLosses(runs.none!.dir);
      const c8 = runs.int8 ? stepLosses(runs.int8.dir) : [];
      const paired = c32.map((s, i) => Math.abs(s.loss - (c8[i]?.loss ?? Number.NaN)));
      const n = examples.length;
      const row = {
        arch,
        model: hub,
        randomWeights: runs.none!.random,
        training: trained
          ? {
              from: "--trained",
              run: JSON.parse(readFileSync(path.join(trained, "run.json"), "utf8")).identity,
            }
          : { limitTrain, maxLength, batchSize, learningRate, epochs: 1, seed: 42, threads },
        trainSeconds: { none: runs.none!.seconds, int8: runs.int8?.seconds ?? Number.NaN },
        testProteins: n,
        labelAgreement: same / n,
        labelsChanged: n - same,
        flips,
        absDeltaP: {
          median: quantile(sorted, 0.5),
          p90: quantile(sorted, 0.9),
          p99: quantile(sorted, 0.99),
          max: sorted.at(-1)!,
        },
        accuracy: { none: right32 / n, int8: right8 / n },
        targetsMet: same / n >= 0.995 && quantile(sorted, 0.99) <= 0.02,
        evalSeconds,
        lossCurves: {
          none: c32,
          int8: c8,
          meanAbsDiff: paired.reduce((a, b) => a + b, 0) / paired.length,
          maxAbsDiff: Math.max(...paired),
          finalNone: c32.at(-1)?.loss,
          finalInt8: c8.at(-1)?.loss,
          meanLastTenthNone: mean(c32.slice(-Math.ceil(c32.length / 10)).map((s) => s.loss)),
          meanLastTenthInt8: mean(c8.slice(-Math.ceil(c8.length / 10)).map((s) => s.loss)),
        },
      };
      results.push(row);
      process.stderr.write(`${JSON.stringify({ ...row, lossCurves: undefined, flips })}\n`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus()[0]?.model,
    loadAverage: os.loadavg(),
    input: path.basename(v.input!),
    results,
  };
  if (v.json) writeFileSync(v.json, `${JSON.stringify(out, null, 2)}\n`);
  const md = markdown(results);
  if (v.md) writeFileSync(v.md, md);
  process.stdout.write(md);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

// biome-ignore lint/suspicious/noExplicitAny: rows are this script's own JSON
function markdown(results: any[]): string {
  const f = (x: number, d = 4) => x.toFixed(d);
  const lines = [
    "| arch | test proteins | labels the same | |delta P| median / p90 / p99 / max | accuracy fp32 / int8 | targets met | train loss, mean |diff| per step | last tenth of steps fp32 / int8 |",
    "|---|---|---|---|---|---|---|---|",
    ...results.map(
      (r) =>
        `| ${r.arch}${r.randomWeights ? " (random init)" : ""} | ${r.testProteins} | ${(100 * r.labelAgreement).toFixed(2)} % (${r.labelsChanged} changed) | ${f(r.absDeltaP.median)} / ${f(r.absDeltaP.p90)} / ${f(r.absDeltaP.p99)} / ${f(r.absDeltaP.max)} | ${f(r.accuracy.none, 3)} / ${f(r.accuracy.int8, 3)} | ${r.targetsMet ? "yes" : "no"} | ${f(r.lossCurves.meanAbsDiff)} (max ${f(r.lossCurves.maxAbsDiff)}) | ${f(r.lossCurves.meanLastTenthNone)} / ${f(r.lossCurves.meanLastTenthInt8)} |`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
