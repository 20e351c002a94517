/**
 * `esmkit embed` end to end on the tiny fixture model: the Parquet file as nodejs-polars
 * and pandas (pyarrow) read it, CSV and FASTA inputs, and every refusal (exit 2, no
 * output, no leftovers).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { main } from "../../src/cli/main";
import { pl } from "../../src/data/frame";
import { PARQUET_METADATA_KEY } from "../../src/embed";
import { pythonSkipReason, referencePython, runPython } from "../helpers/python";
import { FIXTURES, maxAbsDiff, readReference } from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-embed-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const TINY = path.join(FIXTURES, "model", "tiny");
const ref = readReference("tiny");
const LAST = String(ref.num_layers);

/** The fixture proteins as messy FASTA: CRLF, wrapped lines, lowercase, a final `*`. */
function messyFasta(): string {
  return ref.sequences
    .map(([id, s], i) => {
      const seq = i % 2 ? `${s.toLowerCase()}*` : s;
      const lines = seq.match(/.{1,10}/g)!.join("\r\n");
      return `>${id} protein ${i}\r\n${lines}\r\n`;
    })
    .join("\r\n");
}

/**
 * `esmkit ARGV` in this process with stderr captured. stdout is left alone: the test
 * runner's child process reports results over it (test/cli/run-main.ts captures both).
 */
async function runMain(argv: string[]): Promise<{ code: number; stderr: string }> {
  const err: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) =>
    err.push(String(chunk)) > 0) as typeof write;
  try {
    return { code: await main(argv), stderr: err.join("") };
  } finally {
    process.stderr.write = write;
  }
}

function dirFiles(dir: string): string[] {
  return readdirSync(dir).sort();
}

