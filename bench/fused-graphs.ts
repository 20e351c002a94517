/**
 * The onnx engine's inference graphs on onnxruntime's fused kernels (GraphPlan.fused:
 * RotaryEmbedding, flash MultiHeadAttention, Gelu, int8 query/key/value in one
 * DynamicQuantizeMatMul) against the standard-op graph the training passes use, in one
 * process: two engines on the same random checkpoint predict the same DeepLoc proteins
 * (the first N of 100..512 residues of the bundled sample, each window sorted by length
 * as `predict` does, batches of 16), the two engines taking turns batch by batch so that
 * a change in the machine's load hits both. Reported per quantize: seconds of each, the
 * ratio, and the largest logit difference between the two.
 *
 *   node build/bench/fused-graphs.js [--arch esm2_t30_150M_UR50D] [--proteins 64]
 *        [--threads 1] [--quantize none,int8] [--model-dir DIR] [--json FILE]
 *
 * The checkpoint (random weights, seed 1) is written to --model-dir, or a temporary
 * directory removed at the end. A ratio from one process on a busy machine is an
 * engine-to-engine comparison, not a figure against PyTorch or esm.cpp (`npm run bench`).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { selectBackend } from "../src/backend";
import { lengthSortedBatches } from "../src/data/length-batches";
import { openPretrained } from "../src/model/pretrained";
import { OnnxEsmEngine } from "../src/onnx/engine";
import { checkpointWeights } from "../src/onnx/weights";
import { deeplocProteins } from "./proteins";
import { writeRandomCheckpoint } from "./random-checkpoint";

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      arch: { type: "string", default: "esm2_t30_150M_UR50D" },
      proteins: { type: "string", default: "64" },
      threads: { type: "string", default: "1" },
      quantize: { type: "string", default: "none,int8" },
      "model-dir": { type: "string" },
      json: { type: "string" },
    },
  });
  await selectBackend({ backend: "wasm" });
  const threads = Number(v.threads);
  const own = v["model-dir"] === undefined;
  const dir = v["model-dir"] ?? mkdtempSync(path.join(os.tmpdir(), "esmkit-fused-"));
  const rows: Record<string, unknown>[] = [];
  try {
    if (!existsSync(path.join(dir, "config.json"))) writeRandomCheckpoint(v.arch!, dir);
    const { sequences, padId } = await deeplocProteins(Number(v.proteins));
    const batches = lengthSortedBatches(
      sequences.map((s) => s.length),
      { batchSize: 16 },
    ).map((idx) => {
      const L = Math.max(...idx.map((i) => sequences[i]!.length));
      const ids: number[] = [];
      const mask: number[] = [];
      for (const i of idx) {
        const s = sequences[i]!;
        for (let t = 0; t < L; t++) {
          ids.push(t < s.length ? s[t]! : padId);
          mask.push(t < s.length ? 1 : 0);
        }
      }
      return { inputIds: ids, attentionMask: mask, batchSize: idx.length, seqLen: L };
    });
    for (const quantize of v.quantize!.split(",") as ("none" | "int8")[]) {
      const engines = await Promise.all(
        [true, false].map(
          async (fused) =>
            new OnnxEsmEngine(checkpointWeights(await openPretrained(dir)), {
              threads,
              quantize,
              fused,
            }),
        ),
      );
      // Warm-up: graphs built, weights read (and int8 codes baked) outside the timing.
      for (const e of engines) e.logits(batches.at(-1)!);
      const seconds = [0, 0];
      let maxDiff = 0;
      for (const b of batches) {
        const out: Float32Array[] = [];
        engines.forEach((e, j) => {
          const t0 = performance.now();
          out.push(e.logits(b));
          seconds[j]! += (performance.now() - t0) / 1000;
        });
        for (let i = 0; i < out[0]!.length; i++)
          maxDiff = Math.max(maxDiff, Math.abs(out[0]![i]! - out[1]![i]!));
      }
      for (const e of engines) e.dispose();
      const row = {
        quantize,
        proteins: sequences.length,
        batches: batches.length,
        threads,
        fusedSeconds: seconds[0],
        standardSeconds: seconds[1],
        speedup: seconds[1]! / seconds[0]!,
        maxAbsLogitDiff: maxDiff,
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  } finally {
    if (own) rmSync(dir, { recursive: true, force: true });
  }
  const out = {
    date: new Date().toISOString(),
    arch: v.arch,
    node: process.version,
    cpus: os.cpus()[0]?.model,
    loadAverage: os.loadavg(),
    rows,
  };
  if (v.json) writeFileSync(v.json, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
