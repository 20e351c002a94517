/**
 * Length-bucketed batches with dynamic padding.
 *
 * Per epoch: shuffle the example order with a stream seeded from (seed, epoch); cut it
 * into chunks of `batchSize * bucketFactor`; sort each chunk by length (longest first) and
 * slice it into batches; shuffle the batch order. Batches then hold similar lengths and
 * are padded only to their longest member, which is most of the speed on protein data
 * (lengths 100..512), while the order still changes every epoch. The plan is a pure
 * function of (lengths, options): the same seed and epoch give the same batches, and
 * every example appears exactly once per epoch (the last batch may be smaller unless
 * `dropLast`).
 */
import { ConfigError, DataError } from "../errors";
import { SeededRandom } from "../util/random";

/**
 * One tokenized example (with <cls> and <eos>) and its label: a class id
 * (single-label), or a float vector with one value per output (multi-label 0/1,
 * regression targets).
 */
export interface Example {
  inputIds: ArrayLike<number>;
  label: number | ArrayLike<number>;
}

/** A padded batch, row-major. */
export interface Batch {
  /** [batchSize * seqLen], padded on the right with `padId`. */
  inputIds: Int32Array;
  /** [batchSize * seqLen], 1 for tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** [batchSize] class ids; zeros when the examples hold vectors (see `targets`). */
  labels: Int32Array;
  /** [batchSize * width], row-major: the label vectors, when the examples hold vectors. */
  targets?: Float32Array;
  batchSize: number;
  /** Longest example in this batch. */
  seqLen: number;
  /** Position of each row in the example list (to map predictions back). */
  indices: Int32Array;
}

export interface BatchPlanOptions {
  batchSize: number;
  /** Run seed; combined with `epoch` for the shuffle. */
  seed: number;
  /** 0-based epoch. */
  epoch: number;
  /** Shuffle examples and batch order; default true. False (evaluation) keeps the
   * example order apart from the length sort inside each chunk. */
  shuffle?: boolean;
  /** Chunk size for the length sort, in batches; default 50. 1 sorts within a batch only. */
  bucketFactor?: number;
  /** Leave out a final batch smaller than `batchSize`; default false (HF's default). */
  dropLast?: boolean;
}

/** ESM's <pad> id. */
export const PAD_ID = 1;

/** murmur3's 32-bit finaliser: spreads nearby (seed, epoch) pairs over the state space. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The shuffle seed of one epoch. */
export function epochSeed(seed: number, epoch: number): number {
  return fmix32(seed ^ fmix32(epoch + 0x9e3779b9));
}

function positiveInteger(name: string, value: number): void {
  if (!(Number.isInteger(value) && value > 0)) {
    throw new ConfigError(`${name} ${value} is invalid; expected an integer > 0`, {
      [name]: value,
    });
  }
}

/** Example indices per batch for one epoch, from the examples' lengths. */
export function planBatches(lengths: ArrayLike<number>, options: BatchPlanOptions): number[][] {
  const { batchSize, seed, epoch } = options;
  const bucketFactor = options.bucketFactor ?? 50;
  const shuffle = options.shuffle ?? true;
  positiveInteger("batchSize", batchSize);
  positiveInteger("bucketFactor", bucketFactor);
  if (!Number.isInteger(seed)) {
    throw new ConfigError(`seed ${seed} is invalid; expected an integer`, { seed });
  }
  if (!(Number.isInteger(epoch) && epoch >= 0)) {
    throw new ConfigError(`epoch ${epoch} is invalid; expected an integer >= 0`, { epoch });
  }
  const rng = new SeededRandom(epochSeed(seed, epoch));
  const order = Array.from({ length: lengths.length }, (_, i) => i);
  if (shuffle) rng.shuffle(order);
  const chunk = batchSize * bucketFactor;
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += chunk) {
    // Array.prototype.sort is stable: equal lengths keep their shuffled order.
    const part = order.slice(start, start + chunk).sort((a, b) => lengths[b]! - lengths[a]!);
    for (let i = 0; i < part.length; i += batchSize) batches.push(part.slice(i, i + batchSize));
  }
  if (options.dropLast && batches.length > 0 && batches.at(-1)!.length < batchSize) {
    // The short batch is the tail of the last chunk; drop it before shuffling the order.
    batches.pop();
  }
  if (shuffle) rng.shuffle(batches);
  return batches;
}

/** Pad the chosen examples into one batch. */
export function collate(
  examples: readonly Example[],
  indices: readonly number[],
  padId = PAD_ID,
): Batch {
  const b = indices.length;
  let seqLen = 0;
  let width: number | undefined;
  for (const i of indices) {
    const ex = examples[i];
    if (!ex) {
      throw new DataError(`Example index ${i} is out of range (0..${examples.length - 1})`, {
        index: i,
      });
    }
    if (ex.inputIds.length === 0) {
      throw new DataError(`Example ${i} has no tokens; expected at least <cls> and <eos>`, {
        index: i,
      });
    }
    if (typeof ex.label === "number") {
      if (!Number.isInteger(ex.label)) {
        throw new DataError(`Example ${i} has label ${ex.label}; expected an integer class`, {
          index: i,
          label: ex.label,
        });
      }
      if (width !== undefined && width !== 0) throw mixed(i);
      width = 0;
    } else {
      const n = ex.label.length;
      if (width === 0 || (width !== undefined && width !== n)) throw mixed(i);
      width = n;
    }
    seqLen = Math.max(seqLen, ex.inputIds.length);
  }
  const inputIds = new Int32Array(b * seqLen).fill(padId);
  const attentionMask = new Int32Array(b * seqLen);
  const labels = new Int32Array(b);
  const targets = width ? new Float32Array(b * width) : undefined;
  indices.forEach((ex, row) => {
    const { inputIds: ids, label } = examples[ex]!;
    inputIds.set(ids, row * seqLen);
    attentionMask.fill(1, row * seqLen, row * seqLen + ids.length);
    if (typeof label === "number") labels[row] = label;
    else targets!.set(label, row * width!);
  });
  return {
    inputIds,
    attentionMask,
    labels,
    ...(targets ? { targets } : {}),
    batchSize: b,
    seqLen,
    indices: Int32Array.from(indices),
  };
}

function mixed(index: number): DataError {
  return new DataError(
    `Example ${index}'s label does not match the others: a batch holds class ids or vectors of one length, not both`,
    { index },
  );
}

/** The epoch's batches, padded lazily one at a time. */
export function* epochBatches(
  examples: readonly Example[],
  options: BatchPlanOptions & { padId?: number },
): Generator<Batch> {
  const plan = planBatches(
    examples.map((e) => e.inputIds.length),
    options,
  );
  for (const indices of plan) yield collate(examples, indices, options.padId ?? PAD_ID);
}

/** How many batches an epoch has (for schedules: total steps). */
export function batchesPerEpoch(count: number, batchSize: number, dropLast = false): number {
  positiveInteger("batchSize", batchSize);
  return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}
