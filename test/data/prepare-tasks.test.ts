/**
 * `esmkit prepare` for the other tasks: multi-label (--locations, --label-columns),
 * k classes from one column, regression targets; the labels checked row by row with
 * pandas, iterative stratification, and the errors (exit 2) for label columns that do
 * not fit the task.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { labelBalance, loadPrepared } from "../../src/data/frame";
import { DEEPLOC_LOCATIONS } from "../../src/data/labels";
import { type PrepareStats, prepare, splitIndices } from "../../src/data/prepare";
import { iterativeStratification } from "../../src/data/split";
import { ConfigError, DataError } from "../../src/errors";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const SAMPLE = path.join(REPO_ROOT, "data", "deeploc-sample.csv");
const CLI = path.join(REPO_ROOT, "bin", "esmkit.js");
const tmp = () => mkdtemp(path.join(tmpdir(), "esmkit-prep-task-"));
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

function checkWithPandas(t: { skip(r: string): void }, out: string) {
  const python = referencePython();
  if (!python) {
    t.skip(pythonSkipReason());
    return undefined;
  }
  return JSON.parse(
    runPython(python, "check_prepared_task.py", [SAMPLE, out]).trim().split("\n").pop()!,
  );
}

test("--locations: ten 0/1 labels per protein, the task in stats.json, pandas and datasets read them", async (t) => {
  const out = path.join(await tmp(), "out");
  const { stats } = await prepare({ input: SAMPLE, out, locations: true });
  const saved = JSON.parse(await readFile(path.join(out, "stats.json"), "utf8")) as PrepareStats;
  assert.deepEqual(saved, stats);
  assert.equal(stats.task.problemType, "multi_label_classification");
  assert.deepEqual(stats.task.labels, [...DEEPLOC_LOCATIONS]);
  assert.deepEqual(stats.task.columns, [...DEEPLOC_LOCATIONS]);
  assert.equal(stats.classWeights, null);
  // Positive weights: negatives / positives among the training rows, per location.
  const train = stats.splits.train;
  assert.deepEqual(
    stats.posWeight,
    DEEPLOC_LOCATIONS.map((l) => (train.rows - train.classCounts[l]!) / train.classCounts[l]!),
  );
  for (const l of DEEPLOC_LOCATIONS) {
    assert.equal(stats.classCounts[l], train.classCounts[l]! + stats.splits.test.classCounts[l]!);
  }
  // The Parquet vectors count the same positives (labelBalance reads them).
  const data = await loadPrepared(out);
  const balance = labelBalance({ train: data.train }, stats.task.labels).toRecords();
  assert.deepEqual(
    balance.map((r) => [r.label, r.positive, r.rows]),
    DEEPLOC_LOCATIONS.map((l) => [l, train.classCounts[l], train.rows]),
  );
  const report = checkWithPandas(t, out);
  if (!report) return;
  assert.equal(report.rows, stats.rowsKept);
  assert.equal(report.mismatch_count, 0, JSON.stringify(report.mismatches));
  assert.equal(report.datasets_label, "LargeList(Value('float32'))");
});

test("--label-columns picks any 0/1 columns, in the order given; the summary names each label", async () => {
  const out = path.join(await tmp(), "out");
  const r = cli([
    "prepare",
    "--input",
    SAMPLE,
    "--out",
    out,
    "--label-columns",
    "Nucleus, Cell membrane",
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stderr,
    /kept 1701 rows, 2 labels; positive rows per label: Nucleus \d+ \(train \d+, test \d+\); Cell membrane/,
  );
  assert.match(
    r.stderr,
    /positive weights \(negatives \/ positives in train\): \d+\.\d{4}, \d+\.\d{4}/,
  );
  const stats = JSON.parse(await readFile(path.join(out, "stats.json"), "utf8")) as PrepareStats;
  assert.deepEqual(stats.task.labels, ["Nucleus", "Cell membrane"]);
  assert.equal(stats.labelColumn, "Nucleus,Cell membrane");
});

test("k classes from one column: sorted names as id2label, class weights for k, pandas agrees", async (t) => {
  const out = path.join(await tmp(), "out");
  const { stats } = await prepare({
    input: SAMPLE,
    out,
    task: "single_label_classification",
    labelColumn: "Kingdom",
    stratify: true,
  });
  assert.deepEqual(stats.task.labels, ["Fungi", "Metazoa", "Other", "Viridiplantae"]);
  assert.deepEqual(Object.keys(stats.classCounts), ["0", "1", "2", "3"]);
  const train = stats.splits.train;
  assert.deepEqual(
    stats.classWeights,
    [0, 1, 2, 3].map((c) => train.rows / (4 * train.classCounts[String(c)]!)),
  );
  // Stratified: each class's share of the test split is its share overall, to one row.
  for (const c of ["0", "1", "2", "3"]) {
    const expected = Math.ceil(0.2 * stats.classCounts[c]!);
    assert.equal(stats.splits.test.classCounts[c], expected);
  }
  const report = checkWithPandas(t, out);
  if (!report) return;
  assert.equal(report.mismatch_count, 0, JSON.stringify(report.mismatches));
  assert.equal(report.label_dtype, "int64");
});

test("an explicit single-label task on a 0/1 column is the binary workflow (LABEL_0 / LABEL_1)", async () => {
  const dir = await tmp();
  const binary = await prepare({ input: SAMPLE, out: path.join(dir, "a") });
  const explicit = await prepare({
    input: SAMPLE,
    out: path.join(dir, "b"),
    task: "single_label_classification",
  });
  assert.deepEqual(binary.stats.task, {
    problemType: "single_label_classification",
    labels: ["LABEL_0", "LABEL_1"],
    columns: ["Membrane"],
  });
  assert.deepEqual(explicit.stats.task, binary.stats.task);
  assert.deepEqual(explicit.stats.splits, binary.stats.splits);
});

test("regression: float targets (one column: float64, several: a list), summaries per split", async (t) => {
  const dir = await tmp();
  const csv = path.join(dir, "tm.csv");
  const src = (await readFile(SAMPLE, "utf8")).split("\n");
  // A numeric target made from the data: Partition + length / 1000.
  const header = src[0]!.split(",");
  const seqAt = header.indexOf("Sequence");
  const partAt = header.indexOf("Partition");
  const rows = src.slice(1, 301).map((line) => {
    const f = line.split(",");
    return `${line},${(Number(f[partAt]) + f[seqAt]!.length / 1000).toFixed(3)}`;
  });
  await writeFile(csv, `${src[0]},Tm\n${rows.join("\n")}\n`);
  const one = await prepare({ input: csv, out: path.join(dir, "one"), targetColumns: ["Tm"] });
  assert.deepEqual(one.stats.task, { problemType: "regression", labels: ["Tm"], columns: ["Tm"] });
  assert.equal(one.stats.classWeights, null);
  assert.ok(one.stats.targets!.Tm!.min >= 0 && one.stats.targets!.Tm!.max < 6);
  assert.ok(one.stats.splits.test.targets!.Tm!.mean > 0);
  const two = await prepare({
    input: csv,
    out: path.join(dir, "two"),
    targetColumns: ["Tm", "Partition"],
  });
  assert.deepEqual(two.stats.task.labels, ["Tm", "Partition"]);
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  for (const [out, dtype] of [
    ["one", "float64"],
    ["two", "object"],
  ] as const) {
    const r = JSON.parse(
      runPython(python, "check_prepared_task.py", [csv, path.join(dir, out)])
        .trim()
        .split("\n")
        .pop()!,
    );
    assert.equal(r.mismatch_count, 0, JSON.stringify(r.mismatches));
    assert.equal(r.label_dtype, dtype);
  }
});

test("iterative stratification shares every label's positives in proportion, rare ones too", async () => {
  const dir = await tmp();
  const strat = await prepare({
    input: SAMPLE,
    out: path.join(dir, "s"),
    locations: true,
    stratify: true,
  });
  const plain = await prepare({ input: SAMPLE, out: path.join(dir, "p"), locations: true });
  const off = (s: PrepareStats) =>
    DEEPLOC_LOCATIONS.map((l) => Math.abs(s.splits.test.classCounts[l]! - 0.2 * s.classCounts[l]!));
  for (const [i, d] of off(strat.stats).entries()) {
    assert.ok(d <= 1, `${DEEPLOC_LOCATIONS[i]}: test positives off by ${d}`);
  }
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  assert.ok(sum(off(strat.stats)) < sum(off(plain.stats)), "better than the random split");
  // Rows carry several labels at once, so the fold sizes drift a little from 20 %.
  const drift = Math.abs(strat.stats.splits.test.rows - 0.2 * strat.stats.rowsKept);
  assert.ok(drift <= 0.01 * strat.stats.rowsKept, `test split off 20 % by ${drift} rows`);
  assert.equal(strat.stats.options.stratify, true);
});

test("iterativeStratification: every row once, deterministic per seed, label-less rows fill up", () => {
  const rows = Array.from({ length: 50 }, (_, i) => [i % 10 === 0 ? 1 : 0, i % 3 === 0 ? 1 : 0, 0]);
  const a = iterativeStratification(rows, 0.2, 7);
  assert.deepEqual([...iterativeStratification(rows, 0.2, 7)], [...a]);
  assert.equal(a.size, 10);
  assert.equal([...a].filter((i) => i % 10 === 0).length, 1, "1 of the 5 rare positives");
  const split = splitIndices(
    rows.map(() => 0),
    rows.map(() => 0),
    { testSize: 0.2, seed: 7, stratify: true, labelSets: rows },
  );
  assert.deepEqual(
    split.test,
    [...a].sort((x, y) => x - y),
  );
  assert.equal(split.train.length + split.test.length, 50);
});

test("errors (exit 2): a missing label column, a column that is not 0/1, a regression target that is not a number", async () => {
  const dir = await tmp();
  const header =
    ",ACC,Kingdom,Partition,Membrane,Cytoplasm,Nucleus,Extracellular,Cell membrane,Mitochondrion,Plastid,Endoplasmic reticulum,Lysosome/Vacuole,Golgi apparatus,Peroxisome,Sequence,Tm";
  const row = (i: number, nucleus: string, tm: string) =>
    `${i},P${i},Metazoa,0,0,1,${nucleus},0,0,0,0,0,0,0,0,${"A".repeat(150 + i)},${tm}`;
  const write = async (name: string, rows: string[]) => {
    const f = path.join(dir, name);
    await writeFile(f, `${header}\n${rows.join("\n")}\n`);
    return f;
  };
  const good = await write("good.csv", [
    row(1, "1", "50.5"),
    row(2, "0", "47"),
    row(3, "0", "61.25"),
  ]);

  const missing = cli([
    "prepare",
    "--input",
    good,
    "--out",
    path.join(dir, "o1"),
    "--label-columns",
    "Nucleus,Golgi",
  ]);
  assert.equal(missing.status, 2, missing.stderr);
  assert.match(missing.stderr, /Missing column "Golgi"; found: .*Golgi apparatus/);

  const classes = await write("classes.csv", [
    row(1, "1", "1"),
    row(2, "2", "1"),
    row(3, "0", "1"),
  ]);
  const notBinary = cli([
    "prepare",
    "--input",
    classes,
    "--out",
    path.join(dir, "o2"),
    "--locations",
  ]);
  assert.equal(notBinary.status, 2, notBinary.stderr);
  assert.match(
    notBinary.stderr,
    /column "Nucleus" is not a 0\/1 column: it holds other integers on 1 row, e.g. line 3: Nucleus="2"; label columns \(--label-columns, --locations\) must hold 0 or 1/,
  );
  const binary = cli([
    "prepare",
    "--input",
    classes,
    "--out",
    path.join(dir, "o3"),
    "--label-column",
    "Nucleus",
  ]);
  assert.equal(binary.status, 2);
  assert.match(binary.stderr, /for a column of k classes add --task single_label_classification/);
  const text = cli([
    "prepare",
    "--input",
    good,
    "--out",
    path.join(dir, "o4"),
    "--label-column",
    "Kingdom",
  ]);
  assert.equal(text.status, 2);
  assert.match(
    text.stderr,
    /column "Kingdom" is not a 0\/1 column: no row holds 0 or 1 \(values such as "Metazoa"\)/,
  );

  for (const [bad, shown] of [
    ["", '""'],
    ["NaN", '"NaN"'],
    ["n/a", '"n/a"'],
    ["Infinity", '"Infinity"'],
  ]) {
    const f = await write("nan.csv", [row(1, "1", "50.5"), row(2, "0", bad!), row(3, "0", "61")]);
    const r = cli([
      "prepare",
      "--input",
      f,
      "--out",
      path.join(dir, "o5"),
      "--target-column",
      "Tm",
    ]);
    assert.equal(r.status, 2, r.stderr);
    assert.ok(
      r.stderr.includes(
        `the regression target "Tm" is not a finite number on 1 row, e.g. line 3: Tm=${shown}; every target must be a number`,
      ),
      r.stderr,
    );
  }
  await assert.rejects(stat(path.join(dir, "o5")), "nothing written on failure");

  const both = cli([
    "prepare",
    "--input",
    good,
    "--out",
    path.join(dir, "o6"),
    "--locations",
    "--target-column",
    "Tm",
  ]);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give --locations or --target-column, not both/);
  await assert.rejects(
    prepare({ input: good, out: path.join(dir, "o7"), targetColumns: ["Tm"], stratify: true }),
    (e: unknown) => e instanceof ConfigError && /stratify needs class labels/.test(e.message),
  );
  await assert.rejects(
    prepare({ input: good, out: path.join(dir, "o8"), task: "multi_label_classification" }),
    /Task multi_label_classification needs label columns \(--label-columns or --locations\)/,
  );
  await assert.rejects(
    prepare({
      input: good,
      out: path.join(dir, "o9"),
      task: "single_label_classification",
      labelColumn: "Kingdom",
    }),
    (e: unknown) => e instanceof DataError && /has one class only \(Metazoa\)/.test(e.message),
  );
});

test("in a 0/1 label column, empty or fractional cells drop their row as invalid_label, naming the column", async () => {
  const dir = await tmp();
  const f = path.join(dir, "gaps.csv");
  const header =
    ",ACC,Kingdom,Partition,Membrane,Cytoplasm,Nucleus,Extracellular,Cell membrane,Mitochondrion,Plastid,Endoplasmic reticulum,Lysosome/Vacuole,Golgi apparatus,Peroxisome,Sequence";
  const row = (i: number, cyto: string, nucleus: string) =>
    `${i},P${i},Metazoa,0,0,${cyto},${nucleus},0,0,0,0,0,0,0,0,${"M".repeat(120 + i)}`;
  await writeFile(
    f,
    `${header}\n${[row(1, "1", "0"), row(2, "0", ""), row(3, "1", "1"), row(4, "0.5", "0"), row(5, "0", "1")].join("\n")}\n`,
  );
  const { stats } = await prepare({
    input: f,
    out: path.join(dir, "o"),
    labelColumns: ["Cytoplasm", "Nucleus"],
  });
  assert.deepEqual(stats.dropped.invalid_label, {
    count: 2,
    firstLines: [3, 5],
    examples: ['line 3: Nucleus=""', 'line 5: Cytoplasm="0.5"'],
  });
  assert.equal(stats.rowsKept, 3);
});
