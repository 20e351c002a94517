/**
 * The tfjs engine: the TensorFlow.js model (src/model/esm2.ts) computes, on whichever
 * tfjs backend is active. Gradients come from tfjs autodiff through the model's pieces,
 * with the hand-written backward passes of src/model/fast-grad.ts for the dense layers
 * and attention; the loss is engine/loss.ts's.
 *
 * Loss and gradients of one micro-batch, plain or with gradient checkpointing.
 * Checkpointing (each encoder layer is a unit, as HF does): the forward pass runs with
 * no tape and keeps only each layer's input; the backward pass then goes layer by layer
 * from the top, recomputing that layer under the tape and pulling the upstream gradient
 * through it with `engine.gradients(f, [input, ...vars], dy)`. Peak memory holds one
 * layer's activations instead of all of them; the maths is unchanged, including the
 * dropout masks, which are replayed from the saved random state.
 */
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors";
import type { AdaptableModel } from "../lora/lora";
import { EMBEDDING, layerPrefix } from "../model/architecture";
import type { SeededRandom } from "../util/random";
import {
  checkTokenBatch,
  type EsmEngine,
  type MicroBatch,
  requireCapabilities,
  type StepOptions,
  type StepResult,
  type TokenBatch,
} from "./engine";
import { bceWithLogits, crossEntropy, mseLoss } from "./loss";
import { DEFAULT_TASK } from "./task";

/** What the tfjs engine needs from a sequence-classification model (an Esm2Model). */
export interface ClassifierModel extends AdaptableModel {
  readonly config: { readonly numHiddenLayers: number; readonly vocabSize: number };
  /** `[B, L]` ids and mask -> `[B, L, H]` */
  embed(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D): tf.Tensor3D;
  /** `[B, L]` 0/1 mask -> additive mask `[B, 1, 1, L]`. */
  additiveMask(attentionMask: tf.Tensor2D): tf.Tensor4D;
  layer(index: number, hidden: tf.Tensor3D, additiveMask: tf.Tensor4D): tf.Tensor3D;
  finalNorm(hidden: tf.Tensor3D): tf.Tensor3D;
  /** `[B, L, H]` -> logits `[B, numLabels]` (from position 0). */
  classify(hidden: tf.Tensor3D): tf.Tensor2D;
}

/** The tfjs engine on `model` (whose LoRA adapters, if any, are hooked into its Linears). */
export class TfjsEngine implements EsmEngine {
  readonly name = "tfjs";

  constructor(readonly model: ClassifierModel) {}

  logits(batch: TokenBatch): Float32Array {
    return this.run(batch, (ids, mask) => forwardLogits(this.model, ids, mask));
  }

  lastHiddenState(batch: TokenBatch): Float32Array {
    return this.run(batch, (ids, mask) => forwardHidden(this.model, ids, mask));
  }

  lossAndGradients(
    params: Map<string, tf.Variable>,
    batch: MicroBatch,
    options: StepOptions = {},
  ): StepResult {
    requireCapabilities(this.name, { task: options.task ?? DEFAULT_TASK });
    return lossAndGradients(this.model, params, batch, options);
  }

  /** Nothing to free: the model owns every tensor. */
  dispose(): void {}

  private run(
    batch: TokenBatch,
    f: (ids: tf.Tensor2D, mask: tf.Tensor2D) => tf.Tensor,
  ): Float32Array {
    checkTokenBatch(batch, this.model.config.vocabSize);
    const shape: [number, number] = [batch.batchSize, batch.seqLen];
    const out = tf.tidy(() =>
      f(
        tf.tensor2d(Array.from(batch.inputIds), shape, "int32"),
        tf.tensor2d(Array.from(batch.attentionMask), shape, "int32"),
      ),
    );
    const data = out.dataSync() as Float32Array;
    out.dispose();
    return data;
  }
}

/** Embeddings, every layer and the final LayerNorm: the last hidden state `[B, L, H]`. */
export function forwardHidden(
  model: ClassifierModel,
  inputIds: tf.Tensor2D,
  attentionMask: tf.Tensor2D,
): tf.Tensor3D {
  return tf.tidy(() => {
    const mask = model.additiveMask(attentionMask);
    let h = model.embed(inputIds, attentionMask);
    for (let i = 0; i < model.config.numHiddenLayers; i++) h = model.layer(i, h, mask);
    return model.finalNorm(h);
  });
}

/** Full forward to logits `[B, numLabels]`. */
export function forwardLogits(
  model: ClassifierModel,
  inputIds: tf.Tensor2D,
  attentionMask: tf.Tensor2D,
): tf.Tensor2D {
  return tf.tidy(() => model.classify(forwardHidden(model, inputIds, attentionMask)));
}

export function lossAndGradients(
  model: ClassifierModel,
  params: Map<string, tf.Variable>,
  batch: MicroBatch,
  options: StepOptions = {},
): StepResult {
  const scale = options.lossScale ?? 1;
  const lossOf = (logits: tf.Tensor2D) =>
    tf.mul(taskLoss(logits, batch, options), scale) as tf.Scalar;
  return options.gradientCheckpointing
    ? checkpointed(model, params, batch, lossOf, scale, options.dropoutRng)
    : plain(model, params, batch, lossOf, scale);
}

