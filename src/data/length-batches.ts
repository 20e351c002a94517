/**
 * Length-sorted batches: the one place that decides which sequences share a padded batch,
 * for training (src/train/batching.ts), evaluation, `predict`, the library predictor and
 * each serve micro-batch.
 *
 * A batch is padded to its longest member, so batches of sequences in input order spend
 * much of their work on padding (36 % of the tokens computed for DeepLoc's test split in
 * batches of 16; bench/results/issue-13). Sorting the sequences by length first, inside
 * windows of `window` consecutive inputs, cuts that to a few percent while a stream can
 * still be answered in order: each window is buffered, sorted (longest first: a
 * window's peak memory shows in its first batch), cut into batches, and the results are
 * put back in input order with `inInputOrder`.
 */
import { ConfigError } from "../errors";

/** Inputs sorted together by default (4-5 % padding left on DeepLoc, bench/padding.ts). */
export const DEFAULT_SORT_WINDOW = 256;

export interface LengthBatchOptions {
  /** Most rows per batch. */
  batchSize: number;
  /** Inputs sorted together, cut from `order` (default 256); 1 keeps `order` as it is. */
  window?: number;
  /** The order windows are cut from (default the input order 0..n-1; training shuffles it). */
  order?: readonly number[];
  /**
   * A further limit: whether a batch whose longest member so far has `longest` tokens
   * may grow to `rows` rows by taking a row of `length` tokens (a batch always takes its
   * first row).
   */
  fits?: (rows: number, longest: number, length: number) => boolean;
}

function positiveInteger(name: string, value: number): void {
  if (!(Number.isInteger(value) && value > 0)) {
    throw new ConfigError(`${name} ${value} is invalid; expected an integer > 0`, {
      [name]: value,
    });
  }
}

/**
 * Batches of input indices: every window of `window` consecutive entries of `order`
 * sorted by length, longest first (a stable sort: equal lengths keep their order), then
 * cut into batches of at most `batchSize` rows (and within `fits`). Every index appears
 * exactly once; batches never span two windows (window 1: no sort, no windows).
 */
export function lengthSortedBatches(
  lengths: ArrayLike<number>,
  options: LengthBatchOptions,
): number[][] {
  const { batchSize, fits } = options;
  const window = options.window ?? DEFAULT_SORT_WINDOW;
  if (batchSize !== Number.POSITIVE_INFINITY) positiveInteger("batchSize", batchSize);
  if (window !== Number.POSITIVE_INFINITY) positiveInteger("window", window);
  const order = options.order ?? Array.from({ length: lengths.length }, (_, i) => i);
  // Window 1 sorts nothing: the whole order is one window, batched as it comes.
  const span = window === 1 ? Math.max(1, order.length) : window;
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += span) {
    // Array.prototype.sort is stable: equal lengths keep their order in `order`.
    const part = order.slice(start, start + span);
    if (window > 1) part.sort((a, b) => lengths[b]! - lengths[a]!);
    let batch: number[] = [];
    let longest = 0;
    for (const i of part) {
      if (
        batch.length > 0 &&
        (batch.length >= batchSize ||
          (fits !== undefined && !fits(batch.length + 1, longest, lengths[i]!)))
      ) {
        batches.push(batch);
        batch = [];
        longest = 0;
      }
      batch.push(i);
      longest = Math.max(longest, lengths[i]!);
    }
    if (batch.length > 0) batches.push(batch);
  }
  return batches;
}

/**
 * Results of `batches` (one array per batch, one entry per row) back in input order:
 * entry `i` of the answer is the result of input `i`. Throws if a row is missing.
 */
export function inInputOrder<T>(
  batches: readonly (readonly number[])[],
  results: readonly (readonly T[])[],
  count: number,
): T[] {
  const out = new Array<T>(count);
  const seen = new Uint8Array(count);
  batches.forEach((b, j) => {
    const r = results[j]!;
    if (r.length !== b.length) {
      throw new Error(`batch ${j} has ${b.length} rows but ${r.length} results`);
    }
    b.forEach((i, k) => {
      out[i] = r[k]!;
      seen[i] = 1;
    });
  });
  const missing = seen.indexOf(0);
  if (missing >= 0) throw new Error(`input ${missing} is in no batch`);
  return out;
}
