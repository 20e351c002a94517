import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { predictCommand } from "../../src/cli/predict-command";
import { serveCommand } from "../../src/cli/serve-command";
import { ConfigError, DataError, EsmKitError } from "../../src/errors";
import { registerDefaults } from "../../src/register-defaults";
import { InvalidSequenceError } from "../../src/serve/errors";
import { setPredictorLoader } from "../../src/serve/predictor";
import { SeededRandom } from "../../src/util/random";
import { FakePredictor, fakeProbabilities } from "./fake-predictor";

// The commands run here directly, not through src/cli/main.ts, which registers the default
// (ESM-2) predictor loader.
registerDefaults();

const LABELS = ["non-membrane", "membrane"];
let lastPredictor: FakePredictor | undefined;
let loadedFrom: string | undefined;

function useFake(maxLength = 12) {
  setPredictorLoader(async (dir) => {
    loadedFrom = dir;
    lastPredictor = new FakePredictor({ labels: LABELS, maxLength });
    return lastPredictor;
  });
}

async function tmp() {
  return mkdtemp(path.join(tmpdir(), "esmkit-predict-"));
}

test("the default (ESM-2) loader fails clearly on a directory that is not a model", async () => {
  setPredictorLoader(undefined);
  const dir = await tmp();
  const notModel = await tmp();
  await assert.rejects(
    predictCommand.run(["--model", notModel, "--sequence", "MKT", "--out", path.join(dir, "o")]),
    (e: unknown) => e instanceof EsmKitError && /config\.json/.test(e.message),
  );
  await assert.rejects(serveCommand.run(["--model", notModel, "--port", "0"]), /config\.json/);
  assert.deepEqual(await readdir(dir), [], "no output file on failure");
});

test("--fasta -> JSON Lines: ids, labels, every class probability, truncation flagged", async () => {
  useFake(12); // 10 residues
  const dir = await tmp();
  const fasta = path.join(dir, "in.fa");
  await writeFile(fasta, ">P1 first\r\nmktay\r\niakq*\r\n\r\n>P2\nACDEFGHIKLMNPQ\n>P3\nLLV\n");
  const out = path.join(dir, "out.jsonl");
  const code = await predictCommand.run([
    "--model",
    "model-dir",
    "--fasta",
    fasta,
    "--out",
    out,
    "--batch-size",
    "2",
    "--quiet",
  ]);
  assert.equal(code, 0);
  assert.equal(loadedFrom, "model-dir");
  // Batches of sequences sorted by length (longest first); rows still in input order.
  assert.deepEqual(lastPredictor!.calls, [["ACDEFGHIKL", "MKTAYIAKQ"], ["LLV"]]);
  const rows = (await readFile(out, "utf8"))
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    rows.map((r) => [r.id, r.truncated, r.length]),
    [
      ["P1", false, 9],
      ["P2", true, 14],
      ["P3", false, 3],
    ],
  );
  const p = fakeProbabilities("ACDEFGHIKL", 2);
  assert.deepEqual(rows[1].probabilities, { "non-membrane": p[0], membrane: p[1] });
  assert.equal(rows[1].label, p[1]! > p[0]! ? "membrane" : "non-membrane");
  assert.deepEqual(Object.keys(rows[0]), [
    "id",
    "label",
    "score",
    "probabilities",
    "truncated",
    "length",
  ]);
  assert.deepEqual(await readdir(dir), ["in.fa", "out.jsonl"], "no partial file left");
});

