import assert from "node:assert/strict";
import { test } from "node:test";
import { FastaFormatError, InvalidSequenceError } from "../../src/serve/errors";
import { parseFasta } from "../../src/serve/fasta";
import { normaliseSequence } from "../../src/serve/sequences";

test("FASTA: multi-line records, lowercase, a final *, blank lines, CRLF, ids and descriptions", () => {
  const text =
    "\ufeff\r\n>sp|P12345|ABC_HUMAN Some protein OS=Homo sapiens\r\nmktay\r\nIAKQR*\r\n\r\n" +
    ">P2\r\n\r\nAC DE\tFG\r\n  >P3   spaced   header  \rLLL\r";
  const records = parseFasta(text);
  assert.deepEqual(records, [
    {
      id: "sp|P12345|ABC_HUMAN",
      description: "Some protein OS=Homo sapiens",
      sequence: "MKTAYIAKQR",
      line: 2,
    },
    { id: "P2", description: "", sequence: "ACDEFG", line: 6 },
    { id: "P3", description: "spaced   header", sequence: "LLL", line: 9 },
  ]);
  assert.deepEqual(parseFasta(""), []);
  assert.deepEqual(parseFasta("\n\n  \n"), []);
  assert.equal(parseFasta(">x\nA*\n\n")[0]!.sequence, "A");
});

test("FASTA errors name the line: data before a header, empty header, empty record", () => {
  assert.throws(
    () => parseFasta("\nMKT\n>a\nMKT\n", { source: "in.fa" }),
    (e: unknown) =>
      e instanceof FastaFormatError &&
      e.message === 'in.fa: line 2: sequence data before the first ">" header' &&
      e.status === 422,
  );
  assert.throws(() => parseFasta(">a\nMK\n>\nAA\n"), /line 3: empty header/);
  assert.throws(() => parseFasta(">a\n>b\nMK\n"), /line 1: record "a" has no sequence/);
  assert.throws(() => parseFasta(">a\nMK\n>b\n\n"), /line 3: record "b" has no sequence/);
  assert.throws(() => parseFasta(">a\n*\n"), /line 1: record "a" has no sequence/);
});

test("FASTA bad characters: line, column, record and residue position", () => {
  assert.throws(
    () => parseFasta(">a\nMKT\n>b desc\nAC\nDEkZ1Q\n"),
    (e: unknown) => {
      assert.ok(e instanceof InvalidSequenceError);
      assert.equal(
        e.message,
        'line 5, column 5 (record "b"): invalid character "1" at position 7; valid residues: LAGVSERTIDPKQNFYMHWCXBUZO.- (lowercase accepted)',
      );
      assert.equal(e.context.character, "1");
      assert.equal(e.context.position, 7);
      return true;
    },
  );
  // A stop in the middle of a record is reported where the * is.
  assert.throws(
    () => parseFasta(">a\nMK*\nAA\n"),
    /line 2, column 3 .*invalid character "\*" at position 3/,
  );
  assert.throws(() => parseFasta(">a\nMK**\n"), /invalid character "\*" at position 3/);
  assert.throws(() => parseFasta(">a\nMK\u0000\n"), /invalid character U\+0000 at position 3/);
});

test("sequences: trim, uppercase, one trailing *, whitespace inside dropped", () => {
  assert.deepEqual(normaliseSequence("  mktAY*\n"), {
    sequence: "MKTAY",
    length: 5,
    truncated: false,
  });
  assert.equal(normaliseSequence("MK TA\r\nY").sequence, "MKTAY");
  assert.equal(normaliseSequence("LAGVSERTIDPKQNFYMHWCXBUZO.-").sequence.length, 27);
});

test("sequences: invalid characters are named with their 1-based residue position", () => {
  const cases: [string, string, number][] = [
    ["MKTJ", '"J"', 4],
    ["  MK1", '"1"', 3],
    ["MK*A", '"*"', 3],
    ["M\u00e9", '"\u00e9"', 2],
    ["MK\u{1F600}", "U+1F600", 3],
    ['MK"', `'"' (U+0022)`, 3],
  ];
  for (const [raw, shown, position] of cases) {
    assert.throws(
      () => normaliseSequence(raw, { where: "inputs[2]" }),
      (e: unknown) =>
        e instanceof InvalidSequenceError &&
        e.status === 422 &&
        e.message.startsWith(`inputs[2]: invalid character ${shown} at position ${position}`) &&
        e.context.position === position,
      raw,
    );
  }
  for (const empty of ["", "   \n", "*"]) {
    assert.throws(
      () => normaliseSequence(empty, { where: "inputs" }),
      /^InvalidSequenceError: inputs: empty sequence/,
    );
  }
});

test("sequences over the model's limit: truncated and flagged, or rejected", () => {
  // maxLength 10 tokens = 8 residues + <cls> + <eos>
  assert.deepEqual(normaliseSequence("ACDEFGHIKL", { maxLength: 10 }), {
    sequence: "ACDEFGHI",
    length: 10,
    truncated: true,
  });
  assert.equal(normaliseSequence("ACDEFGHI", { maxLength: 10 }).truncated, false);
  assert.throws(
    () => normaliseSequence("ACDEFGHIK", { maxLength: 10, tooLong: "reject", where: "inputs" }),
    /inputs: sequence of 9 residues is longer than the model's limit of 8 residues/,
  );
});
