import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { test } from "node:test";
import {
  HYPERPARAMETERS,
  hyperparameterTable,
  parseHyperparameters,
} from "../../src/aws/hyperparameters";
import { parseFlags } from "../../src/cli/command";
import { fineTuneSettings, TRAIN_FLAGS } from "../../src/train/flags";
import { flag, snakeCase } from "../../src/util/flags";
import { REPO_ROOT } from "../helpers/python";
import { runMain } from "./run-main";

const TRAIN = ["train", "--data", "d", "--out", "o"];
const SM_TRAIN = [
  ...["sagemaker", "train", "--image", "i", "--role", "r"],
  ...["--train", "s3://b/p/", "--output", "s3://b/o/"],
];

async function usageError(argv: string[], message: RegExp) {
  const r = await runMain(argv);
  assert.equal(r.code, 2, `esmkit ${argv.join(" ")}: ${r.stderr}`);
  assert.match(r.stderr, message, argv.join(" "));
  return r;
}

test("bad values exit 2, quoting the flag, the value and what is accepted", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["prepare", "--input", "x", "--out", "y", "--seed", "abc"],
      /^esmkit prepare: --seed expects an integer, got "abc"\n$/,
    ],
    [[...TRAIN, "--epochs", "1.5"], /--epochs expects an integer, got "1.5"/],
    [[...TRAIN, "--learning-rate", "fast"], /--learning-rate expects a number, got "fast"/],
    [[...TRAIN, "--lora-dropout", "1"], /--lora-dropout expects a number >= 0 and < 1, got "1"/],
    [[...TRAIN, "--learning-rate", "0"], /--learning-rate expects a number > 0, got "0"/],
    [["serve", "--port", "70000"], /--port expects an integer >= 0 and <= 65535, got "70000"/],
    [["serve", "--max-batch-size", "0"], /--max-batch-size expects an integer >= 1, got "0"/],
    [
      ["predict", "--model", "m", "--sequence", "A", "--format", "xml"],
      /--format expects jsonl or csv, got "xml"/,
    ],
    [
      [...TRAIN, "--backend", "gpu"],
      /--backend expects one of auto, tensorflow-gpu, tensorflow, wasm, cpu; got "gpu"/,
    ],
    [
      [...TRAIN, "--lora-targets", "query;key"],
      /--lora-targets expects a comma-separated list of names, got "query;key"/,
    ],
    [[...SM_TRAIN, "--hp", "max_steps"], /--hp expects KEY=VALUE, got "max_steps"/],
    [["prepare", "--input", "x", "--out", "y", "--seed"], /--seed <value>' argument missing/],
    [[...TRAIN, "extra"], /Unexpected argument 'extra'/],
    // A negative number reaches the value check instead of parseArgs' "ambiguous".
    [[...TRAIN, "--seed", "-1"], /--seed expects an integer >= 0, got "-1"/],
    [
      ["embed", "--model", "m", "--out", "o.parquet", "--layer", "-1.5"],
      /--layer expects an integer, got "-1.5"/,
    ],
  ];
  for (const [argv, message] of cases) {
    const r = await usageError(argv, message);
    assert.equal(r.stdout, "", argv.join(" "));
  }
});

test("missing, exclusive and dependent flags exit 2 with the problem, then the help", async () => {
  const cases: [string[], string][] = [
    [["evaluate", "--model", "m"], "esmkit evaluate: --data is required"],
    [["prepare"], "esmkit prepare: --input and --out are required"],
    [
      [...TRAIN, "--warmup-steps", "2", "--warmup-ratio", "0.1"],
      "esmkit train: give --warmup-steps or --warmup-ratio, not both",
    ],
    [["predict", "--model", "m"], "esmkit predict: give one of --sequence, --fasta, --csv"],
    [
      ["predict", "--model", "m", "--sequence", "A", "--fasta", "f"],
      "esmkit predict: give only one of --sequence, --fasta, --csv (got --sequence, --fasta)",
    ],
    [
      ["predict", "--model", "m", "--sequence", "A", "--id-column", "id"],
      "esmkit predict: --id-column needs --csv",
    ],
    [[...SM_TRAIN, "--max-wait", "10"], "esmkit sagemaker train: --max-wait needs --spot"],
    [
      ["sagemaker", "transform", "--input", "s3://b/i/", "--output", "s3://b/o/", "--model", "m"],
      "esmkit sagemaker transform: --model needs --image and --role",
    ],
    [
      ["sagemaker", "describe"],
      "esmkit sagemaker describe: give one of --endpoint, --training-job, --transform-job",
    ],
  ];
  for (const [argv, message] of cases) {
    const r = await runMain(argv);
    assert.equal(r.code, 2, argv.join(" "));
    const name = argv[0] === "sagemaker" ? argv.slice(0, 2).join(" ") : argv[0];
    assert.ok(r.stderr.startsWith(`${message}\n\nUsage: esmkit ${name} `), r.stderr);
  }
});