test("--csv with named columns -> CSV with a probability column per class", async () => {
  useFake(1024);
  const dir = await tmp();
  const csv = path.join(dir, "in.csv");
  await writeFile(csv, 'ACC,Sequence\r\n"P,1",MKTAY\r\nP2,llvva*\r\n');
  const out = path.join(dir, "out.csv");
  const args = [
    "--model",
    "m",
    "--csv",
    csv,
    "--id-column",
    "ACC",
    "--sequence-column",
    "Sequence",
  ];
  assert.equal(await predictCommand.run([...args, "--format", "csv", "--out", out, "--quiet"]), 0);
  const lines = (await readFile(out, "utf8")).trimEnd().split("\n");
  assert.equal(lines[0], "id,label,score,p_non-membrane,p_membrane,truncated,length");
  const p = fakeProbabilities("LLVVA", 2);
  assert.equal(
    lines[2],
    `P2,${p[1]! > p[0]! ? "membrane" : "non-membrane"},${Math.max(...p)},${p[0]},${p[1]},false,5`,
  );
  assert.match(lines[1]!, /^"P,1",/);

  // Without --id-column: an "id" column, else row numbers; column names match case-insensitively.
  const numbered = path.join(dir, "numbered.jsonl");
  assert.equal(
    await predictCommand.run(["--model", "m", "--csv", csv, "--out", numbered, "--quiet"]),
    0,
  );
  const ids = (await readFile(numbered, "utf8"))
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l).id);
  assert.deepEqual(ids, ["1", "2"]);
  const nocol = path.join(dir, "nocol.csv");
  await writeFile(nocol, "name,seq\nA,MKT\n");
  await assert.rejects(
    predictCommand.run(["--model", "m", "--csv", nocol, "--out", out]),
    (e: unknown) =>
      e instanceof DataError &&
      e.message === `${nocol}: no column "sequence" (--sequence-column); found: "name", "seq"`,
  );
  const bad = path.join(dir, "bad.csv");
  await writeFile(bad, "id,sequence\nA,MKT\nB,MK1T\n");
  await assert.rejects(
    predictCommand.run(["--model", "m", "--csv", bad, "--out", path.join(dir, "bad.jsonl")]),
    (e: unknown) =>
      e instanceof InvalidSequenceError &&
      e.message.startsWith(`${bad} line 3 (id "B"): invalid character "1" at position 3`),
  );
  assert.ok(
    (await readdir(dir)).every((f) => !f.startsWith("bad.jsonl")),
    "no output (nor partial file) on failure",
  );
  // A file cut off mid-row (a copy stopped early) is refused, not read as a short last row.
  const cut = path.join(dir, "cut.csv");
  await writeFile(cut, "id,sequence,note\nA,MKT,x\nB,MKTAY");
  await assert.rejects(
    predictCommand.run(["--model", "m", "--csv", cut, "--out", path.join(dir, "cut.jsonl")]),
    (e: unknown) =>
      e instanceof DataError &&
      e.message ===
        `${cut} line 3: the last row has 2 of 3 fields and no line break: the file looks cut off`,
  );
  assert.ok(
    (await readdir(dir)).every((f) => !f.startsWith("cut.jsonl")),
    "no output (nor partial file) for a cut-off file",
  );
});

test("--sequence is repeatable (ids seq1, seq2, ...); usage errors exit 2 or name the bad value", async () => {
  useFake(1024);
  const dir = await tmp();
  const out = path.join(dir, "o.jsonl");
  assert.equal(
    await predictCommand.run([
      "--model",
      "m",
      "--sequence",
      "MKT",
      "--sequence",
      "aaa",
      "--out",
      out,
      "--quiet",
    ]),
    0,
  );
  const rows = (await readFile(out, "utf8"))
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    rows.map((r) => r.id),
    ["seq1", "seq2"],
  );
  const stderr = process.stderr.write;
  process.stderr.write = () => true;
  try {
    assert.equal(await predictCommand.run(["--model", "m"]), 2);
    assert.equal(await predictCommand.run(["--model", "m", "--sequence", "A", "--fasta", "f"]), 2);
  } finally {
    process.stderr.write = stderr;
  }
  await assert.rejects(
    predictCommand.run(["--model", "m", "--sequence", "A", "--format", "xml"]),
    /--format expects jsonl or csv, got "xml"/,
  );
  await assert.rejects(
    predictCommand.run(["--model", "m", "--sequence", "A", "--too-long", "drop"]),
    /--too-long expects truncate or reject, got "drop"/,
  );
  await assert.rejects(
    predictCommand.run(["--model", "m", "--sequence", "A", "--batch-size", "x"]),
    /--batch-size expects an integer, got "x"/,
  );
  const fa = path.join(dir, "bad.fa");
  await writeFile(fa, "MKT\n>a\nMKT\n");
  await assert.rejects(
    predictCommand.run(["--model", "m", "--fasta", fa, "--out", out]),
    new RegExp(`${fa}: line 1: sequence data before the first ">" header`),
  );
  setPredictorLoader(undefined);
});

