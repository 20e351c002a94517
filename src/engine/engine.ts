/**
 * What an engine is: the part that turns the model's weights and a token batch into
 * logits, hidden states, or a loss and its gradients. Two implement `EsmEngine`:
 *
 * - "tfjs" (tfjs-engine.ts): the TensorFlow.js model itself (src/model/esm2.ts), its
 *   gradients by tfjs autodiff and the hand-written ones of src/model/fast-grad.ts, on
 *   whichever tfjs backend is active (native with @tensorflow/tfjs-node(-gpu));
 * - "onnx" (src/onnx/engine.ts): ONNX graphs of the same maths, forward and backward
 *   written by hand, run by onnxruntime's native CPU kernels.
 *
 * The trainer, evaluation and the predictor talk to this interface only; which engine
 * runs is decided once (src/onnx/select.ts). Both read the weights from the model's
 * tf.Variables, which stay the one owner of every weight (the optimizer updates them,
 * checkpoints and saving read them).
 *
 * What an engine can do is declared in ENGINE_CAPABILITIES, one table for both, and
 * checked with `requireCapabilities` before work starts: a feature one engine lacks is
 * refused with a ConfigError that names the engine and the one that has it.
 */
import type * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors";
import type { SeededRandom } from "../util/random";
import { TASKS, type TaskName } from "./task";

export const ENGINE_CHOICES = ["auto", "onnx", "tfjs"] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];
export type EngineName = Exclude<EngineChoice, "auto">;

/** Inputs of one batch as plain arrays. */
export interface TokenBatch {
  /** `[B * L]` row-major token ids. */
  inputIds: ArrayLike<number>;
  /** `[B * L]` 0/1. */
  attentionMask: ArrayLike<number>;
  batchSize: number;
  seqLen: number;
}

/** One micro-batch of a training step, as tensors. */
export interface MicroBatch {
  /** `[B, L]` int32 */
  inputIds: tf.Tensor2D;
  /** `[B, L]` int32 or float32 0/1 */
  attentionMask: tf.Tensor2D;
  /** `[B]` int32 class ids (single-label). */
  labels: tf.Tensor1D;
  /** `[B, numLabels]` float32 label vectors (multi-label 0/1, regression targets). */
  targets?: tf.Tensor2D;
}

export interface StepOptions {
  /** The task whose loss is computed (task.ts); default DEFAULT_TASK. An engine without it refuses. */
  task?: TaskName;
  /** Single-label: per-class loss weights (torch's CrossEntropyLoss(weight=...)). */
  classWeights?: number[];
  /** Multi-label: per-label positive weights (torch's BCEWithLogitsLoss(pos_weight=...)). */
  posWeight?: number[];
  /** Multiplies the loss (1 / gradient accumulation steps). */
  lossScale?: number;
  gradientCheckpointing?: boolean;
  /** The random stream behind dropout masks; replayed when recomputing a layer. */
  dropoutRng?: SeededRandom;
}

export interface StepResult {
  /** The unscaled loss of this micro-batch. */
  loss: number;
  /** Gradients of the SCALED loss, by parameter name; the caller disposes them. */
  grads: Map<string, tf.Tensor>;
}

/** ESM-2's maths on the model's weights (see the file comment). */
export interface EsmEngine {
  readonly name: EngineName;
  /** Classification logits `[B * numLabels]`, row-major; no gradients. */
  logits(batch: TokenBatch): Float32Array;
  /** The last hidden state (after the final LayerNorm) `[B * L * H]`, row-major. */
  lastHiddenState(batch: TokenBatch): Float32Array;
  /**
   * Loss and gradients of one micro-batch, for every tensor in `params` (the model's
   * variables and LoRA's, by name): the gradients of the scaled loss.
   */
  lossAndGradients(
    params: Map<string, tf.Variable>,
    batch: MicroBatch,
    options: StepOptions,
  ): StepResult;
  dispose(): void;
}

