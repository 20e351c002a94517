/**
 * End to end per task: `esmkit prepare` -> `fineTune` from a checkpoint without a
 * classifier (a tiny random EsmForMaskedLM, as the Hub's ESM-2) -> the saved model in
 * transformers (problem_type, id2label, logits, and transformers' own loss equal to
 * ours) and the adapter in PEFT (no missing or unexpected keys, the same logits); the
 * metrics each task reports; and the refusals (exit 2) of a model whose head does not
 * fit the data's task.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import { loadPrepared } from "../../src/data/frame";
import { prepare } from "../../src/data/prepare";
import { TfjsEngine } from "../../src/engine/tfjs-engine";
import { fromPretrained } from "../../src/model/pretrained";
import { collate } from "../../src/train/batching";
import { evaluate } from "../../src/train/evaluate";
import { examplesFrom, fineTune, resolveDataTask } from "../../src/train/run";
import type { ProblemType } from "../../src/util/task";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const SAMPLE = path.join(REPO_ROOT, "data", "deeploc-sample.csv");
const BASE = path.join(REPO_ROOT, "test", "fixtures", "tasks", "masked-lm");
const CLI = path.join(REPO_ROOT, "bin", "esmkit.js");
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

/** The sample's first 200 rows plus two numeric targets (for regression). */
function regressionCsv(dir: string): string {
  const lines = readFileSync(SAMPLE, "utf8").split("\n");
  const header = lines[0]!.split(",");
  const seqAt = header.indexOf("Sequence");
  const partAt = header.indexOf("Partition");
  const rows = lines.slice(1, 201).map((line) => {
    const f = line.split(",");
    const n = f[seqAt]!.length;
    return `${line},${(40 + Number(f[partAt]) * 3 + n / 50).toFixed(2)},${(n / 100).toFixed(3)}`;
  });
  const file = path.join(dir, "tm.csv");
  writeFileSync(file, `${lines[0]},Tm,Size\n${rows.join("\n")}\n`);
  return file;
}

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

const CASES: {
  name: string;
  problemType: ProblemType;
  engine: "onnx" | "tfjs";
  prepare: (dir: string) => Parameters<typeof prepare>[0];
}[] = [
  {
    name: "multi-label (--locations)",
    problemType: "multi_label_classification",
    engine: "onnx",
    prepare: (dir) => ({
      input: SAMPLE,
      out: path.join(dir, "data"),
      locations: true,
      stratify: true,
    }),
  },
  {
    name: "k classes (Kingdom)",
    problemType: "single_label_classification",
    engine: "onnx",
    prepare: (dir) => ({
      input: SAMPLE,
      out: path.join(dir, "data"),
      task: "single_label_classification",
      labelColumn: "Kingdom",
    }),
  },
  {
    name: "regression (two targets)",
    problemType: "regression",
    engine: "tfjs",
    prepare: (dir) => ({
      input: regressionCsv(dir),
      out: path.join(dir, "data"),
      targetColumns: ["Tm", "Size"],
    }),
  },
];

