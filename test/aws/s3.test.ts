import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { after, before, test } from "node:test";
import type { S3Client } from "@aws-sdk/client-s3";
import { AwsError, scrubSecrets, toAwsError } from "../../src/aws/errors";
import {
  downloadPrefix,
  listObjects,
  objectSize,
  parseS3Uri,
  uploadDir,
  uploadFile,
} from "../../src/aws/s3";
import { loadPrepared } from "../../src/data/frame";
import { type PrepareProgress, prepare } from "../../src/data/prepare";
import { ConfigError, StorageError } from "../../src/errors";
import { openOutputDir, openRead } from "../../src/io/storage";
import { registerDefaults } from "../../src/register-defaults";
import { runCli, SAMPLE, tinyModelDir, tmp } from "./fixtures";
import { cliEnv, FAKE_KEY_ID, FAKE_SECRET, type Moto, motoSkipReason, startMoto } from "./moto";

// This file reads s3:// locations through src/io/storage directly, not through an entry point.
registerDefaults();

const skip = motoSkipReason();
let moto: Moto;
const BUCKET = "esmkit-s3-test";

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
});

test("s3:// URIs: bucket and key, bad ones named", () => {
  assert.deepEqual(parseS3Uri("s3://my-bucket/a/b.csv"), { bucket: "my-bucket", key: "a/b.csv" });
  assert.deepEqual(parseS3Uri("s3://my-bucket"), { bucket: "my-bucket", key: "" });
  assert.throws(() => parseS3Uri("s3://Bad_Bucket/x"), ConfigError);
  assert.throws(() => parseS3Uri("s3:/x"), /expected s3:\/\/bucket\/key/);
});

test("prepare writes to s3://, the parquet read back matches stats.json, overwrite replaces", {
  skip,
}, async () => {
  const out = `s3://${BUCKET}/prepared/deeploc`;
  const result = await prepare({ input: SAMPLE, out });
  assert.equal(result.out, out);
  const keys = (await listObjects(out)).map((o) => o.key).sort();
  assert.deepEqual(keys, [
    "prepared/deeploc/stats.json",
    "prepared/deeploc/test.parquet",
    "prepared/deeploc/train.parquet",
  ]);
  const local = await tmp("esmkit-s3-back-");
  await downloadPrefix(out, local);
  const back = await loadPrepared(local);
  assert.equal(back.train.height, back.stats.splits.train.rows);
  assert.equal(back.test.height, back.stats.splits.test.rows);
  assert.deepEqual(back.stats, result.stats);

  // An existing prefix is refused without overwrite, and replaced whole with it.
  await assert.rejects(prepare({ input: SAMPLE, out }), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(e.message, /already exists/);
    return true;
  });
  const stale = path.join(local, "stale.txt");
  await writeFile(stale, "old");
  await uploadFile(stale, `${out}/stale.txt`);
  await prepare({ input: SAMPLE, out, overwrite: true, testSize: 0.5 });
  const after = (await listObjects(out)).map((o) => o.key);
  assert.equal(after.includes("prepared/deeploc/stale.txt"), false, "stale object removed");
  const local2 = await tmp("esmkit-s3-back-");
  await downloadPrefix(out, local2);
  const again = await loadPrepared(local2);
  assert.equal(again.stats.options.testSize, 0.5);
  assert.equal(again.test.height, again.stats.splits.test.rows);
});

test("prepare reads s3://...csv streamed, with byte progress up to the object size", {
  skip,
}, async () => {
  const uri = `s3://${BUCKET}/raw/deeploc-sample.csv`;
  await uploadFile(SAMPLE, uri);
  const size = (await readFile(SAMPLE)).length;
  assert.equal(await objectSize(uri), size);
  const events: PrepareProgress[] = [];
  const out = path.join(await tmp("esmkit-s3-in-"), "out");
  const result = await prepare({ input: uri, out, onProgress: (p) => events.push(p) });
  assert.equal(result.stats.source, uri);
  assert.equal(result.stats.rowsRead, 1950);
  const reads = events.filter((e) => e.phase === "read");
  assert.ok(reads.length > 0);
  assert.equal(reads[reads.length - 1]!.bytes, size);
  assert.equal(reads[reads.length - 1]!.total, size);
  assert.ok(existsSync(path.join(out, "train.parquet")));

  // The CLI too, with a missing key failing cleanly.
  const missing = await runCli(
    ["prepare", "--input", `s3://${BUCKET}/raw/nope.csv`, "--out", `${out}-2`, "--quiet"],
    cliEnv(moto),
  );
  assert.equal(missing.status, 2, missing.stderr);
  assert.match(missing.stderr, /Cannot read s3:\/\/esmkit-s3-test\/raw\/nope\.csv \(NoSuchKey/);
});

test("large files go multipart; the streamed read returns the same bytes", { skip }, async () => {
  const dir = await tmp("esmkit-s3-big-");
  const file = path.join(dir, "big.bin");
  const data = Buffer.alloc(11 * 1024 * 1024 + 123);
  for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096) % 251;
  await writeFile(file, data);
  const uri = `s3://${BUCKET}/big/big.bin`;
  const before = moto.requests.length;
  const progress: number[] = [];
  const res = await uploadFile(file, uri, {
    partSize: 5 * 1024 * 1024,
    onProgress: (p) => progress.push(p.bytes),
  });
  assert.equal(res.parts, 3);
  const parts = moto.requests.slice(before).filter((r) => /[?&]partNumber=\d+/.test(r.path));
  assert.equal(parts.length, 3, "three UploadPart requests reached the server");
  assert.equal(progress[progress.length - 1], data.length);

  let bytes = 0;
  const input = await openRead(uri, { onProgress: (p) => (bytes = p.bytes) });
  const hash = createHash("sha256");
  for await (const chunk of input.stream) hash.update(chunk as Buffer);
  assert.equal(hash.digest("hex"), createHash("sha256").update(data).digest("hex"));
  assert.equal(input.size, data.length);
  assert.equal(bytes, data.length);
});

