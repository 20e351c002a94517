/** Class weights as sklearn's "balanced" and the seed workflow compute them. */
import { ConfigError, DataError } from "../errors";

/**
 * sklearn's `compute_class_weight("balanced")`: `n / (numClasses * count_c)`, so a class
 * with half the average frequency weighs 2. Every class must occur at least once.
 */
export function balancedClassWeights(labels: ArrayLike<number>, numClasses: number): number[] {
  if (!(Number.isInteger(numClasses) && numClasses >= 1)) {
    throw new ConfigError(`numClasses ${numClasses} is invalid; expected an integer >= 1`, {
      numClasses,
    });
  }
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (!(Number.isInteger(y) && y >= 0 && y < numClasses)) {
      throw new DataError(
        `Label ${y} at index ${i} is invalid; expected an integer in 0..${numClasses - 1}`,
        { label: y, index: i, numClasses },
      );
    }
    counts[y]! += 1;
  }
  const missing = counts.flatMap((k, cls) => (k === 0 ? [cls] : []));
  if (missing.length > 0) {
    throw new ConfigError(
      `Cannot compute balanced class weights: class ${missing.join(", ")} has no examples among ${labels.length} labels (classes 0..${numClasses - 1} must all occur)`,
      { missing, counts },
    );
  }
  return counts.map((k) => labels.length / (numClasses * k));
}

/**
 * Positive weights of a multi-label task, torch's `BCEWithLogitsLoss(pos_weight)`: per
 * label `negatives / positives` among `rows` (0/1 vectors of `numLabels`), so a label
 * positive in one row of ten weighs its positives 9x and positives and negatives count
 * equally in the loss. Every label must have at least one positive (else the weight is
 * infinite); a label with no negative gets 0.
 */
export function balancedPositiveWeights(
  rows: readonly ArrayLike<number>[],
  numLabels: number,
  names?: readonly string[],
): number[] {
  const positives = new Array<number>(numLabels).fill(0);
  rows.forEach((row, i) => {
    if (row.length !== numLabels) {
      throw new DataError(`Row ${i} has ${row.length} labels; expected ${numLabels}`, {
        index: i,
        numLabels,
      });
    }
    for (let c = 0; c < numLabels; c++) {
      const y = row[c]!;
      if (y !== 0 && y !== 1) {
        throw new DataError(`Label ${y} at row ${i}, column ${c} is not 0 or 1`, {
          index: i,
          column: c,
          label: y,
        });
      }
      positives[c]! += y;
    }
  });
  const missing = positives.flatMap((p, c) => (p === 0 ? [names?.[c] ?? String(c)] : []));
  if (missing.length > 0) {
    throw new ConfigError(
      `Cannot compute positive weights (negatives / positives): ${missing.join(", ")} ${missing.length === 1 ? "has" : "have"} no positive among ${rows.length} training rows; use class weights "none" or give one weight per label`,
      { missing, rows: rows.length },
    );
  }
  return positives.map((p) => (rows.length - p) / p);
}
