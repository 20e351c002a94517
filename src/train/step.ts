/**
 * Loss and gradients of one micro-batch, plain or with gradient checkpointing.
 *
 * Checkpointing (each encoder layer is a unit, as HF does): the forward pass runs with
 * no tape and keeps only each layer's input; the backward pass then goes layer by layer
 * from the top, recomputing that layer under the tape and pulling the upstream gradient
 * through it with `engine.gradients(f, [input, ...vars], dy)`. Peak memory holds one
 * layer's activations instead of all of them; the maths is unchanged, including the
 * dropout masks, which are replayed from the saved random state.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { MicroBatch, StepOptions, StepResult } from "../engine/engine";
import type { AdaptableModel } from "../lora/lora";
import type { SeededRandom } from "../util/random";
import { crossEntropy } from "./loss";

/** What the trainer needs from a sequence-classification model. */
export interface ClassifierModel extends AdaptableModel {
  readonly config: { readonly numHiddenLayers: number };
  /** `[B, L]` ids and mask -> `[B, L, H]` */
  embed(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D): tf.Tensor3D;
  /** `[B, L]` 0/1 mask -> additive mask `[B, 1, 1, L]`. */
  additiveMask(attentionMask: tf.Tensor2D): tf.Tensor4D;
  layer(index: number, hidden: tf.Tensor3D, additiveMask: tf.Tensor4D): tf.Tensor3D;
  finalNorm(hidden: tf.Tensor3D): tf.Tensor3D;
  /** `[B, L, H]` -> logits `[B, numLabels]` (from position 0). */
  classify(hidden: tf.Tensor3D): tf.Tensor2D;
}

/** Full forward to logits. */
export function forwardLogits(model: ClassifierModel, batch: MicroBatch): tf.Tensor2D {
  return tf.tidy(() => {
    const mask = model.additiveMask(batch.attentionMask);
    let h = model.embed(batch.inputIds, batch.attentionMask);
    for (let i = 0; i < model.config.numHiddenLayers; i++) h = model.layer(i, h, mask);
    return model.classify(model.finalNorm(h));
  });
}

function layerPrefix(i: number): string {
  return `esm.encoder.layer.${i}.`;
}

const EMBEDDING_PREFIX = "esm.embeddings.";

export function lossAndGradients(
  model: ClassifierModel,
  params: Map<string, tf.Variable>,
  batch: MicroBatch,
  options: StepOptions = {},
): StepResult {
  const scale = options.lossScale ?? 1;
  const weight = options.classWeights;
  const lossOf = (logits: tf.Tensor2D) =>
    tf.mul(crossEntropy(logits, batch.labels, weight ? { weight } : {}), scale) as tf.Scalar;
  return options.gradientCheckpointing
    ? checkpointed(model, params, batch, lossOf, scale, options.dropoutRng)
    : plain(model, params, batch, lossOf, scale);
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
    .gradients(() => lossOf(forwardLogits(model, batch)), vars, undefined, true);
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
    if (name.startsWith(EMBEDDING_PREFIX)) g = 0;
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
