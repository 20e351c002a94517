import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { readCsv } from "../../src/data/csv";

async function parse(text: string, chunkSize?: number) {
  const buf = Buffer.from(text, "utf8");
  const chunks: Buffer[] = [];
  const step = chunkSize ?? buf.length;
  for (let i = 0; i < buf.length; i += step) chunks.push(buf.subarray(i, i + step));
  const out = [];
  for await (const r of readCsv(Readable.from(chunks))) out.push(r);
  return out;
}

const TRICKY =
  '\ufeff,ACC,Note,Sequence\r\n0,P1,"a, b",MKT\r\n1,P2,"say ""hi""",AYI\r\n\r\n2,P3,"two\nlines",QRS\n3,P4,,LLL';

test("parses quotes, escaped quotes, embedded line breaks, BOM, CRLF and blank lines", async () => {
  const rows = await parse(TRICKY);
  assert.deepEqual(
    rows.map((r) => r.fields),
    [
      ["", "ACC", "Note", "Sequence"],
      ["0", "P1", "a, b", "MKT"],
      ["1", "P2", 'say "hi"', "AYI"],
      ["2", "P3", "two\nlines", "QRS"],
      ["3", "P4", "", "LLL"],
    ],
  );
  // Line numbers are where each record starts in the file (blank line 4 skipped,
  // the quoted line break makes P4 start on line 7).
  assert.deepEqual(
    rows.map((r) => r.line),
    [1, 2, 3, 5, 7],
  );
});

test("gives the same records whatever the chunk boundaries", async () => {
  const whole = await parse(TRICKY);
  for (const size of [1, 2, 3, 5, 7]) {
    assert.deepEqual(await parse(TRICKY, size), whole, `chunk size ${size}`);
  }
});

test("a multi-byte character split across chunks survives", async () => {
  const rows = await parse("a,b\nπ,é\n", 1);
  assert.deepEqual(rows[1]!.fields, ["π", "é"]);
});
