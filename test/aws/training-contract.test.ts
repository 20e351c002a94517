import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { before, test } from "node:test";
import { normaliseHyperparameters, parseHyperparameters } from "../../src/aws/hyperparameters";
import {
  readContainerJob,
  runTrainingContainer,
  sageMakerPaths,
} from "../../src/aws/training-contract";
import { prepare } from "../../src/data/prepare";
import { ConfigError } from "../../src/errors";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import { runCli, SAMPLE, tinyModelDir, tmp } from "./fixtures";

let modelDir: string;
let prepared: string;

before(async () => {
  modelDir = await tinyModelDir();
  prepared = path.join(await tmp("esmkit-sm-data-"), "prepared");
  await prepare({ input: SAMPLE, out: prepared, maxLength: 200 });
});

/** A SageMaker-like root: config files as SageMaker writes them and a train channel. */
async function containerRoot(hyperparameters: Record<string, unknown>): Promise<string> {
  const root = await tmp("esmkit-sm-root-");
  const p = sageMakerPaths(root);
  await mkdir(path.dirname(p.hyperparameters), { recursive: true });
  await writeFile(p.hyperparameters, JSON.stringify(hyperparameters));
  await writeFile(
    p.inputDataConfig,
    JSON.stringify({
      train: {
        TrainingInputMode: "File",
        S3DistributionType: "FullyReplicated",
        RecordWrapperType: "None",
      },
    }),
  );
  await writeFile(
    p.resourceConfig,
    JSON.stringify({ current_host: "algo-1", hosts: ["algo-1"], network_interface_name: "eth0" }),
  );
  const train = path.join(p.channels, "train");
  await mkdir(train, { recursive: true });
  for (const f of ["train.parquet", "test.parquet", "stats.json"]) {
    await writeFile(path.join(train, f), await readFile(path.join(prepared, f)));
  }
  return root;
}

const QUICK = () => ({
  model: modelDir,
  max_steps: "2",
  lora_rank: "4",
  max_length: "64",
  batch_size: "4",
  limit_train: "16",
  limit_eval: "8",
  backend: "wasm",
});

test("hyperparameters: strings to fineTune options, strictly", () => {
  const { options, ignored } = parseHyperparameters({
    max_steps: "200",
    "lora-rank": "4",
    lora_targets: "query,value",
    learning_rate: "2e-4",
    gradient_checkpointing: "true",
    class_weights: "0.7,1.7",
    model: '"facebook/esm2_t12_35M_UR50D"', // JSON-quoted, as the Python SDK sends
    sagemaker_region: '"us-east-1"',
  });
  assert.deepEqual(options, {
    maxSteps: 200,
    lora: { rank: 4, targetModules: ["query", "value"] },
    learningRate: 2e-4,
    gradientCheckpointing: true,
    classWeights: [0.7, 1.7],
    model: "facebook/esm2_t12_35M_UR50D",
  });
  assert.deepEqual(ignored, ["sagemaker_region"]);
  assert.deepEqual(parseHyperparameters({ lora: "false" }).options, { lora: false });
  assert.deepEqual(normaliseHyperparameters({ "max-steps": 5, epochs: "2" }), {
    max_steps: "5",
    epochs: "2",
  });
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ learning_rate: "fast" }, /learning_rate="fast" is invalid: expected a number > 0/],
    [{ max_steps: "2.5" }, /max_steps="2.5" is invalid: expected an integer >= 1/],
    [{ lora_dropout: "1" }, /lora_dropout="1" is invalid: expected a number >= 0 and < 1/],
    [{ gradient_checkpointing: "maybe" }, /expected true or false/],
    [{ backend: "gpu" }, /expected one of auto, tensorflow-gpu, tensorflow, wasm, cpu/],
    [
      { lerning_rate: "0.1" },
      /Unknown hyperparameter "lerning_rate".*did you mean learning_rate\?/,
    ],
    [{ batch_size: { n: 1 } }, /expected a string/],
    [{ lora: "false", lora_rank: "4" }, /lora=false \(full fine-tuning\) conflicts with lora_rank/],
    [{ max_steps: "1", "max-steps": "2" }, /given twice/],
  ];
  for (const [hp, re] of bad) assert.throws(() => parseHyperparameters(hp), re, JSON.stringify(hp));
});

