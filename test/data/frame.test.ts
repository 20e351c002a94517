import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { classBalance, labelRateBy, loadPrepared, pl, toHtmlTable } from "../../src/data/frame";
import { prepare } from "../../src/data/prepare";
import { DataError } from "../../src/errors";
import { REPO_ROOT } from "../helpers/python";

let dir = "";
before(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), "esmkit-frame-")), "prepared");
  await prepare({
    input: path.join(REPO_ROOT, "data", "deeploc-sample.csv"),
    out: dir,
    stratify: true,
  });
});

test("loadPrepared returns the splits as polars frames agreeing with stats.json", async () => {
  const { train, test: testDf, stats } = await loadPrepared(dir);
  assert.equal(train.height, stats.splits.train.rows);
  assert.equal(testDf.height, stats.splits.test.rows);
  assert.deepEqual(train.columns, stats.columns);
  assert.equal(train.getColumn("label").sum(), stats.splits.train.classCounts["1"]);
  await assert.rejects(
    loadPrepared(REPO_ROOT),
    (e: unknown) => e instanceof DataError && /run "esmkit prepare"/.test(e.message),
  );
});

test("classBalance and labelRateBy compute counts and fractions per group", async () => {
  const { train, test: testDf, stats } = await loadPrepared(dir);
  const bal = classBalance({ train, test: testDf });
  const recs = bal.toRecords() as {
    split: string;
    label: number;
    rows: number;
    fraction: number;
  }[];
  assert.equal(recs.length, 4);
  const trainPos = recs.find((r) => r.split === "train" && r.label === 1)!;
  assert.equal(trainPos.rows, stats.splits.train.classCounts["1"]);
  assert.ok(Math.abs(trainPos.fraction - trainPos.rows / stats.splits.train.rows) < 1e-12);
  const byKingdom = labelRateBy(train, "kingdom").toRecords() as {
    rows: number;
    positive: number;
  }[];
  assert.equal(
    byKingdom.reduce((a, r) => a + r.rows, 0),
    train.height,
  );
  assert.equal(
    byKingdom.reduce((a, r) => a + r.positive, 0),
    stats.splits.train.classCounts["1"],
  );
  assert.throws(
    () => classBalance({ train }, "Membrane"),
    /No column "Membrane" in split "train"; columns: id, sequence/,
  );
});

test("toHtmlTable escapes values, summarises lists and limits rows", () => {
  const df = pl.DataFrame({ name: ["<b>x</b>", "y", "z"], ids: [[1, 2], [3], [4]] });
  const html = toHtmlTable(df, 2);
  assert.match(html, /&#60;b&#62;x&#60;\/b&#62;/);
  assert.match(html, /\[2 items\]/);
  assert.match(html, /<p>1 more rows<\/p>/);
  assert.equal((html.match(/<tr>/g) ?? []).length, 3);
});
