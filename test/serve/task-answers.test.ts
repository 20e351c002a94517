/**
 * The answers of multi-label and regression models, over HTTP and from `esmkit
 * predict` (fake predictors), and from the ESM-2 predictor on the task fixtures: a
 * sigmoid per label, the label set at a threshold, regression values; the binary answer
 * keeps its shape.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { predictCommand } from "../../src/cli/predict-command";
import { serveCommand } from "../../src/cli/serve-command";
import { ConfigError } from "../../src/errors";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import {
  type MultiLabelPrediction,
  type RegressionPrediction,
  toPrediction,
} from "../../src/serve/prediction";
import {
  type ClassProbabilities,
  type Predictor,
  setPredictorLoader,
} from "../../src/serve/predictor";
import { createServer } from "../../src/serve/server";
import type { ProblemType } from "../../src/util/task";
import { REPO_ROOT } from "../helpers/python";
import { invoke } from "./http-client";

const LOCATIONS = ["Cytoplasm", "Nucleus", "Extracellular"];

/** Multi-label: label k's probability is the share of residue k of "ACD" times 3; regression: length and a count. */
class TaskFake implements Predictor {
  readonly maxLength = 64;
  calls = 0;
  constructor(
    readonly problemType: ProblemType,
    readonly labels: string[],
  ) {}
  async predict(sequences: string[]): Promise<ClassProbabilities[]> {
    this.calls++;
    return sequences.map((s) => {
      if (this.problemType === "regression") {
        return {
          labels: this.labels,
          probabilities: [],
          values: [s.length * 1.5, s.split("K").length - 1],
        };
      }
      return {
        labels: this.labels,
        probabilities: this.labels.map((_, k) =>
          Math.min(1, (3 * s.split("ACD"[k]!).length - 3) / s.length),
        ),
      };
    });
  }
}

after(() => setPredictorLoader(undefined));

test("HTTP, multi-label: every label's probability, the labels at or above the threshold, the threshold", async (t) => {
  for (const threshold of [undefined, 0.2]) {
    const server = createServer({
      predictor: new TaskFake("multi_label_classification", LOCATIONS),
      log: false,
      env: {},
      ...(threshold === undefined ? {} : { threshold }),
    });
    const { port } = await server.listen(0, "127.0.0.1");
    t.after(() => server.close(100));
    // A: 4/10 -> 1.2 -> 1; C: 1/10 -> 0.3; D: 0.
    const r = await invoke(`http://127.0.0.1:${port}`, { inputs: ["AAAACMMMMM", "MMMM"] });
    assert.equal(r.status, 200, r.text);
    const [p, q] = r.json as MultiLabelPrediction[];
    assert.deepEqual(Object.keys(p!), [
      "label",
      "score",
      "probabilities",
      "labels",
      "threshold",
      "truncated",
    ]);
    assert.equal(p!.label, "Cytoplasm");
    assert.equal(p!.score, 1);
    assert.deepEqual(p!.probabilities, {
      Cytoplasm: 1,
      Nucleus: 0.3,
      Extracellular: 0,
    });
    assert.equal(p!.threshold, threshold ?? 0.5);
    assert.deepEqual(p!.labels, threshold === undefined ? ["Cytoplasm"] : ["Cytoplasm", "Nucleus"]);
    assert.deepEqual(q!.labels, [], "no label reaches the threshold");
  }
});

test("HTTP, regression: the predicted value of each target, no probabilities", async (t) => {
  const server = createServer({
    predictor: new TaskFake("regression", ["Tm", "K"]),
    log: false,
    env: {},
  });
  const { port } = await server.listen(0, "127.0.0.1");
  t.after(() => server.close(100));
  const r = await invoke(`http://127.0.0.1:${port}`, { inputs: "MKKT" });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ values: { Tm: 6, K: 2 }, truncated: false }]);
});

