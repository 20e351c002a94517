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
  const df = pl.DataFrame({ id: ["a"], p: [0.123456], n: [7] });
  const b = tableBundle(df, { digits: 3 });
  assert.match(b["text/html"] as string, /<td>a<\/td><td>0.123<\/td><td>7<\/td>/);
  assert.equal(df.getColumn("p").toArray()[0], 0.123456);
  assert.match(tableBundle([{ p: 0.98765 }], { digits: 2 })["text/plain"] as string, /0\.99/);
});
