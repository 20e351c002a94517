import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { WeightsError } from "../../src/errors";
import { readSafetensors, SafetensorsFile, writeSafetensors } from "../../src/model";
import { REPO_ROOT } from "../helpers/python";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "model");
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-safetensors-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A file with a hand-written header, for the malformed cases. */
function rawFile(
  name: string,
  header: unknown,
  dataBytes: number,
  headerLenOverride?: number,
): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLenOverride ?? json.length));
  const file = path.join(tmp, name);
  writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return file;
}

function throwsWeights(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WeightsError, `expected WeightsError, got ${e}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

test("F32, F16 and BF16 written by Python read as the float32 values torch gives", () => {
  const expected = JSON.parse(readFileSync(path.join(FIXTURES, "dtypes.json"), "utf8")) as Record<
    string,
    { shape: number[]; values: (number | string)[] }
  >;
  const f = SafetensorsFile.open(path.join(FIXTURES, "dtypes.safetensors"));
  try {
    assert.deepEqual(f.metadata, { format: "pt" });
    assert.deepEqual(Object.fromEntries([...f.tensors].map(([k, v]) => [k, v.dtype])), {
      bf16: "BF16",
      f16: "F16",
      f16_matrix: "F16",
      f32: "F32",
      i64: "I64",
    });
    for (const [name, want] of Object.entries(expected)) {
      assert.deepEqual(f.tensors.get(name)?.shape, want.shape);
      const got = Array.from(f.readFloat32(name));
      const wantNumbers = want.values.map((v) =>
        typeof v === "string" ? Number(v.replace("inf", "Infinity")) : v,
      );
      assert.deepEqual(got, wantNumbers, name);
    }
    throwsWeights(
      () => f.readFloat32("i64"),
      /dtypes\.safetensors: tensor "i64" is I64; only F32, F16, BF16/,
    );
    throwsWeights(() => f.readFloat32("nope"), /no tensor named "nope"/);
  } finally {
    f.close();
  }
});

test("write then read round-trips values, shapes and metadata; header padded to 8", () => {
  const file = path.join(tmp, "round.safetensors");
  const a = Float32Array.from([1.5, -2, 3.25, 0, Number.MIN_VALUE, 3.4e38]);
  const b = Float32Array.from([7]);
  writeSafetensors(file, [
    ["a", { shape: [2, 3], data: a }],
    ["b.scalar", { shape: [], data: () => b }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const bytes = readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString("utf8"));
  assert.deepEqual(header.__metadata__, { format: "pt" });
  assert.deepEqual(header.a, { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] });
  const { tensors, metadata } = readSafetensors(file);
  assert.deepEqual(metadata, { format: "pt" });
  assert.deepEqual(tensors.get("a"), { shape: [2, 3], data: a });
  assert.deepEqual(tensors.get("b.scalar"), { shape: [], data: b });
  assert.deepEqual(tensors.get("empty"), { shape: [0, 4], data: new Float32Array(0) });
  throwsWeights(
    () => writeSafetensors(path.join(tmp, "bad.safetensors"), [["x", { shape: [3], data: a }]]),
    /tensor "x" has 6 values but shape \[3\] needs 3/,
  );
});

test("a truncated file fails naming the file and the tensor cut off", () => {
  const file = path.join(tmp, "truncated.safetensors");
  writeSafetensors(file, [
    ["first", { shape: [4], data: new Float32Array(4) }],
    ["second", { shape: [1000], data: new Float32Array(1000) }],
  ]);
  truncateSync(file, statSync(file).size - 100);
  throwsWeights(
    () => SafetensorsFile.open(file),
    /truncated\.safetensors: truncated file: tensor "second" ends at byte \d+ but the file has \d+ bytes/,
  );
  truncateSync(file, 5);
  throwsWeights(
    () => SafetensorsFile.open(file),
    /truncated file: 5 bytes, shorter than the 8-byte header length/,
  );
});

test("malformed headers fail with what is wrong", () => {
  throwsWeights(
    () =>
      SafetensorsFile.open(
        rawFile(
          "past.safetensors",
          { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } },
          4,
          5000,
        ),
      ),
    /past\.safetensors: truncated file: the header needs 5008 bytes but the file has \d+/,
  );
  throwsWeights(
    () =>
      SafetensorsFile.open(
        rawFile(
          "offsets.safetensors",
          { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } },
          8,
        ),
      ),
    /tensor "a" ends at byte \d+ but the file has \d+ bytes \(data_offsets \[0,16\] past the end\)/,
  );
  throwsWeights(
    () =>
      SafetensorsFile.open(
        rawFile("span.safetensors", { a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
      ),
    /tensor "a" \(F32 \[3\]\) needs 12 bytes but data_offsets \[0,8\] span 8/,
  );
  throwsWeights(
    () =>
      SafetensorsFile.open(
        rawFile("dtype.safetensors", { a: { dtype: "F8", shape: [1], data_offsets: [0, 1] } }, 1),
      ),
    /tensor "a" has unknown dtype "F8"; known: F64, F32/,
  );
  const notJson = path.join(tmp, "notjson.safetensors");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(4n);
  writeFileSync(notJson, Buffer.concat([len, Buffer.from("{oops")]));
  throwsWeights(
    () => SafetensorsFile.open(notJson),
    /notjson\.safetensors: the header is not valid JSON/,
  );
  throwsWeights(
    () => SafetensorsFile.open(path.join(tmp, "absent.safetensors")),
    /absent\.safetensors: cannot open/,
  );
});
