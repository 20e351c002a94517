/**
 * The task a model is trained for and what its labels must be. Today one task,
 * sequence classification with one label per sequence (a class index, or -100 for
 * "ignore", as torch's CrossEntropyLoss); both engines check labels here.
 */
import { DataError } from "../errors";

/** Throws a DataError naming the first label that is neither a class index nor `ignoreIndex`. */
export function checkLabels(
  labels: ArrayLike<number>,
  numClasses: number,
  ignoreIndex: number,
): void {
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (y === ignoreIndex) continue;
    if (!(Number.isInteger(y) && y >= 0 && y < numClasses)) {
      throw new DataError(
        `Label ${y} at index ${i} is invalid; expected an integer in 0..${numClasses - 1} or ${ignoreIndex} (ignored)`,
        { label: y, index: i, numClasses },
      );
    }
  }
}
