/**
 * `esmkit train` against what real use does to a run folder: kill -9 at a chosen step,
 * SIGTERM, a resume with other settings, a resume after the end, a stale copy of
 * another run, two runs at once, leftovers of dead processes. Every run is a child
 * process on the tiny fixture model (a few seconds each); train-child.js stops it at an
 * exact step.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { appendFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { prepare } from "../../src/data/prepare";
import { parseHistory } from "../../src/train/history";
import { REPO_ROOT } from "../helpers/python";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
const CHILD = path.join(__dirname, "train-child.js");
let data = "";
let work = "";

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), "esmkit-safety-"));
  data = path.join(work, "data");
  await prepare({ input: path.join(REPO_ROOT, "data", "deeploc-sample.csv"), out: data });
});

/** 16 examples, batch 2: 8 steps per epoch; 6 steps, a checkpoint every 2. */
const runArgs = (out: string, ...more: string[]) => [
  "train",
  "--data",
  data,
  "--model",
  TINY,
  "--out",
  out,
  "--max-steps",
  "6",
  "--batch-size",
  "2",
  "--max-length",
  "24",
  "--limit-train",
  "16",
  "--limit-eval",
  "4",
  "--save-steps",
  "2",
  ...more,
];

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  pid: number;
}

function start(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [CHILD, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  // A run that hangs (a failing test leaving one paused) must not hang the suite.
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  child.on("exit", () => clearTimeout(timer));
  return child;
}

function finish(child: ChildProcess): Promise<Run> {
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve) =>
    child.on("close", (status, signal) => resolve({ status, signal, stderr, pid: child.pid! })),
  );
}

const esmkit = (args: string[], env: Record<string, string> = {}) => finish(start(args, env));

const dir = (name: string) => path.join(work, name);
const checkpoints = (out: string) =>
  existsSync(path.join(out, "checkpoints"))
    ? readdirSync(path.join(out, "checkpoints")).sort()
    : [];
const historyText = (out: string) => readFileSync(path.join(out, "history.jsonl"), "utf8");
const stepsOf = (out: string) =>
  parseHistory(historyText(out))
    .filter((e) => e.type === "step")
    .map((e) => e.step);
const bytes = (out: string, file: string) => readFileSync(path.join(out, file));

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid!;
}

let reference = ""; // an uninterrupted run, default learning rate
let referenceFast = ""; // an uninterrupted run with --learning-rate 5e-4