/** The loss of the task, as EsmForSequenceClassification computes it (src/train/loss.ts). */
export function taskLoss(logits: tf.Tensor2D, batch: MicroBatch, options: StepOptions): tf.Scalar {
  const problemType = options.task ?? DEFAULT_TASK;
  if (problemType === "single_label_classification") {
    const weight = options.classWeights;
    return crossEntropy(logits, batch.labels, weight ? { weight } : {});
  }
  if (!batch.targets) {
    throw new ConfigError(`A ${problemType} step needs label vectors (batch.targets)`, {
      problemType,
    });
  }
  if (problemType === "multi_label_classification") {
    return bceWithLogits(
      logits,
      batch.targets,
      options.posWeight ? { posWeight: options.posWeight } : {},
    );
  }
  return mseLoss(logits, batch.targets);
}

function plain(
  model: ClassifierModel,
  params: Map<string, tf.Variable>,
  batch: MicroBatch,
  lossOf: (logits: tf.Tensor2D) => tf.Scalar,
  scale: number,
): StepResult {
  const names = [...params.keys()];
  const vars = names.map((n) => params.get(n)!);
  const { value, grads } = tf
    .engine()
    .gradients(
      () => lossOf(forwardLogits(model, batch.inputIds, batch.attentionMask)),
      vars,
      undefined,
      true,
    );
  const out = new Map<string, tf.Tensor>();
  names.forEach((n, i) => {
    if (grads[i]) out.set(n, grads[i]!);
  });
  const loss = value.dataSync()[0]! / scale;
  value.dispose();
  return { loss, grads: out };
}

function checkpointed(
  model: ClassifierModel,
  params: Map<string, tf.Variable>,
  batch: MicroBatch,
  lossOf: (logits: tf.Tensor2D) => tf.Scalar,
  scale: number,
  rng: SeededRandom | undefined,
): StepResult {
  const L = model.config.numHiddenLayers;
  const groups: { names: string[]; vars: tf.Variable[] }[] = Array.from({ length: L + 2 }, () => ({
    names: [],
    vars: [],
  }));
  // Group parameters: 0 = embeddings, 1..L = encoder layers, L+1 = everything above.
  for (const [name, v] of params) {
    let g = L + 1;
    if (name === EMBEDDING) g = 0;
    else {
      for (let i = 0; i < L; i++) {
        if (name.startsWith(layerPrefix(i))) {
          g = i + 1;
          break;
        }
      }
    }
    groups[g]!.names.push(name);
    groups[g]!.vars.push(v);
  }
  const out = new Map<string, tf.Tensor>();
  const collect = (names: string[], grads: (tf.Tensor | undefined)[]) => {
    names.forEach((n, i) => {
      const g = grads[i];
      if (g) out.set(n, g);
    });
  };

  const mask = model.additiveMask(batch.attentionMask);
  // Forward with no tape, keeping each layer's input and the random state before it.
  const inputs: tf.Tensor3D[] = [tf.tidy(() => model.embed(batch.inputIds, batch.attentionMask))];
  const rngStates: number[] = [];
  for (let i = 0; i < L; i++) {
    rngStates.push(rng?.getState() ?? 0);
    const h = inputs[i]!;
    inputs.push(tf.tidy(() => model.layer(i, h, mask)));
  }
  const rngAfter = rng?.getState();

  // Head: loss, its gradient w.r.t. the last hidden state and the head parameters.
  const top = inputs[L]!;
  const head = groups[L + 1]!;
  const headResult = tf
    .engine()
    .gradients(
      () => lossOf(model.classify(model.finalNorm(top))),
      [top, ...head.vars],
      undefined,
      true,
    );
  const loss = headResult.value.dataSync()[0]! / scale;
  headResult.value.dispose();
  let dy = headResult.grads[0]! as tf.Tensor3D;
  collect(head.names, headResult.grads.slice(1));

  for (let i = L - 1; i >= 0; i--) {
    if (rng) rng.setState(rngStates[i]!);
    const h = inputs[i]!;
    const group = groups[i + 1]!;
    const r = tf.engine().gradients(() => model.layer(i, h, mask), [h, ...group.vars], dy, true);
    r.value.dispose();
    dy.dispose();
    inputs[i + 1]!.dispose();
    dy = r.grads[0]! as tf.Tensor3D;
    collect(group.names, r.grads.slice(1));
  }
  if (rng && rngAfter !== undefined) rng.setState(rngAfter);

  const emb = groups[0]!;
  if (emb.vars.length > 0) {
    const r = tf
      .engine()
      .gradients(() => model.embed(batch.inputIds, batch.attentionMask), emb.vars, dy, true);
    r.value.dispose();
    collect(emb.names, r.grads);
  }
  dy.dispose();
  inputs[0]!.dispose();
  mask.dispose();
  return { loss, grads: out };
}
