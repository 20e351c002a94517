/**
 * The exact esm2_t6_8M architecture (random weights, seed 3) exported with int8, on 50
 * DeepLoc proteins of 61-1,040 residues (three longer than the 1,022 a sequence may
 * keep): transformers.js fp32 gives esmkit's probabilities within 1e-4, the int8 file
 * agrees on the labels wherever the float32 answer is not a near-tie, and Python's
 * onnxruntime (+ onnx.checker) runs both files on ids from Hugging Face's tokenizer
 * and agrees with transformers' PyTorch model. Prints what it measured.
 *
 * Random weights make the two classes nearly tied for every protein (P within about
 * 0.48-0.52), so int8 label agreement here measures noise around 0.5 more than the
 * quantization; the test asserts that every disagreement is such a tie and bounds
 * |delta P|. bench/ measures agreement on a fine-tuned model.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { ensureBackend } from "../../src/backend";
import { exportModel } from "../../src/export/export";
import { esm2Config } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { savePretrained } from "../../src/model/pretrained";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import { pythonSkipReason, referencePython, runPython } from "../helpers/python";
import {
  argmaxLabel,
  byLabel,
  deeploc50,
  maxProbDiff,
  pipelineProbabilities,
  TOLERANCE,
} from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-export-8m-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const modelDir = path.join(tmp, "model");
const exportDir = path.join(tmp, "export");

/** Sorted by length so that batches hold similar lengths (less padding); order kept for checks. */
const proteins = deeploc50().sort((a, b) => a.sequence.length - b.sequence.length);
const sequences = proteins.map((p) => p.sequence);

let ready: Promise<void> | undefined;
function exported(): Promise<void> {
  ready ??= (async () => {
    await ensureBackend();
    const model = Esm2Model.random(esm2Config("esm2_t6_8M_UR50D"), { seed: 3 });
    await savePretrained(model, modelDir);
    model.dispose();
    const t0 = performance.now();
    const { manifest } = await exportModel({ model: modelDir, out: exportDir, quantize: "int8" });
    const mb = (f: string) => (manifest.files[f]! / 2 ** 20).toFixed(2);
    console.log(
      `8M export in ${((performance.now() - t0) / 1000).toFixed(1)} s: onnx/model.onnx ${mb("onnx/model.onnx")} MB, onnx/model_quantized.onnx ${mb("onnx/model_quantized.onnx")} MB`,
    );
  })();
  return ready;
}

test("8M, 50 DeepLoc proteins: transformers.js fp32 = esmkit within 1e-4; int8 differs only on near-ties", async () => {
  await exported();
  const predictor = await loadEsmPredictor(modelDir, { threads: 1 });
  const esmkit: Record<string, number>[] = [];
  try {
    for (let i = 0; i < sequences.length; i += 4) {
      // esmkit predict's own cut: the first max_length - 2 residues.
      const batch = sequences.slice(i, i + 4).map((s) => s.slice(0, predictor.maxLength - 2));
      for (const r of await predictor.predict(batch))
        esmkit.push(byLabel(r.labels, r.probabilities));
    }
  } finally {
    predictor.dispose();
  }
  assert.ok(sequences.filter((s) => s.length > 1022).length >= 3, "long proteins in the sample");
  const fp32 = await pipelineProbabilities(exportDir, sequences);
  const d = maxProbDiff(fp32, esmkit);
  console.log(`fp32: transformers.js vs esmkit max |dP| ${d.toExponential(2)} over 50 proteins`);
  assert.ok(d <= TOLERANCE, `fp32 ${d}`);

  const q8 = await pipelineProbabilities(exportDir, sequences, { dtype: "q8" });
  const dq = maxProbDiff(q8, esmkit);
  const flips = q8
    .map((row, i) => ({ i, got: argmaxLabel(row), want: argmaxLabel(esmkit[i]!) }))
    .filter((f) => f.got !== f.want);
  const margin = (row: Record<string, number>) => {
    const p = Object.values(row).sort((a, b) => b - a);
    return p[0]! - p[1]!;
  };
  const spread = esmkit.map((r) => Object.values(r)[1]!);
  console.log(
    `int8: ${50 - flips.length}/50 labels agree (${((100 * (50 - flips.length)) / 50).toFixed(0)} %), largest |dP| ${dq.toFixed(4)}; fp32 P(LABEL_1) spans ${Math.min(...spread).toFixed(3)}-${Math.max(...spread).toFixed(3)}; fp32 margins of the changed labels: ${flips.map((f) => margin(esmkit[f.i]!).toFixed(4)).join(", ") || "none"}`,
  );
  assert.ok(dq < 0.02, `int8 |dP| ${dq}`);
  for (const f of flips) {
    assert.ok(
      margin(esmkit[f.i]!) <= 2 * dq,
      `protein ${proteins[f.i]!.id}: label changed although float32 was decided by ${margin(esmkit[f.i]!)}`,
    );
  }
  assert.ok(flips.length <= 5, `${flips.length} labels changed`);
});

test("8M: Python onnxruntime runs both files (onnx.checker passes) and agrees with PyTorch", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  await exported();
  const seqFile = path.join(tmp, "sequences.json");
  // Every fourth protein (13, the three long ones among them) keeps the Python run short.
  const some = sequences.filter((_, i) => i % 4 === 0 || sequences[i]!.length > 1022);
  writeFileSync(seqFile, JSON.stringify(some));
  const [out] = JSON.parse(
    runPython(python, "check_onnx_export.py", [exportDir, modelDir, seqFile]),
  ) as {
    tokenizer: string;
    files: Record<
      string,
      { max_abs_diff: number; agree: number; inputs: unknown[]; outputs: unknown[] }
    >;
  }[];
  const fp32 = out!.files["model.onnx"]!;
  const q8 = out!.files["model_quantized.onnx"]!;
  console.log(
    `Python (${out!.tokenizer} ids): onnxruntime vs PyTorch max |dP| fp32 ${fp32.max_abs_diff.toExponential(2)}, int8 ${q8.max_abs_diff.toFixed(4)} (${q8.agree}/${some.length} labels)`,
  );
  assert.deepEqual(fp32.inputs, [
    ["input_ids", "tensor(int64)", ["batch_size", "sequence_length"]],
    ["attention_mask", "tensor(int64)", ["batch_size", "sequence_length"]],
  ]);
  assert.deepEqual(fp32.outputs, [["logits", "tensor(float)", ["batch_size", 2]]]);
  assert.ok(fp32.max_abs_diff <= TOLERANCE, `fp32 ${fp32.max_abs_diff}`);
  assert.equal(fp32.agree, some.length);
  assert.ok(q8.max_abs_diff < 0.02, `int8 ${q8.max_abs_diff}`);
});
