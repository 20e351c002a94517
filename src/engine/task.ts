/**
 * Tasks: what the classification head's outputs mean and which loss trains them, as
 * transformers' EsmForSequenceClassification picks them by `config.problem_type`. The
 * head is the same for every task (src/model/architecture.ts: `classifier.dense`,
 * `tanh`, `classifier.out_proj` to `num_labels` outputs on `<cls>`); a task only sets
 * what the labels are and the loss.
 *
 * Adding a task: an entry in TASKS; its loss in each engine that will train it (tfjs:
 * src/engine/loss.ts; onnx: the loss graph of src/onnx/esm-graph.ts and the feeds of
 * src/onnx/engine.ts); the task in that engine's ENGINE_CAPABILITIES (engine.ts). An
 * engine without it refuses the task with a ConfigError naming the engine that has it.
 */
import { DataError } from "../errors";
import type { ProblemType } from "../util/task";

/** What a task means for an engine (the task itself, with its label names: util/task.ts). */
export interface TaskLoss {
  /** The loss, as transformers computes it for this problem_type. */
  loss: string;
  /** What a label is. */
  labels: string;
}

export const TASKS = {
  single_label_classification: {
    loss: "cross-entropy over num_labels classes, optionally class-weighted",
    labels: "one class index per sequence in 0..num_labels-1 (-100: ignored)",
  },
  multi_label_classification: {
    loss: "binary cross-entropy with logits, the mean over every label, optionally with pos_weight per label",
    labels: "a 0/1 vector of num_labels per sequence",
  },
  regression: {
    loss: "mean squared error over every target",
    labels: "a vector of num_labels real targets per sequence",
  },
} as const satisfies Record<ProblemType, TaskLoss>;

export type TaskName = keyof typeof TASKS;

/** The task of the binary Membrane workflow, and of every checkpoint without problem_type. */
export const DEFAULT_TASK: TaskName = "single_label_classification";

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
