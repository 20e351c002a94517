/**
 * Shared pieces of the export tests: transformers.js (local files only), FASTA samples,
 * comparisons. No tests here.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parseFasta } from "../../src/serve/fasta";
import { REPO_ROOT } from "../helpers/python";

export const MODEL_FIX = path.join(REPO_ROOT, "test", "fixtures", "model");
export const LORA_FIX = path.join(REPO_ROOT, "test", "fixtures", "lora");
export const EXPORT_FIX = path.join(REPO_ROOT, "test", "fixtures", "export");
/** Probabilities and hidden states: transformers.js vs esmkit, max |difference|. */
export const TOLERANCE = 1e-4;

type Transformers = typeof import("@huggingface/transformers");

/** transformers.js with the network off: every file must come from the export folder. */
export async function transformersJs(): Promise<Transformers> {
  const t = await import("@huggingface/transformers");
  t.env.allowRemoteModels = false;
  t.env.allowLocalModels = true;
  return t;
}

export interface Scored {
  label: string;
  score: number;
}

/** transformers.js text-classification: every class probability per sequence, by label. */
export async function pipelineProbabilities(
  dir: string,
  sequences: string[],
  options: { dtype?: "fp32" | "q8"; batch?: number } = {},
): Promise<Record<string, number>[]> {
  const { pipeline } = await transformersJs();
  const clf = await pipeline("text-classification", dir, {
    dtype: options.dtype ?? "fp32",
    session_options: { intraOpNumThreads: 1 },
  });
  try {
    const out: Record<string, number>[] = [];
    const batch = options.batch ?? 4;
    for (let i = 0; i < sequences.length; i += batch) {
      const res = (await clf(sequences.slice(i, i + batch), { top_k: null })) as Scored[][];
      for (const row of res) out.push(Object.fromEntries(row.map((s) => [s.label, s.score])));
    }
    return out;
  } finally {
    await clf.dispose();
  }
}

/** esmkit's probabilities as label -> p. */
export function byLabel(labels: string[], probabilities: number[]): Record<string, number> {
  return Object.fromEntries(labels.map((l, i) => [l, probabilities[i]!]));
}

/** max |a - b| over every label of every row (NaN-safe: NaN counts as infinite). */
export function maxProbDiff(a: Record<string, number>[], b: Record<string, number>[]): number {
  assert.equal(a.length, b.length, "row count");
  let m = 0;
  a.forEach((row, i) => {
    assert.deepEqual(Object.keys(row).sort(), Object.keys(b[i]!).sort(), `labels of row ${i}`);
    for (const [l, p] of Object.entries(row)) {
      const d = Math.abs(p - b[i]![l]!);
      if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
    }
  });
  return m;
}

export function argmaxLabel(row: Record<string, number>): string {
  return Object.entries(row).reduce((best, e) => (e[1] > best[1] ? e : best))[0];
}

export function maxAbsDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, "element count");
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

/** The 50 DeepLoc proteins of 61-1,040 residues (test/reference/make_export_sample.py). */
export function deeploc50(): { id: string; sequence: string }[] {
  const text = readFileSync(path.join(EXPORT_FIX, "deeploc-50.fasta"), "utf8");
  return parseFasta(text).map((r) => ({ id: r.id, sequence: r.sequence }));
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}
