import { DEFAULT_SORT_WINDOW, lengthSortedBatches } from "../data/length-batches";

/**
 * Shapes of the forward passes, chosen in this one place to bound memory and padding.
 *
 * onnxruntime's arena keeps the largest blocks it has needed, and a new shape can need
 * new blocks, so with free-form shapes a server's memory grows with every new mix of
 * lengths. Rows are therefore padded to the next multiple of LENGTH_BUCKET tokens (at
 * most the model's max length), so shapes repeat; and a pass takes rows only while
 * rows x length^2 (the size of the attention scores) stays within ATTENTION_BUDGET, so
 * the largest block needed does not depend on how many long sequences arrive together.
 *
 * Padding costs compute, so the rows of a call are sorted by length first (in windows,
 * src/data/length-batches.ts) and a pass holds rows of one bucket only: a short row is
 * never padded to a long one's length (on DeepLoc's test split, calls of 8: 4.6 % of
 * the computed tokens are padding, against 30.7 % in input order with buckets of 64).
 * Padding is masked out: a row's answer does not depend on its pass, and answers come
 * back in input order.
 */
export const LENGTH_BUCKET = 32;
/** Most rows x length^2 per pass: one 1024-token row, four of 512, sixteen of 256. */
export const ATTENTION_BUDGET = 1024 * 1024;

/** The padded length of a pass whose longest row has `tokens` tokens. */
export function bucketLength(tokens: number, maxLength: number): number {
  return Math.max(tokens, Math.min(maxLength, Math.ceil(tokens / LENGTH_BUCKET) * LENGTH_BUCKET));
}

export interface ForwardPass {
  /** The rows of the call in this pass (input indices, longest first). */
  rows: number[];
  /** Tokens per row after padding. */
  width: number;
}

/**
 * Rows of these token counts in passes: sorted by length inside windows of `window`
 * rows; each pass holds one length bucket, within the attention budget.
 */
export function planPasses(
  lengths: readonly number[],
  maxLength: number,
  window = DEFAULT_SORT_WINDOW,
): ForwardPass[] {
  const width = (tokens: number) => bucketLength(tokens, maxLength);
  return lengthSortedBatches(lengths, {
    batchSize: Number.POSITIVE_INFINITY,
    window,
    fits: (rows, longest, length) =>
      width(length) === width(longest) && rows * width(longest) ** 2 <= ATTENTION_BUDGET,
  }).map((rows) => ({ rows, width: width(Math.max(...rows.map((i) => lengths[i]!))) }));
}
