/**
 * Padding share of batched inference (issue 13, item 1): of the tokens computed when
 * batches are padded to their longest member, which fraction is padding; in input order,
 * and after sorting by length inside windows of W sequences (the output order is restored
 * afterwards, so only the batching changes). Beside it, the attention work (sum of
 * rows x L^2) against what packed sequences with per-sequence attention would compute.
 *
 *   node build/bench/padding.js [--input CSV] [--batch 16] [--windows 64,256,1024] [--json FILE]
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
import { prepare } from "../src/data/prepare";

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

/** Batches of `batch` consecutive items of `order` (indices into `lengths`). */
export function batchesOf(order: readonly number[], batch: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += batch) out.push(order.slice(i, i + batch));
  return out;
}

/**
 * The order in which sequences run when each window of `window` consecutive sequences is
 * sorted by length (stable; longest first, so a window's first batch shows its peak
 * memory early). `window` <= 1 keeps the input order.
 */
export function windowOrder(lengths: readonly number[], window: number): number[] {
  const idx = lengths.map((_, i) => i);
  if (window <= 1) return idx;
  const out: number[] = [];
  for (let s = 0; s < idx.length; s += window) {
    const w = idx.slice(s, s + window);
    w.sort((a, b) => lengths[b]! - lengths[a]! || a - b);
    out.push(...w);
  }
  return out;
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
  return [
    {
      order: "input order",
      share: paddingShare(lengths, batchesOf(windowOrder(lengths, 1), batch)),
    },
    ...windows.map((w) => ({
      order: `sorted in windows of ${w}`,
      share: paddingShare(lengths, batchesOf(windowOrder(lengths, w), batch)),
    })),
  ];
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      input: { type: "string", default: path.join(ROOT, "data", "deeploc-sample.csv") },
      batch: { type: "string", default: "16" },
      windows: { type: "string", default: "64,256,1024" },
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
        "\n",
    );
    if (v.json) {
      writeFileSync(
        v.json,
        `${JSON.stringify({ input: path.basename(v.input!), split: "test", batch, sequences: lengths.length, rows }, null, 2)}\n`,
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
