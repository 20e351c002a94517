import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { type PrepareStats, prepare, splitIndices } from "../../src/data/prepare";
import { DataError, StorageError } from "../../src/errors";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const SAMPLE = path.join(REPO_ROOT, "data", "deeploc-sample.csv");
const CLI = path.join(REPO_ROOT, "bin", "esmkit.js");
const HEADER =
  ",ACC,Kingdom,Partition,Membrane,Cytoplasm,Nucleus,Extracellular,Cell membrane,Mitochondrion,Plastid,Endoplasmic reticulum,Lysosome/Vacuole,Golgi apparatus,Peroxisome,Sequence";

const tmp = (p: string) => mkdtemp(path.join(tmpdir(), p));
const seq = (n: number, ch = "A") => ch.repeat(n);
const row = (i: number, acc: string, membrane: string, sequence: string, partition = "0") =>
  `${i},${acc},Metazoa,${partition},${membrane},0,0,0,0,0,0,0,0,0,0,${sequence}`;

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
}

test("the bundled sample: Parquet that pandas reads back with the same rows and Python's token ids", async (t) => {
  const out = path.join(await tmp("esmkit-prep-"), "out");
  const result = await prepare({ input: SAMPLE, out });
  const stats = JSON.parse(await readFile(path.join(out, "stats.json"), "utf8")) as PrepareStats;
  assert.deepEqual(stats, result.stats);
  assert.equal(stats.rowsRead, 1950);
  assert.equal(
    stats.rowsKept + stats.filtered.too_long!.count + stats.filtered.too_short!.count,
    1950,
  );
  assert.equal(stats.splits.train.rows + stats.splits.test.rows, stats.rowsKept);
  assert.equal(stats.splits.test.rows, Math.ceil(0.2 * stats.rowsKept));
  const n1 = stats.classCounts["1"]!;
  const train1 = stats.splits.train.classCounts["1"]!;
  const trainN = stats.splits.train.rows;
  assert.deepEqual(stats.classWeights, [trainN / (2 * (trainN - train1)), trainN / (2 * train1)]);
  assert.ok(stats.length.min >= 100 && stats.length.max <= 512);

  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const report = JSON.parse(
    runPython(python, "check_prepared.py", [
      SAMPLE,
      out,
      path.join(REPO_ROOT, "test", "fixtures", "tokenizer", "saved"),
    ]),
  );
  assert.equal(report.expected_rows, stats.rowsKept);
  assert.equal(report.expected_positive, n1);
  assert.equal(report.train_rows, trainN);
  assert.equal(report.test_rows, stats.splits.test.rows);
  assert.equal(report.overlap, 0);
  assert.equal(report.same_ids, true);
  assert.equal(report.labels_match, true);
  assert.equal(report.sequences_match, true);
  assert.equal(report.input_ids_mismatches, 0);
  assert.equal(report.dtypes.label, "int64");
});

test("a missing column fails with exit code 2, naming it and listing what was found", async () => {
  const dir = await tmp("esmkit-prep-");
  const csv = path.join(dir, "no-membrane.csv");
  await writeFile(csv, `,ACC,Kingdom,Partition,Sequence\n0,P1,Metazoa,0,${seq(150)}\n`);
  const r = cli(["prepare", "--input", csv, "--out", path.join(dir, "out")]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    /Missing column "Membrane"; found: \(unnamed\), ACC, Kingdom, Partition, Sequence/,
  );
  await assert.rejects(stat(path.join(dir, "out")), "no output directory on failure");
  const r2 = cli([
    "prepare",
    "--input",
    csv,
    "--out",
    path.join(dir, "out"),
    "--label-column",
    "Nucleus",
  ]);
  assert.match(r2.stderr, /Missing columns? "Nucleus"/);
});

