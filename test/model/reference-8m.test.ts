/**
 * The exact facebook/esm2_t6_8M_UR50D architecture with random weights, built by the
 * pinned Python stack at test time (test/reference/esm_reference.py build, ~10 s,
 * cached in test/.generated/ by script hash; not committed), compared on wasm and cpu;
 * and models saved by esmkit loaded back by Python's EsmForSequenceClassification.
 * Skipped outside CI when the Python reference stack is absent.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { customEsmConfig, Esm2Model, fromPretrained, savePretrained } from "../../src/model";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const TOLERANCE = 1e-4;
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-8m-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
}

function maxAbsDiff(actual: tf.Tensor | number[][], expected: unknown): number {
  const want = (expected as number[]).flat(3) as number[];
  const got = Array.isArray(actual) ? actual.flat() : Array.from(actual.dataSync());
  assert.equal(got.length, want.length, "element count");
  let max = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= max)) max = d;
  }
  return max;
}

/** The random 8M checkpoint, rebuilt whenever esm_reference.py changes. */
function checkpoint8m(python: string): string {
  const script = readFileSync(path.join(REPO_ROOT, "test", "reference", "esm_reference.py"));
  const hash = createHash("sha256").update(script).digest("hex").slice(0, 12);
  const dir = path.join(REPO_ROOT, "test", ".generated", `esm2_t6_8M_UR50D-random-${hash}`);
  if (!existsSync(path.join(dir, "expected.json"))) {
    const generated = path.dirname(dir);
    for (const old of existsSync(generated) ? readdirSync(generated) : []) {
      if (old.startsWith("esm2_t6_8M_UR50D-random-"))
        rmSync(path.join(generated, old), { recursive: true, force: true });
    }
    const t0 = performance.now();
    runPython(python, "esm_reference.py", [
      "build",
      dir,
      "--preset",
      "esm2_t6_8M_UR50D",
      "--seed",
      "0",
    ]);
    console.log(
      `built the 8M reference checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  return dir;
}

for (const backend of ["wasm", "cpu"] as const) {
  test(`esm2_t6_8M architecture matches transformers on ${backend}`, async (t) => {
    const python = referencePython();
    if (!python) return t.skip(pythonSkipReason());
    const dir = checkpoint8m(python);
    await selectBackend({ backend });
    const t0 = performance.now();
    const model = await fromPretrained(dir);
    const loadMs = performance.now() - t0;
    console.log(
      `8M checkpoint (${model.parameterCount()} values, 30 MB) loaded in ${loadMs.toFixed(0)} ms on ${backend}`,
    );
    const inputs = JSON.parse(readFileSync(path.join(dir, "inputs.json"), "utf8")) as Inputs;
    const want = JSON.parse(readFileSync(path.join(dir, "expected.json"), "utf8"));
    const feed = { inputIds: inputs.input_ids, attentionMask: inputs.attention_mask };
    const { lastHiddenState, logits } = model.forward(feed);
    const mlm = model.maskedLmLogits(feed);
    const diffs = {
      hidden: maxAbsDiff(lastHiddenState, want.last_hidden_state),
      logits: maxAbsDiff(logits, want.logits),
      mlm: maxAbsDiff(mlm, want.mlm_logits),
    };
    tf.dispose([lastHiddenState, logits, mlm]);
    model.dispose();
    console.log(`8M ${backend} max abs diff: ${JSON.stringify(diffs)}`);
    for (const [what, d] of Object.entries(diffs)) assert.ok(d < TOLERANCE, `${what}: ${d}`);
  });
}

interface PythonLogits {
  logits: number[][];
  loading_info: Record<string, string[]>;
  config: Record<string, unknown>;
}

test("a model saved by esmkit loads in Python with the same logits", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const dir = checkpoint8m(python);
  await selectBackend({ backend: "wasm" });
  const inputsFile = path.join(dir, "inputs.json");
  const inputs = JSON.parse(readFileSync(inputsFile, "utf8")) as Inputs;
  const want = JSON.parse(readFileSync(path.join(dir, "expected.json"), "utf8"));
  const feed = { inputIds: inputs.input_ids, attentionMask: inputs.attention_mask };

  // A checkpoint that came from Python, through our layout and back.
  const model = await fromPretrained(dir);
  const saved = path.join(tmp, "resaved-8m");
  const files = await savePretrained(model, saved);
  assert.deepEqual(files.slice(0, 2), ["config.json", "model.safetensors"]);
  assert.ok(files.includes("vocab.txt"));
  const { lastHiddenState, logits } = model.forward(feed);
  const ours = logits.arraySync() as number[][];
  tf.dispose([lastHiddenState, logits]);
  model.dispose();
  const py = JSON.parse(
    runPython(python, "esm_reference.py", ["logits", saved, inputsFile]),
  ) as PythonLogits;
  assert.deepEqual(py.loading_info.missing_keys, []);
  assert.deepEqual(py.loading_info.mismatched_keys, []);
  const diffs = {
    vsReference: maxAbsDiff(py.logits, want.logits),
    vsOurs: maxAbsDiff(py.logits, ours),
  };
  console.log(`saved 8M reloaded by Python: max abs diff ${JSON.stringify(diffs)}`);
  assert.ok(diffs.vsReference < 1e-6, "Python must read back the very same weights");
  assert.ok(diffs.vsOurs < TOLERANCE);

  // A model built here, with named labels and no masked-LM head.
  const config = customEsmConfig({
    numHiddenLayers: 2,
    hiddenSize: 40,
    numAttentionHeads: 5,
    numLabels: 3,
    id2label: { 0: "cytoplasm", 1: "membrane", 2: "secreted" },
    label2id: { cytoplasm: 0, membrane: 1, secreted: 2 },
  });
  const fresh = Esm2Model.random(config, { seed: 3 });
  // Larger classifier weights than the N(0, 0.02) init, so logits differ visibly.
  fresh.classifierOut.weight.assign(tf.mul(fresh.classifierOut.weight, 50));
  const freshDir = path.join(tmp, "fresh");
  await savePretrained(fresh, freshDir);
  const out = fresh.forward(feed);
  const freshLogits = out.logits.arraySync() as number[][];
  tf.dispose([out.lastHiddenState, out.logits]);
  fresh.dispose();
  const py2 = JSON.parse(
    runPython(python, "esm_reference.py", ["logits", freshDir, inputsFile]),
  ) as PythonLogits;
  assert.deepEqual(
    py2.loading_info.missing_keys.filter((k) => !k.startsWith("esm.contact_head.")),
    [],
  );
  assert.deepEqual(py2.loading_info.unexpected_keys, []);
  assert.deepEqual(py2.config.id2label, { "0": "cytoplasm", "1": "membrane", "2": "secreted" });
  const d = maxAbsDiff(py2.logits, freshLogits);
  console.log(`esmkit-built model reloaded by Python: max abs diff ${d}`);
  assert.ok(d < TOLERANCE);
  assert.ok(
    Math.abs(freshLogits[0]![0]! - freshLogits[0]![1]!) > 1e-3,
    "logits must not be trivially equal",
  );
  writeFileSync(path.join(tmp, "done"), "");
});
