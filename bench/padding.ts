/**
 * Padding share of batched inference (issue 13, item 1): of the tokens computed when
 * batches are padded to their longest member, which fraction is padding; in input order,
 * and after sorting by length inside windows of W sequences (the output order is restored
 * afterwards, so only the batching changes). Beside it, the attention work (sum of
 * rows x L^2) against what packed sequences with per-sequence attention would compute.
 *
 * A second table gives the same for the predictor's forward passes (`predict`, `serve`,
 * the library predictor: src/serve/model-predictor.ts `planPasses`, rows padded to a
 * length bucket, one bucket per pass, attention budget), for calls of C sequences in
 * input order (serve's micro-batches, predict's batches), against the rule before issue
 * 13 (consecutive rows, buckets of 64, a pass padded to its longest row).
 *
 *   node build/bench/padding.js [--input CSV] [--batch 16] [--windows 64,256,1024]
 *        [--calls 8,16,all] [--json FILE]
 *
 * The input is a DeepLoc CSV, prepared with `esmkit prepare` (defaults: 100..512
 * residues, 80/20 split, seed 42); the share is reported for its test split, in the order
 * prepare writes it. Default input: the bundled sample, data/deeploc-sample.csv.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { loadPrepared } from "../src/data/frame";
import { lengthSortedBatches } from "../src/data/length-batches";
import { prepare } from "../src/data/prepare";
import { ATTENTION_BUDGET, LENGTH_BUCKET, planPasses } from "../src/serve/model-predictor";

const ROOT = path.resolve(__dirname, "..", "..");

export interface PaddingShare {
  /** Rows in the batches. */
  rows: number;
  /** Real tokens (`<cls>` and `<eos>` included). */
  realTokens: number;
  /** Tokens computed when each batch is padded to its longest member. */
  computedTokens: number;
  /** (computed - real) / computed. */
  paddingShare: number;
  /** Attention score work, padded batches: sum over batches of rows x Lmax^2. */
  attentionPadded: number;
  /** Attention score work, packed with per-sequence attention: sum of L^2. */
  attentionPacked: number;
}

/** Padding share of running `lengths` in `batches` (index lists). */
export function paddingShare(lengths: readonly number[], batches: number[][]): PaddingShare {
  let real = 0;
  let computed = 0;
  let attnPadded = 0;
  let attnPacked = 0;
  let rows = 0;
  for (const b of batches) {
    const max = Math.max(...b.map((i) => lengths[i]!));
    for (const i of b) {
      real += lengths[i]!;
      attnPacked += lengths[i]! ** 2;
    }
    computed += b.length * max;
    attnPadded += b.length * max * max;
    rows += b.length;
  }
  return {
    rows,
    realTokens: real,
    computedTokens: computed,
    paddingShare: computed > 0 ? (computed - real) / computed : 0,
    attentionPadded: attnPadded,
    attentionPacked: attnPacked,
  };
}

/** Shares in input order and after window sorts of each size in `windows`. */
export function paddingTable(
  lengths: readonly number[],
  batch: number,
  windows: readonly number[],
): { order: string; share: PaddingShare }[] {
  return [1, ...windows].map((w) => ({
    order: w === 1 ? "input order" : `sorted in windows of ${w}`,
    share: paddingShare(lengths, lengthSortedBatches(lengths, { batchSize: batch, window: w })),
  }));
}

/** Padding share of forward passes (rows padded to `width`). */
function passShare(
  lengths: readonly number[],
  passes: { rows: number[]; width: number }[],
): PaddingShare {
  let real = 0;
  let computed = 0;
  let attnPadded = 0;
  let attnPacked = 0;
  let rows = 0;
  for (const p of passes) {
    for (const i of p.rows) {
      real += lengths[i]!;
      attnPacked += lengths[i]! ** 2;
    }
    computed += p.rows.length * p.width;
    attnPadded += p.rows.length * p.width ** 2;
    rows += p.rows.length;
  }
  return {
    rows,
    realTokens: real,
    computedTokens: computed,
    paddingShare: computed > 0 ? (computed - real) / computed : 0,
    attentionPadded: attnPadded,
    attentionPacked: attnPacked,
  };
}

/**
 * The predictor's passes before issue 13, for the "before" column: consecutive rows,
 * padded to the next multiple of 64 of the pass's longest row, split where
 * rows x width^2 would pass ATTENTION_BUDGET.
 */
function previousPasses(lengths: readonly number[], maxLength: number) {
  const bucket = (t: number) => Math.max(t, Math.min(maxLength, Math.ceil(t / 64) * 64));
  const passes: { rows: number[]; width: number }[] = [];
  let rows: number[] = [];
  let width = 0;
  lengths.forEach((l, i) => {
    const w = bucket(Math.max(width, l));
    if (rows.length > 0 && (rows.length + 1) * w * w > ATTENTION_BUDGET) {
      passes.push({ rows, width });
      rows = [];
      width = bucket(l);
    } else width = w;
    rows.push(i);
  });
  if (rows.length > 0) passes.push({ rows, width });
  return passes;
}

