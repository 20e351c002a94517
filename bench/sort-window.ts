/**
 * Length-sorted windows against input order, measured with today's onnx engine (issue 13,
 * item 1): the same proteins, batches of 16, run as they come and after sorting each window
 * of W proteins by length; logits are put back in input order and compared.
 *
 * Packing (sequences back to back, per-sequence attention) cannot run on today's engine,
 * so its time is an estimate: the matmul FLOPs of each order (per layer 24 H^2 per computed
 * token for the Linears, 4 H L per token for the attention scores and their product with
 * V) scale the fastest measured order's time to the packed FLOPs, overheads of packing
 * aside. The seconds per TFLOP of each order show whether time follows FLOPs.
 *
 *   node build/bench/sort-window.js [--arch esm2_t12_35M_UR50D] [--layers N] [--proteins 256]
 *        [--batch 16] [--windows 64,256] [--threads 1] [--rounds 3] [--json FILE]
 *
 * Random weights (seed 1); the rounds interleave the orders so that a noisy machine
 * slows them alike. `--layers` runs fewer encoder layers of the same shape (every layer
 * costs the same, so the ratios hold) to keep the run short.
 */
import { writeFileSync } from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { selectBackend } from "../src/backend";
import { type Esm2PresetName, esm2Config } from "../src/model/config";
import { Esm2Model } from "../src/model/esm2";
import { OnnxEsmEngine } from "../src/onnx/engine";
import { proteinBatches } from "./esmkit-side";
import { median } from "./median";
import { deeplocProteins } from "./proteins";

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      arch: { type: "string", default: "esm2_t12_35M_UR50D" },
      layers: { type: "string" },
      proteins: { type: "string", default: "256" },
      batch: { type: "string", default: "16" },
      windows: { type: "string", default: "64,256" },
      threads: { type: "string", default: "1" },
      rounds: { type: "string", default: "3" },
      json: { type: "string" },
    },
  });
  await selectBackend({ backend: "wasm" });
  const arch = v.arch as Esm2PresetName;
  const config = esm2Config(arch, v.layers ? { numHiddenLayers: Number(v.layers) } : {});
  const model = Esm2Model.random(config, { seed: 1 });
  const engine = new OnnxEsmEngine(model, { threads: Number(v.threads) });
  const batch = Number(v.batch);
  const { sequences, padId } = await deeplocProteins(Number(v.proteins));
  const lengths = sequences.map((s) => s.length);
  const nl = config.numLabels;
  const H = config.hiddenSize;
  /** Matmul FLOPs of the encoder: Linears on every computed token, attention on L^2. */
  const flops = (tokens: number, attention: number) =>
    config.numHiddenLayers * (24 * H * H * tokens + 4 * H * attention);
  const orders = [0, ...v.windows!.split(",").map(Number)].map((w) => {
    const batches = proteinBatches(lengths, batch, w).map((idx) => {
      const L = Math.max(...idx.map((i) => lengths[i]!));
      const ids = new Int32Array(idx.length * L).fill(padId);
      const mask = new Int32Array(idx.length * L);
      idx.forEach((i, r) => {
        ids.set(sequences[i]!, r * L);
        mask.fill(1, r * L, r * L + lengths[i]!);
      });
      return { idx, B: idx.length, L, ids, mask };
    });
    const tokens = batches.reduce((a, b) => a + b.B * b.L, 0);
    const attention = batches.reduce((a, b) => a + b.B * b.L * b.L, 0);
    return {
      window: w,
      batches,
      tokens,
      attention,
      flops: flops(tokens, attention),
      seconds: [] as number[],
      logits: new Float32Array(0),
    };
  });
  const run = (o: (typeof orders)[number]) => {
    const logits = new Float32Array(lengths.length * nl);
    const t0 = performance.now();
    for (const b of o.batches) {
      const out = engine.logits({
        inputIds: b.ids,
        attentionMask: b.mask,
        batchSize: b.B,
        seqLen: b.L,
      });
      // Back to input order.
      b.idx.forEach((i, r) => {
        logits.set(out.subarray(r * nl, (r + 1) * nl), i * nl);
      });
    }
    o.seconds.push((performance.now() - t0) / 1000);
    o.logits = logits;
  };
  // Warm-up: one batch of each order (sessions, thread pool).
  for (const o of orders) {
    const b = o.batches[0]!;
    engine.logits({ inputIds: b.ids, attentionMask: b.mask, batchSize: b.B, seqLen: b.L });
  }
  const rounds = Number(v.rounds);
  for (let r = 0; r < rounds; r++) {
    for (const o of orders) {
      run(o);
      process.stderr.write(
        `round ${r + 1}/${rounds} window ${o.window || "none"}: ${o.seconds.at(-1)!.toFixed(1)} s\n`,
      );
    }
  }
  engine.dispose();
  model.dispose();
  // Same results whatever the order (padding changes float rounding only).
  const ref = orders[0]!.logits;
  const maxDiff = orders.map((o) =>
    o.logits.reduce((m, x, i) => Math.max(m, Math.abs(x - ref[i]!)), 0),
  );
  const real = lengths.reduce((s, x) => s + x, 0);
  const packedAttention = lengths.reduce((s, x) => s + x * x, 0);
  const packedFlops = flops(real, packedAttention);
  const base = median(orders[0]!.seconds);
  // The fastest measured order, scaled to the packed FLOPs.
  const best = orders.reduce((a, o) => (median(o.seconds) < median(a.seconds) ? o : a));
  const packedEstimate = (median(best.seconds) * packedFlops) / best.flops;
  const rows = orders.map((o, i) => ({
    order: o.window ? `sorted in windows of ${o.window}` : "input order",
    computedTokens: o.tokens,
    paddingShare: (o.tokens - real) / o.tokens,
    attentionWork: o.attention,
    tflops: o.flops / 1e12,
    secondsPerTflop: median(o.seconds) / (o.flops / 1e12),
    seconds: o.seconds,
    medianSeconds: median(o.seconds),
    speedupVsInputOrder: base / median(o.seconds),
    maxLogitDiffVsInputOrder: maxDiff[i],
  }));
  const result = {
    preliminary: "shared, busy machine: timings are noisy; re-run on a quiet machine",
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model,
    loadAverage: os.loadavg(),
    arch,
    layers: config.numHiddenLayers,
    proteins: lengths.length,
    batch,
    threads: Number(v.threads),
    realTokens: real,
    rows,
    packedEstimate: {
      method: `the fastest measured order (${best.window ? `windows of ${best.window}` : "input order"}) scaled by packed / its matmul FLOPs`,
      computedTokens: real,
      attentionWork: packedAttention,
      tflops: packedFlops / 1e12,
      seconds: packedEstimate,
      speedupVsInputOrder: base / packedEstimate,
      speedupVsBestSorted: median(best.seconds) / packedEstimate,
    },
  };
  for (const r of rows) {
    process.stdout.write(
      `${r.order}: padding ${(100 * r.paddingShare).toFixed(1)} %, ${r.tflops.toFixed(2)} TFLOP, median ${r.medianSeconds.toFixed(2)} s (${Math.min(...r.seconds).toFixed(2)}..${Math.max(...r.seconds).toFixed(2)}), x${r.speedupVsInputOrder.toFixed(2)}, max |logit diff| ${r.maxLogitDiffVsInputOrder!.toExponential(1)}\n`,
    );
  }
  process.stdout.write(
    `packed (estimate: ${result.packedEstimate.method}): ${(packedFlops / 1e12).toFixed(2)} TFLOP, ${packedEstimate.toFixed(2)} s, x${(base / packedEstimate).toFixed(2)} over input order, x${result.packedEstimate.speedupVsBestSorted.toFixed(2)} over that order\n`,
  );
  if (v.json) writeFileSync(v.json, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
