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

/** Ids and sequences of a written split, read back from its Parquet file. */
async function splitRows(out: string, split: "train" | "test") {
  const pl = (await import("nodejs-polars")).default;
  const frame = pl.readParquet(path.join(out, `${split}.parquet`));
  return {
    ids: frame.getColumn("id").toArray() as string[],
    sequences: frame.getColumn("sequence").toArray() as string[],
  };
}

test("a file with repeated rows: one copy kept, the rest counted as duplicate, no protein in both splits", async () => {
  const dir = await tmp("esmkit-prep-");
  const sample = (await readFile(SAMPLE, "utf8")).trimEnd().split("\n");
  const body = sample.slice(1);
  // The whole table twice (as a careless concatenation makes it), then the same
  // sequence under new ids: once with the same label, once with the other one.
  const first = body[0]!.split(",");
  const relabel = [...first];
  relabel[1] = "NEWID2";
  relabel[4] = first[4] === "1.0" ? "0.0" : "1.0";
  const sameSeq = [...first];
  sameSeq[1] = "NEWID1";
  const sameId = [...body[1]!.split(",")];
  sameId[sameId.length - 1] = "M".repeat(150);
  const csv = path.join(dir, "repeated.csv");
  await writeFile(
    csv,
    `${[sample[0], ...body, ...body, sameSeq.join(","), relabel.join(","), sameId.join(",")].join("\n")}\n`,
  );
  const out = path.join(dir, "out");
  const { stats } = await prepare({ input: csv, out });
  const n = body.length; // 1950, line 2 .. n + 1
  assert.equal(stats.rowsRead, 2 * n + 3);
  const dup = stats.dropped.duplicate!;
  assert.equal(dup.count, n + 3);
  assert.equal(dup.firstLines[0], n + 2, "the first repeated row is the first duplicate");
  assert.equal(dup.examples[0], `line ${n + 2}: same row as line 2`);
  const relabelLine = 2 * n + 3;
  // Same counts as the file without repeats: the duplicates change nothing else.
  const once = await prepare({ input: SAMPLE, out: path.join(dir, "once") });
  assert.equal(stats.rowsKept, once.stats.rowsKept);
  assert.deepEqual(stats.splits, once.stats.splits);
  assert.deepEqual(stats.filtered, once.stats.filtered);
  assert.equal(stats.duplicateLabelConflicts.count, 1);
  assert.deepEqual(stats.duplicateLabelConflicts.firstLines, [relabelLine]);
  assert.match(
    stats.duplicateLabelConflicts.examples[0]!,
    new RegExp(
      `^line ${relabelLine}: same sequence as line 2 \\(${first[1]}\\): Membrane \\d here, \\d kept$`,
    ),
  );

  const train = await splitRows(out, "train");
  const test = await splitRows(out, "test");
  const trainIds = new Set(train.ids);
  const trainSeqs = new Set(train.sequences);
  assert.equal(trainIds.size, train.ids.length, "no id twice in train");
  assert.equal(trainSeqs.size, train.sequences.length, "no sequence twice in train");
  assert.deepEqual(
    test.ids.filter((id) => trainIds.has(id)),
    [],
    "no test id is also in train",
  );
  assert.deepEqual(
    test.sequences.filter((s) => trainSeqs.has(s)),
    [],
    "no test sequence is also in train",
  );
  assert.ok(!trainIds.has("NEWID1") && !test.ids.includes("NEWID1"));

  // Each kind of duplicate, named in the examples.
  const small = path.join(dir, "small.csv");
  const rows = [
    HEADER,
    row(0, "P1", "1.0", seq(150)), // 2
    row(1, "P2", "0.0", seq(150, "M")), // 3
    row(2, "P1", "1.0", seq(150)), // 4: the same row again
    row(3, "P3", "0.0", ` ${seq(150, "M")} `), // 5: P2's sequence (after trimming)
    row(4, "P2", "0.0", seq(160, "G")), // 6: P2's id, another sequence
    row(5, "P4", "0.0", seq(150)), // 7: P1's sequence, another label
    row(6, "P5", "0.0", seq(170, "V")), // 8
  ];
  await writeFile(small, `${rows.join("\n")}\n`);
  const s = (await prepare({ input: small, out: path.join(dir, "small"), testSize: 0.4 })).stats;
  assert.equal(s.rowsKept, 3);
  assert.deepEqual(s.dropped.duplicate, {
    count: 4,
    firstLines: [4, 5, 6, 7],
    examples: [
      "line 4: same row as line 2",
      "line 5: same sequence as line 3 (P2)",
      "line 6: id P2 already on line 3, with another sequence",
      "line 7: same sequence as line 2 (P1)",
    ],
  });
  assert.deepEqual(s.duplicateLabelConflicts, {
    count: 1,
    firstLines: [7],
    examples: ["line 7: same sequence as line 2 (P1): Membrane 0 here, 1 kept"],
  });
});

