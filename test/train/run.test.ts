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

test("esmkit evaluate prints the metrics of a saved model on a prepared split", async () => {
  const out = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-run-")), "metrics.json");
  const r = spawnSync(
    process.execPath,
    [
      path.join(REPO_ROOT, "bin", "esmkit.js"),
      "evaluate",
      "--model",
      TINY,
      "--data",
      data,
      "--limit",
      "12",
      "--max-length",
      "32",
      "--out",
      out,
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  const printed = JSON.parse(r.stdout);
  assert.deepEqual(printed, JSON.parse(readFileSync(out, "utf8")));
  assert.equal(printed.examples, 12);
  assert.equal(printed.metrics.count, 12);
  const [[tn, fp], [fn, tp]] = printed.metrics.confusionMatrix;
  assert.equal(tn + fp + fn + tp, 12);
  assert.ok(Math.abs(printed.metrics.accuracy - (tn + tp) / 12) < 1e-12);
  const bad = spawnSync(
    process.execPath,
    [
      path.join(REPO_ROOT, "bin", "esmkit.js"),
      "evaluate",
      "--model",
      TINY,
      "--data",
      data,
      "--split",
      "dev",
    ],
    { encoding: "utf8" },
  );
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--split expects train or test, got "dev"/);
});

test("Ctrl-C during esmkit train saves a checkpoint, exits 130, and --resume continues", async () => {
  const out = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-run-")), "int");
  const args = [
    path.join(REPO_ROOT, "bin", "esmkit.js"),
    "train",
    "--data",
    data,
    "--model",
    TINY,
    "--out",
    out,
    "--max-steps",
    "400",
    "--batch-size",
    "2",
    "--max-length",
    "24",
    "--limit-train",
    "16",
    "--limit-eval",
    "4",
  ];
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  // Interrupt once training has started (LoRA report printed, first steps done).
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      if (/LoRA r=/.test(stderr)) {
        clearInterval(tick);
        setTimeout(resolve, 1500);
      }
    }, 50);
  });
  child.kill("SIGINT");
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted at step (\d+); checkpoint saved/);
  const step = Number(/interrupted at step (\d+)/.exec(stderr)![1]);
  assert.ok(step > 0 && step < 400, `stopped at ${step}`);
  assert.ok(existsSync(path.join(out, "checkpoints", `checkpoint-${step}`)));
  const resumed = spawnSync(process.execPath, [...args, "--resume"], { encoding: "utf8" });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming from step ${step}`));
  assert.ok(existsSync(path.join(out, "model", "model.safetensors")));
  const steps = readFileSync(path.join(out, "history.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === "step").length;
  assert.equal(steps, 400, "every step once in the history");
});
