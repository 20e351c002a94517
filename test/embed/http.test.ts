/**
 * Input over http(s): records stream in (rows come out before the server has sent the
 * rest), progress counts the bytes against Content-Length, and a failed fetch is a
 * clear error that writes nothing and never shows the URL's credentials.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { main } from "../../src/cli/main";
import { pl } from "../../src/data/frame";
import { type EmbeddingRow, type EmbedProgress, embed, embedToParquet } from "../../src/embed";
import { StorageError } from "../../src/errors";
import { FIXTURES, maxAbsDiff, readReference } from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-embed-http-"));
const TINY = path.join(FIXTURES, "model", "tiny");
const ref = readReference("tiny");
const LAST = String(ref.num_layers);
const fasta = ref.sequences.map(([id, s]) => `>${id}\n${s}\n`).join("");
/** The first two records: the server sends these, then waits for `release`. */
const head = ref.sequences
  .slice(0, 2)
  .map(([id, s]) => `>${id}\n${s}\n`)
  .join("");

let server: Server;
let base: string;
let release: () => void = () => {};
let released = false;
/** The Authorization header of the last request for a missing file. */
let authorization: string | undefined;

before(async () => {
  server = createServer((req, res) => {
    if (req.url !== "/slow.fasta") {
      authorization = req.headers.authorization;
      res.writeHead(404).end("not here");
      return;
    }
    res.writeHead(200, {
      "content-type": "text/plain",
      "content-length": Buffer.byteLength(fasta),
    });
    res.write(head);
    // The rest only once the test says so (or after 20 s, so that a client which
    // waits for the whole body fails the assertions below instead of hanging).
    const rest = () => {
      released = true;
      res.end(fasta.slice(head.length));
    };
    const timer = setTimeout(rest, 20_000);
    release = () => {
      clearTimeout(timer);
      rest();
    };
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  release();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

test("http:// FASTA: the first rows come before the server sends the rest; progress counts bytes of Content-Length", async () => {
  released = false;
  const progress: EmbedProgress[] = [];
  const rows: EmbeddingRow[] = [];
  let releasedAtFirstRow: boolean | undefined;
  for await (const row of embed({
    model: TINY,
    fasta: `${base}/slow.fasta`,
    maxLength: ref.max_length,
    threads: 1,
    window: 1,
    onProgress: (p) => progress.push({ ...p }),
  })) {
    if (rows.length === 0) {
      releasedAtFirstRow = released;
      release();
    }
    rows.push(row);
  }
  assert.equal(releasedAtFirstRow, false, "a row came out while the input was still arriving");
  assert.deepEqual(
    rows.map((r) => r.id),
    ref.ids,
  );
  for (let i = 0; i < rows.length; i++) {
    assert.ok(
      maxAbsDiff(rows[i]!.embedding, ref.mean[LAST]![i]!, `row ${i}`) < 1e-4,
      `row ${i} matches EsmModel`,
    );
  }
  const total = Buffer.byteLength(fasta);
  assert.deepEqual(
    progress.map((p) => p.proteins),
    ref.ids.map((_, i) => i + 1),
    "one report per window of 1",
  );
  assert.ok(
    progress.every((p) => p.totalBytes === total),
    `total from Content-Length: ${JSON.stringify(progress)}`,
  );
  assert.ok(progress[0]!.bytes! <= Buffer.byteLength(head), "first report: only the head read");
  assert.equal(progress.at(-1)!.bytes, total);
});

test("esmkit embed --fasta http://...: a progress line on stderr, the Parquet as from a file", async () => {
  released = false;
  const out = path.join(tmp, "emb.parquet");
  const err: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    // The first progress line: the server may send the rest now.
    if (String(chunk).startsWith("embedding")) release();
    return err.push(String(chunk)) > 0;
  }) as typeof write;
  let code: number;
  try {
    code = await main([
      "embed",
      "--model",
      TINY,
      "--fasta",
      `${base}/slow.fasta`,
      "--out",
      out,
      "--threads",
      "1",
      "--window",
      "1",
    ]);
  } finally {
    process.stderr.write = write;
  }
  const stderr = err.join("");
  assert.equal(code, 0, stderr);
  const total = Buffer.byteLength(fasta);
  // "embedding [###.....] 40% 123 B/300 B eta 1s 1 proteins, 2.0/s" (a redrawn bar on a TTY)
  assert.match(stderr, new RegExp(`embedding \\[[#.]+\\] \\d+% \\d+ B/${total} B.* 1 proteins`));
  assert.match(stderr, new RegExp(`embedding done in [\\d.]+s ${ref.ids.length} proteins`));
  const df = pl.readParquet(out);
  assert.deepEqual(df.getColumn("id").toArray(), ref.ids);
  const e = df.getColumn("embedding").toArray() as unknown as number[][];
  assert.ok(maxAbsDiff(Array.from(e[3]!), ref.mean[LAST]![3]!, "row 3") < 1e-4);
});

test("a failed fetch: StorageError with the HTTP status, credentials not shown, nothing written", async () => {
  const dir = mkdtempSync(path.join(tmp, "fail-"));
  const url = `http://reader:s3cr3t-pw@${base.slice("http://".length)}/missing.fasta?sig=abc123`;
  await assert.rejects(
    embedToParquet({ model: TINY, fasta: url, out: path.join(dir, "x.parquet"), threads: 1 }),
    (e: unknown) => {
      assert.ok(e instanceof StorageError, String(e));
      assert.match(e.message, /failed: HTTP 404/);
      assert.doesNotMatch(JSON.stringify({ m: e.message, c: e.context }), /s3cr3t|abc123/);
      return true;
    },
  );
  assert.deepEqual(readdirSync(dir), [], "no output, no part file");
  // The URL's user:password went as Basic auth (fetch refuses them in the URL).
  assert.equal(authorization, `Basic ${Buffer.from("reader:s3cr3t-pw").toString("base64")}`);
});
