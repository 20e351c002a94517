/**
 * The onnx engine's weights read straight from a checkpoint (src/onnx/weights.ts,
 * `openPretrained`), with no TensorFlow.js model: every tensor equals the one the tfjs
 * model holds (same layout, same new classifier from the seed when the checkpoint has
 * none), the engine gives the same logits on either source (float32 and int8), and the
 * onnx predictor builds no tfjs model yet answers as the tfjs engine does.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { ensureBackend } from "../../src/backend";
import { WeightsError } from "../../src/errors";
import { fromPretrained, openPretrained } from "../../src/model/pretrained";
import { readSafetensors, writeSafetensors } from "../../src/model/safetensors";
import { OnnxEsmEngine } from "../../src/onnx/engine";
import { checkpointWeights, modelWeights } from "../../src/onnx/weights";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import { diff, MODEL_FIX, makeRows, tokenBatch } from "./helpers";

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

/** The tiny fixture without its classifier (as the Hub's MaskedLM checkpoints are). */
function tinyWithoutClassifier(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "esmkit-weights-"));
  const src = path.join(MODEL_FIX, "tiny");
  copyFileSync(path.join(src, "config.json"), path.join(dir, "config.json"));
  const { tensors } = readSafetensors(path.join(src, "model.safetensors"));
  writeSafetensors(
    path.join(dir, "model.safetensors"),
    [...tensors].filter(([k]) => !k.startsWith("classifier.")),
  );
  return dir;
}

test("checkpoint weights equal the tfjs model's, tensor by tensor, new classifier included", async () => {
  const noHead = tinyWithoutClassifier();
  try {
    for (const dir of [path.join(MODEL_FIX, "tiny"), path.join(MODEL_FIX, "odd"), noHead]) {
      const options = { onWarning: () => undefined, seed: 7 };
      const model = await fromPretrained(dir, options);
      const open = await openPretrained(dir, options);
      assert.deepEqual(open.checked.report, model.loadReport, dir);
      const fromModel = modelWeights(model);
      const fromFile = checkpointWeights(open);
      assert.deepEqual([...fromFile.invFreq], [...fromModel.invFreq], dir);
      const keys = [...model.namedVariables().keys()];
      assert.ok(keys.length > 10);
      for (const key of keys) {
        assert.deepEqual(fromFile.shape(key), fromModel.shape(key), `${dir} ${key}`);
        const a = fromFile.read(key);
        const b = fromModel.read(key);
        assert.equal(diff(a, b).abs, 0, `${dir} ${key}`);
        assert.equal(fromFile.version(key), fromFile.version(key), "stable while unchanged");
      }
      assert.equal(fromFile.shape("no.such.weight"), undefined);
      assert.throws(() => open.read("no.such.weight"), WeightsError);
      fromFile.dispose();
      model.dispose();
    }
  } finally {
    rmSync(noHead, { recursive: true, force: true });
  }
});

test("the engine gives the same logits on checkpoint weights as on the tfjs model (float32, int8)", async () => {
  const dir = path.join(MODEL_FIX, "odd");
  const rows = makeRows([9, 5, 12], 12, [0, 1, 0], 3);
  const batch = tokenBatch(rows);
  for (const quantize of ["none", "int8"] as const) {
    const model = await fromPretrained(dir, { onWarning: () => undefined });
    const onModel = new OnnxEsmEngine(model, { quantize });
    const onFile = new OnnxEsmEngine(
      checkpointWeights(await openPretrained(dir, { onWarning: () => undefined })),
      { quantize },
    );
    assert.equal(onFile.config.numHiddenLayers, model.config.numHiddenLayers);
    const a = onFile.logits(batch);
    const b = onModel.logits(batch);
    assert.equal(a.length, b.length);
    assert.equal(diff(a, b).abs, 0, quantize);
    onFile.dispose();
    onModel.dispose();
    model.dispose();
  }
});

test("the onnx predictor builds no tfjs model and answers as the tfjs engine does", async () => {
  const dir = path.join(MODEL_FIX, "tiny");
  const onnx = await loadEsmPredictor(dir, { engine: "onnx", onWarning: () => undefined });
  const tfjs = await loadEsmPredictor(dir, { engine: "tfjs", onWarning: () => undefined });
  try {
    assert.equal(onnx.model, undefined, "no TensorFlow.js copy of the weights");
    assert.ok(tfjs.model);
    assert.deepEqual(onnx.config, tfjs.config);
    assert.deepEqual(onnx.labels, tfjs.labels);
    const seqs = ["MKTAYIAKQR", "MV", "MKTAYIAKQRQISFVKSHFSRQ"];
    const a = await onnx.predict(seqs);
    const b = await tfjs.predict(seqs);
    for (let i = 0; i < seqs.length; i++) {
      assert.ok(
        diff(a[i]!.probabilities, b[i]!.probabilities).abs < 1e-5,
        `${seqs[i]}: ${a[i]!.probabilities} vs ${b[i]!.probabilities}`,
      );
    }
  } finally {
    onnx.dispose();
    tfjs.dispose();
  }
});
