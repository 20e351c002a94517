/**
 * `embedToParquet` reads from s3:// and writes to s3:// (moto standing in for S3): the
 * object appears only when complete, and an existing one is kept unless overwrite.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import type { S3Client } from "@aws-sdk/client-s3";
import { downloadFile, listObjects, uploadFile } from "../../src/aws/s3";
import { pl } from "../../src/data/frame";
import { embedToParquet } from "../../src/embed";
import { ConfigError } from "../../src/errors";
import { registerDefaults } from "../../src/register-defaults";
import { type Moto, motoSkipReason, startMoto } from "../aws/moto";
import { FIXTURES, maxAbsDiff, readReference } from "./helpers";

// The s3:// store, as the package entry points register it.
registerDefaults();

const skip = motoSkipReason();
let moto: Moto;
const BUCKET = "esmkit-embed-test";
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-embed-s3-"));

before(async () => {
  if (skip) return;
  moto = await startMoto();
  const { s3Client } = await import("../../src/aws/clients");
  const { CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const client: S3Client = s3Client();
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  client.destroy();
});

after(async () => {
  await moto?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test("s3:// FASTA in, s3:// Parquet out; an existing object needs overwrite", {
  skip,
}, async () => {
  const ref = readReference("tiny");
  const fasta = path.join(tmp, "in.fasta");
  writeFileSync(fasta, ref.sequences.map(([id, s]) => `>${id}\n${s}\n`).join(""));
  await uploadFile(fasta, `s3://${BUCKET}/in/proteins.fasta`);
  const out = `s3://${BUCKET}/out/emb.parquet`;
  const options = {
    model: path.join(FIXTURES, "model", "tiny"),
    fasta: `s3://${BUCKET}/in/proteins.fasta`,
    out,
    maxLength: ref.max_length,
    threads: 1,
  };
  const summary = await embedToParquet(options);
  assert.equal(summary.rows, ref.ids.length);
  const local = path.join(tmp, "emb.parquet");
  await downloadFile(out, local);
  const df = pl.readParquet(local);
  assert.deepEqual(df.getColumn("id").toArray(), ref.ids);
  const e = df.getColumn("embedding").toArray() as unknown as number[][];
  assert.ok(maxAbsDiff(Array.from(e[4]!), ref.mean[String(ref.num_layers)]![4]!, "row 4") < 1e-4);

  await assert.rejects(
    embedToParquet(options),
    (err: unknown) =>
      err instanceof ConfigError && /already exists; pass --overwrite/.test(String(err)),
  );
  // A failed run with overwrite leaves the object as it was.
  const bad = path.join(tmp, "bad.fasta");
  writeFileSync(bad, ">A\nMKT\n>B\nMK1\n");
  await uploadFile(bad, `s3://${BUCKET}/in/bad.fasta`);
  await assert.rejects(
    // window 1: record A is embedded and written to the local part before B fails.
    embedToParquet({
      ...options,
      fasta: `s3://${BUCKET}/in/bad.fasta`,
      overwrite: true,
      window: 1,
    }),
    /invalid character "1"/,
  );
  const objects = await listObjects(`s3://${BUCKET}/out/`);
  assert.deepEqual(
    objects.map((o) => [o.key, o.size]),
    [["out/emb.parquet", summary.bytes]],
  );
  await embedToParquet({ ...options, layer: 0, overwrite: true });
  await downloadFile(out, local);
  const e0 = pl.readParquet(local).getColumn("embedding").toArray() as unknown as number[][];
  assert.ok(maxAbsDiff(Array.from(e0[4]!), ref.mean["0"]![4]!, "layer 0") < 1e-4);
});