test("unknown flags and commands exit 2, naming them, with a suggestion when one is close", async () => {
  await usageError(
    ["train", "--lora-rnak", "4"],
    /^esmkit train: Unknown option '--lora-rnak' \(did you mean --lora-rank\?\); see "esmkit train --help"\n$/,
  );
  await usageError(["prepare", "--bogus"], /Unknown option '--bogus'; see "esmkit prepare --help"/);
  await usageError(["kernel", "install", "-x"], /Unknown option '-x'/);
  // Names of Object.prototype are not flags either.
  await usageError(["train", "--constructor"], /Unknown option '--constructor'; see "esmkit/);
  await usageError(
    ["sagemaker", "deplyo"],
    /^esmkit sagemaker: unknown subcommand "deplyo" \(did you mean deploy\?\); expected one of: train, deploy, invoke, delete, transform, describe\n$/,
  );
  await usageError(["trian"], /^esmkit: unknown command "trian" \(did you mean train\?\)/);
});

test("parsing: defaults filled in but not counted as given; --no-X; repeated and KEY=VALUE flags", () => {
  const base = ["--data", "d", "--out", "o"];
  const plain = parseFlags(TRAIN_FLAGS, base, "train");
  assert.deepEqual([...plain.given], ["data", "out"]);
  assert.equal(plain.values["lora-rank"], 8);
  assert.equal(plain.values.lora, true);
  assert.equal(plain.values["gradient-checkpointing"], undefined);
  const off = parseFlags(TRAIN_FLAGS, [...base, "--no-lora", "--no-gradient-checkpointing"], "t");
  assert.equal(off.values.lora, false);
  assert.equal(off.values["gradient-checkpointing"], false);
  assert.ok(off.given.has("lora") && off.given.has("gradient-checkpointing"));
  // The last of --X / --no-X wins.
  assert.equal(parseFlags(TRAIN_FLAGS, [...base, "--no-lora", "--lora"], "t").values.lora, true);
  assert.equal(parseFlags(TRAIN_FLAGS, [...base, "--lora", "--no-lora"], "t").values.lora, false);

  const table = {
    seq: flag.repeated("sequences"),
    kv: flag.keyValues("pairs"),
    n: flag.int("a number", { default: 3 }),
  };
  const r = parseFlags(
    table,
    ["--seq", "a", "--kv", "a=1", "--seq", "b", "--kv", "b=x=y", "--n=4"],
    "x",
  );
  assert.deepEqual(r.values, { seq: ["a", "b"], kv: { a: "1", b: "x=y" }, n: 4 });
  assert.deepEqual(parseFlags(table, [], "x").values, { seq: undefined, kv: undefined, n: 3 });

  // A negative number after a flag that takes a value is that value (parseArgs alone
  // refuses "--n -2" as ambiguous); a dash-word after it is still a missing value.
  assert.equal(parseFlags(table, ["--n", "-2"], "x").values.n, -2);
  assert.deepEqual(parseFlags(table, ["--seq", "-0.5", "--seq", "-.5"], "x").values.seq, [
    "-0.5",
    "-.5",
  ]);
  assert.throws(
    () => parseFlags(table, ["--n", "--seq", "a"], "x"),
    /argument is ambiguous|argument missing/,
  );
  assert.throws(() => parseFlags(table, ["--n", "-x"], "x"), /ambiguous/);
});

/** A valid value for every hyperparameter, as the text a user would type. */
const SAMPLES: Record<string, string | boolean> = {
  model: "facebook/esm2_t12_35M_UR50D",
  "random-if-unavailable": true,
  task: "multi_label_classification",
  lora: false,
  "lora-rank": "4",
  "lora-alpha": "32",
  "lora-dropout": "0.1",
  "lora-targets": "query, value",
  "learning-rate": "2e-4",
  "weight-decay": "0",
  "batch-size": "2",
  epochs: "3",
  "max-steps": "7",
  "max-length": "64",
  "gradient-accumulation-steps": "4",
  "gradient-checkpointing": true,
  "warmup-steps": "3",
  "warmup-ratio": "0.1",
  "max-grad-norm": "0.5",
  "class-weights": "0.7,1.7",
  threshold: "0.35",
  seed: "1",
  "save-steps": "5",
  "save-total-limit": "3",
  "eval-batch-size": "4",
  "limit-train": "16",
  "limit-eval": "8",
  backend: "wasm",
  engine: "onnx",
  threads: "2",
  quantize: "int8",
  overwrite: true,
};

/** An invalid value for each kind of check. */
const BAD: Record<string, string> = {
  "lora-rank": "0",
  "lora-dropout": "1",
  "learning-rate": "0",
  "max-length": "2",
  epochs: "1.5",
  seed: "-1",
  "warmup-ratio": "1.5",
  backend: "gpu",
  "class-weights": "heavy",
  task: "ranking",
  threshold: "1.5",
  "lora-targets": "a;b",
  model: " ",
};

function cliArgs(name: string, value: string | boolean): string[] {
  if (typeof value === "string") return [`--${name}=${value}`]; // "=": "-1" is not a flag
  return [value ? `--${name}` : `--no-${name}`];
}

test("each hyperparameter is a train flag under its snake_case name, parsed the same way", () => {
  const flags = Object.entries(TRAIN_FLAGS).filter(([, f]) => f.hyperparameter !== false);
  assert.deepEqual(
    Object.keys(HYPERPARAMETERS),
    flags.map(([name]) => snakeCase(name)),
  );
  assert.deepEqual(
    Object.keys(SAMPLES),
    Object.keys(HYPERPARAMETERS).map((k) => k.replace(/_/g, "-")),
  );
  for (const [name, value] of Object.entries(SAMPLES)) {
    const key = snakeCase(name);
    const hp = parseHyperparameters({ [key]: String(value) }).options;
    const cli = parseFlags(
      TRAIN_FLAGS,
      ["--data", "d", "--out", "o", ...cliArgs(name, value)],
      "t",
    );
    const given = Object.fromEntries([...cli.given].map((n) => [n, cli.values[n]]));
    const { data: _d, out: _o, ...fromCli } = fineTuneSettings(given);
    assert.deepEqual(hp, fromCli, name);
    assert.ok(Object.keys(hp).length === 1, `${name} sets ${JSON.stringify(hp)}`);
  }
  for (const [name, value] of Object.entries(BAD)) {
    const key = snakeCase(name);
    assert.throws(
      () => parseHyperparameters({ [key]: value }),
      new RegExp(
        `^ConfigError: Hyperparameter ${key}=.* is invalid: expected ${HYPERPARAMETERS[key]!.accepts.replace(/[.*+?()|[\]\\]/g, "\\$&")}$`,
      ),
      name,
    );
    assert.throws(
      () => parseFlags(TRAIN_FLAGS, cliArgs(name, value), "t"),
      new RegExp(`^FlagError: --${name} expects .*got ${JSON.stringify(value)}$`),
      name,
    );
  }
  // The exclusive pair is declared once, for both.
  assert.throws(
    () => parseHyperparameters({ warmup_steps: "2", warmup_ratio: "0.1" }),
    /^ConfigError: Give warmup_steps or warmup_ratio, not both$/,
  );
});

test("docs/aws.md's hyperparameter table is the one the code generates, row for row", async () => {
  const doc = await readFile(path.join(REPO_ROOT, "docs", "aws.md"), "utf8");
  const section = doc.slice(
    doc.indexOf("### Hyperparameters"),
    doc.indexOf("### The training container contract"),
  );
  const rows = section.split("\n").filter((l) => l.startsWith("| `"));
  assert.deepEqual(rows, hyperparameterTable().split("\n"));
});
