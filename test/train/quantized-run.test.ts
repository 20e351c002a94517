/**
 * Training on an int8 base (`quantize: "int8"`) saves what float32 training saves: a PEFT
 * adapter that Python's PeftModel loads on the float32 base, and model/ merged into the
 * float32 base weights (not their int8 approximation). Also: the setting is part of the
 * run's identity, and the refusals that need no model.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { prepare } from "../../src/data/prepare";
import { ConfigError } from "../../src/errors";
import { loadAdapter } from "../../src/lora/adapter-io";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { fineTune } from "../../src/train/run";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
let data = "";
let out = "";
const messages: string[] = [];

before(async () => {
  await selectBackend({ backend: "wasm" });
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-int8-run-"));
  data = path.join(dir, "data");
  await prepare({ input: path.join(REPO_ROOT, "data", "deeploc-sample.csv"), out: data });
  out = path.join(dir, "run");
  await fineTune({
    data,
    model: TINY,
    out,
    engine: "onnx",
    quantize: "int8",
    lora: { rank: 4, alpha: 8, dropout: 0, targetModules: ["query", "value"] },
    maxSteps: 3,
    batchSize: 4,
    maxLength: 32,
    limitTrain: 12,
    limitEval: 8,
    learningRate: 2e-2,
    onMessage: (m) => messages.push(m),
  });
});

const batch = {
  input_ids: [
    [0, 5, 9, 11, 4, 20, 7, 2],
    [0, 13, 6, 8, 2, 1, 1, 1],
  ],
  attention_mask: [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 0, 0, 0],
  ],
};

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

test("the run says it trains on an int8 base and records it (metrics.json, run.json)", () => {
  assert.ok(
    messages.some((m) => /int8 base: the encoder's frozen Linear weights run as int8/.test(m)),
    messages.join("\n"),
  );
  const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8"));
  assert.equal(metrics.quantize, "int8");
  assert.equal(metrics.steps, 3);
  const run = JSON.parse(readFileSync(path.join(out, "run.json"), "utf8"));
  assert.equal(JSON.stringify(run).includes('"quantize":"int8"'), true, JSON.stringify(run));
});

test("model/ is the adapter merged into the float32 base; untouched weights are the base's bit for bit", async () => {
  const base = await fromPretrained(TINY, { onWarning: () => undefined });
  const lora = loadAdapter(base, path.join(out, "adapter"));
  const bs = lora.adapters.get("esm.encoder.layer.0.attention.self.query")!.bT.dataSync();
  assert.ok(
    bs.some((x) => x !== 0),
    "LoRA B trained away from zero",
  );
  const merged = await fromPretrained(path.join(out, "model"), { onWarning: () => undefined });
  const a = base.forward({ inputIds: batch.input_ids, attentionMask: batch.attention_mask });
  const b = merged.forward({ inputIds: batch.input_ids, attentionMask: batch.attention_mask });
  const d = maxAbsDiff(a.logits.dataSync(), b.logits.dataSync());
  console.log(`merged model/ vs float32 base + adapter: max |diff| ${d.toExponential(2)}`);
  // A merge into int8-rounded weights would not: rounding moves each weight by up to
  // half a step, 1/254 of its channel's largest |value|.
  assert.ok(d < 1e-5, `logits differ by ${d}`);
  const baseFile = readSafetensors(path.join(TINY, "model.safetensors")).tensors;
  const savedFile = readSafetensors(path.join(out, "model", "model.safetensors")).tensors;
  const key = "esm.encoder.layer.1.intermediate.dense.weight";
  assert.deepEqual(savedFile.get(key)!.data, baseFile.get(key)!.data);
  tf.dispose([a.logits, a.lastHiddenState, b.logits, b.lastHiddenState]);
  lora.dispose();
  base.dispose();
  merged.dispose();
});

test("the adapter trained on the int8 base loads in PEFT on the float32 base", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-int8-peft-"));
  const batchFile = path.join(dir, "batch.json");
  writeFileSync(batchFile, JSON.stringify(batch));
  const theirs = JSON.parse(
    runPython(python, "check_adapter.py", [TINY, path.join(out, "adapter"), batchFile, "--keys"]),
  ) as { logits: number[][]; missing: string[]; unexpected: string[] };
  assert.deepEqual(theirs.missing, []);
  assert.deepEqual(theirs.unexpected, []);
  const base = await fromPretrained(TINY, { onWarning: () => undefined });
  const lora = loadAdapter(base, path.join(out, "adapter"));
  const ours = base.forward({ inputIds: batch.input_ids, attentionMask: batch.attention_mask });
  const d = maxAbsDiff(ours.logits.dataSync(), theirs.logits.flat());
  console.log(`int8-trained adapter in PEFT on the float32 base: max |diff| ${d.toExponential(2)}`);
  assert.ok(d < 1e-4, `PEFT vs esmkit ${d}`);
  tf.dispose([ours.logits, ours.lastHiddenState]);
  lora.dispose();
  base.dispose();
});

test("int8 with full fine-tuning, or with the tfjs engine, is refused before training", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-int8-bad-"));
  await assert.rejects(
    fineTune({ data, model: TINY, out: path.join(dir, "a"), quantize: "int8", lora: false }),
    (e) =>
      e instanceof ConfigError &&
      /quantize "int8" keeps the base model frozen; full fine-tuning/.test(e.message),
  );
  await assert.rejects(
    fineTune({ data, model: TINY, out: path.join(dir, "b"), quantize: "int8", engine: "tfjs" }),
    (e) => e instanceof ConfigError && /quantize "int8" needs the onnx engine/.test(e.message),
  );
  await assert.rejects(
    fineTune({ data, model: TINY, out: path.join(dir, "c"), quantize: "int4" as "int8" }),
    /Unknown quantize "int4" \(quantize\); expected one of: none, int8/,
  );
});

function esmkit(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "esmkit.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, ESMKIT_ENGINE: "onnx", ...env },
  });
}

test("evaluate and predict --quantize int8 (or ESMKIT_QUANTIZE) stay close to float32", () => {
  const evalArgs = ["evaluate", "--model", path.join(out, "model"), "--data", data];
  const common = ["--limit", "24", "--max-length", "64"];
  const f32 = esmkit([...evalArgs, ...common]);
  const i8 = esmkit([...evalArgs, ...common, "--quantize", "int8"]);
  assert.equal(f32.status, 0, f32.stderr);
  assert.equal(i8.status, 0, i8.stderr);
  const [a, b] = [JSON.parse(f32.stdout), JSON.parse(i8.stdout)];
  assert.equal(a.quantize, "none");
  assert.equal(b.quantize, "int8");
  const dl = Math.abs(a.metrics.unweightedLoss - b.metrics.unweightedLoss);
  assert.ok(
    dl > 0 && dl < 0.02,
    `evaluation loss ${a.metrics.unweightedLoss} vs ${b.metrics.unweightedLoss}`,
  );

  const seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MSLLTEVETPIRNEWGCRCNDSSD", "GSHMA"];
  const predict = (extra: string[], env: Record<string, string> = {}) => {
    const r = esmkit(
      [
        "predict",
        "--model",
        path.join(out, "model"),
        ...seqs.flatMap((s) => ["--sequence", s]),
        "--quiet",
        ...extra,
      ],
      env,
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout
      .trim()
      .split("\n")
      .map((l) => Object.values(JSON.parse(l).probabilities as Record<string, number>));
  };
  const pf = predict([]);
  const pq = predict(["--quantize", "int8"]);
  const pe = predict([], { ESMKIT_QUANTIZE: "int8", ESMKIT_WORKERS: "0" });
  const dp = maxAbsDiff(pf.flat(), pq.flat());
  assert.ok(dp > 0 && dp < 0.02, `probabilities differ by ${dp}`);
  assert.ok(maxAbsDiff(pe.flat(), pq.flat()) < 1e-6, "ESMKIT_QUANTIZE=int8 is --quantize int8");
  const bad = esmkit(["predict", "--model", TINY, "--sequence", "MKT", "--quantize", "int4"]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--quantize expects none or int8, got "int4"/);
});