for (const c of CASES) {
  test(`${c.name}: fine-tuned, saved, loaded by transformers and PEFT with the same outputs and loss`, async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), "esmkit-task-run-"));
    const prepared = await prepare(c.prepare(dir));
    const task = prepared.stats.task;
    const out = path.join(dir, "run");
    const result = await fineTune({
      data: path.join(dir, "data"),
      model: BASE,
      out,
      maxSteps: 2,
      batchSize: 4,
      limitTrain: 24,
      limitEval: 12,
      maxLength: 48,
      engine: c.engine,
      threads: 1,
      lora: { rank: 4, alpha: 8, dropout: 0 },
      // pos_weight from 24 rows: a rare location may have no positive there.
      classWeights: c.problemType === "multi_label_classification" ? "none" : "balanced",
    });
    assert.deepEqual(result.task, { problemType: c.problemType, labels: task.labels });
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8"));
    assert.deepEqual(metrics.task, result.task);
    const m = metrics.eval;
    assert.ok(Number.isFinite(m.unweightedLoss));
    if (c.problemType === "multi_label_classification") {
      assert.deepEqual(
        m.perLabel.map((s: { label: string }) => s.label),
        task.labels,
      );
      for (const k of ["subsetAccuracy", "jaccard", "microF1", "macroF1", "meanMcc"])
        assert.equal(typeof m[k], "number", k);
      assert.equal(metrics.classWeights, null);
    } else if (c.problemType === "regression") {
      assert.deepEqual(
        m.perTarget.map((s: { target: string }) => s.target),
        ["Tm", "Size"],
      );
      for (const k of ["rmse", "mae", "pearson", "spearman"])
        assert.equal(typeof m[k], "number", k);
    } else {
      assert.equal(m.confusionMatrix.length, 4);
      assert.equal(typeof m.macroF1, "number");
      assert.equal(metrics.classWeights.length, 4);
    }
    const config = JSON.parse(readFileSync(path.join(out, "model", "config.json"), "utf8"));
    assert.equal(config.problem_type, c.problemType);
    assert.deepEqual(Object.values(config.id2label), task.labels);

    // One evaluation batch: our logits and loss, then transformers' and PEFT's.
    const data = await loadPrepared(path.join(dir, "data"));
    const examples = examplesFrom(data.test, {
      maxLength: 48,
      limit: 5,
      where: "test",
      task: resolveDataTask(data.stats, data.train, undefined, "data"),
    });
    const batch = collate(
      examples,
      examples.map((_, i) => i),
    );
    const rows = (a: ArrayLike<number>, w: number) =>
      Array.from({ length: a.length / w }, (_, i) => Array.from(a).slice(i * w, (i + 1) * w));
    const k = task.labels.length;
    const model = await fromPretrained(path.join(out, "model"), { onWarning: () => undefined });
    const ours = model.forward({
      inputIds: rows(batch.inputIds, batch.seqLen),
      attentionMask: rows(batch.attentionMask, batch.seqLen),
    });
    const logits = Array.from(ours.logits.dataSync());
    tf.dispose([ours.logits, ours.lastHiddenState]);
    const ev = evaluate(new TfjsEngine(model), examples, {
      task: { problemType: c.problemType, labels: task.labels },
      batchSize: 5,
    });
    model.dispose();

    const python = referencePython();
    if (!python) return t.skip(pythonSkipReason());
    const batchFile = path.join(dir, "batch.json");
    writeFileSync(
      batchFile,
      JSON.stringify({
        input_ids: rows(batch.inputIds, batch.seqLen),
        attention_mask: rows(batch.attentionMask, batch.seqLen),
        labels: batch.targets ? rows(batch.targets, k) : Array.from(batch.labels),
      }),
    );
    const py = JSON.parse(
      runPython(python, "check_task_model.py", [
        path.join(out, "model"),
        batchFile,
        BASE,
        path.join(out, "adapter"),
      ])
        .trim()
        .split("\n")
        .pop()!,
    );
    assert.equal(py.architecture, "EsmForSequenceClassification");
    assert.equal(py.problem_type, c.problemType);
    assert.equal(py.num_labels, k);
    assert.deepEqual(Object.values(py.id2label), task.labels);
    let worst = 0;
    let worstPeft = 0;
    py.logits.flat().forEach((v: number, i: number) => {
      worst = Math.max(worst, Math.abs(v - logits[i]!));
    });
    py.peft_logits.flat().forEach((v: number, i: number) => {
      worstPeft = Math.max(worstPeft, Math.abs(v - logits[i]!));
    });
    const dl = Math.abs(py.loss - ev.metrics.unweightedLoss);
    console.log(
      `${c.name}: transformers logits |diff| ${worst.toExponential(2)}, PEFT ${worstPeft.toExponential(2)}, loss ${py.loss} vs ours ${ev.metrics.unweightedLoss} (|diff| ${dl.toExponential(2)})`,
    );
    assert.ok(worst < 1e-4, `logits ${worst}`);
    assert.ok(worstPeft < 1e-4, `PEFT logits ${worstPeft}`);
    assert.ok(dl < 1e-4 * Math.max(1, py.loss), `loss ${py.loss} vs ${ev.metrics.unweightedLoss}`);
    assert.deepEqual(py.peft_missing, []);
    assert.deepEqual(py.peft_unexpected, []);
  });
}

test("errors (exit 2): a model whose head does not fit the data's task, and --task against the data", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-task-mismatch-"));
  await prepare({
    input: regressionCsv(dir),
    out: path.join(dir, "reg"),
    targetColumns: ["Tm", "Size"],
  });
  await prepare({ input: SAMPLE, out: path.join(dir, "bin") });
  const binaryModel = path.join(REPO_ROOT, "test", "fixtures", "lora", "base");
  const common = [
    "--max-steps",
    "1",
    "--limit-train",
    "4",
    "--limit-eval",
    "4",
    "--max-length",
    "32",
    "--quiet",
  ];
  const reg = cli([
    "train",
    "--data",
    path.join(dir, "reg"),
    "--model",
    binaryModel,
    "--out",
    path.join(dir, "o1"),
    ...common,
  ]);
  assert.equal(reg.status, 2, reg.stderr);
  assert.match(
    reg.stderr,
    /has a single_label_classification with 2 classes \(LABEL_0, LABEL_1\) head, but the task is regression with 2 targets \(Tm, Size\); fine-tune from a base model/,
  );
  const multiModel = path.join(REPO_ROOT, "test", "fixtures", "tasks", "multilabel", "base");
  const wrongCount = cli([
    "train",
    "--data",
    path.join(dir, "bin"),
    "--model",
    multiModel,
    "--out",
    path.join(dir, "o2"),
    ...common,
  ]);
  assert.equal(wrongCount.status, 2, wrongCount.stderr);
  assert.match(
    wrongCount.stderr,
    /has a multi_label_classification with 4 labels \(Cytoplasm, Nucleus, Extracellular, Cell membrane\) head, but the task is single_label_classification with 2 classes/,
  );
  const evalMismatch = cli([
    "evaluate",
    "--model",
    multiModel,
    "--data",
    path.join(dir, "reg"),
    "--limit",
    "2",
  ]);
  assert.equal(evalMismatch.status, 2, evalMismatch.stderr);
  assert.match(evalMismatch.stderr, /head, but the task is regression with 2 targets/);
  const flagMismatch = cli([
    "train",
    "--data",
    path.join(dir, "bin"),
    "--task",
    "regression",
    "--model",
    BASE,
    "--out",
    path.join(dir, "o3"),
    ...common,
  ]);
  assert.equal(flagMismatch.status, 2, flagMismatch.stderr);
  assert.match(
    flagMismatch.stderr,
    /--task regression does not match the data: .* was prepared for single_label_classification with 2 classes \(LABEL_0, LABEL_1\)/,
  );
});