interface PassRow {
  call: string;
  before: PaddingShare;
  now: PaddingShare;
  passesBefore: number;
  passesNow: number;
}

/**
 * The predictor's passes for calls of `call` consecutive sequences: before and now; with
 * `predictBatch`, also `esmkit predict`'s calls (windows of 256 sorted by length, cut into
 * batches of that size; before: batches in input order).
 */
export function passTable(
  lengths: readonly number[],
  calls: readonly number[],
  maxLength = 1024,
  predictBatch?: number,
): PassRow[] {
  type Pass = { rows: number[]; width: number };
  const row = (call: string, before: Pass[], now: Pass[]): PassRow => ({
    call,
    before: passShare(lengths, before),
    now: passShare(lengths, now),
    passesBefore: before.length,
    passesNow: now.length,
  });
  /** Each batch (input indices) planned on its own by `plan`. */
  const passesOf = (batches: number[][], plan: (ls: number[], max: number) => Pass[]) =>
    batches.flatMap((b) =>
      plan(
        b.map((i) => lengths[i]!),
        maxLength,
      ).map((p) => ({ rows: p.rows.map((k) => b[k]!), width: p.width })),
    );
  const inOrder = (size: number) => lengthSortedBatches(lengths, { batchSize: size, window: 1 });
  const rows = calls.map((c) =>
    row(
      c >= lengths.length ? `all ${lengths.length} at once` : `calls of ${c}`,
      passesOf(inOrder(c), previousPasses),
      passesOf(inOrder(c), planPasses),
    ),
  );
  if (predictBatch !== undefined) {
    rows.push(
      row(
        `predict --batch-size ${predictBatch} (windows of 256)`,
        passesOf(inOrder(predictBatch), previousPasses),
        passesOf(lengthSortedBatches(lengths, { batchSize: predictBatch }), planPasses),
      ),
    );
  }
  return rows;
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      input: { type: "string", default: path.join(ROOT, "data", "deeploc-sample.csv") },
      batch: { type: "string", default: "16" },
      windows: { type: "string", default: "64,256,1024" },
      calls: { type: "string", default: "8,16,all" },
      json: { type: "string" },
    },
  });
  const batch = Number(v.batch);
  const windows = v.windows!.split(",").map(Number);
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`--batch: ${v.batch}`);
  if (windows.some((w) => !Number.isInteger(w) || w < 1))
    throw new Error(`--windows: ${v.windows}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "esmkit-padding-"));
  try {
    const out = path.join(dir, "prepared");
    await prepare({ input: v.input!, out });
    const { test } = await loadPrepared(out);
    // Token lengths as the model sees them: the prepared ids (<cls> ... <eos>, at most 512).
    const lengths = (test.getColumn("input_ids").toArray() as unknown as unknown[][]).map(
      (r) => r.length,
    );
    const rows = paddingTable(lengths, batch, windows);
    const calls = v.calls!.split(",").map((c) => (c === "all" ? lengths.length : Number(c)));
    if (calls.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--calls: ${v.calls}`);
    const passes = passTable(lengths, calls, 1024, 8);
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    process.stdout.write(
      `${path.basename(v.input!)}: test split, ${lengths.length} sequences, ${lengths.reduce((a, b) => a + b, 0)} tokens, batches of ${batch}\n\n` +
        "| order | padding share of computed tokens | computed / real tokens | attention work padded / packed |\n|---|---|---|---|\n" +
        rows
          .map(
            (r) =>
              `| ${r.order} | ${pct(r.share.paddingShare)} | ${(r.share.computedTokens / r.share.realTokens).toFixed(3)} | ${(r.share.attentionPadded / r.share.attentionPacked).toFixed(3)} |`,
          )
          .join("\n") +
        `\n\nThe predictor's forward passes (predict, serve, library), calls of C sequences in input order; now: sorted, buckets of ${LENGTH_BUCKET}, one bucket per pass; before: consecutive rows, buckets of 64\n\n` +
        "| calls | padding before | padding now | computed / real before | now | attention padded / packed before | now | passes before | now |\n|---|---|---|---|---|---|---|---|---|\n" +
        passes
          .map(
            (r) =>
              `| ${r.call} | ${pct(r.before.paddingShare)} | ${pct(r.now.paddingShare)} | ${(r.before.computedTokens / r.before.realTokens).toFixed(3)} | ${(r.now.computedTokens / r.now.realTokens).toFixed(3)} | ${(r.before.attentionPadded / r.before.attentionPacked).toFixed(3)} | ${(r.now.attentionPadded / r.now.attentionPacked).toFixed(3)} | ${r.passesBefore} | ${r.passesNow} |`,
          )
          .join("\n") +
        "\n",
    );
    if (v.json) {
      writeFileSync(
        v.json,
        `${JSON.stringify({ input: path.basename(v.input!), split: "test", batch, sequences: lengths.length, rows, predictorPasses: { lengthBucket: LENGTH_BUCKET, attentionBudget: ATTENTION_BUDGET, calls: passes } }, null, 2)}\n`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
