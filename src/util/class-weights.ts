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