/** What an engine can do beyond the forward pass and the default task's step. */
export interface EngineCapabilities {
  /** Tasks whose loss it computes (src/engine/task.ts). */
  readonly tasks: readonly TaskName[];
  /** Computes gradients for the word embeddings (full fine-tuning). */
  readonly trainsEmbeddings: boolean;
  /** Runs a frozen base whose Linear weights are int8 (issue 13). */
  readonly int8Base: boolean;
}

const ALL_TASKS = Object.keys(TASKS) as TaskName[];

/**
 * Both engines' capabilities, side by side. A feature lands in one engine first: set it
 * here, and the other refuses it clearly (`requireCapabilities`) until it has it too.
 */
export const ENGINE_CAPABILITIES: Readonly<Record<EngineName, EngineCapabilities>> = {
  tfjs: { tasks: ALL_TASKS, trainsEmbeddings: true, int8Base: false },
  onnx: { tasks: ALL_TASKS, trainsEmbeddings: false, int8Base: false },
};

/** What a run asks of its engine. */
export interface EngineNeeds {
  task?: TaskName;
  trainsEmbeddings?: boolean;
  int8Base?: boolean;
}

interface Need {
  /** The words of an error message: "... does not <what>". */
  what: string;
  has: (c: EngineCapabilities) => boolean;
  /** The need's field in EngineNeeds. */
  key: keyof EngineNeeds;
}

function describeNeeds(needs: EngineNeeds): Need[] {
  const out: Need[] = [];
  if (needs.task !== undefined) {
    const task = needs.task;
    const spec = (TASKS as Record<string, { loss: string }>)[task];
    if (!spec) {
      throw new ConfigError(
        `Unknown task ${JSON.stringify(task)}; expected one of: ${Object.keys(TASKS).join(", ")}`,
        { task },
      );
    }
    out.push({
      what: `train the task ${task} (${spec.loss})`,
      has: (c) => c.tasks.includes(task),
      key: "task",
    });
  }
  if (needs.trainsEmbeddings) {
    const what = "train the word embeddings";
    out.push({ what, has: (c) => c.trainsEmbeddings, key: "trainsEmbeddings" });
  }
  if (needs.int8Base)
    out.push({ what: "run an int8 base", has: (c) => c.int8Base, key: "int8Base" });
  return out;
}

/**
 * Refuse what engine `name` cannot do: a ConfigError naming the engine, the need and the
 * engine that can (or that none can yet). `context` is added to the error's context.
 */
export function requireCapabilities(
  name: EngineName,
  needs: EngineNeeds,
  context: Record<string, unknown> = {},
): void {
  for (const need of describeNeeds(needs)) {
    if (need.has(ENGINE_CAPABILITIES[name])) continue;
    const others = (Object.keys(ENGINE_CAPABILITIES) as EngineName[]).filter(
      (e) => e !== name && need.has(ENGINE_CAPABILITIES[e]),
    );
    const alternative =
      others.length > 0
        ? `use the ${others.join(" or ")} engine (--engine ${others[0]}, ESMKIT_ENGINE=${others[0]})`
        : "no engine does yet";
    throw new ConfigError(`The ${name} engine does not ${need.what}; ${alternative}`, {
      engine: name,
      need: need.key,
      alternatives: others,
      ...context,
    });
  }
}

/** Throws a ConfigError when the batch's arrays do not fit its sizes or hold a non-token. */
export function checkTokenBatch(batch: TokenBatch, vocabSize: number): void {
  const { batchSize: B, seqLen: L } = batch;
  if (batch.inputIds.length !== B * L || batch.attentionMask.length !== B * L) {
    throw new ConfigError(
      `A batch of ${B} x ${L} needs ${B * L} ids and mask values; got ${batch.inputIds.length} and ${batch.attentionMask.length}`,
      { batchSize: B, seqLen: L },
    );
  }
  for (let i = 0; i < B * L; i++) {
    const id = batch.inputIds[i]!;
    if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) {
      throw new ConfigError(
        `Token id ${id} at [${Math.floor(i / L)}, ${i % L}] is not in [0, ${vocabSize})`,
        { id },
      );
    }
  }
}
