/**
 * What a model predicts, in Hugging Face's terms: `config.problem_type`, `num_labels`
 * and `id2label`. One task travels from `esmkit prepare` (stats.json) through training
 * (the loss), evaluation (the metrics), the saved config.json, and predict / serve (the
 * answer's shape):
 *
 * - `single_label_classification`: one of k >= 2 classes; softmax; cross-entropy on an
 *   integer class id. The binary Membrane workflow is this task with k = 2 and Hugging
 *   Face's default names LABEL_0 / LABEL_1.
 * - `multi_label_classification`: k independent 0/1 labels (DeepLoc's ten locations);
 *   a sigmoid per label; BCE-with-logits on a float 0/1 vector.
 * - `regression`: k >= 1 real targets; the logits are the predictions; MSE.
 *
 * transformers infers `problem_type` from the labels' dtype when it is unset; esmkit
 * always writes it.
 */
import { ConfigError } from "../errors";

export const PROBLEM_TYPES = [
  "single_label_classification",
  "multi_label_classification",
  "regression",
] as const;
export type ProblemType = (typeof PROBLEM_TYPES)[number];

export interface TaskSpec {
  problemType: ProblemType;
  /** Names by output index (`id2label`): classes, labels, or regression targets. */
  labels: string[];
}

/** Multi-label: a label is predicted at or above this probability unless told otherwise. */
export const DEFAULT_THRESHOLD = 0.5;

/** Hugging Face's names for unnamed outputs. */
export function defaultLabelNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

/** The binary task of the seed workflow (a 0/1 column, names LABEL_0 / LABEL_1). */
export const BINARY_TASK: TaskSpec = {
  problemType: "single_label_classification",
  labels: defaultLabelNames(2),
};

export function isProblemType(value: unknown): value is ProblemType {
  return typeof value === "string" && (PROBLEM_TYPES as readonly string[]).includes(value);
}

/** A task with its label names checked (distinct, enough of them for the problem type). */
export function checkTask(task: TaskSpec, where = "the task"): TaskSpec {
  if (!isProblemType(task.problemType)) {
    throw new ConfigError(
      `${where}: unknown problem type ${JSON.stringify(task.problemType)}; expected one of ${PROBLEM_TYPES.join(", ")}`,
      { problemType: task.problemType },
    );
  }
  const n = task.labels.length;
  const least =
    task.problemType === "regression" ? 1 : task.problemType.startsWith("single") ? 2 : 1;
  if (n < least) {
    throw new ConfigError(
      `${where}: ${task.problemType} needs at least ${least} label${least > 1 ? "s" : ""}; got ${n}`,
      { problemType: task.problemType, labels: task.labels },
    );
  }
  const seen = new Set<string>();
  for (const name of task.labels) {
    if (typeof name !== "string" || name === "") {
      throw new ConfigError(
        `${where}: label names must be non-empty strings; got ${JSON.stringify(name)}`,
        {
          labels: task.labels,
        },
      );
    }
    if (seen.has(name)) {
      throw new ConfigError(`${where}: the label name ${JSON.stringify(name)} appears twice`, {
        labels: task.labels,
      });
    }
    seen.add(name);
  }
  return task;
}

/** A short description for messages: `multi_label_classification with 10 labels (Cytoplasm, ...)`. */
export function describeTask(task: TaskSpec): string {
  const n = task.labels.length;
  const what =
    task.problemType === "regression"
      ? `${n} target${n === 1 ? "" : "s"}`
      : task.problemType === "multi_label_classification"
        ? `${n} label${n === 1 ? "" : "s"}`
        : `${n} classes`;
  const names = task.labels.slice(0, 10).join(", ") + (n > 10 ? ", ..." : "");
  return `${task.problemType} with ${what} (${names})`;
}

/** The fields of a model config that say what its head predicts. */
export interface HeadConfig {
  numLabels: number;
  id2label: Record<number, string>;
  problemType: string | null;
}

/**
 * The task a model's config describes. `problem_type` null (checkpoints that predate it,
 * or Python models trained without it) reads as single-label classification, which is
 * what transformers infers for integer labels.
 */
export function taskOfConfig(config: HeadConfig): TaskSpec {
  const problemType = isProblemType(config.problemType)
    ? config.problemType
    : "single_label_classification";
  const labels = Array.from(
    { length: config.numLabels },
    (_, i) => config.id2label[i] ?? `LABEL_${i}`,
  );
  return { problemType, labels };
}

const isDefaultNames = (names: readonly string[]) => names.every((n, i) => n === `LABEL_${i}`);

/**
 * Throws a ConfigError when a model's head cannot serve `task`: another problem type
 * (when the config names one), another number of outputs, or other label names (when
 * both name theirs: Hugging Face's LABEL_i name nothing). Returns the names to keep:
 * the task's, or the head's where only the head names its labels. `where` names the model.
 */
export function checkHeadMatches(config: HeadConfig, task: TaskSpec, where: string): string[] {
  const head = taskOfConfig(config);
  const typeDiffers = config.problemType !== null && config.problemType !== task.problemType;
  // An unnamed problem type is what transformers would infer at training time: regression
  // for one output, classification (single- or multi-label, by the labels' dtype) otherwise.
  const unnamedMismatch =
    config.problemType === null && (task.problemType === "regression") !== (config.numLabels === 1);
  const namesDiffer =
    !isDefaultNames(head.labels) &&
    !isDefaultNames(task.labels) &&
    head.labels.join("\u0000") !== task.labels.join("\u0000");
  if (typeDiffers || unnamedMismatch || config.numLabels !== task.labels.length || namesDiffer) {
    throw new ConfigError(
      `${where} has a ${describeTask(head)} head, but the task is ${describeTask(task)}; ` +
        "fine-tune from a base model (a checkpoint without a classifier), or use data prepared for the model's task",
      { model: where, head, task },
    );
  }
  return isDefaultNames(task.labels) ? head.labels : task.labels;
}
