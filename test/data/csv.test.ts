import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { printable, readCsv } from "../../src/data/csv";

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

test("a last record without a line break is marked unterminated, whatever the chunks", async () => {
  for (const size of [undefined, 1, 3]) {
    const cut = await parse("a,b\n1,MKT\n2,MK", size);
    assert.deepEqual(
      cut.map((r) => r.unterminated),
      [undefined, undefined, true],
    );
    assert.deepEqual(cut[2]!.fields, ["2", "MK"]);
    const whole = await parse("a,b\r\n1,MKT\r\n", size);
    assert.ok(whole.every((r) => r.unterminated === undefined));
    // Inside an open quoted field, a line break does not end the record.
    const open = await parse('a,b\n1,"MK\nT', size);
    assert.equal(open[1]!.unterminated, true);
  }
});

test("binary input is refused before parsing; printable() escapes control characters", async () => {
  await assert.rejects(
    parse("a,b\n\u0000\u0001,x\n"),
    /not a CSV text file: it has a NUL byte at offset 4/,
  );
  const latin1 = Buffer.from("id,s\xe9q\n1,A\n", "latin1");
  await assert.rejects(
    (async () => {
      for await (const _ of readCsv(Readable.from([latin1]), { name: "x.csv" })) {
      }
    })(),
    /^DataError: x\.csv is not a CSV text file: its first bytes are not valid UTF-8/,
  );
  // A character cut by the sample's end is not mistaken for bad UTF-8.
  const long = `a${"é".repeat(5000)},b\n1,2\n`;
  assert.equal((await parse(long, 4097)).length, 2);
  assert.equal(printable("a\u001b[2Jb\u009b\u202e\tc"), "a\\u001b[2Jb\\u009b\\u202e\\u0009c");
  assert.equal(printable("x".repeat(10), 4), "xxxx...");
});