test("an aborted s3 output leaves nothing behind; upload/download of a directory tree", {
  skip,
}, async () => {
  const out = await openOutputDir(`s3://${BUCKET}/aborted/run`);
  await writeFile(path.join(out.localDir, "x.txt"), "x");
  await out.abort();
  assert.equal(existsSync(out.localDir), false);
  assert.deepEqual(await listObjects(`s3://${BUCKET}/aborted/`), []);

  const src = await tmp("esmkit-s3-tree-");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(path.join(src, "adapter"));
  await writeFile(path.join(src, "adapter", "a.json"), "{}");
  await writeFile(path.join(src, "m.txt"), "m");
  const keys = await uploadDir(src, `s3://${BUCKET}/tree/`);
  assert.deepEqual(keys, ["tree/adapter/a.json", "tree/m.txt"]);
  const dst = await tmp("esmkit-s3-tree-");
  // Partial downloads of a killed process go; a running one's stay.
  const { spawnSync } = await import("node:child_process");
  const dead = spawnSync(process.execPath, ["-e", ""]).pid;
  await writeFile(path.join(dst, `m.txt.partial-${dead}`), "half");
  await writeFile(path.join(dst, `m.txt.partial-${process.ppid}`), "half");
  assert.deepEqual(await downloadPrefix(`s3://${BUCKET}/tree`, dst), ["adapter/a.json", "m.txt"]);
  assert.equal(await readFile(path.join(dst, "adapter", "a.json"), "utf8"), "{}");
  assert.equal(existsSync(path.join(dst, `m.txt.partial-${dead}`)), false);
  assert.equal(existsSync(path.join(dst, `m.txt.partial-${process.ppid}`)), true);
  await assert.rejects(downloadPrefix(`s3://${BUCKET}/nothing-here`, dst), /No objects under/);
});

test("credentials never appear in errors, CLI output or SDK error fields", { skip }, async () => {
  // A missing bucket through the library.
  await assert.rejects(openRead("s3://no-such-bucket-esmkit/x.csv"), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    const text = `${(e as Error).message} ${JSON.stringify((e as StorageError).context)} ${String((e as Error).cause)}`;
    assert.ok(!text.includes(FAKE_KEY_ID) && !text.includes(FAKE_SECRET), text);
    return true;
  });
  // An unreachable endpoint, through the CLI (prepare and sagemaker).
  const dead = cliEnv(moto, { AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_MAX_ATTEMPTS: "1" });
  const out = path.join(await tmp("esmkit-s3-cred-"), "o");
  for (const args of [
    ["prepare", "--input", `s3://${BUCKET}/raw/deeploc-sample.csv`, "--out", out],
    ["sagemaker", "describe", "--endpoint", "nope"],
    ["sagemaker", "delete", "--endpoint", "nope"],
  ]) {
    const r = await runCli(args, dead);
    assert.notEqual(r.status, 0, `${args.join(" ")} should fail`);
    assert.match(r.stderr, /ECONNREFUSED|connect/i, r.stderr);
    for (const secret of [FAKE_KEY_ID, FAKE_SECRET]) {
      assert.equal(r.stderr.includes(secret) || r.stdout.includes(secret), false, r.stderr);
    }
  }
  // SDK errors can carry the key id as a field (S3's InvalidAccessKeyId): scrubbed.
  const sdkError = Object.assign(
    new Error(
      `The AWS Access Key Id you provided (${FAKE_KEY_ID}) does not exist; secret ${FAKE_SECRET}`,
    ),
    { name: "InvalidAccessKeyId", AWSAccessKeyId: FAKE_KEY_ID, $metadata: { httpStatusCode: 403 } },
  );
  const wrapped = toAwsError("S3 GetObject", sdkError, {
    url: `https://x/?X-Amz-Credential=${FAKE_KEY_ID}%2F`,
  });
  assert.ok(wrapped instanceof AwsError);
  const shown = `${wrapped.message} ${JSON.stringify(wrapped.context)} ${String(wrapped.cause)} ${wrapped.stack}`;
  assert.match(
    wrapped.message,
    /InvalidAccessKeyId: The AWS Access Key Id you provided \(\*\*\*\)/,
  );
  assert.ok(!shown.includes(FAKE_KEY_ID) && !shown.includes(FAKE_SECRET), shown);
  assert.equal(scrubSecrets("key ASIAABCDEFGHIJKLMNOP used"), "key *** used");
});

