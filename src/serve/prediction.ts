/**
 * The answer for one sequence, the same in HTTP responses and `esmkit predict` output:
 *
 *   {"label": "membrane", "score": 0.93,
 *    "probabilities": {"non-membrane": 0.07, "membrane": 0.93}, "truncated": false}
 *
 * `label`/`score` are the top class, as in a Hugging Face text-classification answer;
 * `probabilities` has every class in id2label order; `truncated` says the sequence was
 * cut to the model's maximum length; `id` is present when the input named the sequence
 * (a FASTA header). Ties go to the class listed first.
 */
import { PredictionError } from "./errors";
import type { ClassProbabilities } from "./predictor";

export interface Prediction {
  id?: string;
  label: string;
  score: number;
  probabilities: Record<string, number>;
  truncated: boolean;
}

export function toPrediction(p: ClassProbabilities, truncated: boolean, id?: string): Prediction {
  const labels = p?.labels;
  const probs = p?.probabilities;
  if (!Array.isArray(labels) || !Array.isArray(probs) || labels.length !== probs.length) {
    throw new PredictionError(
      `The predictor answered ${Array.isArray(probs) ? probs.length : "no"} probabilities for ${Array.isArray(labels) ? labels.length : "no"} labels`,
      {},
    );
  }
  if (labels.length === 0) throw new PredictionError("The predictor answered no classes", {});
  let best = 0;
  const probabilities: Record<string, number> = {};
  for (let i = 0; i < labels.length; i++) {
    const v = probs[i]!;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new PredictionError(`The predictor answered a non-finite probability (${v})`, {});
    }
    probabilities[labels[i]!] = v;
    if (v > probs[best]!) best = i;
  }
  const top = { label: labels[best]!, score: probs[best]!, probabilities, truncated };
  return id === undefined ? top : { id, ...top };
}
