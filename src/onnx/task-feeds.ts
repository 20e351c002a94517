/**
 * The per-batch tables of the onnx engine's multi-label and regression losses (the
 * `loss` of esm-graph.ts); the single-label tables are engine.ts's `lossWeights`.
 */
import type { MicroBatch } from "../engine/engine";
import type { TaskName } from "../engine/task";
import { ConfigError } from "../errors";
import type { LossKind } from "./esm-graph";

/** The loss of each problem type in the training graphs. */
export const LOSS_KINDS: Record<TaskName, LossKind> = {
  single_label_classification: "cross_entropy",
  multi_label_classification: "bce_with_logits",
  regression: "mse",
};

/** A micro-batch's `[B, C]` label vectors, checked. */
export function targetsOf(batch: MicroBatch, B: number, C: number): Float32Array {
  if (!batch.targets || batch.targets.shape[0] !== B || batch.targets.shape[1] !== C) {
    throw new ConfigError(
      `This step needs label vectors [${B}, ${C}]; got ${batch.targets ? `[${batch.targets.shape}]` : "none"}`,
      { batchSize: B, numLabels: C },
    );
  }
  return batch.targets.dataSync() as Float32Array;
}

/**
 * The loss tables of the multi-label and regression graphs (esm-graph.ts, `loss`), so
 * that the graph's loss is torch's mean times `scale`:
 * - BCE-with-logits: weights `(p_c y + 1 - y) s / (B C)`, targets `p_c y s / (B C)`;
 * - MSE: weights `s / (B C)`, targets `y`.
 */
export function taskLossFeeds(
  problemType: "multi_label_classification" | "regression",
  targets: ArrayLike<number>,
  numLabels: number,
  options: { posWeight?: number[]; scale?: number } = {},
): { weights: Float32Array; targets: Float32Array; empty: boolean } {
  const m = targets.length;
  const pw = options.posWeight;
  if (pw && pw.length !== numLabels) {
    throw new ConfigError(
      `Positive weights [${pw.join(", ")}] have ${pw.length} entries; the model has ${numLabels} labels`,
      { posWeight: pw, numLabels },
    );
  }
  const s = (options.scale ?? 1) / m;
  const weights = new Float32Array(m);
  const out = new Float32Array(m);
  for (let k = 0; k < m; k++) {
    const y = targets[k]!;
    if (problemType === "regression") {
      weights[k] = s;
      out[k] = y;
    } else {
      const py = (pw ? pw[k % numLabels]! : 1) * y;
      weights[k] = (py + 1 - y) * s;
      out[k] = py * s;
    }
  }
  return { weights, targets: out, empty: m === 0 };
}