test("a file cut mid-row: the unterminated last row is dropped with a warning, not kept shortened", async () => {
  const dir = await tmp("esmkit-prep-");
  const full = await readFile(SAMPLE, "utf8");
  // Cut inside the last protein: the file no longer ends with a line break.
  const cut = path.join(dir, "cut.csv");
  await writeFile(cut, full.slice(0, full.length - 40));
  const r = cli(["prepare", "--input", cut, "--out", path.join(dir, "out"), "--quiet"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stderr,
    /warning: .*cut\.csv does not end with a line break: its last row \(line 1951\) may be cut off and was dropped/,
  );
  const stats = JSON.parse(
    await readFile(path.join(dir, "out", "stats.json"), "utf8"),
  ) as PrepareStats;
  assert.deepEqual(stats.dropped.unterminated_last_row, {
    count: 1,
    firstLines: [1951],
    examples: ["line 1951"],
  });
  assert.equal(stats.warnings.length, 1);
  const complete = await prepare({ input: SAMPLE, out: path.join(dir, "full") });
  assert.deepEqual(complete.stats.warnings, []);
  assert.equal(complete.stats.dropped.unterminated_last_row, undefined);
  assert.equal(stats.rowsRead, complete.stats.rowsRead);
  const lastLine = full.trimEnd().split("\n").pop()!;
  const lastId = lastLine.split(",")[1]!;
  const kept = [
    ...(await splitRows(path.join(dir, "out"), "train")).ids,
    ...(await splitRows(path.join(dir, "out"), "test")).ids,
  ];
  assert.ok(!kept.includes(lastId), "the cut protein is not in the output");

  // Cut inside a quoted field: the same.
  const quoted = path.join(dir, "quoted.csv");
  await writeFile(
    quoted,
    `${HEADER}\n${row(0, "OK1", "1.0", seq(150))}\n${row(1, "OK2", "0.0", seq(150, "M"))}\n2,CUT,Metazoa,0,0,0,0,0,0,0,0,0,0,0,0,"${seq(130)}`,
  );
  const q = await prepare({ input: quoted, out: path.join(dir, "q"), testSize: 0.5 });
  assert.equal(q.stats.rowsKept, 2);
  assert.deepEqual(q.stats.dropped.unterminated_last_row!.firstLines, [4]);
});

/** Bytes a terminal would act on: ESC, other C0 controls but tab and newline, C1. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

test("a binary file fails at once with a clear message and no raw bytes echoed", async () => {
  const dir = await tmp("esmkit-prep-");
  const cases: [string, Buffer, RegExp][] = [
    [
      "random.bin",
      Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919 + 27) % 256)),
      /random\.bin is not a CSV text file: it has a NUL byte at offset \d+/,
    ],
    [
      "data.csv.gz",
      Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0x0a]),
      /data\.csv\.gz is not a CSV text file: it is gzip-compressed; decompress it first/,
    ],
    [
      "latin1.csv",
      Buffer.concat([Buffer.from(",ACC,K\xe4ngdom\x1b[2J,Sequence\n", "latin1")]),
      /latin1\.csv is not a CSV text file: its first bytes are not valid UTF-8/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    const file = path.join(dir, name);
    await writeFile(file, bytes);
    const r = cli(["prepare", "--input", file, "--out", path.join(dir, `out-${name}`)]);
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, CONTROL, `${name}: no control bytes in the message`);
    await assert.rejects(stat(path.join(dir, `out-${name}`)));
  }
  // Valid UTF-8 text whose header holds escape sequences: named, escaped.
  const esc = path.join(dir, "esc.csv");
  await writeFile(
    esc,
    `,ACC\u001b[2J,Kingdom,Partition\u009b31m,Sequence\n0,P1,Metazoa,0,${seq(150)}\n`,
  );
  const r = cli(["prepare", "--input", esc, "--out", path.join(dir, "out-esc")]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    /found: \(unnamed\), ACC\\u001b\[2J, Kingdom, Partition\\u009b31m, Sequence/,
  );
  assert.doesNotMatch(r.stderr, CONTROL);
});

test("control characters in bad rows are escaped in stats examples", async () => {
  const dir = await tmp("esmkit-prep-");
  const csv = path.join(dir, "ctl.csv");
  const lines = [
    HEADER,
    row(0, "OK1", "1.0", seq(150)),
    row(1, "OK2", "0.0", seq(150, "M")),
    row(2, "ESC", "0.0", `${seq(120)}\u001b[31m`),
    row(3, "LBL", "\u009b1m", seq(150)),
  ];
  await writeFile(csv, `${lines.join("\n")}\n`);
  const { stats } = await prepare({ input: csv, out: path.join(dir, "out"), testSize: 0.5 });
  assert.deepEqual(stats.dropped.invalid_characters!.examples, [
    'line 4: "\\u001b" at residue 121',
  ]);
  assert.deepEqual(stats.dropped.invalid_label!.examples, ['line 5: Membrane="\\u009b1m"']);
});