test("uninterrupted reference runs; metrics.json and evaluate name their two losses apart", async () => {
  reference = dir("reference");
  referenceFast = dir("reference-fast");
  const [a, b] = await Promise.all([
    esmkit(runArgs(reference)),
    esmkit(runArgs(referenceFast, "--learning-rate", "5e-4")),
  ]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.deepEqual(stepsOf(reference), [1, 2, 3, 4, 5, 6]);
  assert.notDeepEqual(
    bytes(reference, "model/model.safetensors"),
    bytes(referenceFast, "model/model.safetensors"),
  );

  // metrics.json: the class-weighted loss (what training minimises) and the plain mean.
  const metrics = JSON.parse(readFileSync(path.join(reference, "metrics.json"), "utf8"));
  assert.equal(metrics.eval.loss, undefined, "no ambiguous 'loss' key");
  assert.ok(Number.isFinite(metrics.eval.weightedLoss), JSON.stringify(metrics.eval));
  assert.ok(Number.isFinite(metrics.eval.unweightedLoss));
  assert.equal(metrics.classWeights.length, 2);
  assert.match(a.stderr, /eval epoch 1: loss [\d.]+ \(class-weighted; unweighted [\d.]+\)/);
  // evaluate has no class weights: it reports the unweighted loss, under that name.
  const evaluated = spawnSync(
    process.execPath,
    [
      CHILD,
      "evaluate",
      "--model",
      path.join(reference, "model"),
      "--data",
      data,
      "--limit",
      "4",
      "--max-length",
      "24",
    ],
    { encoding: "utf8" },
  );
  assert.equal(evaluated.status, 0, evaluated.stderr);
  const printed = JSON.parse(evaluated.stdout).metrics;
  assert.equal(printed.loss, undefined);
  assert.equal(printed.weightedLoss, undefined);
  assert.ok(Math.abs(printed.unweightedLoss - metrics.eval.unweightedLoss) < 1e-5);
});

test("a stale copy of a finished run: a new run is refused, then kill -9, resume checks every setting", async () => {
  // The issue's repro: copy a finished run, start another learning rate there.
  const out = dir("copied");
  cpSync(reference, out, { recursive: true });
  const before = historyText(out);
  const refused = await esmkit(runArgs(out, "--learning-rate", "5e-4"));
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /already holds a training run \(checkpoints\/checkpoint-6/);
  assert.match(refused.stderr, /--overwrite/);
  assert.equal(historyText(out), before, "the refused run changed nothing");
  assert.deepEqual(checkpoints(out), ["checkpoint-4", "checkpoint-6"]);

  // --overwrite replaces it; kill -9 right after step 3 (checkpoint-2 is the latest).
  const killed = await esmkit(runArgs(out, "--learning-rate", "5e-4", "--overwrite"), {
    ESMKIT_TEST_KILL_AFTER_STEP: "3",
  });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  assert.deepEqual(checkpoints(out), ["checkpoint-2"], "the old run's checkpoints are gone");
  assert.deepEqual(stepsOf(out), [1, 2, 3]);
  assert.ok(!existsSync(path.join(out, "model")), "the old run's model is gone");

  // Resuming with the old run's settings would continue the new run with another rate.
  const other = await esmkit(runArgs(out, "--resume"));
  assert.equal(other.status, 2, other.stderr);
  assert.match(
    other.stderr,
    /learning rate \(--learning-rate\): 0\.0005 in the folder's run, 0\.0001 now/,
  );
  assert.match(other.stderr, /May change on resume: --max-steps, --epochs, /);
  // A shape change says which setting, not "unexpected error: shape of the new value".
  const rank = await esmkit(
    runArgs(out, "--resume", "--learning-rate", "5e-4", "--lora-rank", "4"),
  );
  assert.equal(rank.status, 2, rank.stderr);
  assert.match(rank.stderr, /LoRA rank \(--lora-rank\): 8 in the folder's run, 4 now/);
  assert.doesNotMatch(rank.stderr, /unexpected error/);
  const seed = await esmkit(
    runArgs(out, "--resume", "--learning-rate", "5e-4", "--seed", "7", "--max-length", "20"),
  );
  assert.equal(seed.status, 2, seed.stderr);
  assert.match(seed.stderr, /seed \(--seed\): 42 in the folder's run, 7 now/);
  assert.match(seed.stderr, /max length \(--max-length\): 24 in the folder's run, 20 now/);
  assert.deepEqual(checkpoints(out), ["checkpoint-2"], "refused resumes wrote nothing");

  // A torn last line, as a kill -9 in the middle of a write leaves it.
  await appendFile(path.join(out, "history.jsonl"), '{"type":"step","step":4,"tot');
  // The same settings (changing what may change) resume and end where an uninterrupted run ends.
  const resumed = await esmkit(
    runArgs(
      out,
      "--resume",
      "--learning-rate",
      "5e-4",
      "--eval-batch-size",
      "3",
      "--save-total-limit",
      "3",
    ),
  );
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming from step 2/);
  assert.match(resumed.stderr, /history\.jsonl: dropped 1 event\(s\) after step 2/);
  assert.deepEqual(stepsOf(out), [1, 2, 3, 4, 5, 6], "every step once, in order");
  for (const f of ["model/model.safetensors", "adapter/adapter_model.safetensors"]) {
    assert.deepEqual(bytes(out, f), bytes(referenceFast, f), `${f} equals the uninterrupted run's`);
  }
});

test("a resume after the final step trains nothing, writes no checkpoint, re-emits missing outputs", async () => {
  const out = dir("finished");
  cpSync(reference, out, { recursive: true });
  const history = historyText(out);
  const ckptTime = statSync(path.join(out, "checkpoints", "checkpoint-6", "tensors.bin")).mtimeMs;
  const again = await esmkit(runArgs(out, "--resume"));
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /already complete: step 6 of 6; nothing to train/);
  assert.deepEqual(checkpoints(out), ["checkpoint-4", "checkpoint-6"]);
  assert.equal(
    statSync(path.join(out, "checkpoints", "checkpoint-6", "tensors.bin")).mtimeMs,
    ckptTime,
    "checkpoint-6 not rewritten",
  );
  assert.equal(historyText(out), history, "no step, eval or checkpoint event added");

  // Outputs lost after the last checkpoint (a crash while saving them) come back as they were.
  const { rmSync } = await import("node:fs");
  rmSync(path.join(out, "model"), { recursive: true });
  rmSync(path.join(out, "metrics.json"));
  const reemit = await esmkit(runArgs(out, "--resume"));
  assert.equal(reemit.status, 0, reemit.stderr);
  assert.match(reemit.stderr, /writing the missing outputs of step 6/);
  assert.deepEqual(
    bytes(out, "model/model.safetensors"),
    bytes(reference, "model/model.safetensors"),
  );
  assert.deepEqual(
    JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")).eval,
    JSON.parse(readFileSync(path.join(reference, "metrics.json"), "utf8")).eval,
  );
  assert.equal(historyText(out), history);
  assert.deepEqual(checkpoints(out), ["checkpoint-4", "checkpoint-6"]);
});

test("checkpoints that record no identity (an older esmkit) are not resumed blindly", async () => {
  const out = dir("unrecorded");
  cpSync(reference, out, { recursive: true });
  for (const c of checkpoints(out)) {
    const file = path.join(out, "checkpoints", c, "manifest.json");
    const manifest = JSON.parse(readFileSync(file, "utf8"));
    delete manifest.state.identity;
    writeFileSync(file, JSON.stringify(manifest));
  }
  const r = await esmkit(runArgs(out, "--resume", "--max-steps", "8"));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /records no run settings \(made by an older esmkit or another tool\)/);
  assert.deepEqual(stepsOf(out), [1, 2, 3, 4, 5, 6]);
});

test("--resume where there is nothing to resume fails clearly and creates nothing", async () => {
  const missing = dir("never-trained");
  const r = await esmkit(runArgs(missing, "--resume"));
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    /Nothing to resume in .*never-trained: it has no checkpoint \(the folder does not exist\)\. To start a new run there, run without --resume\./,
  );
  assert.ok(!existsSync(missing));
  const empty = dir("empty");
  mkdirSync(empty);
  const e = await esmkit(runArgs(empty, "--resume"));
  assert.equal(e.status, 2, e.stderr);
  assert.match(e.stderr, /Nothing to resume/);
  assert.deepEqual(readdirSync(empty), []);
  const both = await esmkit(runArgs(empty, "--resume", "--overwrite"));
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give one of them/);
});

