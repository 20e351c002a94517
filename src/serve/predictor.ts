/**
 * The seam between serving and the model: everything in `src/serve` talks to a
 * `Predictor`, never to ESM-2 directly, so the HTTP server, the micro-batcher and the
 * `predict` command are tested with a fake and the real model plugs in through
 * `setPredictorLoader`. This file knows no implementation: the ESM-2 loader
 * (esm2-loader.ts) is registered as the default by src/register-defaults.ts.
 */
import { ConfigError } from "../errors";

import type { ProblemType } from "../util/task";

/**
 * What a predictor answers for one sequence, in `labels` order: single-label, class
 * probabilities (a softmax: they sum to 1); multi-label, each label's probability (an
 * independent sigmoid); regression, the predicted values in `values` (and no
 * probabilities).
 */
export interface ClassProbabilities {
  labels: string[];
  /** Empty for regression. */
  probabilities: number[];
  /** Regression: the predicted value of each target. */
  values?: number[];
}

/** What an embeddings endpoint computes (see src/onnx/embedder.ts for the conventions). */
export interface EmbeddingRequest {
  pooling: "mean" | "cls";
  /** A hidden state 0..numLayers (already checked). */
  layer: number;
}

export interface Predictor {
  /** Class names in id2label order, e.g. ["0", "1"] or ["non-membrane", "membrane"]. */
  readonly labels: string[];
  /** What the answers are (config.problem_type); default single_label_classification. */
  readonly problemType?: ProblemType;
  /** Most tokens per sequence including <cls> and <eos> (residues = maxLength - 2). */
  readonly maxLength: number;
  /** One call is one batch; the answer has one entry per sequence, in order. */
  predict(sequences: string[]): Promise<ClassProbabilities[]>;
  /**
   * Pooled embeddings, one per sequence, in order (the serve container's embeddings
   * mode); absent when the predictor cannot embed.
   */
  embed?(sequences: string[], request: EmbeddingRequest): Promise<Float32Array[]>;
  /** Encoder layers (hidden states 0..numLayers), when the predictor can embed. */
  readonly numLayers?: number;
  /** Batches it can run at once (worker threads); default 1. */
  readonly concurrency?: number;
  /** Free the model (and stop worker threads, which would keep the process alive). */
  dispose?(): void | Promise<void>;
}

/** What the command line may set about how the model runs. */
export interface PredictorLoadOptions {
  /** "int8": a quantized base (onnx engine); default `ESMKIT_QUANTIZE`, then "none". */
  quantize?: "none" | "int8";
}

export type PredictorLoader = (dir: string, options?: PredictorLoadOptions) => Promise<Predictor>;

/** The loader set by the package's entry points (the ESM-2 one, src/register-defaults.ts). */
let defaultLoader: PredictorLoader | undefined;
/** A loader set by the caller (a fake in tests), in place of the default. */
let loader: PredictorLoader | undefined;

/** Set the loader used when none is set with `setPredictorLoader`. */
export function setDefaultPredictorLoader(fn: PredictorLoader): void {
  defaultLoader = fn;
}

/**
 * Register how `--model DIR` becomes a Predictor (a fake in tests); `undefined`
 * restores the default, the ESM-2 loader.
 */
export function setPredictorLoader(fn: PredictorLoader | undefined): void {
  loader = fn;
}

/** Load the predictor for a model directory with the registered loader. */
export async function loadPredictor(
  dir: string,
  options?: PredictorLoadOptions,
): Promise<Predictor> {
  const use = loader ?? defaultLoader;
  if (!use) {
    throw new ConfigError(
      'No predictor loader is registered: load esmkit through its entry point (require("esmkit") or the esmkit command), or call setPredictorLoader',
      {},
    );
  }
  return options === undefined ? use(dir) : use(dir, options);
}