test("with a concurrent predictor, batches overlap and the output keeps the input order", async () => {
  let running = 0;
  let maxRunning = 0;
  const fake = new FakePredictor({ labels: LABELS, maxLength: 64 });
  const concurrent = {
    labels: fake.labels,
    maxLength: fake.maxLength,
    concurrency: 3,
    async predict(seqs: string[]) {
      running++;
      maxRunning = Math.max(maxRunning, running);
      // Later batches finish first: order must come from the input, not completion.
      await new Promise((r) => setTimeout(r, 40 - 5 * Math.min(seqs[0]!.length, 7)));
      running--;
      return fake.predict(seqs);
    },
  };
  setPredictorLoader(async () => concurrent);
  const dir = await tmp();
  const out = path.join(dir, "out.jsonl");
  const seqs = ["M", "MK", "MKT", "MKTA", "MKTAY", "MKTAYI", "MKTAYIA"];
  const code = await predictCommand.run([
    "--model",
    "m",
    ...seqs.flatMap((s) => ["--sequence", s]),
    "--batch-size",
    "1",
    "--out",
    out,
    "--quiet",
  ]);
  assert.equal(code, 0);
  const rows = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    rows.map((r) => r.id),
    seqs.map((_, i) => `seq${i + 1}`),
  );
  assert.deepEqual(
    rows.map((r) => r.length),
    seqs.map((s) => s.length),
  );
  assert.ok(maxRunning > 1 && maxRunning <= 3, `max concurrent batches ${maxRunning}`);
});

test("windows of 256 records are sorted by length into batches; rows stay in input order", async () => {
  useFake(1024);
  const rng = new SeededRandom(5);
  const AMINO = "ACDEFGHIKLMNPQRSTVWY";
  const seqs = Array.from({ length: 600 }, () =>
    Array.from({ length: 20 + rng.int(500) }, () => AMINO[rng.int(20)]).join(""),
  );
  const dir = await tmp();
  const fasta = path.join(dir, "in.fa");
  await writeFile(fasta, seqs.map((q, i) => `>p${i}\n${q}\n`).join(""));
  const out = path.join(dir, "out.jsonl");
  const code = await predictCommand.run([
    "--model",
    "m",
    "--fasta",
    fasta,
    "--out",
    out,
    "--quiet",
  ]);
  assert.equal(code, 0);
  const rows = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    rows.map((r) => r.id),
    seqs.map((_, i) => `p${i}`),
  );
  rows.forEach((r, i) => {
    const p = fakeProbabilities(seqs[i]!, 2);
    assert.deepEqual(r.probabilities, { "non-membrane": p[0], membrane: p[1] }, `row ${i}`);
  });
  const windowOf = new Map(seqs.map((q, i) => [q, Math.floor(i / 256)]));
  let computed = 0;
  for (const call of lastPredictor!.calls) {
    assert.ok(call.length <= 8, "--batch-size 8 (the default)");
    assert.equal(new Set(call.map((q) => windowOf.get(q))).size, 1, "a batch stays in its window");
    assert.ok(
      call.every((q, k) => k === 0 || q.length <= call[k - 1]!.length),
      "longest first",
    );
    computed += call.length * call[0]!.length;
  }
  const real = seqs.reduce((a, q) => a + q.length, 0);
  assert.ok(computed / real < 1.05, `padded / real residues ${computed / real}`);
});

test("an --out that cannot be written fails before the model loads", async () => {
  let loads = 0;
  setPredictorLoader(async () => {
    loads++;
    return new FakePredictor();
  });
  const dir = await tmp();
  const file = path.join(dir, "a-file");
  await writeFile(file, "x");
  const cases: [string, RegExp][] = [
    [
      path.join(dir, "missing-dir", "x.jsonl"),
      /the folder .*missing-dir does not exist; create it first/,
    ],
    [path.join(file, "x.jsonl"), /a-file is not a folder/],
    [dir, /is a folder; give a file name/],
  ];
  for (const [out, message] of cases) {
    await assert.rejects(
      predictCommand.run(["--model", "m", "--sequence", "MKT", "--out", out]),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, /^--out "/);
        assert.match(e.message, message);
        return true;
      },
    );
  }
  assert.equal(loads, 0, "the model was never loaded");
  assert.deepEqual((await readdir(dir)).sort(), ["a-file"], "nothing written");
  setPredictorLoader(undefined);
});