test("bad rows are counted by reason with their first line numbers, never silently lost", async () => {
  const dir = await tmp("esmkit-prep-");
  const csv = path.join(dir, "bad.csv");
  const lines = [
    HEADER, // line 1
    row(0, "OK1", "1.0", seq(150)), // 2
    row(1, "EMPTY", "0.0", ""), // 3
    row(2, "STAR", "0.0", `${seq(120)}*`), // 4
    row(3, "LOWER", "1.0", `${seq(50)}a${seq(60)}`), // 5
    row(4, "HALF", "0.5", seq(150)), // 6
    row(5, "NOLABEL", "", seq(150)), // 7
    "6,SHORTROW,Metazoa,0,1.0", // 8
    row(7, "SHORT", "0.0", seq(99)), // 9
    row(8, "LONG", "1.0", seq(513)), // 10
    row(9, "OK2", "0.0", seq(100, "M")), // 11
    row(10, "OK3", "0", seq(512, "L")), // 12
    row(11, "OK4", "1", seq(200, "G"), "3"), // 13
    row(12, "OK5", "0", seq(300, "V"), "3"), // 14
  ];
  await writeFile(csv, `${lines.join("\r\n")}\r\n`);
  const { stats } = await prepare({ input: csv, out: path.join(dir, "out"), testSize: 0.4 });
  assert.equal(stats.rowsRead, 13);
  assert.deepEqual(stats.dropped.empty_sequence, { count: 1, firstLines: [3], examples: [] });
  assert.equal(stats.dropped.invalid_characters!.count, 2);
  assert.deepEqual(stats.dropped.invalid_characters!.firstLines, [4, 5]);
  assert.deepEqual(stats.dropped.invalid_characters!.examples, [
    'line 4: "*" at residue 121',
    'line 5: "a" at residue 51',
  ]);
  assert.deepEqual(stats.dropped.invalid_label!.firstLines, [6, 7]);
  assert.deepEqual(stats.dropped.malformed_row!.firstLines, [8]);
  assert.deepEqual(stats.filtered.too_short!.firstLines, [9]);
  assert.deepEqual(stats.filtered.too_long!.firstLines, [10]);
  assert.equal(stats.rowsKept, 5);
  const accounted =
    stats.rowsKept +
    Object.values(stats.dropped).reduce((a, r) => a + r!.count, 0) +
    Object.values(stats.filtered).reduce((a, r) => a + r!.count, 0);
  assert.equal(accounted, stats.rowsRead, "every row is kept or counted");
  assert.equal(stats.truncated, 1, "the 512-residue protein loses 2 residues to <cls>/<eos>");

  const held = await prepare({ input: csv, out: path.join(dir, "held"), holdoutPartition: 3 });
  assert.equal(held.stats.splits.test.rows, 2);
  assert.equal(held.stats.options.testSize, null);
  await assert.rejects(
    prepare({ input: csv, out: path.join(dir, "none"), holdoutPartition: 4 }),
    (e: unknown) => {
      assert.ok(e instanceof DataError);
      assert.match(e.message, /test split is empty \(no kept row has Partition 4\)/);
      return true;
    },
  );
});

test("splits are seeded, stratification keeps the class ratio, options are validated", async () => {
  const labels = Array.from({ length: 1000 }, (_, i) => (i % 10 < 3 ? 1 : 0));
  const parts = labels.map((_, i) => i % 5);
  const a = splitIndices(labels, parts, { testSize: 0.2, seed: 42, stratify: true });
  const b = splitIndices(labels, parts, { testSize: 0.2, seed: 42, stratify: true });
  const c = splitIndices(labels, parts, { testSize: 0.2, seed: 43, stratify: true });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.test, c.test);
  assert.equal(a.test.length, 200);
  assert.equal(a.test.filter((i) => labels[i] === 1).length, 60);
  const h = splitIndices(labels, parts, {
    testSize: 0.2,
    seed: 1,
    stratify: false,
    holdoutPartition: 2,
  });
  assert.ok(h.test.every((i) => parts[i] === 2) && h.test.length === 200);
  await assert.rejects(
    prepare({ input: SAMPLE, out: "/nonexistent/x", testSize: 1.5 }),
    /Invalid testSize: 1.5; expected a fraction between 0 and 1/,
  );
  const r = cli(["prepare", "--input", SAMPLE, "--out", "/tmp/x", "--seed", "abc"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--seed expects an integer, got "abc"/);
  const r2 = cli(["prepare", "--input", SAMPLE, "--out", "/tmp/x", "--bogus"]);
  assert.equal(r2.status, 2);
  assert.match(r2.stderr, /Unknown option '--bogus'/);
});

test("an existing output is kept unless overwrite is given", async () => {
  const dir = await tmp("esmkit-prep-");
  const out = path.join(dir, "out");
  await mkdir(out);
  await writeFile(path.join(out, "keep.txt"), "precious");
  await assert.rejects(prepare({ input: SAMPLE, out }), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(e.message, /already exists/);
    return true;
  });
  assert.equal(await readFile(path.join(out, "keep.txt"), "utf8"), "precious");
  await prepare({ input: SAMPLE, out, overwrite: true });
  await assert.rejects(stat(path.join(out, "keep.txt")));
  assert.ok((await stat(path.join(out, "train.parquet"))).size > 0);
});

test("reads from an http URL with progress, and reports HTTP errors", async () => {
  const body = await readFile(SAMPLE);
  const server = createServer((req, res) => {
    if (req.url === "/deeploc.csv") {
      res.writeHead(200, { "content-type": "text/csv", "content-length": body.length });
      res.end(body);
    } else {
      res.writeHead(404).end("nope");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const dir = await tmp("esmkit-prep-");
    const seen: number[] = [];
    const { stats } = await prepare({
      input: `http://127.0.0.1:${port}/deeploc.csv`,
      out: path.join(dir, "out"),
      onProgress: (p) => {
        if (p.phase === "read" && p.bytes !== undefined) seen.push(p.bytes);
      },
    });
    assert.equal(stats.rowsRead, 1950);
    assert.equal(seen[seen.length - 1], body.length, "last progress event reports every byte");
    await assert.rejects(
      prepare({ input: `http://127.0.0.1:${port}/missing.csv`, out: path.join(dir, "o2") }),
      /HTTP 404/,
    );
  } finally {
    server.close();
  }
});