test("FASTA -> Parquet: nodejs-polars reads id, length, truncated, embedding (list<f32>) in order", async () => {
  const dir = mkdtempSync(path.join(tmp, "fasta-"));
  const fasta = path.join(dir, "in.fasta");
  writeFileSync(fasta, messyFasta());
  const out = path.join(dir, "emb.parquet");
  const r = await runMain([
    "embed",
    "--model",
    TINY,
    "--fasta",
    fasta,
    "--out",
    out,
    "--max-length",
    String(ref.max_length),
    "--batch-size",
    "3",
    "--window",
    "5",
    "--threads",
    "1",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /8 proteins \(2 truncated\)/);
  assert.deepEqual(dirFiles(dir), ["emb.parquet", "in.fasta"], "no temporaries left");
  const df = pl.readParquet(out);
  assert.deepEqual(df.columns, ["id", "length", "truncated", "embedding"]);
  assert.equal(String(df.getColumn("embedding").dtype), "DataType(List(DataType(Float32)))");
  assert.deepEqual(df.getColumn("id").toArray(), ref.ids);
  assert.deepEqual(df.getColumn("length").toArray(), ref.lengths);
  assert.deepEqual(
    df.getColumn("truncated").toArray(),
    ref.lengths.map((n) => n > ref.max_length - 2),
  );
  const embeddings = df.getColumn("embedding").toArray() as unknown as number[][];
  let worst = 0;
  embeddings.forEach((e, i) => {
    worst = Math.max(worst, maxAbsDiff(Array.from(e), ref.mean[LAST]![i]!, ref.ids[i]!));
  });
  assert.ok(worst < 1e-4, `vs EsmModel: ${worst}`);
});

test("pandas (pyarrow) reads the file: float32 vectors, per-residue lists, metadata", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const dir = mkdtempSync(path.join(tmp, "pandas-"));
  const csv = path.join(dir, "in.csv");
  // The sequence column under another name and case; ids from a named column.
  const rows = ref.sequences.map(([id, s]) => `x,${id},"${s}"`);
  writeFileSync(csv, `n,Accession,SEQUENCE\n${rows.join("\n")}\n`);
  const out = path.join(dir, "emb.parquet");
  const r = await runMain([
    "embed",
    "--model",
    TINY,
    "--csv",
    csv,
    "--id-column",
    "Accession",
    "--sequence-column",
    "Sequence",
    "--out",
    out,
    "--max-length",
    String(ref.max_length),
    "--layer",
    "1",
    "--per-residue",
    "--threads",
    "1",
    "--quiet",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "--quiet prints nothing");
  const got = JSON.parse(runPython(python, "check_embeddings_parquet.py", [out]));
  assert.deepEqual(got.arrow_schema, {
    id: "string",
    length: "int32",
    truncated: "bool",
    embedding: "list<element: float not null>",
    residue_embeddings: "list<element: list<element: float not null> not null>",
  });
  assert.equal(got.embedding_dtype, "float32");
  assert.deepEqual(got.embedding_shape, [ref.ids.length, ref.hidden_size]);
  assert.deepEqual(got.ids, ref.ids);
  assert.deepEqual(
    got.residue_shapes,
    ref.embedded_residues.map((n) => [n, ref.hidden_size]),
  );
  assert.equal(got.residue_dtype, "float32");
  let worst = 0;
  (got.embeddings as number[][]).forEach((e, i) => {
    worst = Math.max(worst, maxAbsDiff(e, ref.mean["1"]![i]!, ref.ids[i]!));
  });
  assert.ok(worst < 1e-4, `pandas vectors vs EsmModel layer 1: ${worst}`);
  const meta = JSON.parse(got.metadata[PARQUET_METADATA_KEY]);
  assert.equal(meta.pooling, "mean");
  assert.equal(meta.layer, 1);
  assert.equal(meta.num_layers, 2);
  assert.equal(meta.hidden_size, 32);
  assert.match(meta.pooling_convention, /<cls>, <eos> and padding excluded/);
  assert.match(meta.layer_convention, /last_hidden_state/);
  if (got.polars !== "not installed") {
    assert.deepEqual(got.polars.ids, ref.ids);
    assert.equal(got.polars.schema.embedding, "List(Float32)");
  }
});

test("CSV without an id column: ids are row numbers; --pooling cls is position 0", async () => {
  const dir = mkdtempSync(path.join(tmp, "csv-"));
  const csv = path.join(dir, "in.csv");
  writeFileSync(csv, `sequence\n${ref.sequences.map(([, s]) => s).join("\n")}\n`);
  const out = path.join(dir, "emb.parquet");
  const r = await runMain(
    ["embed", "--model", TINY, "--csv", csv, "--out", out, "--pooling", "cls", "--quiet"].concat([
      "--max-length",
      String(ref.max_length),
      "--threads",
      "1",
    ]),
  );
  assert.equal(r.code, 0, r.stderr);
  const df = pl.readParquet(out);
  assert.deepEqual(
    df.getColumn("id").toArray(),
    ref.ids.map((_, i) => String(i + 1)),
  );
  const e = df.getColumn("embedding").toArray() as unknown as number[][];
  assert.ok(maxAbsDiff(Array.from(e[2]!), ref.cls[LAST]![2]!, "cls") < 1e-4);
});

test("refusals: exit 2 with a clear message, nothing written", async () => {
  const dir = mkdtempSync(path.join(tmp, "errors-"));
  const fasta = path.join(dir, "in.fasta");
  writeFileSync(fasta, ">A\nMKTAYIAK\n>B\nMKQJ1\n>C\nMKV\n");
  const good = path.join(dir, "good.fasta");
  writeFileSync(good, ">A\nMKTAYIAK\n");
  const empty = path.join(dir, "empty.fasta");
  writeFileSync(empty, "\n\n");
  const out = path.join(dir, "emb.parquet");
  const run = (...extra: string[]) =>
    runMain(["embed", "--model", TINY, "--out", out, "--threads", "1", "--quiet", ...extra]);

  let r = await run("--fasta", good, "--pooling", "max");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--pooling expects mean or cls, got "max"/);

  r = await run("--fasta", good, "--layer", "3");
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /layer 3 is out of range: the model has 2 layers, so hidden states 0\.\.2/,
  );

  r = await run("--fasta", good, "--layer=-4");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /layer -4 is out of range/);

  r = await run("--fasta", fasta);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /line 4, column 4 \(record "B"\): invalid character "J" at position 4/);

  r = await run("--fasta", empty);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no sequences to embed/);

  r = await run("--fasta", path.join(dir, "missing.fasta"));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot read .*missing\.fasta: ENOENT/);

  r = await run("--fasta", good, "--csv", good);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /give only one of --fasta, --csv/);

  r = await run("--fasta", good, "--id-column", "x");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--id-column needs --csv/);

  assert.deepEqual(dirFiles(dir), ["empty.fasta", "good.fasta", "in.fasta"], "nothing written");

  // An existing output is kept unless --overwrite; refused before the model loads.
  writeFileSync(out, "precious");
  r = await runMain(["embed", "--model", "no/such-model", "--fasta", good, "--out", out]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /emb\.parquet": already exists; pass --overwrite/);
  assert.equal(readFileSync(out, "utf8"), "precious");
  // A failure half-way with --overwrite leaves the old file in place.
  r = await run("--fasta", fasta, "--overwrite", "--window", "1");
  assert.equal(r.code, 2);
  assert.equal(readFileSync(out, "utf8"), "precious");
  r = await run("--fasta", good, "--overwrite");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(out).subarray(0, 4).toString(), "PAR1");
  assert.ok(statSync(out).size > 100);
  assert.deepEqual(dirFiles(dir), ["emb.parquet", "empty.fasta", "good.fasta", "in.fasta"]);

  r = await runMain([
    "embed",
    "--model",
    TINY,
    "--fasta",
    good,
    "--out",
    path.join(dir, "no", "x.parquet"),
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /does not exist; create it first/);
});