test("esmkit predict: multi-label JSON Lines and CSV with --threshold, regression CSV", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-task-predict-"));
  let fake: TaskFake = new TaskFake("multi_label_classification", LOCATIONS);
  setPredictorLoader(async () => fake);
  const jsonl = path.join(dir, "out.jsonl");
  const args = ["--model", "m", "--sequence", "AAAACMMMMM", "--sequence", "DDMM", "--quiet"];
  assert.equal(await predictCommand.run([...args, "--out", jsonl, "--threshold", "0.25"]), 0);
  const rows = (await readFile(jsonl, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(rows[0].labels, ["Cytoplasm", "Nucleus"]);
  assert.equal(rows[0].threshold, 0.25);
  assert.deepEqual(rows[1], {
    id: "seq2",
    label: "Extracellular",
    score: 1,
    probabilities: { Cytoplasm: 0, Nucleus: 0, Extracellular: 1 },
    labels: ["Extracellular"],
    threshold: 0.25,
    truncated: false,
    length: 4,
  });
  const csv = path.join(dir, "out.csv");
  assert.equal(await predictCommand.run([...args, "--out", csv, "--format", "csv"]), 0);
  assert.deepEqual((await readFile(csv, "utf8")).trim().split("\n"), [
    "id,labels,label,score,p_Cytoplasm,p_Nucleus,p_Extracellular,truncated,length",
    "seq1,Cytoplasm,Cytoplasm,1,1,0.3,0,false,10",
    "seq2,Extracellular,Extracellular,1,0,0,1,false,4",
  ]);
  fake = new TaskFake("regression", ["Tm", "K"]);
  assert.equal(await predictCommand.run([...args, "--out", csv, "--format", "csv"]), 0);
  assert.deepEqual((await readFile(csv, "utf8")).trim().split("\n"), [
    "id,value_Tm,value_K,truncated,length",
    "seq1,15,0,false,10",
    "seq2,6,0,false,4",
  ]);
  await assert.rejects(
    predictCommand.run([...args, "--threshold", "1.5"]),
    /--threshold expects a number >= 0 and <= 1, got "1.5"/,
  );
});

test("serve: a bad ESMKIT_THRESHOLD is refused before the model loads", async () => {
  let loaded = false;
  setPredictorLoader(async () => {
    loaded = true;
    return new TaskFake("multi_label_classification", LOCATIONS);
  });
  process.env.ESMKIT_THRESHOLD = "high";
  try {
    await assert.rejects(
      serveCommand.run(["--model", "m", "--port", "0"]),
      (e: unknown) =>
        e instanceof ConfigError &&
        /ESMKIT_THRESHOLD="high" must be a probability from 0 to 1, got NaN/.test(e.message),
    );
  } finally {
    delete process.env.ESMKIT_THRESHOLD;
  }
  assert.equal(loaded, false);
});

test("toPrediction refuses answers that do not fit the task", () => {
  assert.throws(
    () =>
      toPrediction({ labels: ["Tm"], probabilities: [] }, false, undefined, {
        problemType: "regression",
      }),
    /answered no values for 1 labels/,
  );
  assert.throws(
    () =>
      toPrediction({ labels: ["a", "b"], probabilities: [0.5, Number.NaN] }, false, undefined, {
        problemType: "multi_label_classification",
      }),
    /non-finite probability \(NaN\)/,
  );
  const r = toPrediction({ labels: ["Tm"], probabilities: [], values: [3] }, true, "P1", {
    problemType: "regression",
  });
  assert.deepEqual(r as RegressionPrediction, { id: "P1", values: { Tm: 3 }, truncated: true });
});

test("the ESM-2 predictor answers by the config's problem_type: sigmoids, values, softmax", async () => {
  const fix = (name: string) => path.join(REPO_ROOT, "test", "fixtures", "tasks", name, "base");
  for (const [name, type] of [
    ["multilabel", "multi_label_classification"],
    ["regression", "regression"],
    ["multiclass", "single_label_classification"],
  ] as const) {
    const p = await loadEsmPredictor(fix(name), { engine: "tfjs", onWarning: () => undefined });
    const onnx = await loadEsmPredictor(fix(name), { engine: "onnx", onWarning: () => undefined });
    try {
      assert.equal(p.problemType, type);
      const seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "LLVA"];
      const [a] = await p.predict(seqs);
      const [b] = await onnx.predict(seqs);
      const logits = p.model.forward({
        inputIds: [p.tokenizer.encode(seqs[0]!)],
        attentionMask: [p.tokenizer.encode(seqs[0]!).map(() => 1)],
      });
      const z = Array.from(logits.logits.dataSync());
      logits.logits.dispose();
      logits.lastHiddenState.dispose();
      const expected =
        type === "regression"
          ? z
          : type === "multi_label_classification"
            ? z.map((v) => 1 / (1 + Math.exp(-v)))
            : z.map((v) => Math.exp(v) / z.reduce((s, w) => s + Math.exp(w), 0));
      const got = type === "regression" ? a!.values! : a!.probabilities;
      const gotOnnx = type === "regression" ? b!.values! : b!.probabilities;
      assert.equal(got.length, p.labels.length);
      for (const [i, v] of got.entries()) {
        assert.ok(Math.abs(v - expected[i]!) < 1e-5, `${name} tfjs ${i}: ${v} vs ${expected[i]}`);
      }
      for (const [i, v] of gotOnnx.entries()) {
        assert.ok(Math.abs(v - expected[i]!) < 1e-4, `${name} onnx ${i}: ${v} vs ${expected[i]}`);
      }
      if (type === "multi_label_classification") {
        assert.ok(
          Math.abs(got.reduce((s, v) => s + v, 0) - 1) > 1e-3,
          "independent sigmoids need not sum to 1",
        );
      }
    } finally {
      p.dispose();
      onnx.dispose();
    }
  }
});