test("two runs on one folder: the second fails at once naming the first's pid; the first completes", async () => {
  const out = dir("concurrent");
  const paused = path.join(work, "paused");
  const go = path.join(work, "go");
  const first = start(runArgs(out), {
    ESMKIT_TEST_PAUSE_AFTER_STEP: "2",
    ESMKIT_TEST_PAUSED: paused,
    ESMKIT_TEST_GO: go,
  });
  const firstDone = finish(first);
  try {
    while (!existsSync(paused)) await new Promise((r) => setTimeout(r, 50));
    for (const extra of [[], ["--resume"], ["--overwrite"]]) {
      const second = await esmkit(runArgs(out, ...extra));
      assert.equal(second.status, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`is in use by process ${first.pid} `));
    }
  } finally {
    writeFileSync(go, "");
  }
  const done = await firstDone;
  assert.equal(done.status, 0, done.stderr);
  assert.deepEqual(stepsOf(out), [1, 2, 3, 4, 5, 6], "history.jsonl valid, every step once");
  assert.deepEqual(
    bytes(out, "model/model.safetensors"),
    bytes(reference, "model/model.safetensors"),
  );
  assert.ok(!existsSync(path.join(out, ".esmkit.lock")), "the lock is released");
});

test("SIGTERM saves a checkpoint and exits 143 like Ctrl-C (130); --resume completes", async () => {
  for (const [signal, code] of [
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const) {
    const out = dir(`signal-${signal}`);
    const stopped = await esmkit(runArgs(out), { ESMKIT_TEST_SIGNAL_AFTER_STEP: `3:${signal}` });
    assert.equal(stopped.status, code, stopped.stderr);
    assert.match(stopped.stderr, /finishing this step and saving a checkpoint/);
    const step = Number(/interrupted at step (\d+); checkpoint saved/.exec(stopped.stderr)?.[1]);
    assert.ok(step === 3 || step === 4, `stopped at step ${step}`);
    assert.ok(checkpoints(out).includes(`checkpoint-${step}`), checkpoints(out).join(","));
    assert.ok(!existsSync(path.join(out, ".esmkit.lock")), "the lock is released");
    const resumed = await esmkit(runArgs(out, "--resume"));
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.deepEqual(stepsOf(out), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(
      bytes(out, "model/model.safetensors"),
      bytes(reference, "model/model.safetensors"),
    );
  }
});

test("leftover temporaries of dead processes are removed by the next run; a live process's are kept", async () => {
  const dead = deadPid();
  const live = process.pid; // this test runner: alive while the child runs
  const out = dir("leftovers");
  mkdirSync(path.join(out, "checkpoints"), { recursive: true });
  const leftovers = (pid: number) => [
    `checkpoints/checkpoint-2.tmp-${pid}`,
    `model.tmp-${pid}`,
    `history.jsonl.tmp-${pid}`,
    `metrics.json.tmp-${pid}`,
  ];
  for (const p of [...leftovers(dead), ...leftovers(live)]) {
    mkdirSync(path.join(out, p), { recursive: true });
    writeFileSync(path.join(out, p, "junk"), "x");
  }
  const r = await esmkit(runArgs(out));
  assert.equal(r.status, 0, r.stderr);
  for (const p of leftovers(dead)) assert.ok(!existsSync(path.join(out, p)), `${p} removed`);
  for (const p of leftovers(live)) assert.ok(existsSync(path.join(out, p)), `${p} kept`);

  // predict's OUT.partial-<pid> and prepare's hidden staging directory.
  const predictions = path.join(work, "predictions.jsonl");
  writeFileSync(`${predictions}.partial-${dead}`, "half");
  writeFileSync(`${predictions}.partial-${live}`, "half");
  const p = spawnSync(
    process.execPath,
    [
      CHILD,
      "predict",
      "--model",
      path.join(out, "model"),
      "--sequence",
      "MKTAYIAKQR",
      "--out",
      predictions,
    ],
    { encoding: "utf8" },
  );
  assert.equal(p.status, 0, p.stderr);
  assert.ok(!existsSync(`${predictions}.partial-${dead}`));
  assert.ok(existsSync(`${predictions}.partial-${live}`));
  const prepared = path.join(work, "prepared");
  for (const pid of [dead, live]) {
    mkdirSync(path.join(work, `.prepared.partial-${pid}-Ab12Cd`));
    writeFileSync(path.join(work, `.prepared.partial-${pid}-Ab12Cd`, "train.parquet"), "x");
  }
  const prep = spawnSync(
    process.execPath,
    [
      CHILD,
      "prepare",
      "--input",
      path.join(REPO_ROOT, "data", "deeploc-sample.csv"),
      "--out",
      prepared,
    ],
    { encoding: "utf8" },
  );
  assert.equal(prep.status, 0, prep.stderr);
  assert.ok(!existsSync(path.join(work, `.prepared.partial-${dead}-Ab12Cd`)));
  assert.ok(existsSync(path.join(work, `.prepared.partial-${live}-Ab12Cd`)));
});

test("what may change on resume is documented where users look: --help and the README", async () => {
  const { SAFE_TO_CHANGE_ON_RESUME } = await import("../../src/train/run-identity");
  const help = spawnSync(process.execPath, [CHILD, "train", "--help"], { encoding: "utf8" }).stdout;
  const readme = readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
  const reliability = readme.slice(
    readme.indexOf("## Reliability"),
    readme.indexOf("## Performance"),
  );
  const flat = (t: string) => t.replace(/\s+/g, " ");
  for (const flag of SAFE_TO_CHANGE_ON_RESUME) {
    assert.ok(
      flat(help).includes(`${flag},`) || flat(help).includes(`${flag}.`),
      `--help: ${flag}`,
    );
    assert.ok(reliability.includes(`\`${flag}\``), `README: ${flag}`);
  }
});
