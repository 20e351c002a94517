/**
 * Engine forward parity: logits of the onnx engine (src/onnx) against the transformers
 * forward fixtures (test/fixtures/model), PEFT's LoRA logits (test/fixtures/lora) and
 * the tfjs model.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { loadAdapter } from "../../src/lora/adapter-io";
import { esm2Config } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { OnnxEsmEngine } from "../../src/onnx";
import { SeededRandom } from "../../src/util/random";
import {
  diff,
  FORWARD_TOLERANCE,
  GRAD_TOLERANCE,
  LORA_FIX,
  layerOps,
  MASK_ID,
  MODEL_FIX,
  makeRows,
  readJson,
  tokenBatch,
} from "./helpers";

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

// ---- 1. forward parity -------------------------------------------------------------------

for (const fixture of ["tiny", "odd"]) {
  test(`${fixture} fixture: engine logits match transformers (${FORWARD_TOLERANCE}) and the tfjs model`, async () => {
    const dir = path.join(MODEL_FIX, fixture);
    const inputs = readJson<{ input_ids: number[][]; attention_mask: number[][] }>(
      path.join(dir, "inputs.json"),
    );
    const want = readJson<{ logits: number[][] }>(path.join(dir, "expected.json"));
    assert.ok(
      inputs.input_ids.some((row) => row.includes(MASK_ID)) &&
        inputs.attention_mask.some((row) => row.includes(0)),
      "the fixture exercises <mask> and padding",
    );
    const model = await fromPretrained(dir, { onWarning: (m) => assert.fail(m) });
    const engine = new OnnxEsmEngine(model);
    const logits = engine.logits(
      tokenBatch({ ids: inputs.input_ids, mask: inputs.attention_mask }),
    );
    const vsHf = diff(logits, want.logits.flat());
    const ours = model.forward({
      inputIds: inputs.input_ids,
      attentionMask: inputs.attention_mask,
    });
    const vsTfjs = diff(logits, ours.logits.dataSync());
    tf.dispose([ours.lastHiddenState, ours.logits]);
    console.log(
      `${fixture}: engine logits max |diff| vs transformers ${vsHf.abs.toExponential(2)}, vs tfjs ${vsTfjs.abs.toExponential(2)}`,
    );
    assert.ok(vsHf.abs < FORWARD_TOLERANCE, `vs transformers: ${vsHf.abs}`);
    assert.ok(vsTfjs.abs < FORWARD_TOLERANCE, `vs tfjs: ${vsTfjs.abs}`);
    engine.dispose();
    model.dispose();
  });
}

test("PEFT fixture: engine logits with unmerged LoRA adapters match PEFT's (1e-4)", async () => {
  const model = await fromPretrained(path.join(LORA_FIX, "base"), { onWarning: () => undefined });
  const lora = loadAdapter(model, path.join(LORA_FIX, "adapter-initial"));
  const expected = readJson<{
    micro_batches: { input_ids: number[][]; attention_mask: number[][] }[];
    lora_logits: number[][];
  }>(path.join(LORA_FIX, "expected.json"));
  const mb = expected.micro_batches[0]!;
  const engine = new OnnxEsmEngine(model, { lora });
  const got = engine.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask }));
  const d = diff(got, expected.lora_logits.flat());
  // Without the adapters the logits must differ, or the check above proves nothing.
  const plain = new OnnxEsmEngine(model);
  const base = diff(plain.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask })), got);
  console.log(
    `PEFT LoRA logits: max |diff| ${d.abs.toExponential(2)} (adapters move them by ${base.abs.toExponential(2)})`,
  );
  assert.ok(d.abs < FORWARD_TOLERANCE, `max |diff| ${d.abs}`);
  assert.ok(base.abs > 100 * FORWARD_TOLERANCE, `adapters change logits by only ${base.abs}`);
  // Merged into the base weights (new values, no side path), then unmerged: same logits.
  for (const step of ["merge", "unmerge"] as const) {
    lora[step]();
    const again = engine.logits(tokenBatch({ ids: mb.input_ids, mask: mb.attention_mask }));
    const dm = diff(again, expected.lora_logits.flat()).abs;
    assert.ok(dm < FORWARD_TOLERANCE, `after ${step}: max |diff| ${dm}`);
  }
  engine.dispose();
  plain.dispose();
  lora.dispose();
  model.dispose();
});

test("8M architecture (2 layers): engine logits match tfjs with padding and <mask> (token dropout)", () => {
  const config = esm2Config("esm2_t6_8M_UR50D", { numHiddenLayers: 2, numLabels: 3 });
  const model = Esm2Model.random(config, { seed: 5 });
  // The classifier starts at std 0.02; larger weights make the logits worth comparing.
  const rng = new SeededRandom(9);
  for (const k of ["classifier.dense.weight", "classifier.out_proj.weight"]) {
    const v = model.namedVariables().get(k)!;
    const t = tf.tensor(
      Float32Array.from({ length: v.size }, () => rng.normal() * 0.3),
      v.shape,
    );
    v.assign(t);
    t.dispose();
  }
  const rows = makeRows([12, 7, 4], 12, [0, 1, 2], 3, [[3, 5], [2], []]);
  const engine = new OnnxEsmEngine(model, { threads: 2 });
  const got = engine.logits(tokenBatch(rows));
  const ref = model.forward({ inputIds: rows.ids, attentionMask: rows.mask });
  const d = diff(got, ref.logits.dataSync());
  // The same rows with residues where the <mask> tokens were: token dropout must matter.
  const unmasked = rows.ids.map((r) => r.map((id) => (id === MASK_ID ? 10 : id)));
  const other = engine.logits(tokenBatch({ ids: unmasked, mask: rows.mask }));
  const effect = diff(other, got);
  console.log(
    `8M x2 logits vs tfjs: max |diff| ${d.abs.toExponential(2)}, rel ${d.rel.toExponential(2)} (<mask> moves them by ${effect.abs.toExponential(2)})`,
  );
  assert.ok(
    d.rel < GRAD_TOLERANCE && d.abs < FORWARD_TOLERANCE,
    `max |diff| ${d.abs}, rel ${d.rel}`,
  );
  assert.ok(effect.abs > 100 * d.abs, `<mask> changes logits by only ${effect.abs}`);
  tf.dispose([ref.lastHiddenState, ref.logits]);
  engine.dispose();
  model.dispose();
});

test("inference graphs on onnxruntime's fused kernels (rotary, flash attention with the mask in an extra head dimension, Gelu) equal the standard-op graph on a padded batch", () => {
  const config = esm2Config("esm2_t6_8M_UR50D", { numHiddenLayers: 2, numLabels: 3 });
  const model = Esm2Model.random(config, { seed: 11 });
  // Rows of different lengths: padding keys must get no attention in either graph.
  const rows = makeRows([12, 7, 4, 9], 12, [0, 1, 2, 0], 3, [[3], [], [], [2, 6]]);
  const fused = new OnnxEsmEngine(model, { threads: 2 });
  const plain = new OnnxEsmEngine(model, { threads: 2, fused: false });
  try {
    // The fused graph really holds the fused kernels.
    const ops = new Set(layerOps(config, { fused: true }));
    for (const op of ["RotaryEmbedding", "MultiHeadAttention", "Gelu"]) assert.ok(ops.has(op), op);
    assert.ok(!ops.has("Softmax") && !ops.has("Erf"));
    const batch = tokenBatch(rows);
    const d = diff(fused.logits(batch), plain.logits(batch));
    const h = diff(fused.lastHiddenState(batch), plain.lastHiddenState(batch));
    const h1 = diff(fused.hiddenStates(batch, 1), plain.hiddenStates(batch, 1));
    console.log(
      `fused vs standard ops: logits ${d.abs.toExponential(2)}, last hidden ${h.abs.toExponential(2)}, layer 1 ${h1.abs.toExponential(2)}`,
    );
    assert.ok(d.abs < 1e-5 && h.abs < 1e-4 && h1.abs < 1e-4, JSON.stringify({ d, h, h1 }));
    // The padded rows' answers do not depend on the padding: each row alone gives the same.
    const one = { ids: [rows.ids[1]!.slice(0, 7)], mask: [rows.mask[1]!.slice(0, 7)] };
    const alone = fused.logits(tokenBatch(one));
    const inBatch = fused.logits(batch).slice(3, 6);
    assert.ok(diff(alone, inBatch).abs < 1e-5, `${alone} vs ${inBatch}`);
  } finally {
    fused.dispose();
    plain.dispose();
    model.dispose();
  }
});
