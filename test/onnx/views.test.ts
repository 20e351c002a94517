/**
 * The onnx engine reads a TensorFlow.js model's weights in place on the wasm backend
 * (src/onnx/weights.ts `view`): onnxruntime gets Float32Arrays over the WebAssembly
 * memory instead of copies. These tests check that the views are views (no copy), that
 * other backends fall back to copies, and that the engine never computes with a stale
 * view: after a weight is reassigned, after LoRA adapters are merged, after an adapter is
 * loaded, and after the WebAssembly memory grew (which replaces its buffer), its results
 * equal the tfjs engine's on the weights as they are then.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { TfjsEngine } from "../../src/engine/tfjs-engine";
import { applyLora } from "../../src/lora/lora";
import type { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { OnnxEsmEngine } from "../../src/onnx/engine";
import { modelWeights, wasmView } from "../../src/onnx/weights";
import {
  assertStepClose,
  diff,
  disposeBatch,
  disposeResult,
  FORWARD_TOLERANCE,
  GRAD_TOLERANCE,
  MODEL_FIX,
  makeRows,
  microBatch,
  tokenBatch,
} from "./helpers";

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

const QUERY = "esm.encoder.layer.0.attention.self.query.weight";

async function tiny(): Promise<Esm2Model> {
  return fromPretrained(path.join(MODEL_FIX, "tiny"), { onWarning: () => undefined, seed: 3 });
}

/** The wasm backend's memory now (its buffer is replaced when the memory grows). */
function wasmBuffer(): ArrayBuffer {
  return (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8
    .buffer as ArrayBuffer;
}

/** Allocates on the wasm heap until its memory has grown; returns what to dispose. */
function growWasmMemory(): tf.Tensor[] {
  const before = wasmBuffer();
  const held: tf.Tensor[] = [];
  while (wasmBuffer() === before) held.push(tf.zeros([4 * 2 ** 20])); // 16 MiB each
  assert.ok(wasmBuffer().byteLength > before.byteLength, "the memory grew");
  return held;
}

/** `x` changed by a relative 10 % (a change far above every tolerance here). */
function bump(v: tf.Variable): void {
  tf.tidy(() => v.assign(tf.mul(v, 1.1)));
}

test("on the wasm backend the model's weights reach the engine as views of its memory, not copies", async () => {
  const model = await tiny();
  const w = modelWeights(model);
  let n = 0;
  for (const [key, v] of model.namedVariables()) {
    const view = w.view!(key);
    assert.ok(view, `${key}: a view`);
    assert.equal(view.buffer, wasmBuffer(), `${key}: over the WebAssembly memory`);
    assert.equal(diff(view, w.read(key)).abs, 0, `${key}: the variable's values`);
    assert.equal(view.length, v.size);
    n++;
  }
  assert.ok(n > 10);
  // Writing through the view writes the variable's own data: it is not a copy.
  const view = w.view!(QUERY)!;
  const old = view[0]!;
  view[0] = old + 1;
  assert.equal(model.namedVariables().get(QUERY)!.dataSync()[0], old + 1);
  view[0] = old;
  // The engine takes every weight it feeds through a view and copies none.
  const engine = new OnnxEsmEngine(model);
  const viewed = new Set<string>();
  const weights = engine.weights as { view?: (key: string) => Float32Array | undefined };
  const original = weights.view!;
  weights.view = (key) => {
    viewed.add(key);
    return original(key);
  };
  (engine.weights as { read: (key: string) => Float32Array }).read = (key) => {
    throw new Error(`copied ${key}`);
  };
  const logits = engine.logits(tokenBatch(makeRows([9, 5], 9, [0, 1], 3)));
  assert.equal(logits.length, 2 * model.config.numLabels);
  assert.ok(viewed.has(QUERY) && viewed.size > 10, `${viewed.size} weights viewed`);
  engine.dispose();
  model.dispose();
});

test("tensors whose data is not in the wasm memory get no view (the engine copies them)", async () => {
  await ensureBackend({ backend: "cpu" });
  try {
    const onCpu = tf.tensor1d([1, 2, 3]);
    assert.equal(wasmView(onCpu), undefined, "data on the cpu backend");
    onCpu.dispose();
  } finally {
    await ensureBackend({ backend: "wasm" });
  }
  const ints = tf.tensor1d([1, 2, 3], "int32");
  assert.equal(wasmView(ints), undefined, "int32");
  const disposed = tf.tensor1d([1, 2, 3]);
  disposed.dispose();
  assert.equal(wasmView(disposed), undefined, "disposed");
  ints.dispose();
});

test("no stale view: after a reassigned weight and a grown memory the engine computes with the new values", async () => {
  const model = await tiny();
  const rows = makeRows([9, 5, 12], 12, [0, 1, 0], 3);
  const batch = tokenBatch(rows);
  const engine = new OnnxEsmEngine(model);
  const reference = new TfjsEngine(model);
  const first = engine.logits(batch);
  assert.ok(diff(first, reference.logits(batch)).abs <= FORWARD_TOLERANCE);
  // A frozen weight changes, then the memory grows: both the data's place and the buffer
  // that held it are gone.
  for (const key of [QUERY, "esm.embeddings.word_embeddings.weight", "classifier.dense.weight"]) {
    bump(model.namedVariables().get(key)!);
  }
  const held = growWasmMemory();
  const second = engine.logits(batch);
  const want = reference.logits(batch);
  assert.ok(diff(first, want).abs > 100 * FORWARD_TOLERANCE, "the change shows in the logits");
  const d = diff(second, want);
  assert.ok(d.abs <= FORWARD_TOLERANCE, `after the change: max |diff| ${d.abs} vs tfjs`);
  tf.dispose(held);
  engine.dispose();
  model.dispose();
});

test("no stale view across LoRA merge, a loaded adapter and a checkpointed step after memory growth", async () => {
  const model = await tiny();
  const lora = applyLora(model, { rank: 4, dropout: 0 }, 11);
  const rows = makeRows([9, 5, 12], 12, [0, 1, 0], 5);
  const batch = tokenBatch(rows);
  const engine = new OnnxEsmEngine(model, { lora });
  const reference = new TfjsEngine(model);
  // Give every B values (a freshly applied adapter is the identity), as loading one would.
  for (const a of lora.adapters.values()) {
    tf.tidy(() => a.bT.assign(tf.randomUniform(a.bT.shape, -0.5, 0.5, "float32", 9)));
  }
  const unmerged = engine.logits(batch);
  assert.ok(diff(unmerged, reference.logits(batch)).abs <= FORWARD_TOLERANCE);
  lora.merge();
  let held = growWasmMemory();
  const merged = engine.logits(batch);
  let d = diff(merged, reference.logits(batch));
  assert.ok(d.abs <= FORWARD_TOLERANCE, `merged: max |diff| ${d.abs} vs tfjs`);
  lora.unmerge();
  tf.dispose(held);
  // A new adapter's values (what loadAdapter assigns), then memory growth, then a step.
  const before = engine.logits(batch);
  for (const a of lora.adapters.values()) {
    tf.tidy(() => a.aT.assign(tf.randomUniform(a.aT.shape, -0.5, 0.5, "float32", 13)));
  }
  held = growWasmMemory();
  const after = engine.logits(batch);
  const want = reference.logits(batch);
  assert.ok(diff(before, want).abs > 100 * FORWARD_TOLERANCE, "the new adapter shows");
  d = diff(after, want);
  assert.ok(d.abs <= FORWARD_TOLERANCE, `new adapter: max |diff| ${d.abs} vs tfjs`);
  const params = lora.trainableVariables();
  const mb = microBatch(rows);
  const got = engine.lossAndGradients(params, mb, { gradientCheckpointing: true });
  const ref = reference.lossAndGradients(params, mb, { gradientCheckpointing: true });
  assertStepClose(got, ref, GRAD_TOLERANCE, "checkpointed step after the new adapter");
  disposeResult(got);
  disposeResult(ref);
  disposeBatch(mb);
  tf.dispose(held);
  engine.dispose();
  lora.dispose();
  model.dispose();
});
