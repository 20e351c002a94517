/**
 * Shapes of the forward passes, chosen in this one place to bound memory. onnxruntime's
 * arena keeps the largest blocks it has needed, and a new shape can need new blocks, so
 * with free-form shapes a server's memory grows with every new mix of lengths. Rows are
 * padded to the next multiple of LENGTH_BUCKET tokens (at most the model's max length),
 * so shapes repeat; and a batch is run in passes of consecutive rows small enough that
 * rows x length^2 (the size of the attention scores) stays within ATTENTION_BUDGET, so
 * the largest block needed does not depend on how many long sequences arrive together.
 * Padding is masked out: a row's answer does not depend on its pass.
 */
export const LENGTH_BUCKET = 64;
/** Most rows x length^2 per pass: one 1024-token row, four of 512, sixteen of 256. */
export const ATTENTION_BUDGET = 1024 * 1024;

/** The padded length of a pass whose longest row has `tokens` tokens. */
export function bucketLength(tokens: number, maxLength: number): number {
  return Math.max(tokens, Math.min(maxLength, Math.ceil(tokens / LENGTH_BUCKET) * LENGTH_BUCKET));
}

export interface ForwardPass {
  /** Rows [start, end) of the batch. */
  start: number;
  end: number;
  /** Tokens per row after padding. */
  width: number;
}

/** Split rows of these token counts into passes (in order) within the attention budget. */
export function planPasses(lengths: readonly number[], maxLength: number): ForwardPass[] {
  const passes: ForwardPass[] = [];
  let start = 0;
  let width = 0;
  for (let i = 0; i < lengths.length; i++) {
    const w = bucketLength(Math.max(width, lengths[i]!), maxLength);
    if (i > start && (i - start + 1) * w * w > ATTENTION_BUDGET) {
      passes.push({ start, end: i, width });
      start = i;
      width = bucketLength(lengths[i]!, maxLength);
    } else {
      width = w;
    }
  }
  if (lengths.length > 0) passes.push({ start, end: lengths.length, width });
  return passes;
}