test("esmkit train with --data, --model and --out on S3, then --resume from the uploaded checkpoints", {
  skip,
}, async () => {
  const data = `s3://${BUCKET}/train-data/prepared`;
  await prepare({ input: SAMPLE, out: data, maxLength: 200 });
  const model = `s3://${BUCKET}/models/tiny`;
  await uploadDir(await tinyModelDir(), model);
  const out = `s3://${BUCKET}/runs/r1`;
  const args = ["train", "--data", data, "--model", model, "--out", out, "--max-steps", "2"];
  const quick = [
    "--limit-train",
    "8",
    "--limit-eval",
    "4",
    "--max-length",
    "64",
    "--backend",
    "wasm",
  ];
  const r = await runCli([...args, ...quick], cliEnv(moto));
  assert.equal(r.status, 0, r.stderr);
  const keys = (await listObjects(out)).map((o) => o.key.slice("runs/r1/".length));
  for (const k of [
    "model/config.json",
    "model/model.safetensors",
    "adapter/adapter_config.json",
    "metrics.json",
    "history.jsonl",
  ]) {
    assert.ok(keys.includes(k), `${k} uploaded: ${keys.join(", ")}`);
  }
  assert.ok(keys.some((k) => k.startsWith("checkpoints/checkpoint-2/")));
  assert.match(r.stderr, new RegExp(`wrote .* in ${out}`));
  const again = await runCli([...args, ...quick, "--resume"], cliEnv(moto));
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /downloading checkpoints from .*runs\/r1\/checkpoints\//);
  assert.match(again.stderr, /resuming from step 2/);
  assert.match(again.stderr, /already complete/);

  // A new run into the same s3:// output is refused; --overwrite replaces the old run.
  const fresh = await runCli([...args, ...quick, "--learning-rate", "5e-4"], cliEnv(moto));
  assert.equal(fresh.status, 2, fresh.stderr);
  assert.match(fresh.stderr, /runs\/r1 already holds a training run/);
  const replaced = await runCli(
    [...args, ...quick, "--learning-rate", "5e-4", "--max-steps", "1", "--overwrite"],
    cliEnv(moto),
  );
  assert.equal(replaced.status, 0, replaced.stderr);
  const after = (await listObjects(out)).map((o) => o.key.slice("runs/r1/".length));
  assert.ok(!after.some((k) => k.startsWith("checkpoints/checkpoint-2/")), after.join(", "));
  assert.ok(
    after.some((k) => k.startsWith("checkpoints/checkpoint-1/")),
    after.join(", "),
  );
  const history = await (await import("../../src/io/storage")).readText(`${out}/history.jsonl`);
  assert.deepEqual(
    history
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.type === "step")
      .map((e) => e.step),
    [1],
  );
});

test("esmkit predict reads --csv and --fasta from S3", { skip }, async () => {
  const dir = await tmp("esmkit-s3-predict-");
  await writeFile(path.join(dir, "in.csv"), "id,sequence\nP1,MKTAYIAKQR\nP2,LLVVAA\n");
  await writeFile(path.join(dir, "in.fa"), ">P1\nMKTAYIAKQR\n>P2\nLLVVAA\n");
  await uploadFile(path.join(dir, "in.csv"), `s3://${BUCKET}/predict/in.csv`);
  await uploadFile(path.join(dir, "in.fa"), `s3://${BUCKET}/predict/in.fa`);
  const model = await tinyModelDir();
  for (const [flag, key] of [
    ["--csv", "in.csv"],
    ["--fasta", "in.fa"],
  ] as const) {
    const out = path.join(dir, `${key}.jsonl`);
    const r = await runCli(
      ["predict", "--model", model, flag, `s3://${BUCKET}/predict/${key}`, "--out", out, "--quiet"],
      cliEnv(moto),
    );
    assert.equal(r.status, 0, r.stderr);
    const rows = (await readFile(out, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      rows.map((x) => [x.id, x.length]),
      [
        ["P1", 10],
        ["P2", 6],
      ],
    );
  }
});