test("container run under a temporary /opt/ml: model files, checkpoints, then a resume", async () => {
  const root = await containerRoot(QUICK());
  const env = { ...process.env, ESMKIT_SM_ROOT: root };
  const r = await runCli(["train"], env);
  assert.equal(r.status, 0, r.stderr);
  const p = sageMakerPaths(root);
  assert.equal(existsSync(p.failure), false);
  const files = (await readdir(p.model)).sort();
  for (const f of [
    "config.json",
    "model.safetensors",
    "adapter",
    "metrics.json",
    "history.jsonl",
  ]) {
    assert.ok(files.includes(f), `model/ has ${f}: ${files.join(", ")}`);
  }
  assert.ok(existsSync(path.join(p.model, "adapter", "adapter_config.json")));
  const metrics = JSON.parse(await readFile(path.join(p.model, "metrics.json"), "utf8"));
  assert.equal(metrics.steps, 2);
  assert.equal(metrics.trainExamples, 16);
  assert.equal(metrics.evalExamples, 8);
  assert.ok(existsSync(path.join(p.outputData, "metrics.json")));
  assert.deepEqual(await readdir(p.checkpoints), ["checkpoint-2"]);

  // The model directory is what the serve container loads from /opt/ml/model.
  const predictor = await loadEsmPredictor(p.model);
  const [probs] = await predictor.predict(["MKTAYIAKQRQISFVKSHFSRQ"]);
  assert.equal(Object.keys(probs!).length, 2);
  await predictor.dispose?.();

  // A restarted job (spot) resumes from /opt/ml/checkpoints.
  await rm(p.model, { recursive: true });
  const again = await runCli(["train"], env);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /resuming from step 2/);
  assert.ok(existsSync(path.join(p.model, "model.safetensors")));
});

test("a restarted job refuses checkpoints of a run with other settings, unless overwrite=true", async () => {
  const root = await containerRoot(QUICK());
  const env = { ...process.env, ESMKIT_SM_ROOT: root };
  const p = sageMakerPaths(root);
  assert.equal((await runCli(["train"], env)).status, 0);
  // The same checkpoint folder (S3 prefix), another learning rate.
  await writeFile(p.hyperparameters, JSON.stringify({ ...QUICK(), learning_rate: "5e-4" }));
  await rm(p.model, { recursive: true });
  const refused = await runCli(["train"], env);
  assert.equal(refused.status, 2, refused.stderr);
  const failure = await readFile(p.failure, "utf8");
  assert.match(failure, /^RunMismatchError: Cannot resume in /);
  assert.match(
    failure,
    /learning rate \(--learning-rate\): 0\.0001 in the folder's run, 0\.0005 now/,
  );
  assert.equal(existsSync(path.join(p.model, "config.json")), false, "no model from the old run");

  await writeFile(
    p.hyperparameters,
    JSON.stringify({ ...QUICK(), learning_rate: "5e-4", overwrite: "true" }),
  );
  await rm(p.failure);
  const replaced = await runCli(["train"], env);
  assert.equal(replaced.status, 0, replaced.stderr);
  assert.match(replaced.stderr, /replacing another run/);
  const manifest = JSON.parse(
    await readFile(path.join(p.checkpoints, "checkpoint-2", "manifest.json"), "utf8"),
  );
  assert.equal(manifest.state.identity.learningRate, 5e-4);
  // overwrite=true still resumes the job's own checkpoints (a spot restart).
  await rm(p.model, { recursive: true });
  const restarted = await runCli(["train"], env);
  assert.equal(restarted.status, 0, restarted.stderr);
  assert.match(restarted.stderr, /resuming from step 2/);
  assert.doesNotMatch(restarted.stderr, /replacing/);
});

test("bad hyperparameters: output/failure names the problem, exit code non-zero", async () => {
  const root = await containerRoot({ ...QUICK(), learning_rate: "fast" });
  const r = await runCli(["train"], { ...process.env, ESMKIT_SM_ROOT: root });
  assert.equal(r.status, 2, r.stderr);
  const failure = await readFile(sageMakerPaths(root).failure, "utf8");
  assert.match(failure, /^ConfigError: Hyperparameter learning_rate="fast" is invalid/);
  assert.match(r.stderr, /learning_rate="fast"/);
  assert.equal(existsSync(path.join(sageMakerPaths(root).model, "config.json")), false);

  // Flags do not mix with container mode.
  const flags = await runCli(["train", "--epochs", "2"], { ...process.env, ESMKIT_SM_ROOT: root });
  assert.equal(flags.status, 2);
  assert.match(flags.stderr, /settings come from .*hyperparameters\.json; remove --epochs/);
});

