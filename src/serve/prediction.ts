/**
 * The answer for one sequence, the same in HTTP responses and `esmkit predict` output,
 * by the model's problem type:
 *
 * - single-label (binary, k classes): the top class as a Hugging Face
 *   text-classification answer, plus every class probability (a softmax, id2label order):
 *
 *     {"label": "membrane", "score": 0.93,
 *      "probabilities": {"non-membrane": 0.07, "membrane": 0.93}, "truncated": false}
 *
 * - multi-label: every label's own probability (independent sigmoids), the labels at or
 *   above the threshold, and the threshold; `label`/`score` are the most probable label:
 *
 *     {"label": "Nucleus", "score": 0.91, "labels": ["Cytoplasm", "Nucleus"],
 *      "probabilities": {"Cytoplasm": 0.62, "Nucleus": 0.91, ...}, "threshold": 0.5,
 *      "truncated": false}
 *
 * - regression: the predicted value of each target: {"values": {"Tm": 52.1}, "truncated": false}
 *
 * `truncated` says the sequence was cut to the model's maximum length; `id` is present
 * when the input named the sequence (a FASTA header). Ties go to the label listed first.
 */

import { ConfigError } from "../errors";
import { DEFAULT_THRESHOLD, type ProblemType } from "../util/task";
import { PredictionError } from "./errors";
import type { ClassProbabilities } from "./predictor";

/** A single-label answer (binary or k classes). */
export interface Prediction {
  id?: string;
  label: string;
  score: number;
  probabilities: Record<string, number>;
  truncated: boolean;
}

export interface MultiLabelPrediction extends Prediction {
  /** Labels whose probability is >= threshold, in id2label order. */
  labels: string[];
  threshold: number;
}

export interface RegressionPrediction {
  id?: string;
  values: Record<string, number>;
  truncated: boolean;
}

/** Any task's answer. */
export type TaskPrediction = Prediction | MultiLabelPrediction | RegressionPrediction;

export interface PredictionOptions {
  /** Default single_label_classification. */
  problemType?: ProblemType;
  /** Multi-label: a label is in `labels` when its probability is >= this (default 0.5). */
  threshold?: number;
}

export { DEFAULT_THRESHOLD };

/** A threshold in [0, 1], or a ConfigError naming `what` (a flag, an environment variable). */
export function checkThreshold(value: number, what: string): number {
  if (!(Number.isFinite(value) && value >= 0 && value <= 1)) {
    throw new ConfigError(`${what} must be a probability from 0 to 1, got ${value}`, {
      [what]: value,
    });
  }
  return value;
}

function finite(values: unknown[], what: string): number[] {
  for (const v of values) {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new PredictionError(`The predictor answered a non-finite ${what} (${v})`, {});
    }
  }
  return values as number[];
}

/** A single-label answer (no options: the binary and k-class tasks). */
export function toPrediction(p: ClassProbabilities, truncated: boolean, id?: string): Prediction;
export function toPrediction(
  p: ClassProbabilities,
  truncated: boolean,
  id: string | undefined,
  options: PredictionOptions,
): TaskPrediction;
export function toPrediction(
  p: ClassProbabilities,
  truncated: boolean,
  id?: string,
  options: PredictionOptions = {},
): TaskPrediction {
  const labels = p?.labels;
  const problemType = options.problemType ?? "single_label_classification";
  const raw = problemType === "regression" ? p?.values : p?.probabilities;
  const what = problemType === "regression" ? "values" : "probabilities";
  if (!Array.isArray(labels) || !Array.isArray(raw) || labels.length !== raw.length) {
    throw new PredictionError(
      `The predictor answered ${Array.isArray(raw) ? raw.length : "no"} ${what} for ${Array.isArray(labels) ? labels.length : "no"} labels`,
      {},
    );
  }
  if (labels.length === 0) throw new PredictionError("The predictor answered no classes", {});
  const values = finite(raw, problemType === "regression" ? "value" : "probability");
  const named: Record<string, number> = {};
  labels.forEach((l, i) => {
    named[l] = values[i]!;
  });
  const withId = <T extends object>(o: T) => (id === undefined ? o : { id, ...o });
  if (problemType === "regression") return withId({ values: named, truncated });
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  const top = { label: labels[best]!, score: values[best]!, probabilities: named };
  if (problemType === "multi_label_classification") {
    const threshold = options.threshold ?? DEFAULT_THRESHOLD;
    return withId({
      ...top,
      labels: labels.filter((_, i) => values[i]! >= threshold),
      threshold,
      truncated,
    });
  }
  return withId({ ...top, truncated });
}
