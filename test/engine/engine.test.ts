/**
 * The engine interface (src/engine/engine.ts): both engines answer it alike, and what one
 * engine lacks is refused from the one capability table, naming the engine that has it.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import {
  ENGINE_CAPABILITIES,
  type EngineCapabilities,
  type EngineName,
  type EngineNeeds,
  type EsmEngine,
  requireCapabilities,
} from "../../src/engine/engine";
import { DEFAULT_TASK, TASKS, type TaskName } from "../../src/engine/task";
import { TfjsEngine } from "../../src/engine/tfjs-engine";
import { ConfigError } from "../../src/errors";
import type { Esm2Model } from "../../src/model/esm2";
import { OnnxEsmEngine } from "../../src/onnx/engine";
import { createEngine } from "../../src/onnx/select";
import { diff, disposeBatch, gradRows, loadTiny, microBatch, tokenBatch } from "../onnx/helpers";

let model: Esm2Model;
let engines: EsmEngine[];

before(async () => {
  await ensureBackend({ backend: "wasm" });
  model = await loadTiny();
  engines = [new TfjsEngine(model), new OnnxEsmEngine(model, { threads: 1 })];
});

after(() => {
  for (const e of engines) e.dispose();
  model.dispose();
});

const ENGINES = Object.keys(ENGINE_CAPABILITIES) as EngineName[];
const NEEDS: [EngineNeeds, (c: EngineCapabilities) => boolean, RegExp][] = [
  ...(Object.keys(TASKS) as TaskName[]).map(
    (task): [EngineNeeds, (c: EngineCapabilities) => boolean, RegExp] => [
      { task },
      (c) => c.tasks.includes(task),
      /train the task/,
    ],
  ),
  [{ trainsEmbeddings: true }, (c) => c.trainsEmbeddings, /train the word embeddings/],
  [{ int8Base: true }, (c) => c.int8Base, /run an int8 base/],
];

test("an engine lacking a need is refused with a ConfigError naming it and the engine that has it", () => {
  let refusals = 0;
  for (const [needs, has, words] of NEEDS) {
    const able = ENGINES.filter((e) => has(ENGINE_CAPABILITIES[e]));
    for (const name of ENGINES) {
      if (able.includes(name)) {
        assert.doesNotThrow(() => requireCapabilities(name, needs), `${name} ${words}`);
        continue;
      }
      refusals++;
      assert.throws(
        () => requireCapabilities(name, needs),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, new RegExp(`^The ${name} engine does not `));
          assert.match(e.message, words);
          if (able.length > 0) assert.match(e.message, new RegExp(`--engine ${able[0]}`));
          else assert.match(e.message, /no engine does yet/);
          assert.equal(e.context.engine, name);
          assert.deepEqual(e.context.alternatives, able);
          return true;
        },
      );
    }
  }
  assert.ok(refusals > 0, "the table has at least one feature one engine lacks");
  // Today: the onnx engine's backward pass stops below the first layer.
  assert.throws(
    () => requireCapabilities("onnx", { trainsEmbeddings: true }),
    /The onnx engine does not train the word embeddings; use the tfjs engine \(--engine tfjs/,
  );
  assert.throws(
    () => requireCapabilities("tfjs", { task: "token_classification" as never }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message ===
        `Unknown task "token_classification"; expected one of: ${Object.keys(TASKS).join(", ")}`,
  );
});

test("createEngine checks the needs before it makes the engine, and makes the one named", () => {
  assert.throws(
    () => createEngine("onnx", model, { needs: { trainsEmbeddings: true } }),
    /The onnx engine does not train the word embeddings/,
  );
  const made = ENGINES.map((name) => createEngine(name, model, { needs: { task: DEFAULT_TASK } }));
  try {
    assert.deepEqual(
      made.map((e) => e.name),
      ENGINES,
    );
    assert.ok(made[ENGINES.indexOf("tfjs")] instanceof TfjsEngine);
    assert.ok(made[ENGINES.indexOf("onnx")] instanceof OnnxEsmEngine);
  } finally {
    for (const e of made) e.dispose();
  }
});

test("both engines give the same logits and last hidden state; the tfjs engine's are Esm2Model.forward's", () => {
  const rows = gradRows();
  const batch = tokenBatch(rows);
  const [B, L, H] = [rows.ids.length, rows.ids[0]!.length, model.config.hiddenSize];
  const ref = model.forward({ inputIds: rows.ids, attentionMask: rows.mask });
  const refLogits = ref.logits.dataSync();
  const refHidden = ref.lastHiddenState.dataSync();
  tf.dispose([ref.logits, ref.lastHiddenState]);
  for (const engine of engines) {
    const logits = engine.logits(batch);
    const hidden = engine.lastHiddenState(batch);
    assert.equal(logits.length, B * model.config.numLabels, engine.name);
    assert.equal(hidden.length, B * L * H, engine.name);
    const tol = engine.name === "tfjs" ? 0 : 1e-4;
    assert.ok(
      diff(logits, refLogits).rel <= tol,
      `${engine.name} logits ${diff(logits, refLogits).rel}`,
    );
    // Padding positions differ between engines (they are masked out): compare real tokens.
    const real = (a: ArrayLike<number>) =>
      Array.from(a).filter(
        (_, i) => rows.mask[Math.floor(i / (L * H))]![Math.floor(i / H) % L] === 1,
      );
    const d = diff(real(hidden), real(refHidden));
    assert.ok(d.rel <= tol, `${engine.name} hidden ${d.rel}`);
  }
});

test("both engines refuse a batch whose sizes do not fit, or a non-token, with the same error", () => {
  const ids = [0, 5, 6, 2, 0, 33, 2, 1];
  const mask = [1, 1, 1, 1, 1, 1, 1, 0];
  for (const engine of engines) {
    for (const call of [engine.logits.bind(engine), engine.lastHiddenState.bind(engine)]) {
      assert.throws(
        () => call({ inputIds: ids, attentionMask: mask, batchSize: 2, seqLen: 4 }),
        (e: unknown) =>
          e instanceof ConfigError &&
          /^Token id 33 at \[1, 1\] is not in \[0, 33\)$/.test(e.message),
        engine.name,
      );
      assert.throws(
        () => call({ inputIds: ids, attentionMask: mask, batchSize: 3, seqLen: 4 }),
        (e: unknown) =>
          e instanceof ConfigError && /^A batch of 3 x 4 needs 12 ids/.test(e.message),
        engine.name,
      );
    }
  }
});

test("lossAndGradients: both engines take the default task and refuse one they do not know", () => {
  const batch = microBatch(gradRows());
  const params = new Map([
    ["classifier.out_proj.bias", model.namedVariables().get("classifier.out_proj.bias")!],
  ]);
  try {
    for (const engine of engines) {
      const r = engine.lossAndGradients(params, batch, { task: DEFAULT_TASK });
      assert.ok(Number.isFinite(r.loss), engine.name);
      assert.deepEqual([...r.grads.keys()], ["classifier.out_proj.bias"]);
      tf.dispose([...r.grads.values()]);
      assert.throws(
        () => engine.lossAndGradients(params, batch, { task: "token_classification" as never }),
        /Unknown task "token_classification"/,
        engine.name,
      );
      // A task whose labels are vectors needs them: refused clearly without.
      assert.throws(
        () => engine.lossAndGradients(params, batch, { task: "regression" }),
        /regression|label vectors/,
        engine.name,
      );
    }
  } finally {
    disposeBatch(batch);
  }
});