test("other contract violations fail the job with a reason", async () => {
  const cases: [(root: string) => Promise<void>, RegExp][] = [
    [
      async (root) => {
        await writeFile(
          sageMakerPaths(root).hyperparameters,
          JSON.stringify({ lerning_rate: "1" }),
        );
      },
      /Unknown hyperparameter "lerning_rate" \(value "1"\) \(did you mean learning_rate\?\)/,
    ],
    [
      async (root) => {
        await writeFile(sageMakerPaths(root).hyperparameters, "{not json");
      },
      /hyperparameters .* is not valid JSON/,
    ],
    [
      async (root) => {
        await rm(path.join(sageMakerPaths(root).channels, "train"), { recursive: true });
        await writeFile(sageMakerPaths(root).inputDataConfig, "{}");
      },
      /No "train" channel in .*inputdataconfig\.json \(channels: none\)/,
    ],
    [
      async (root) => {
        await rm(path.join(sageMakerPaths(root).channels, "train"), { recursive: true });
      },
      /No train channel at .*input\/data\/train/,
    ],
    [
      async (root) => {
        await writeFile(
          sageMakerPaths(root).resourceConfig,
          JSON.stringify({ current_host: "algo-1", hosts: ["algo-1", "algo-2"] }),
        );
      },
      /esmkit trains on one instance, but this job has 2/,
    ],
  ];
  for (const [breakIt, re] of cases) {
    const root = await containerRoot(QUICK());
    await breakIt(root);
    const result = await runTrainingContainer({ root });
    assert.equal(result.exitCode, 2, result.failure);
    assert.match(await readFile(sageMakerPaths(root).failure, "utf8"), re);
  }
  // The base model defaults to the `model` channel when there is one.
  const root = await containerRoot({ max_steps: "1" });
  await mkdir(path.join(sageMakerPaths(root).channels, "model"));
  assert.equal(
    readContainerJob(root).options.model,
    path.join(sageMakerPaths(root).channels, "model"),
  );
  assert.throws(() => readContainerJob(path.join(root, "nope")), ConfigError);
});

test("docs/aws.md documents every hyperparameter and only those", async () => {
  const { HYPERPARAMETERS } = await import("../../src/aws/hyperparameters");
  const { REPO_ROOT } = await import("../helpers/python");
  const doc = await readFile(path.join(REPO_ROOT, "docs", "aws.md"), "utf8");
  const section = doc.slice(
    doc.indexOf("### Hyperparameters"),
    doc.indexOf("### The training container contract"),
  );
  const documented = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(documented, Object.keys(HYPERPARAMETERS));
});

test("SIGTERM (a stopped or interrupted spot job) saves a checkpoint and exits 143", async () => {
  const root = await containerRoot({ ...QUICK(), max_steps: "400", limit_eval: "4" });
  const { spawn } = await import("node:child_process");
  const { CLI } = await import("./fixtures");
  const child = spawn(process.execPath, [CLI, "train"], {
    env: { ...process.env, ESMKIT_SM_ROOT: root },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  let sent = false;
  child.stderr.on("data", (d) => {
    stderr += d;
    if (!sent && /LoRA r=/.test(stderr)) {
      sent = true;
      setTimeout(() => child.kill("SIGTERM"), 500);
    }
  });
  const code = await new Promise<number | null>((r) => child.on("close", r));
  assert.equal(code, 143, stderr);
  assert.match(stderr, /SIGTERM: finishing this step and saving a checkpoint/);
  const p = sageMakerPaths(root);
  const steps = (await readdir(p.checkpoints)).map((n) =>
    Number(/^checkpoint-(\d+)$/.exec(n)?.[1]),
  );
  assert.ok(steps.length > 0 && steps.every((s) => s > 0 && s < 400), steps.join(","));
  assert.equal(existsSync(p.failure), false);
  assert.equal(existsSync(path.join(p.model, "config.json")), false);
});
