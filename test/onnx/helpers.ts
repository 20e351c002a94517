/**
 * Shared fixtures, row builders and comparison helpers for the onnx engine tests
 * (forward.test.ts, gradients.test.ts, hygiene.test.ts). No tests here.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import type { MicroBatch, StepResult, TokenBatch } from "../../src/engine/engine";
import { applyLora, type LoraModel } from "../../src/lora/lora";
import { classificationLinears } from "../../src/model/architecture";
import type { EsmConfig } from "../../src/model/config";
import type { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { EsmGraph } from "../../src/onnx/esm-graph";
import { SeededRandom } from "../../src/util/random";
import { REPO_ROOT } from "../helpers/python";

export const MODEL_FIX = path.join(REPO_ROOT, "test", "fixtures", "model");
export const LORA_FIX = path.join(REPO_ROOT, "test", "fixtures", "lora");
export const TRAIN_FIX = path.join(REPO_ROOT, "test", "fixtures", "train");
/** The tfjs parity test's tolerance against transformers (max abs diff). */
export const FORWARD_TOLERANCE = 1e-4;
/** Engine vs tfjs: max |diff| / max |reference| per tensor. */
export const GRAD_TOLERANCE = 1e-4;
export const MASK_ID = 32;
export const EMBEDDING = "esm.embeddings.word_embeddings.weight";

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

export interface Diff {
  /** max |got - want| (NaN if any element is NaN) */
  abs: number;
  /** max |want| */
  ref: number;
  rel: number;
}

export function diff(got: ArrayLike<number>, want: ArrayLike<number>): Diff {
  assert.equal(got.length, want.length, "element count");
  let abs = 0;
  let ref = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (Number.isNaN(d) || d > abs) abs = d;
    ref = Math.max(ref, Math.abs(want[i]!));
  }
  return { abs, ref, rel: abs / ref };
}

export interface Rows {
  ids: number[][];
  mask: number[][];
  labels: number[];
}

/**
 * Rows of `<cls> residues <eos>` padded to `L`; `lengths` count every real token. A
 * `<mask>` replaces the residue at each position listed in `masks[row]`.
 */
export function makeRows(
  lengths: number[],
  L: number,
  labels: number[],
  seed: number,
  masks: number[][] = [],
): Rows {
  const rng = new SeededRandom(seed);
  const ids = lengths.map((n, r) =>
    Array.from({ length: L }, (_, l) => {
      if (l >= n) return 1;
      if (l === 0) return 0;
      if (l === n - 1) return 2;
      return masks[r]?.includes(l) ? MASK_ID : 4 + rng.int(20);
    }),
  );
  const mask = lengths.map((n) => Array.from({ length: L }, (_, l) => (l < n ? 1 : 0)));
  return { ids, mask, labels };
}

export function tokenBatch(r: { ids: number[][]; mask: number[][] }): TokenBatch {
  return {
    inputIds: r.ids.flat(),
    attentionMask: r.mask.flat(),
    batchSize: r.ids.length,
    seqLen: r.ids[0]!.length,
  };
}

export function microBatch(r: Rows): MicroBatch {
  return {
    inputIds: tf.tensor2d(r.ids, undefined, "int32"),
    attentionMask: tf.tensor2d(r.mask, undefined, "int32"),
    labels: tf.tensor1d(r.labels, "int32"),
  };
}

export function disposeBatch(b: MicroBatch): void {
  tf.dispose([b.inputIds, b.attentionMask, b.labels]);
}

export function disposeResult(r: StepResult): void {
  tf.dispose([...r.grads.values()]);
}

/**
 * Loss and every gradient of `got` against `want` (same key set, relative tolerance);
 * returns the worst relative difference and logs it with the worst tensor.
 */
