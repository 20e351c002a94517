import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import { prepare } from "../../src/data/prepare";
import { readSafetensors } from "../../src/model/safetensors";
import { fineTune } from "../../src/train/run";
import { REPO_ROOT } from "../helpers/python";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
let data = "";

before(async () => {
  await selectBackend({ backend: "wasm" });
  data = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-run-")), "data");
  await prepare({ input: path.join(REPO_ROOT, "data", "deeploc-sample.csv"), out: data });
});

const EMB = "esm.embeddings.word_embeddings.weight";

test("full fine-tuning on wasm trains the encoder, freezes the word embeddings and says so", async () => {
  const out = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-run-")), "full");
  const messages: string[] = [];
  const result = await fineTune({
    data,
    model: TINY,
    out,
    lora: false,
    maxSteps: 2,
    batchSize: 4,
    maxLength: 32,
    limitTrain: 8,
    limitEval: 8,
    learningRate: 1e-2,
    onMessage: (m) => messages.push(m),
  });
  assert.equal(result.step, 2);
  assert.ok(
    messages.some((m) => /word embeddings are frozen/.test(m)),
    messages.join("\n"),
  );
  const before = readSafetensors(path.join(TINY, "model.safetensors")).tensors;
  const after = readSafetensors(path.join(out, "model", "model.safetensors")).tensors;
  assert.deepEqual(after.get(EMB)!.data, before.get(EMB)!.data, "embeddings unchanged");
  const q = "esm.encoder.layer.0.attention.self.query.weight";
  assert.notDeepEqual(after.get(q)!.data, before.get(q)!.data, "encoder weights trained");
  assert.ok(!existsSync(path.join(out, "adapter")), "no adapter without LoRA");
  const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8"));
  assert.equal(metrics.steps, 2);
  assert.equal(metrics.evalExamples, 8);
});

test("esmkit train (LoRA) writes model/, adapter/, metrics.json, history.jsonl and checkpoints/", async () => {
  const out = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-run-")), "lora");
  const r = spawnSync(
    process.execPath,
    [
      path.join(REPO_ROOT, "bin", "esmkit.js"),
      "train",
      "--data",
      data,
      "--model",
      TINY,
      "--out",
      out,
      "--max-steps",
      "2",
      "--batch-size",
      "4",
      "--max-length",
      "32",
      "--limit-train",
      "8",
      "--limit-eval",
      "8",
      "--gradient-accumulation-steps",
      "2",
      "--gradient-checkpointing",
      "--lora-rank",
      "4",
      "--quiet",
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  for (const f of [
    "model/config.json",
    "model/model.safetensors",
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "metrics.json",
    "history.jsonl",
    "checkpoints/checkpoint-2",
  ]) {
    assert.ok(existsSync(path.join(out, f)), f);
  }
  const cfg = JSON.parse(readFileSync(path.join(out, "adapter", "adapter_config.json"), "utf8"));
  assert.equal(cfg.r, 4);
  assert.equal(cfg.base_model_name_or_path, TINY);
  const bad = spawnSync(
    process.execPath,
    [
      path.join(REPO_ROOT, "bin", "esmkit.js"),
      "train",
      "--data",
      data,
      "--out",
      out,
      "--class-weights",
      "heavy",
    ],
    { encoding: "utf8" },
  );
  assert.equal(bad.status, 2);
  assert.match(
    bad.stderr,
    /--class-weights expects balanced, none or numbers like 0.7,1.7; got "heavy"/,
  );
});
