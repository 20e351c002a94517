/** display.table's typing of records and its `digits` option. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { pl } from "../../src/data/frame";
import { tableBundle } from "../../src/display/table";

test("table: integral number columns of records print as integers, others as floats", () => {
  const b = tableBundle([
    { epoch: 1, loss: 0.5, missing: null },
    { epoch: 2, loss: 0.25, missing: 3 },
  ]);
  assert.match(b["text/plain"] as string, /epoch ┆ loss ┆ missing[\s\S]*i64 {3}┆ f64 {2}┆ i64/);
  assert.match(b["text/html"] as string, /<td>1<\/td><td>0.5<\/td><td>null<\/td>/);
});

test("table: digits rounds floating-point columns for display only", () => {
  const df = pl.DataFrame({ id: ["a"], p: [0.123456] }).withColumn(pl.Series("n", [7], pl.Int64));
  const b = tableBundle(df, { digits: 3 });
  assert.match(b["text/html"] as string, /<td>a<\/td><td>0.123<\/td><td>7<\/td>/);
  assert.equal(df.getColumn("p").toArray()[0], 0.123456);
  assert.match(tableBundle([{ p: 0.98765 }], { digits: 2 })["text/plain"] as string, /0\.99/);
});

test("table: a rate that happens to be 0 or 1 stays a float; counts stay integers", () => {
  // notebook 02's summary: a model predicting one class has a recall of exactly 1.
  const b = tableBundle([{ precision: 1 / 3, recall: 1, mcc: 0, count: 16 }], { digits: 3 });
  assert.match(
    b["text/plain"] as string,
    /precision ┆ recall ┆ mcc ┆ count[\s\S]*f64 {7}┆ f64 {4}┆ f64 ┆ i64/,
  );
  // With digits, the HTML shows every float with that many decimals.
  assert.match(
    b["text/html"] as string,
    /<td>0\.333<\/td><td>1\.000<\/td><td>0\.000<\/td><td>16<\/td>/,
  );
  // Epochs 1 and 2 are integers; NaN and null survive the formatting.
  const e = tableBundle(
    [
      { epoch: 1, loss: Number.NaN },
      { epoch: 2, loss: null },
    ],
    { digits: 2 },
  );
  assert.match(
    e["text/html"] as string,
    /<td>1<\/td><td>NaN<\/td><\/tr><tr><td>2<\/td><td>null<\/td>/,
  );
});