export function assertStepClose(
  got: StepResult,
  want: StepResult,
  tol: number,
  what: string,
): number {
  assert.deepEqual([...got.grads.keys()].sort(), [...want.grads.keys()].sort(), `${what}: keys`);
  assert.ok(want.grads.size > 0, `${what}: no gradients`);
  const lossRel = Math.abs(got.loss - want.loss) / Math.abs(want.loss);
  assert.ok(lossRel <= tol, `${what}: loss ${got.loss} vs ${want.loss} (rel ${lossRel})`);
  let worst = { key: "", d: { abs: 0, ref: 0, rel: -1 } as Diff };
  for (const [k, g] of want.grads) {
    const o = got.grads.get(k)!;
    assert.deepEqual(o.shape, g.shape, `${what}: ${k} shape`);
    const d = diff(o.dataSync(), g.dataSync());
    assert.ok(d.ref > 0, `${what}: reference gradient of ${k} is all zero (a vacuous check)`);
    assert.ok(
      d.rel <= tol,
      `${what}: ${k} max |diff| ${d.abs.toExponential(2)} / max |ref| ${d.ref.toExponential(2)} = ${d.rel.toExponential(2)} > ${tol}`,
    );
    if (!(d.rel <= worst.d.rel)) worst = { key: k, d };
  }
  console.log(
    `${what}: loss rel ${lossRel.toExponential(2)}; ${want.grads.size} gradients, worst ${worst.key} rel ${worst.d.rel.toExponential(2)} (abs ${worst.d.abs.toExponential(2)})`,
  );
  return Math.max(lossRel, worst.d.rel);
}

/** LoRA B starts at zero, which makes every A gradient zero: give B random values. */
export function randomiseLoraB(lora: LoraModel, seed: number): void {
  const rng = new SeededRandom(seed);
  for (const a of lora.adapters.values()) {
    const data = Float32Array.from({ length: a.bT.size }, () => rng.normal() * 0.2);
    const t = tf.tensor(data, a.bT.shape);
    a.bT.assign(t);
    t.dispose();
  }
}

/** Full fine-tuning as the trainer does it with the onnx engine: embeddings frozen. */
export function fullParams(model: Esm2Model): Map<string, tf.Variable> {
  const emb = model.namedVariables().get(EMBEDDING)!;
  (emb as { trainable: boolean }).trainable = false;
  const out = new Map<string, tf.Variable>();
  for (const [k, v] of model.namedVariables()) if (v.trainable) out.set(k, v);
  return out;
}

export const loadTiny = () =>
  fromPretrained(path.join(MODEL_FIX, "tiny"), { onWarning: (m) => assert.fail(m) });

// ---- gradient rows ------------------------------------------------------------------------

export const CLASS_WEIGHTS = [0.7, 1.8];
/** Different lengths, padding, <mask> tokens; labels of both classes. */
export const gradRows = () => makeRows([11, 6, 9], 11, [1, 0, 1], 21, [[4], [], [2, 6]]);

/**
 * The op types of encoder layer 0 as an inference graph builds it (`layerForward`),
 * every module frozen; `int8`: the encoder Linears int8 on DynamicQuantizeMatMul.
 */
export function layerOps(config: EsmConfig, options: { fused: boolean; int8?: boolean }): string[] {
  const int8 = options.int8 ?? false;
  const modules = new Map(
    classificationLinears(config).map((m) => [
      m.name,
      {
        hasBias: m.bias,
        trainable: false,
        lora: null,
        int8: int8 && !m.name.startsWith("classifier"),
      },
    ]),
  );
  const eg = new EsmGraph("probe", {
    config,
    modules,
    trainableNorms: new Set<string>(),
    fused: options.fused,
    ...(int8 ? { int8Kernel: "DynamicQuantizeMatMul" as const } : {}),
  });
  eg.layerForward(0, "h");
  return eg.g.modelDef().nodes.map((n) => n.op);
}

/** LoRA r 4 (alpha 8, no dropout) on `targets`, with random B so that every gradient is non-zero. */
export function randomLora(model: Esm2Model, targets: string[] = ["query", "value"]): LoraModel {
  const lora = applyLora(model, { rank: 4, alpha: 8, dropout: 0, targetModules: targets });
  randomiseLoraB(lora, 2);
  return lora;
}
