/**
 * Exports of the small Python-made fixtures checked by Python: `onnx.checker`, then
 * `onnxruntime` on ids from Hugging Face's EsmTokenizer against transformers' PyTorch
 * model (test/reference/check_onnx_export.py), for text-classification, for
 * feature-extraction and with the weights in an external data file. Skipped outside CI
 * when the Python reference stack is absent.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { type ExportOptions, exportModel } from "../../src/export/export";
import { pythonSkipReason, referencePython, runPython } from "../helpers/python";
import { MODEL_FIX, readJson, TOLERANCE } from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-export-py-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const CASES: { name: string; fixture: string; options: Partial<ExportOptions> }[] = [
  { name: "odd, text-classification, int8", fixture: "odd", options: { quantize: "int8" } },
  { name: "tiny, feature-extraction", fixture: "tiny", options: { task: "feature-extraction" } },
  { name: "tiny, external data", fixture: "tiny", options: { externalData: "always" } },
];

test("Python onnxruntime on exports (classification + int8, features, external data) agrees with transformers", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const args: string[] = [];
  for (const c of CASES) {
    const src = path.join(MODEL_FIX, c.fixture);
    const out = path.join(tmp, c.name.replace(/\W+/g, "-"));
    await exportModel({ model: src, out, ...c.options });
    const seqFile = path.join(tmp, `${c.fixture}.json`);
    const { sequences } = readJson<{ sequences: string[] }>(path.join(src, "inputs.json"));
    writeFileSync(seqFile, JSON.stringify(sequences));
    args.push(out, src, seqFile);
  }
  const results = JSON.parse(runPython(python, "check_onnx_export.py", args)) as {
    files: Record<string, { max_abs_diff: number; outputs: [string][] }>;
  }[];
  assert.equal(results.length, CASES.length);
  CASES.forEach((c, i) => {
    const files = results[i]!.files;
    assert.equal(Object.keys(files).length, c.options.quantize === "int8" ? 2 : 1, c.name);
    for (const [file, r] of Object.entries(files)) {
      console.log(`${c.name}: ${file} max |diff| vs PyTorch ${r.max_abs_diff.toExponential(2)}`);
      const limit = file === "model_quantized.onnx" ? 0.05 : TOLERANCE;
      assert.ok(r.max_abs_diff <= limit, `${c.name} ${file}: ${r.max_abs_diff}`);
      const output = c.options.task === "feature-extraction" ? "last_hidden_state" : "logits";
      assert.equal(r.outputs[0]![0], output);
    }
  });
});
