/**
 * Which columns of a table are the labels, and what a cell of them means, for each
 * problem type (src/train/task.ts):
 *
 * - single-label, binary (the default: `--label-column`, no `--task`): a 0/1 column.
 *   "0", "1", "0.0", "1.0" are read; an empty cell, a fraction or text drops its row as
 *   `invalid_label` (counted, with line numbers). A column holding another integer (2,
 *   -1: a column of classes) or no 0/1 value at all is refused.
 * - single-label, k classes (`--task single_label_classification`): every non-empty
 *   value is a class. Integer classes 0..k-1 keep their values as ids and Hugging Face's
 *   names LABEL_i (so a 0/1 column gives the binary task); any other values are sorted
 *   (numerically when all are numbers, else as strings) and numbered in that order,
 *   each named by its text. An empty cell drops its row as `invalid_label`.
 * - multi-label (`--label-columns`, `--locations`): each column a 0/1 column, read as
 *   in the binary case; a row with a bad cell in any of them is dropped.
 * - regression (`--target-column`): every cell must be a finite number; an empty cell,
 *   NaN, infinity or text anywhere refuses the whole table, naming the lines.
 */
import { ConfigError, DataError } from "../errors";
import {
  checkTask,
  defaultLabelNames,
  PROBLEM_TYPES,
  type ProblemType,
  type TaskSpec,
} from "../util/task";
import { printable } from "./csv";

/** DeepLoc-2.0's ten location columns, in the order of its CSV header. */
export const DEEPLOC_LOCATIONS = [
  "Cytoplasm",
  "Nucleus",
  "Extracellular",
  "Cell membrane",
  "Mitochondrion",
  "Plastid",
  "Endoplasmic reticulum",
  "Lysosome/Vacuole",
  "Golgi apparatus",
  "Peroxisome",
] as const;

export interface LabelOptions {
  /** The single-label column (default "Membrane"). */
  labelColumn?: string;
  /** Multi-label: 0/1 columns. */
  labelColumns?: readonly string[];
  /** Multi-label on DeepLoc's ten location columns (DEEPLOC_LOCATIONS). */
  locations?: boolean;
  /** Regression: one or more numeric columns. */
  targetColumns?: readonly string[];
  /** The problem type; inferred from which columns are given when absent. */
  task?: ProblemType;
}

/** How the label cells of a table are read. */
export interface LabelPlan {
  problemType: ProblemType;
  /** Source columns, in output order. */
  columns: string[];
  /** single-label only: a 0/1 column (binary), or classes from the values. */
  classes: "binary" | "values" | null;
}

const bad = (message: string, context: Record<string, unknown>) =>
  new ConfigError(message, context);

/** Resolve the label options into a plan, refusing combinations that do not fit. */
export function planLabels(o: LabelOptions): LabelPlan {
  if (o.task !== undefined && !(PROBLEM_TYPES as readonly string[]).includes(o.task)) {
    throw bad(
      `Unknown task ${JSON.stringify(o.task)}; expected one of ${PROBLEM_TYPES.join(", ")}`,
      {
        task: o.task,
      },
    );
  }
  if (o.locations && o.labelColumns) {
    throw bad(
      "Give the label columns or locations, not both (locations = the ten DeepLoc columns)",
      {},
    );
  }
  const multi = o.locations
    ? [...DEEPLOC_LOCATIONS]
    : o.labelColumns
      ? [...o.labelColumns]
      : undefined;
  const targets = o.targetColumns ? [...o.targetColumns] : undefined;
  if (multi && targets) {
    throw bad("Give label columns (multi-label) or target columns (regression), not both", {});
  }
  const inferred: ProblemType = multi
    ? "multi_label_classification"
    : targets
      ? "regression"
      : "single_label_classification";
  const problemType = o.task ?? inferred;
  if (problemType !== inferred) {
    const need =
      problemType === "multi_label_classification"
        ? "label columns (--label-columns or --locations)"
        : problemType === "regression"
          ? "target columns (--target-column)"
          : "one label column (--label-column)";
    throw bad(`Task ${problemType} needs ${need}`, { task: problemType });
  }
  const columns = multi ?? targets ?? [o.labelColumn ?? "Membrane"];
  const checked = columns.map((c) => c.trim());
  const seen = new Set<string>();
  for (const c of checked) {
    if (c === "") throw bad("A label column name is empty", { columns });
    if (seen.has(c)) throw bad(`The column "${printable(c, 60)}" is listed twice`, { columns });
    seen.add(c);
  }
  return {
    problemType,
    columns: checked,
    classes:
      problemType === "single_label_classification"
        ? o.task === undefined
          ? "binary"
          : "values"
        : null,
  };
}

/** A cell of a 0/1 column: 0 or 1, "other" for another integer, null for anything else. */
export function readBinaryCell(raw: string): 0 | 1 | "other" | null {
  const t = raw.trim();
  if (t === "") return null;
  const v = Number(t);
  if (v === 0 || v === 1) return v;
  return Number.isInteger(v) ? "other" : null;
}

/** A regression cell: a finite number, or null. */
export function readNumberCell(raw: string): number | null {
  const t = raw.trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : null;
}

/** The canonical class key of a cell (numbers written one way: "1.0" and "1" are one class). */
export function classKey(raw: string): string | null {
  const t = raw.trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? String(v) : t;
}

/**
 * Class ids and names from the class keys of the kept rows: integer keys 0..k-1 keep
 * their values (names LABEL_i), other keys are sorted (numerically when all are
 * numbers, else as strings) and named by their text.
 */
export function classesOf(keys: Iterable<string>): { names: string[]; ids: Map<string, number> } {
  const distinct = [...new Set(keys)];
  const numeric = distinct.every((k) => Number.isFinite(Number(k)));
  const sorted = numeric
    ? distinct.sort((a, b) => Number(a) - Number(b))
    : distinct.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const consecutive = numeric && sorted.every((k, i) => Number(k) === i);
  const names = consecutive ? defaultLabelNames(sorted.length) : sorted;
  return { names, ids: new Map(sorted.map((k, i) => [k, i])) };
}

/** The task of a plan once the classes are known. */
export function taskOf(plan: LabelPlan, classNames?: string[]): TaskSpec {
  const labels =
    plan.problemType === "single_label_classification"
      ? plan.classes === "binary"
        ? defaultLabelNames(2)
        : (classNames ?? [])
      : plan.columns;
  const task = { problemType: plan.problemType, labels };
  if (plan.problemType === "single_label_classification" && labels.length < 2) {
    throw new DataError(
      `Column "${printable(plan.columns[0]!, 60)}" has ${labels.length === 0 ? "no class" : `one class only (${printable(labels[0]!, 40)})`} among the kept rows; single_label_classification needs at least 2`,
      { column: plan.columns[0], classes: labels },
    );
  }
  return checkTask(task, "the labels");
}
